"""The gRPC face of the inventory service: proto in, a use case, proto out."""

from __future__ import annotations

from typing import TypeAlias

import grpc
from inventory.v1 import inventory_service_pb2 as pb
from inventory.v1 import inventory_service_pb2_grpc as pb_grpc
from ordermesh.grpc import Service

from services.inventory.service import Inventory, product_proto

Context: TypeAlias = grpc.aio.ServicerContext


class InventoryApi(pb_grpc.InventoryServiceServicer):
    def __init__(self, inventory: Inventory):
        self._inventory = inventory

    async def ListProducts(
        self, request: pb.ListProductsRequest, context: Context
    ) -> pb.ListProductsResponse:
        products, next_token = await self._inventory.list_products(
            page_size=request.page_size, page_token=request.page_token
        )
        return pb.ListProductsResponse(
            products=[product_proto(p) for p in products], next_page_token=next_token
        )

    async def GetProduct(
        self, request: pb.GetProductRequest, context: Context
    ) -> pb.GetProductResponse:
        product = await self._inventory.product(request.product_id)
        return pb.GetProductResponse(product=product_proto(product))

    async def CreateProduct(
        self, request: pb.CreateProductRequest, context: Context
    ) -> pb.CreateProductResponse:
        product = await self._inventory.create_product(
            sku=request.sku,
            name=request.name,
            description=request.description,
            price_minor=request.price.amount_minor,
            currency=request.price.currency_code,
            initial_stock=request.initial_stock,
            request_id=request.request_id,
        )
        return pb.CreateProductResponse(product=product_proto(product))

    async def AdjustStock(
        self, request: pb.AdjustStockRequest, context: Context
    ) -> pb.AdjustStockResponse:
        product = await self._inventory.adjust_stock(
            request.product_id,
            delta=request.delta,
            reason=request.reason,
            request_id=request.request_id,
        )
        return pb.AdjustStockResponse(product=product_proto(product))


def service(inventory: Inventory) -> Service:
    return Service(
        descriptor=pb.DESCRIPTOR.services_by_name["InventoryService"],
        servicer=InventoryApi(inventory),
        add_to_server=pb_grpc.add_InventoryServiceServicer_to_server,
    )
