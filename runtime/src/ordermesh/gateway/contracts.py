"""What the contracts say about each RPC the gateway routes: its access level, its REST verb,
whether a repeated request is applied once, whether it asks for the auth service's check, and
the lifecycle headers of its API; and which of a catalogue's services serve it. Read from a
project's descriptor set (protoc's `--descriptor_set_out` with `--include_imports`: the
example's `make gen` writes gen/descriptors.pb); a gateway's configuration, the OpenAPI
document (ordermesh.gateway.openapi) and a deployment's network policies are derived from it."""

from __future__ import annotations

from dataclasses import dataclass

from google.api import annotations_pb2
from google.protobuf import descriptor_pb2

from ordermesh.catalogue import Catalogue
from ordermesh.contracts.common.v1 import options_pb2
from ordermesh.lifecycle import api_lifecycles

__all__ = [
    "ADDRESS_FIELD",
    "ADDRESS_HEADER",
    "IDEMPOTENCY_KEY",
    "ROUTABLE",
    "Rpc",
    "routable_rpcs",
]

# The field by which a request asks to be applied once however often it is sent.
IDEMPOTENCY_KEY = "idempotency_key"
# The field, and the gRPC metadata, by which a call of an API several services serve names the
# service it is for.
ADDRESS_FIELD = "service"
ADDRESS_HEADER = "x-ordermesh-service"
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
    # Set when several services serve the API (the operator API): a call names the service it
    # is for, and is routed to `cluster` only if it names it (`ADDRESS_HEADER` in gRPC, the
    # path's `{service}` in REST, which starts with `rest_prefix`).
    addressed: bool = False
    rest_prefix: str = ""

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


def routable_rpcs(descriptor_set: bytes, catalogue: Catalogue) -> list[Rpc]:
    """The RPCs the gateway routes to the catalogue's services, in the order of the descriptor
    set."""
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
                verb = rule.WhichOneof("pattern") or ""
                servers = catalogue.serving(name)
                # Named by the call (its REST path binds `{service}`): routed by that name,
                # however many serve it (the operator APIs); else by the path alone.
                template = getattr(rule, verb) if verb else ""
                addressed = "{" + ADDRESS_FIELD + "}" in template or len(servers) > 1
                for server in servers:
                    rpcs.append(
                        Rpc(
                            service=name,
                            method=method.name,
                            cluster=server.name,
                            access=access,
                            http_verb=verb,
                            deduplicated=method.input_type in keyed,
                            policy_check=options.Extensions[options_pb2.policy_check],
                            answer_headers=answer_headers,
                            addressed=addressed,
                            rest_prefix=(
                                _rest_prefix(template, server.name) if addressed and verb else ""
                            ),
                        )
                    )
    return rpcs


def _rest_prefix(template: str, service: str) -> str:
    """The start of the REST paths of a call naming `service`: "/v1/ops/order/" for
    "/v1/ops/{service}/dead-letters"."""
    marker = "{" + ADDRESS_FIELD + "}"
    if marker not in template:
        raise ValueError(
            f"{template}: an API several services serve names the service in its REST path "
            f"({marker})"
        )
    return template[: template.index(marker)] + service + "/"
