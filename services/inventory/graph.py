"""The inventory service's GraphQL subgraph: Product, the entity other subgraphs point at by its
`productId` (an order's items), resolved in batches through the inventory's use cases."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import strawberry
from inventory.v1 import inventory_service_pb2 as pb
from ordermesh import bounds
from ordermesh.errors import InvalidArgument, NotFound
from ordermesh.graphql import Int64, Money, Subgraph, load, money, page_size
from strawberry import UNSET
from strawberry.federation.schema_directives import ListSize

from services.inventory import domain
from services.inventory.service import Inventory

PRODUCTS = "products"
# `after` is ListProducts' page_token, bounded as the contract bounds it.
_PAGE_TOKEN = bounds.bounds_of(pb.ListProductsRequest.DESCRIPTOR.fields_by_name["page_token"])
AFTER_MAX_LENGTH = _PAGE_TOKEN.max_length if _PAGE_TOKEN is not None else 0


@strawberry.federation.type(keys=["productId"], description="A product on sale")
class Product:
    product_id: strawberry.ID
    sku: str
    name: str
    description: str
    price: Money
    available_stock: Int64 = strawberry.field(
        description="Units that can still be ordered: on hand minus reserved"
    )

    @classmethod
    async def resolve_reference(
        cls,
        info: strawberry.Info,
        productId: strawberry.ID,  # named as the representation's key
    ) -> Product:
        return await load(info, PRODUCTS, str(productId))  # type: ignore[no-any-return]


@strawberry.type(description="A page of products")
class ProductPage:
    products: list[Product]
    next_page_token: str = strawberry.field(description="`after` of the next page; empty last")


def product_of(product: Mapping[str, Any]) -> Product:
    return Product(
        product_id=strawberry.ID(product["_id"]),
        sku=product["sku"],
        name=product["name"],
        description=product["description"],
        price=money(product["price_minor"], product["currency"]),
        available_stock=Int64(domain.available(product)),
    )


def subgraph(inventory: Inventory) -> Subgraph:
    async def products(ids: Sequence[str]) -> list[Product | Exception]:
        found = await inventory.products(ids)
        return [
            product_of(p) if p is not None else NotFound(f"product {i!r} does not exist")
            for i, p in zip(ids, found, strict=True)
        ]

    @strawberry.type
    class Query:
        @strawberry.field(description="A product, by its id")
        async def product(self, info: strawberry.Info, product_id: strawberry.ID) -> Product:
            return await load(info, PRODUCTS, str(product_id))  # type: ignore[no-any-return]

        @strawberry.field(
            description="Products by SKU, `first` at a time (at most 100)",
            directives=[
                ListSize(assumed_size=UNSET, slicing_arguments=["first"], sized_fields=["products"])
            ],
        )
        async def products(self, first: int = 20, after: str = "") -> ProductPage:
            if len(after) > AFTER_MAX_LENGTH:
                raise InvalidArgument(f"after: {len(after)} characters, at most {AFTER_MAX_LENGTH}")
            found, token = await inventory.list_products(
                page_size=page_size(first), page_token=after
            )
            return ProductPage(products=[product_of(p) for p in found], next_page_token=token)

    return Subgraph(name="inventory", query=Query, types=[Product], loaders={PRODUCTS: products})
