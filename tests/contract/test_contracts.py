"""The contracts keep the rules the runtime and the gateway rely on.

Topology is derived from the `(common.v1.route)` option of each event and command, and gateway
policy from `google.api.http` and `(common.v1.access)` on each RPC, so these rules are checked
here, once, for every message and RPC in proto/.
"""

from collections import defaultdict
from pathlib import Path

import pytest
from google.api import annotations_pb2
from google.protobuf import descriptor, descriptor_pb2
from ordermesh import contracts
from ordermesh.contracts.common.v1 import options_pb2
from ordermesh.lifecycle import lifecycle_of

from services.catalogue import CATALOGUE

ROOT = Path(__file__).resolve().parents[2]
PROTO_FILES = sorted(p.relative_to(ROOT / "proto") for p in (ROOT / "proto").rglob("*.proto"))
FILES = [contracts.module(path.as_posix()).DESCRIPTOR for path in PROTO_FILES]
DOMAINS = ("user", "inventory", "order", "notification")
ROUTED_FILES = {"events.proto": options_pb2.MESSAGE_KIND_EVENT,
                "commands.proto": options_pb2.MESSAGE_KIND_COMMAND}  # fmt: skip


def messages(file: descriptor.FileDescriptor) -> list[descriptor.Descriptor]:
    return list(file.message_types_by_name.values())


def route_of(message: descriptor.Descriptor) -> options_pb2.Route | None:
    options = message.GetOptions()
    return (
        options.Extensions[options_pb2.route] if options.HasExtension(options_pb2.route) else None
    )


ROUTED = [
    (file, message, route_of(message))
    for file in FILES
    for message in messages(file)
    if route_of(message) is not None
]
METHODS = [
    method
    for file in FILES
    for service in file.services_by_name.values()
    for method in service.methods
]


def test_the_four_domain_services_and_the_operator_apis_exist_with_their_exact_names():
    services = {s.full_name for f in FILES for s in f.services_by_name.values()}

    # At least these: a project adds its own (python -m ordermesh new-service).
    assert services >= {
        "user.v1.UserService",
        "inventory.v1.InventoryService",
        "order.v1.OrderService",
        "order.v2.OrderService",
        "notification.v1.NotificationService",
        "ops.v1.OperatorService",
        "ops.v1.SagaService",
    }


SERVICES = [s for f in FILES for s in f.services_by_name.values()]


@pytest.mark.parametrize("service", SERVICES, ids=lambda s: s.full_name)
def test_every_api_declares_a_lifecycle_its_policy_allows(service):
    lifecycle = lifecycle_of(service.full_name, service.GetOptions())

    if lifecycle.deprecated:
        successor = next(s for s in SERVICES if s.full_name == lifecycle.successor)
        assert successor.file.package != service.file.package
        assert not lifecycle_of(successor.full_name, successor.GetOptions()).deprecated
        # Served beside it, by the same service, until the sunset.
        assert CATALOGUE.serving(successor.full_name) == CATALOGUE.serving(service.full_name)


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.full_name)
def test_a_rest_path_starts_with_its_package_version(method):
    rule = method.GetOptions().Extensions[annotations_pb2.http]
    path = getattr(rule, rule.WhichOneof("pattern"))
    version = method.containing_service.file.package.split(".")[1]

    # Or a path a standard fixes (RFC 8615), e.g. /.well-known/jwks.json.
    assert path.startswith((f"/{version}/", "/.well-known/")), path


@pytest.mark.parametrize(
    ("file", "message", "route"), ROUTED, ids=lambda x: getattr(x, "full_name", "")
)
def test_a_replaced_event_names_a_successor_on_its_exchange(file, message, route):
    options = message.GetOptions()
    if not options.HasExtension(options_pb2.message_lifecycle):
        return
    lifecycle = lifecycle_of(message.full_name, options, options_pb2.message_lifecycle)
    if lifecycle.deprecated:
        successors = [m for _, m, r in ROUTED if m.full_name == lifecycle.successor]
        assert successors, f"{message.full_name}: no routed successor {lifecycle.successor}"
        assert route_of(successors[0]).exchange == route.exchange


@pytest.mark.parametrize("file", FILES, ids=lambda f: f.name)
def test_every_message_of_an_events_or_commands_file_declares_its_route(file):
    """...except the parts of routed messages (e.g. StockLine), which travel inside them."""
    kind = ROUTED_FILES.get(Path(file.name).name)
    parts = {
        field.message_type.full_name
        for _, message, _ in ROUTED
        for field in message.fields
        if field.message_type is not None
    }
    for message in messages(file):
        route = route_of(message)
        if kind is None:
            assert route is None, f"{message.full_name} is routed outside events/commands.proto"
        elif message.full_name not in parts:
            assert route is not None, f"{message.full_name} has no (common.v1.route)"
            assert route.kind == kind, f"{message.full_name} is in {file.name} but is not {kind}"


