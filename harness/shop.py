"""A client of the running system over gRPC, as a user or an admin would drive it in tests."""

from __future__ import annotations

import asyncio
import inspect
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from common.v1 import money_pb2
from inventory.v1 import inventory_service_pb2 as inventory_pb
from inventory.v1 import inventory_service_pb2_grpc as inventory_grpc
from notification.v1 import notification_service_pb2 as notification_pb
from notification.v1 import notification_service_pb2_grpc as notification_grpc
from order.v1 import order_service_pb2 as order_pb
from order.v1 import order_service_pb2_grpc as order_grpc
from user.v1 import user_service_pb2 as user_pb
from user.v1 import user_service_pb2_grpc as user_grpc

from harness.system import ADMIN_EMAIL, System

T = TypeVar("T")
PASSWORD = "correct horse battery"


async def eventually(
    probe: Callable[[], Awaitable[T | None] | T | None],
    *,
    timeout_s: float = 20.0,
    what: str = "condition",
) -> T:
    """Calls `probe` (awaiting what it returns, if it must) until it returns something truthy;
    fails naming `what` after the timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = probe()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        assert time.monotonic() < deadline, f"{what}: not within {timeout_s} s"
        await asyncio.sleep(0.05)


@dataclass
class Session:
    """A logged-in user."""

    user_id: str
    email: str
    access_token: str
    refresh_token: str

    @property
    def metadata(self) -> list[tuple[str, str]]:
        return [("authorization", f"Bearer {self.access_token}")]


class Shop:
    def __init__(self, system: System, *, via: str | None = None):
        """Calls each service directly, or every one through `via` (the gateway's address)."""
        self.system = system
        self._channels = {
            s: grpc.aio.insecure_channel(via or system.address(s)) for s in system.processes
        }
        self.users = user_grpc.UserServiceStub(self._channels["user"])
        self.inventory = inventory_grpc.InventoryServiceStub(self._channels["inventory"])
        self.orders = order_grpc.OrderServiceStub(self._channels["order"])
        self.notifications = notification_grpc.NotificationServiceStub(
            self._channels["notification"]
        )

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()

    def use_order_instance(self, address: str) -> None:
        """Sends the order service's calls to this instance from now on."""
        self._channels["order-instance"] = grpc.aio.insecure_channel(address)
        self.orders = order_grpc.OrderServiceStub(self._channels["order-instance"])

    async def register(self, email: str | None = None, *, name: str = "Ada") -> Session:
        email = email or f"u-{uuid.uuid4().hex[:10]}@example.com"
        registered = await self.users.Register(
            user_pb.RegisterRequest(email=email, password=PASSWORD, display_name=name), timeout=10
        )
        session = await self.login(email)
        assert session.user_id == registered.profile.user_id
        return session

    async def login(self, email: str, password: str = PASSWORD) -> Session:
        response = await self.users.Login(
            user_pb.LoginRequest(email=email, password=password), timeout=10
        )
        profile = await self.users.GetProfile(
            user_pb.GetProfileRequest(),
            metadata=[("authorization", f"Bearer {response.tokens.access_token}")],
            timeout=5,
        )
        return Session(
            user_id=profile.profile.user_id,
            email=email,
            access_token=response.tokens.access_token,
            refresh_token=response.tokens.refresh_token,
        )

    async def admin(self) -> Session:
        """The admin the system made before it started (registering cannot make one)."""
        return await self.login(ADMIN_EMAIL, self.system.admin_password)

    async def product(
        self, *, price_minor: int = 1000, stock: int = 10, name: str = "Mug"
    ) -> inventory_pb.Product:
        admin = await self.admin()
        response: inventory_pb.CreateProductResponse = await self.inventory.CreateProduct(
            inventory_pb.CreateProductRequest(
                sku=f"SKU-{uuid.uuid4().hex[:12].upper()}",
                name=name,
                price=money_pb2.Money(amount_minor=price_minor, currency_code="EUR"),
                initial_stock=stock,
            ),
            metadata=admin.metadata,
            timeout=5,
        )
        return response.product

    async def available(self, product_id: str) -> int:
        response: inventory_pb.GetProductResponse = await self.inventory.GetProduct(
            inventory_pb.GetProductRequest(product_id=product_id), timeout=5
        )
        return response.product.available_stock

    async def place(
        self, session: Session, items: list[tuple[str, int]], *, key: str | None = None
    ) -> order_pb.Order:
        response: order_pb.PlaceOrderResponse = await self.orders.PlaceOrder(
            order_pb.PlaceOrderRequest(
                idempotency_key=key or str(uuid.uuid4()),
                items=[order_pb.OrderItem(product_id=p, quantity=q) for p, q in items],
            ),
            metadata=session.metadata,
            timeout=10,
        )
        return response.order

    async def order(self, session: Session, order_id: str) -> order_pb.Order:
        response: order_pb.GetOrderResponse = await self.orders.GetOrder(
            order_pb.GetOrderRequest(order_id=order_id), metadata=session.metadata, timeout=5
        )
        return response.order

    async def settled(
        self, session: Session, order_id: str, *, timeout_s: float = 20.0
    ) -> order_pb.Order:
        """The order once its saga decided it (no longer PENDING)."""

        async def decided() -> order_pb.Order | None:
            order = await self.order(session, order_id)
            return order if order.status != order_pb.ORDER_STATUS_PENDING else None

        return await eventually(decided, timeout_s=timeout_s, what=f"order {order_id} decided")

    async def history(self, session: Session, order_id: str) -> list[Any]:
        response = await self.orders.GetOrderHistory(
            order_pb.GetOrderHistoryRequest(order_id=order_id), metadata=session.metadata, timeout=5
        )
        return list(response.entries)

    async def credit_available(self, session: Session) -> int:
        response: user_pb.GetProfileResponse = await self.users.GetProfile(
            user_pb.GetProfileRequest(), metadata=session.metadata, timeout=5
        )
        return response.profile.credit_available.amount_minor

    async def notifications_of(self, session: Session) -> list[notification_pb.Notification]:
        response = await self.notifications.ListNotifications(
            notification_pb.ListNotificationsRequest(page_size=100),
            metadata=session.metadata,
            timeout=5,
        )
        return list(response.notifications)
