"""The order service's GraphQL subgraph: Order (keyed by `orderId`), a user's orders (added to
the User entity of the user subgraph), each item's Product (an entity of the inventory
subgraph, by `productId`), and the mutations that place and cancel an order.

Everything goes through the order service's use cases (services.order.service.Orders); what a
client sends is checked as order.v2's gRPC requests are: against the contract's bounds
(ordermesh.bounds), then by the same translation (services.order.api_v2).
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from enum import Enum
from typing import Any

import strawberry
from common.v1 import address_pb2
from order.v2 import order_service_pb2 as pb
from ordermesh import bounds
from ordermesh.errors import NotFound
from ordermesh.graphql import Money, Subgraph, caller_of, load, money, page_size
from strawberry import UNSET
from strawberry.federation.schema_directives import Key, ListSize
from strawberry.federation.types import FieldSet

from services.order import domain
from services.order.api_v2 import address_of
from services.order.service import Orders

ORDERS, ORDERS_OF = "orders", "orders_of"


@strawberry.enum(description="Where an order stands")
class OrderState(Enum):
    PENDING = "PENDING"
    APPROVED = "APPROVED"
    REJECTED = "REJECTED"
    CANCELLED = "CANCELLED"


# The inventory subgraph's entity; this one only points at it.
@strawberry.federation.type(keys=[Key(fields=FieldSet("productId"), resolvable=False)])
class Product:
    product_id: strawberry.ID


@strawberry.type(description="Where an order goes")
class PostalAddress:
    recipient: str
    address_lines: list[str]
    locality: str
    postal_code: str
    region_code: str


@strawberry.type(description="An item of a placed order, priced when it was placed")
class OrderItem:
    product: Product
    product_name: str
    quantity: int
    unit_price: Money
    line_total: Money


@strawberry.federation.type(keys=["orderId"], description="An order of the caller's")
class Order:
    order_id: strawberry.ID
    state: OrderState
    items: list[OrderItem]
    total: Money
    delivery_address: PostalAddress | None = strawberry.field(
        description="None for an order placed through order.v1, which has no address"
    )
    state_reason: str
    create_time: datetime.datetime
    update_time: datetime.datetime
    user_id: strawberry.Private[str]

    @strawberry.field(description="Who placed it")
    def user(self) -> User:
        return User(user_id=strawberry.ID(self.user_id))

    @classmethod
    async def resolve_reference(
        cls,
        info: strawberry.Info,
        orderId: strawberry.ID,  # named as the representation's key
    ) -> Order:
        """One of the caller's orders; another's is as not found as a missing one."""
        return await load(info, ORDERS, (caller_of(info).user_id, str(orderId)))  # type: ignore[no-any-return]


@strawberry.federation.type(keys=["userId"])
class User:
    user_id: strawberry.ID

    @classmethod
    def resolve_reference(
        cls,
        userId: strawberry.ID,  # named as the representation's key
    ) -> User:
        return cls(user_id=userId)

    @strawberry.field(
        description="The user's orders, newest first (the caller's own only), at most 100",
        directives=[ListSize(assumed_size=UNSET, slicing_arguments=["first"], sized_fields=UNSET)],
    )
    async def orders(self, info: strawberry.Info, first: int = 20) -> list[Order]:
        caller = caller_of(info)
        if str(self.user_id) != caller.user_id:
            raise NotFound(f"user {self.user_id} does not exist")
        return await load(info, ORDERS_OF, (caller.user_id, page_size(first)))  # type: ignore[no-any-return]


def _time(seconds: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC)


def order_of(order: Mapping[str, Any]) -> Order:
    currency = order["currency"]
    address = order.get("delivery_address")
    return Order(
        order_id=strawberry.ID(order["_id"]),
        user_id=order["user_id"],
        state=OrderState(order["status"]),
        items=[
            OrderItem(
                product=Product(product_id=strawberry.ID(line["product_id"])),
                product_name=line["product_name"],
                quantity=int(line["quantity"]),
                unit_price=money(int(line["unit_price_minor"]), currency),
                line_total=money(domain.line_total_minor(line), currency),
            )
            for line in order["lines"]
        ],
        total=money(int(order["total_minor"]), currency),
        delivery_address=None if address is None else PostalAddress(**address),
        state_reason=order["status_reason"],
        create_time=_time(order["create_time"]),
        update_time=_time(order["update_time"]),
    )


@strawberry.input(description="A product and how many")
class NewItem:
    product_id: strawberry.ID
    quantity: int


@strawberry.input
class PostalAddressInput:
    recipient: str
    address_lines: list[str]
    locality: str
    region_code: str
    postal_code: str = ""


@strawberry.input
class PlaceOrderInput:
    idempotency_key: str = strawberry.field(
        description="Unique per order the client means to place: a retry returns the first"
    )
    items: list[NewItem]
    delivery_address: PostalAddressInput


def place_request(given: PlaceOrderInput) -> pb.PlaceOrderRequest:
    """The order.v2 request the input stands for, within the contract's bounds."""
    address = given.delivery_address
    request = pb.PlaceOrderRequest(
        idempotency_key=given.idempotency_key,
        items=[pb.NewItem(product_id=str(i.product_id), quantity=i.quantity) for i in given.items],
        delivery_address=address_pb2.PostalAddress(
            recipient=address.recipient,
            address_lines=address.address_lines,
            locality=address.locality,
            postal_code=address.postal_code,
            region_code=address.region_code,
        ),
    )
    bounds.check(request, "input.")
    return request


def subgraph(orders: Orders) -> Subgraph:
    async def owned(keys: Sequence[tuple[str, str]]) -> list[Order | Exception]:
        """Orders by (owner, order id)."""
        found: list[Order | Exception] = []
        for user_id, order_id in keys:
            try:
                found.append(order_of(await orders.order(user_id, order_id)))
            except NotFound as exc:
                found.append(exc)
        return found

    async def orders_of(keys: Sequence[tuple[str, int]]) -> list[list[Order]]:
        """The newest orders of each (user, how many) asked in one request."""
        found = []
        for user_id, first in keys:
            page, _ = await orders.list_orders(user_id, page_size=first, page_token="")
            found.append([order_of(o) for o in page])
        return found

    @strawberry.type
    class Query:
        @strawberry.field(description="One of the caller's orders")
        async def order(self, info: strawberry.Info, order_id: strawberry.ID) -> Order:
            return await load(info, ORDERS, (caller_of(info).user_id, str(order_id)))  # type: ignore[no-any-return]

    @strawberry.type
    class Mutation:
        @strawberry.mutation(description="Places an order (PENDING until its saga settles it)")
        async def place_order(self, info: strawberry.Info, input: PlaceOrderInput) -> Order:
            request = place_request(input)
            placed = await orders.place_order(
                caller_of(info).user_id,
                idempotency_key=request.idempotency_key,
                items=[domain.Item(i.product_id, i.quantity) for i in request.items],
                delivery_address=address_of(request),
            )
            return order_of(placed)

        @strawberry.mutation(description="Cancels one of the caller's orders")
        async def cancel_order(
            self, info: strawberry.Info, order_id: strawberry.ID, reason: str = ""
        ) -> Order:
            bounds.check(pb.CancelOrderRequest(order_id=str(order_id), reason=reason))
            cancelled = await orders.cancel_order(
                caller_of(info).user_id, str(order_id), reason=reason
            )
            return order_of(cancelled)

    return Subgraph(
        name="order",
        query=Query,
        mutation=Mutation,
        types=[Order, User, Product],
        loaders={ORDERS: owned, ORDERS_OF: orders_of},
    )
