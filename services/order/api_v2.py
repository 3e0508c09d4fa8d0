"""The gRPC face of order.v2, beside order.v1's (services.order.api): the same use cases, the
same orders; what differs is what a client sends and sees (proto/order/v2), and order.v2's
events of an order's changes (`Events`), which the use cases publish."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeAlias

import grpc
from common.v1 import address_pb2, money_pb2
from order.v2 import events_pb2
from order.v2 import order_service_pb2 as pb
from order.v2 import order_service_pb2_grpc as pb_grpc
from ordermesh.errors import InvalidArgument
from ordermesh.grpc import Service
from ordermesh.identity import current_caller
from ordermesh.timestamps import timestamp
from ordermesh.vocabulary import enum_value

from services.order import domain
from services.order.api import address_proto, history_proto, total_proto
from services.order.service import Orders

Context: TypeAlias = grpc.aio.ServicerContext


def items_proto(order: Mapping[str, Any]) -> list[pb.Item]:
    """The order's lines as order.v2 has them: each with its line total."""
    currency = order["currency"]
    return [
        pb.Item(
            product_id=line["product_id"],
            product_name=line["product_name"],
            quantity=line["quantity"],
            unit_price=money_pb2.Money(
                amount_minor=line["unit_price_minor"], currency_code=currency
            ),
            line_total=money_pb2.Money(
                amount_minor=domain.line_total_minor(line), currency_code=currency
            ),
        )
        for line in order["lines"]
    ]


def order_proto(order: Mapping[str, Any]) -> pb.Order:
    return pb.Order(
        order_id=order["_id"],
        user_id=order["user_id"],
        state=enum_value(pb.OrderState, order["status"]),
        items=items_proto(order),
        total=total_proto(order),
        delivery_address=address_proto(order),
        state_reason=order["status_reason"],
        create_time=timestamp(order["create_time"]),
        update_time=timestamp(order["update_time"]),
    )


def address_of(request: pb.PlaceOrderRequest) -> domain.Address:
    if not request.HasField("delivery_address"):
        raise InvalidArgument("delivery_address is required in order.v2")
    given: address_pb2.PostalAddress = request.delivery_address
    return domain.checked_address(
        domain.Address(
            recipient=given.recipient,
            address_lines=tuple(given.address_lines),
            locality=given.locality,
            postal_code=given.postal_code,
            region_code=given.region_code,
        )
    )


class Events:
    """order.v2's events of an order's changes (services.order.service.OrderEvents): its
    approval only; order.v1's events tell of the rest."""

    def placed(self, order: Mapping[str, Any]) -> None:
        return None

    def approved(self, order: Mapping[str, Any]) -> events_pb2.OrderApproved:
        return events_pb2.OrderApproved(
            order_id=order["_id"],
            user_id=order["user_id"],
            items=items_proto(order),
            total=total_proto(order),
            delivery_address=address_proto(order),
            approve_time=timestamp(order["update_time"]),
        )

    def rejected(self, order: Mapping[str, Any]) -> None:
        return None

    def cancelled(self, order: Mapping[str, Any]) -> None:
        return None


class OrderApi(pb_grpc.OrderServiceServicer):
    def __init__(self, orders: Orders):
        self._orders = orders

    async def PlaceOrder(
        self, request: pb.PlaceOrderRequest, context: Context
    ) -> pb.PlaceOrderResponse:
        order = await self._orders.place_order(
            current_caller().user_id,
            idempotency_key=request.idempotency_key,
            items=[domain.Item(i.product_id, i.quantity) for i in request.items],
            delivery_address=address_of(request),
        )
        return pb.PlaceOrderResponse(order=order_proto(order))

    async def GetOrder(self, request: pb.GetOrderRequest, context: Context) -> pb.GetOrderResponse:
        order = await self._orders.order(current_caller().user_id, request.order_id)
        return pb.GetOrderResponse(order=order_proto(order))

    async def ListOrders(
        self, request: pb.ListOrdersRequest, context: Context
    ) -> pb.ListOrdersResponse:
        orders, next_token = await self._orders.list_orders(
            current_caller().user_id, page_size=request.page_size, page_token=request.page_token
        )
        return pb.ListOrdersResponse(
            orders=[order_proto(o) for o in orders], next_page_token=next_token
        )

    async def CancelOrder(
        self, request: pb.CancelOrderRequest, context: Context
    ) -> pb.CancelOrderResponse:
        order = await self._orders.cancel_order(
            current_caller().user_id, request.order_id, reason=request.reason
        )
        return pb.CancelOrderResponse(order=order_proto(order))

    async def GetOrderHistory(
        self, request: pb.GetOrderHistoryRequest, context: Context
    ) -> pb.GetOrderHistoryResponse:
        entries = await self._orders.history(current_caller().user_id, request.order_id)
        return pb.GetOrderHistoryResponse(
            order_id=request.order_id, entries=[history_proto(e, pb) for e in entries]
        )


def service(orders: Orders) -> Service:
    return Service(
        descriptor=pb.DESCRIPTOR.services_by_name["OrderService"],
        servicer=OrderApi(orders),
        add_to_server=pb_grpc.add_OrderServiceServicer_to_server,
    )