@pytest.mark.parametrize(
    ("file", "message", "route"), ROUTED, ids=lambda x: getattr(x, "full_name", "")
)
def test_a_route_belongs_to_its_domain_and_is_complete(file, message, route):
    domain = file.package.split(".")[0]
    assert route.exchange.startswith(f"{domain}."), route.exchange
    if route.kind == options_pb2.MESSAGE_KIND_COMMAND:
        assert route.exchange == f"{domain}.commands"
        assert route.exchange_kind == options_pb2.EXCHANGE_KIND_DIRECT
    if route.exchange_kind == options_pb2.EXCHANGE_KIND_FANOUT:
        assert route.routing_key == "", "a fanout exchange ignores routing keys"
    else:
        assert route.exchange_kind != options_pb2.EXCHANGE_KIND_UNSPECIFIED
        assert route.routing_key.startswith(f"{domain}."), route.routing_key


def test_an_exchange_has_one_kind_and_routing_keys_are_unique():
    kinds = defaultdict(set)
    keys = defaultdict(list)
    for _, _, route in ROUTED:
        kinds[route.exchange].add(route.exchange_kind)
        if route.routing_key:
            keys[route.exchange].append(route.routing_key)
    assert all(len(k) == 1 for k in kinds.values()), dict(kinds)
    assert all(len(v) == len(set(v)) for v in keys.values()), dict(keys)


def test_the_saga_commands_and_replies_exist():
    routed = {message.full_name for _, message, _ in ROUTED}

    assert {
        "inventory.v1.ReserveStock", "inventory.v1.ReleaseStock",
        "inventory.v1.StockReserved", "inventory.v1.StockReservationFailed",
        "inventory.v1.StockReleased",
        "user.v1.ReserveCredit", "user.v1.ReleaseCredit",
        "user.v1.CreditReserved", "user.v1.CreditLimitExceeded", "user.v1.CreditReleased",
        "order.v1.OrderPlaced", "order.v1.OrderApproved", "order.v1.OrderRejected",
        "order.v1.OrderCancelled",
    } <= routed  # fmt: skip


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.full_name)
def test_every_rpc_is_annotated_for_rest_and_declares_who_may_call_it(method):
    options = method.GetOptions()

    assert options.HasExtension(annotations_pb2.http), f"{method.full_name} has no REST mapping"
    assert options.Extensions[options_pb2.access] != options_pb2.ACCESS_UNSPECIFIED


def fields_named(message: descriptor.Descriptor, name: str, seen: set[str]) -> list[str]:
    if message.full_name in seen:
        return []
    seen.add(message.full_name)
    found = [f"{message.full_name}.{f.name}" for f in message.fields if f.name == name]
    for field in message.fields:
        if field.message_type is not None:
            found += fields_named(field.message_type, name, seen)
    return found


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.full_name)
def test_no_request_lets_a_client_say_who_the_caller_is(method):
    assert fields_named(method.input_type, "user_id", set()) == []


@pytest.mark.parametrize("file", FILES, ids=lambda f: f.name)
def test_money_is_never_a_float_and_times_are_timestamps(file):
    float_types = {descriptor.FieldDescriptor.TYPE_FLOAT, descriptor.FieldDescriptor.TYPE_DOUBLE}
    for message in messages(file):
        for field in message.fields:
            assert field.type not in float_types, f"{message.full_name}.{field.name} is a float"
            if field.name.endswith("_time"):
                assert field.message_type is not None
                assert field.message_type.full_name == "google.protobuf.Timestamp"


def test_the_committed_descriptor_set_holds_every_service_for_the_gateway():
    descriptor_set = descriptor_pb2.FileDescriptorSet.FromString(
        (ROOT / "gen" / "descriptors.pb").read_bytes()
    )
    names = {f.name for f in descriptor_set.file}

    assert {str(p) for p in PROTO_FILES} <= names
    assert {"google/api/annotations.proto", "google/api/http.proto"} <= names


def request_fields(message: descriptor.Descriptor, seen: set[str] | None = None):
    """Every field a client can fill in a request, its nested messages' fields included."""
    seen = set() if seen is None else seen
    if message.full_name in seen or message.full_name.startswith("google.protobuf."):
        return
    seen.add(message.full_name)
    for field in message.fields:
        yield field
        if field.message_type is not None:
            yield from request_fields(field.message_type, seen)


REQUEST_FIELDS = {
    field.full_name: field for method in METHODS for field in request_fields(method.input_type)
}
TEXT = (descriptor.FieldDescriptor.TYPE_STRING, descriptor.FieldDescriptor.TYPE_BYTES)
NEEDS_BOUNDS = {
    name: field for name, field in REQUEST_FIELDS.items() if field.is_repeated or field.type in TEXT
}


@pytest.mark.parametrize("name", sorted(NEEDS_BOUNDS))
def test_every_string_bytes_and_repeated_request_field_is_bounded(name):
    field = NEEDS_BOUNDS[name]
    options = field.GetOptions()

    assert options.HasExtension(options_pb2.bounds), f"{name} declares no (common.v1.bounds)"
    bounds = options.Extensions[options_pb2.bounds]
    if field.is_repeated:
        assert bounds.max_items > 0, f"{name}: a repeated field needs max_items"
    if field.type in TEXT:
        assert bounds.max_length > 0, f"{name}: a string or bytes field needs max_length"
