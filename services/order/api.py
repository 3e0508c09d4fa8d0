"""The gRPC face of the order service (order.v1): proto in, a use case for the caller, proto out;
and order.v1's events of an order's changes (`Events`), which the use cases publish.

The mapping of what both versions share (money, addresses, the saga's history) is here too,
for services.order.api_v2."""

from __future__ import annotations

from collections.abc import Mapping
from types import ModuleType
from typing import Any, TypeAlias

import grpc
from common.v1 import address_pb2, money_pb2
from order.v1 import events_pb2
from order.v1 import order_service_pb2 as pb
from order.v1 import order_service_pb2_grpc as pb_grpc
from ordermesh.grpc import Service
from ordermesh.identity import current_caller
from ordermesh.timestamps import timestamp
from ordermesh.vocabulary import enum_value

from services.order import domain
from services.order.service import Orders

Context: TypeAlias = grpc.aio.ServicerContext


def lines_proto(order: Mapping[str, Any]) -> list[pb.OrderLine]:
    return [
        pb.OrderLine(
            product_id=line["product_id"],
            product_name=line["product_name"],
            quantity=line["quantity"],
            unit_price=money_pb2.Money(
                amount_minor=line["unit_price_minor"], currency_code=order["currency"]
            ),
        )
        for line in order["lines"]
    ]


def total_proto(order: Mapping[str, Any]) -> money_pb2.Money:
    return money_pb2.Money(amount_minor=order["total_minor"], currency_code=order["currency"])


def address_proto(order: Mapping[str, Any]) -> address_pb2.PostalAddress | None:
    """The order's delivery address; None for one placed through order.v1 (or before v2)."""
    address = order.get("delivery_address")
    return None if address is None else address_pb2.PostalAddress(**address)


def order_proto(order: Mapping[str, Any]) -> pb.Order:
    return pb.Order(
        order_id=order["_id"],
        user_id=order["user_id"],
        status=enum_value(pb.OrderStatus, order["status"]),
        lines=lines_proto(order),
        total=total_proto(order),
        status_reason=order["status_reason"],
        create_time=timestamp(order["create_time"]),
        update_time=timestamp(order["update_time"]),
    )


def history_proto(entry: Mapping[str, Any], messages: ModuleType = pb) -> Any:
    """A saga history entry as `messages` (order.v1's or order.v2's generated module) has it."""
    proto = messages.HistoryEntry(
        kind=enum_value(messages.HistoryEntryKind, entry["kind"]),
        step=entry["step"],
        message_type=entry["message_type"],
        saga_state=entry["state"],
        detail=entry["detail"],
    )
    proto.time.FromJsonString(entry["time"].replace("+00:00", "Z"))
    return proto


class Events:
    """order.v1's events of an order's changes (services.order.service.OrderEvents), from the
    order as stored after each: the time of the change is its `update_time`."""

    def placed(self, order: Mapping[str, Any]) -> events_pb2.OrderPlaced:
        return events_pb2.OrderPlaced(
            order_id=order["_id"],
            user_id=order["user_id"],
            lines=lines_proto(order),
            total=total_proto(order),
            place_time=timestamp(order["create_time"]),
            delivery_address=address_proto(order),
        )

    def approved(self, order: Mapping[str, Any]) -> events_pb2.OrderApproved:
        return events_pb2.OrderApproved(
            order_id=order["_id"],
            user_id=order["user_id"],
            lines=lines_proto(order),
            total=total_proto(order),
            approve_time=timestamp(order["update_time"]),
        )

    def rejected(self, order: Mapping[str, Any]) -> events_pb2.OrderRejected:
        return events_pb2.OrderRejected(
            order_id=order["_id"],
            user_id=order["user_id"],
            reason=order["status_reason"],
            reject_time=timestamp(order["update_time"]),
        )

    def cancelled(self, order: Mapping[str, Any]) -> events_pb2.OrderCancelled:
        return events_pb2.OrderCancelled(
            order_id=order["_id"],
            user_id=order["user_id"],
            reason=order["status_reason"],
            cancel_time=timestamp(order["update_time"]),
        )


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
            order_id=request.order_id, entries=[history_proto(e) for e in entries]
        )


def service(orders: Orders) -> Service:
    return Service(
        descriptor=pb.DESCRIPTOR.services_by_name["OrderService"],
        servicer=OrderApi(orders),
        add_to_server=pb_grpc.add_OrderServiceServicer_to_server,
    )
