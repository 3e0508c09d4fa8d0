"""What the contracts say about each RPC the gateway routes: its access level, its REST verb,
whether a repeated request is applied once, whether it asks for the auth service's check, and
the lifecycle headers of its API. Read from the descriptor set `make gen` builds
(gen/descriptors.pb); the Envoy configuration (gateway.envoy), the OpenAPI document
(gateway.openapi) and the Kubernetes manifests are derived from it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from common.v1 import options_pb2
from google.api import annotations_pb2
from google.protobuf import descriptor_pb2

from chassis.lifecycle import api_lifecycles
from services import catalogue

ROOT = Path(__file__).resolve().parent.parent
DESCRIPTOR_SET = ROOT / "gen" / "descriptors.pb"
# The field by which a request asks to be applied once however often it is sent.
IDEMPOTENCY_KEY = "idempotency_key"
ROUTABLE = {options_pb2.ACCESS_PUBLIC, options_pb2.ACCESS_AUTHENTICATED, options_pb2.ACCESS_ADMIN}


@dataclass(frozen=True)
class Rpc:
    service: str  # the gRPC service's full name, e.g. "order.v1.OrderService"
    method: str
    cluster: str  # the service that serves it, e.g. "order"
    access: int
    http_verb: str  # "get", "post", ... or "" without a REST rule
    # Its request carries an `idempotency_key`: the service applies a repeated request once.
    deduplicated: bool
    # Its contract asks for the auth service's check on every call (ext_authz).
    policy_check: bool = False
    # The headers every answer carries: Deprecation and Sunset, if its API is deprecated.
    answer_headers: tuple[tuple[str, str], ...] = ()

    @property
    def path(self) -> str:
        return f"/{self.service}/{self.method}"

    @property
    def is_read(self) -> bool:
        return self.http_verb == "get"

    @property
    def retry_safe(self) -> bool:
        """Whether a call that may have been applied can be sent again."""
        return self.is_read or self.deduplicated


def routable_rpcs(descriptor_set: bytes) -> list[Rpc]:
    """The RPCs the gateway routes, in the order of the descriptor set."""
    files = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set)
    keyed = {
        f".{file.package}.{message.name}"
        for file in files.file
        for message in file.message_type
        if any(field.name == IDEMPOTENCY_KEY for field in message.field)
    }
    lifecycles = api_lifecycles(files)
    rpcs = []
    for file in files.file:
        for service in file.service:
            name = f"{file.package}.{service.name}"
            answer_headers = tuple(lifecycles[name].headers().items())
            for method in service.method:
                options = method.options
                access = (
                    options.Extensions[options_pb2.access]
                    if options.HasExtension(options_pb2.access)
                    else options_pb2.ACCESS_UNSPECIFIED
                )
                if access not in ROUTABLE:
                    continue
                rule = options.Extensions[annotations_pb2.http]
                rpcs.append(
                    Rpc(
                        service=name,
                        method=method.name,
                        cluster=catalogue.by_api(name).name,
                        access=access,
                        http_verb=rule.WhichOneof("pattern") or "",
                        deduplicated=method.input_type in keyed,
                        policy_check=options.Extensions[options_pb2.policy_check],
                        answer_headers=answer_headers,
                    )
                )
    return rpcs
