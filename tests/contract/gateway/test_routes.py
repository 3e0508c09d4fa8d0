"""The gateway routes what the contracts make routable (ordermesh.gateway.contracts, read by
ordermesh.gateway.envoy.routes), and nothing else."""

from dataclasses import replace

from google.api import annotations_pb2
from google.protobuf import descriptor_pb2
from ordermesh.catalogue import Service
from ordermesh.contracts.common.v1 import options_pb2
from ordermesh.gateway.contracts import routable_rpcs

from gateway import DESCRIPTOR_SET
from services import catalogue
from services.inventory.config import InventorySettings


def _method(
    name: str, access: int | None, get: str = "", request: str = ".x"
) -> descriptor_pb2.MethodDescriptorProto:
    method = descriptor_pb2.MethodDescriptorProto(name=name, input_type=request, output_type=".x")
    if access is not None:
        method.options.Extensions[options_pb2.access] = access
    if get:
        method.options.Extensions[annotations_pb2.http].get = get
    return method


def test_only_public_authenticated_and_admin_rpcs_are_routed():
    shop = Service("shop", InventorySettings, serves=("shop.v1.ShopService",))
    with_shop = replace(catalogue.CATALOGUE, services=(*catalogue.CATALOGUE, shop))
    service = descriptor_pb2.ServiceDescriptorProto(
        name="ShopService",
        method=[
            _method("Browse", options_pb2.ACCESS_PUBLIC, get="/v1/things"),
            _method("Buy", options_pb2.ACCESS_AUTHENTICATED, request=".shop.v1.BuyRequest"),
            _method("Review", options_pb2.ACCESS_AUTHENTICATED),
            _method("Restock", options_pb2.ACCESS_ADMIN),
            _method("Settle", options_pb2.ACCESS_INTERNAL),
            _method("Forgotten", None),
        ],
    )
    service.options.Extensions[options_pb2.api_lifecycle].stability = options_pb2.STABILITY_BETA
    files = descriptor_pb2.FileDescriptorSet(
        file=[
            descriptor_pb2.FileDescriptorProto(
                name="shop.proto",
                package="shop.v1",
                service=[service],
                message_type=[
                    descriptor_pb2.DescriptorProto(
                        name="BuyRequest",
                        field=[descriptor_pb2.FieldDescriptorProto(name="idempotency_key")],
                    )
                ],
            )
        ]
    )
    rpcs = routable_rpcs(files.SerializeToString(), with_shop)
    assert [(r.path, r.cluster, r.is_read, r.retry_safe) for r in rpcs] == [
        ("/shop.v1.ShopService/Browse", "shop", True, True),
        # A write is sent again only if its request carries an idempotency key.
        ("/shop.v1.ShopService/Buy", "shop", False, True),
        ("/shop.v1.ShopService/Review", "shop", False, False),
        ("/shop.v1.ShopService/Restock", "shop", False, False),
    ]


def test_every_rpc_of_the_contracts_declares_a_routable_or_internal_level():
    """A method declaring no level is never routed (fail closed); the contracts have none."""
    files = descriptor_pb2.FileDescriptorSet.FromString(DESCRIPTOR_SET.read_bytes())
    declared = {
        f"/{f.package}.{s.name}/{m.name}"
        for f in files.file
        for s in f.service
        for m in s.method
        if m.options.HasExtension(options_pb2.access)
        and m.options.Extensions[options_pb2.access] != options_pb2.ACCESS_INTERNAL
    }
    all_methods = {
        f"/{f.package}.{s.name}/{m.name}" for f in files.file for s in f.service for m in s.method
    }
    assert declared == all_methods
    assert {
        r.path for r in routable_rpcs(DESCRIPTOR_SET.read_bytes(), catalogue.CATALOGUE)
    } == declared
