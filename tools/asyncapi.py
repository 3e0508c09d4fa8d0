"""The AsyncAPI 3.0 document of the event backbone, generated from the contracts and the services'
declarations (never written by hand):

    python -m tools.asyncapi -o docs/asyncapi.yaml      (run by `make gen`; `make lint`
                                                         validates it with AsyncAPI's parser)

What it holds, and where each part comes from:
- a channel per route a message is published to (exchange and routing key, from its
  `(common.v1.route)`), with the exchange in its AMQP binding and the queues bound to it;
- a channel per queue: each subscription's work queue (the types it is bound to and those it is
  still draining), its retry queues (one per backoff step, with the delay), its dead-letter
  queue, and each event exchange's `.unrouted` queue (chassis.topology);
- an operation per publisher and message (`send`: the events of a service's packages, the
  commands of its sagas, services.messaging) and per subscription (`receive`: the consumer,
  its retry steps and dead-letter queue);
- every event and command as a message: its envelope (AMQP properties and headers,
  chassis.events), its lifecycle (chassis.lifecycle), and its payload as protobuf: a proto3
  text of the message and every message and enum it uses, rendered from the descriptors with
  their comments (self-contained, as AsyncAPI's protobuf schema parser takes no imports but
  Google's; types of other packages go by their simple names, each noted with its full name).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import grpc_tools
import yaml
from common.v1 import options_pb2
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor

from chassis.events import CONTENT_TYPE, Message, route_of
from chassis.lifecycle import lifecycle_of
from chassis.topology import UNROUTED_KEPT, Subscription, unrouted_queue
from services import messaging

__all__ = ["document", "proto_text"]

ROOT = Path(__file__).resolve().parent.parent
PROTOBUF = "application/vnd.google.protobuf;version=3"
AMQP_BINDING = "0.3.0"
F = FieldDescriptor
SCALARS = {
    F.TYPE_DOUBLE: "double", F.TYPE_FLOAT: "float", F.TYPE_INT64: "int64",
    F.TYPE_UINT64: "uint64", F.TYPE_INT32: "int32", F.TYPE_FIXED64: "fixed64",
    F.TYPE_FIXED32: "fixed32", F.TYPE_BOOL: "bool", F.TYPE_STRING: "string",
    F.TYPE_BYTES: "bytes", F.TYPE_UINT32: "uint32", F.TYPE_SFIXED32: "sfixed32",
    F.TYPE_SFIXED64: "sfixed64", F.TYPE_SINT32: "sint32", F.TYPE_SINT64: "sint64",
}  # fmt: skip
# The envelope every message carries besides its payload (chassis.events): AMQP headers here;
# message_id (the event id), type (the full proto name), timestamp, correlation_id,
# content_type and app_id are AMQP properties.
HEADERS = {
    "type": "object",
    "properties": {
        "causation-id": {"type": "string", "description": "The event id of the message whose "
                         "handling sent this one; empty for one sent by a request."},
        "producer": {"type": "string", "description": "The service that sent it."},
        "traceparent": {"type": "string", "description": "W3C trace context of its sending."},
        "x-delivery-count": {"type": "integer", "description": "Set by the broker on a "
                             "redelivery (quorum queues)."},
    },
    "required": ["causation-id", "producer", "traceparent"],
}  # fmt: skip


class _Comments:
    """The leading comments of the contracts' messages, fields and enums, by full name, from
    a descriptor set built with source info (gen/descriptors.pb has none)."""

    def __init__(self, files: Iterable[descriptor_pb2.FileDescriptorProto]):
        self._by_name: dict[str, str] = {}
        for file in files:
            for location in file.source_code_info.location:
                name = _name_at(file, list(location.path))
                # protoc keeps the space after each line's `//`.
                text = "\n".join(
                    line.removeprefix(" ") for line in location.leading_comments.splitlines()
                ).strip()
                if name and text:
                    self._by_name[name] = text

    def of(self, full_name: str) -> str:
        return self._by_name.get(full_name, "")


# Where a source location's path steps, by the field numbers of descriptor.proto: from what it
# is at, through a number, to what it reaches and the list that holds it.
_STEPS = {
    ("file", 4): ("message", "message_type"),
    ("file", 5): ("enum", "enum_type"),
    ("message", 2): ("field", "field"),
    ("message", 3): ("message", "nested_type"),
    ("message", 4): ("enum", "enum_type"),
    ("message", 8): ("oneof", "oneof_decl"),
    ("enum", 2): ("value", "value"),
}


def _name_at(file: descriptor_pb2.FileDescriptorProto, path: list[int]) -> str:
    """The full name of what a source location's path points at (a message, nested or not,
    its fields and oneofs, an enum and its values), or ""."""
    if not path or len(path) % 2:
        return ""
    at: Any = file
    kind, name = "file", file.package
    for number, index in zip(path[::2], path[1::2], strict=True):
        if (kind, number) not in _STEPS:
            return ""
        kind, held_in = _STEPS[kind, number]
        at = getattr(at, held_in)[index]
        name = f"{name}.{at.name}"
    return name


def contracts_with_comments() -> list[descriptor_pb2.FileDescriptorProto]:
    """The contracts in proto/ compiled with their comments (a descriptor set of their own)."""
    proto = ROOT / "proto"
    protos = sorted(p.relative_to(proto).as_posix() for p in proto.rglob("*.proto"))
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "contracts.pb"
        subprocess.run(
            [
                sys.executable, "-m", "grpc_tools.protoc", f"-I{proto}",
                f"-I{ROOT / '.build' / 'protodeps'}",
                f"-I{Path(grpc_tools.__path__[0]) / '_proto'}",
                "--include_source_info", f"--descriptor_set_out={out}", *protos,
            ],
            check=True,
        )  # fmt: skip
        return list(descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file)


def _comment_lines(text: str, indent: str = "") -> list[str]:
    return [f"{indent}//{' ' if line else ''}{line}" for line in text.splitlines()]


def _outermost(item: Descriptor | EnumDescriptor) -> Descriptor | EnumDescriptor:
    while item.containing_type is not None:
        item = item.containing_type
    return item


def _map_entry(field: FieldDescriptor) -> Descriptor | None:
    """The synthetic entry message of a map field, or None."""
    kind = field.message_type
    return kind if kind is not None and kind.GetOptions().map_entry else None


def _used_types(root: Descriptor) -> list[Descriptor | EnumDescriptor]:
    """The top-level messages and enums that `root` uses, transitively, its own first (a type
    nested in another stands for the one it is nested in, rendered whole); Google's
    well-known types stay imports."""
    found: dict[str, Descriptor | EnumDescriptor] = {}
    seen: set[str] = set()

    def visit(item: Descriptor | EnumDescriptor) -> None:
        if item.full_name in seen or item.full_name.startswith("google.protobuf."):
            return
        seen.add(item.full_name)
        top = _outermost(item)
        found.setdefault(top.full_name, top)
        if top is not item:
            visit(top)
        if isinstance(item, Descriptor):
            for nested in item.nested_types:
                visit(nested)
            for enum in item.enum_types:
                visit(enum)
            for field in item.fields:
                if kind := field.message_type or field.enum_type:
                    visit(kind)

    visit(root)
    return list(found.values())


def proto_text(message: type[Message], comments: _Comments) -> str:
    """A self-contained proto3 text of `message` for AsyncAPI's protobuf schema parser."""
    used = _used_types(message.DESCRIPTOR)
    tops: dict[str, str] = {}
    for item in used:
        if item.name in tops.values():
            raise ValueError(f"{message.DESCRIPTOR.full_name}: two types named {item.name}")
        tops[item.full_name] = item.name
    imports = set()

    def name_of(kind: Descriptor | EnumDescriptor, scope: Descriptor) -> str:
        """How a field of `scope` names `kind`: relative to the package, or in full where a
        type nested in `scope` or around it has the name's first part (protoc would resolve
        it there)."""
        if kind.full_name.startswith("google.protobuf."):
            imports.add(kind.file.name)
            return kind.full_name
        top = _outermost(kind)
        name = tops[top.full_name] + kind.full_name.removeprefix(top.full_name)
        first = name.split(".", 1)[0]
        around: Descriptor | None = scope
        while around is not None:
            if first in around.nested_types_by_name or first in around.enum_types_by_name:
                return f".{message.DESCRIPTOR.file.package}.{name}"
            around = around.containing_type
        return name

    def type_of(field: FieldDescriptor, scope: Descriptor) -> str:
        kind = field.message_type or field.enum_type
        return SCALARS[field.type] if kind is None else name_of(kind, scope)

    def field_line(field: FieldDescriptor, indent: str, label: str = "") -> list[str]:
        scope = field.containing_type
        if entry := _map_entry(field):
            key, value = entry.fields_by_name["key"], entry.fields_by_name["value"]
            declared = f"map<{type_of(key, scope)}, {type_of(value, scope)}>"
            label = ""  # a map is repeated entries, and says so itself
        else:
            declared = type_of(field, scope)
        return [
            *_comment_lines(comments.of(field.full_name), indent),
            f"{indent}{label}{declared} {field.name} = {field.number};",
        ]

    def render(item: Descriptor | EnumDescriptor, indent: str) -> list[str]:
        note = comments.of(item.full_name)
        if item.containing_type is None and item.file.package != message.DESCRIPTOR.file.package:
            note = f"{item.full_name}" + (f": {note}" if note else "")
        if item.full_name == message.DESCRIPTOR.full_name:
            # The parser takes the message no other uses, unless one is marked: a type used
            # only through one nested in it would be a second.
            note = (note + "\n" if note else "") + "@RootNode"
        inner = indent + "  "
        if isinstance(item, EnumDescriptor):
            lines = [*_comment_lines(note, indent), f"{indent}enum {item.name} {{"]
            for value in item.values:
                lines += _comment_lines(comments.of(f"{item.full_name}.{value.name}"), inner)
                lines.append(f"{inner}{value.name} = {value.number};")
            return [*lines, f"{indent}}}"]
        lines = [*_comment_lines(note, indent), f"{indent}message {item.name} {{"]
        for enum in item.enum_types:
            lines += render(enum, inner)
        for nested in item.nested_types:
            if not nested.GetOptions().map_entry:
                lines += render(nested, inner)
        for field in item.fields:
            oneof = field.containing_oneof
            if oneof is None:
                lines += field_line(field, inner, "repeated " if field.is_repeated else "")
            elif oneof.name.startswith("_"):  # proto3 `optional` (a synthetic oneof)
                lines += field_line(field, inner, "optional ")
            elif field is oneof.fields[0]:
                lines += [*_comment_lines(comments.of(oneof.full_name), inner),
                          f"{inner}oneof {oneof.name} {{"]  # fmt: skip
                for member in oneof.fields:
                    lines += field_line(member, inner + "  ")
                lines.append(f"{inner}}}")
        return [*lines, f"{indent}}}"]

    body: list[str] = []
    for item in used:
        body += [*render(item, ""), ""]
    lines = [
        "// @Option primitiveTypesWithLimits false",
        'syntax = "proto3";',
        "",
        f"package {message.DESCRIPTOR.file.package};",
        "",
        *(f'import "{name}";' for name in sorted(imports)),
        *([""] if imports else []),
    ]
    return "\n".join(lines + body).rstrip() + "\n"


def _ref(*parts: str) -> dict[str, str]:
    return {"$ref": "#/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)}


def _name(message: type[Message]) -> str:
    return message.DESCRIPTOR.full_name


def _route_channel(message: type[Message]) -> str:
    route = route_of(message)
    return f"{route.exchange}/{route.routing_key}"


def _queue_channel(queue: str) -> str:
    return f"queue/{queue}"


def _message(message: type[Message], comments: _Comments) -> dict[str, Any]:
    descriptor = message.DESCRIPTOR
    route = route_of(message)
    summary = comments.of(descriptor.full_name)
    found: dict[str, Any] = {
        "name": descriptor.full_name,
        "title": descriptor.name,
        "summary": ("A command" if route.is_command else "An event")
        + f" of {descriptor.file.package}, on {route.exchange} with key {route.routing_key!r}.",
        "contentType": CONTENT_TYPE,
        "headers": HEADERS,
        "payload": {"schemaFormat": PROTOBUF, "schema": proto_text(message, comments)},
        "bindings": {"amqp": {"messageType": descriptor.full_name, "bindingVersion": AMQP_BINDING}},
    }
    if summary:
        found["description"] = summary
    options = descriptor.GetOptions()
    if options.HasExtension(options_pb2.message_lifecycle):
        lifecycle = lifecycle_of(descriptor.full_name, options, options_pb2.message_lifecycle)
        found["x-lifecycle"] = {"stability": lifecycle.stability_name}
        if lifecycle.deprecated:
            found["x-lifecycle"].update(
                deprecated=str(lifecycle.deprecated_at.date()) if lifecycle.deprecated_at else "",
                sunset=str(lifecycle.sunset_at.date()) if lifecycle.sunset_at else "",
                successor=lifecycle.successor,
            )
            found["description"] = (
                f"{summary}\n\nDeprecated: {lifecycle.successor} replaces it; published beside "
                f"it until {found['x-lifecycle']['sunset']} (docs/versioning.md)."
            ).strip()
    return found


def _queue(
    name: str, description: str, messages: Iterable[type[Message]], **queue: Any
) -> dict[str, Any]:
    return {
        "address": name,
        "title": name,
        "description": description,
        "messages": {_name(m): _ref("components", "messages", _name(m)) for m in messages},
        "bindings": {
            "amqp": {
                "is": "queue",
                "queue": {"name": name, "durable": True, "exclusive": False,
                          "autoDelete": False, "vhost": "/", **queue},
                "bindingVersion": AMQP_BINDING,
            }
        },
    }  # fmt: skip


def _failures(subscription: Subscription) -> str:
    """What happens to a message of the subscription whose handling fails."""
    waits = ", then ".join(
        f"{delay:g} s in {subscription.retry_queue(n)}"
        for n, delay in enumerate(subscription.retry_delays_s)
    )
    retried = f"waits {waits}, tried again after each; then it is" if waits else "is"
    return (
        f"A message whose handling fails {retried} dead-lettered to "
        f"{subscription.dead_letter_queue}; at once if it cannot be decoded or fails for good, "
        f"and by the broker after {subscription.delivery_limit} deliveries (its consumer "
        "crashed on it each time)."
    )


def _subscription_channels(subscription: Subscription) -> dict[str, Any]:
    """The work queue of a subscription (first), its retry queues and its dead-letter queue."""
    work = subscription.queue("<instance>" if subscription.per_instance else "")
    shared = "one per instance" if subscription.per_instance else "quorum, shared by instances"
    bound = ", ".join(f"{r.exchange} {r.routing_key!r}" for r in subscription.routes)
    description = f"The {subscription.service} service's queue ({shared}), bound to {bound}. "
    if subscription.draining:
        draining = ", ".join(_name(t) for t in subscription.draining)
        description += f"Still takes {draining}, replaced by a successor and no longer bound. "
    per_instance = subscription.per_instance
    channels = {
        _queue_channel(work): _queue(
            work,
            description + _failures(subscription),
            subscription.handled,
            exclusive=per_instance,
            autoDelete=per_instance,
            durable=not per_instance,
        )
    }
    for n, delay in enumerate(subscription.retry_delays_s):
        name = subscription.retry_queue(n)
        channels[_queue_channel(name)] = _queue(
            name,
            f"Retry step {n + 1} of {work}: a message waits {delay:g} s, then goes back to it.",
            subscription.handled,
        )
    channels[_queue_channel(subscription.dead_letter_queue)] = _queue(
        subscription.dead_letter_queue,
        f"Dead letters of {work}, with their failure in headers; an operator lists and "
        "replays them (chassis.deadletters).",
        subscription.handled,
    )
    return channels


def document() -> dict[str, Any]:
    """The AsyncAPI 3.0 document."""
    comments = _Comments(contracts_with_comments())
    published = messaging.events_published()
    sent = messaging.commands_sent()
    subscriptions = messaging.subscriptions()
    every = {_name(m): m for found in (*published.values(), *sent.values()) for m in found}
    for found in subscriptions.values():
        every.update({_name(m): m for s in found for m in s.handled})
    bound_to: dict[str, list[str]] = {}
    for found in subscriptions.values():
        for subscription in found:
            for message in subscription.types:
                bound_to.setdefault(_route_channel(message), []).append(subscription.queue())

    channels: dict[str, Any] = {}
    for name, message in sorted(every.items()):
        route = route_of(message)
        channel = channels.setdefault(
            _route_channel(message),
            {
                "address": route.routing_key,
                "title": f"{route.exchange} {route.routing_key}",
                "messages": {},
                "bindings": {
                    "amqp": {
                        "is": "routingKey",
                        "exchange": {"name": route.exchange,
                                     "type": route.exchange_type.value,
                                     "durable": True, "autoDelete": False, "vhost": "/"},
                        "bindingVersion": AMQP_BINDING,
                    }
                },
            },
        )  # fmt: skip
        channel["messages"][name] = _ref("components", "messages", name)
        queues = bound_to.get(_route_channel(message), [])
        channel["description"] = (
            f"Published to the {route.exchange} exchange with routing key {route.routing_key!r}; "
            + (f"bound to {', '.join(queues)}." if queues else
               f"no queue of ours is bound: kept in {unrouted_queue(route.exchange)}"
               if not route.is_command else "no queue is bound.")
        )  # fmt: skip
    operations: dict[str, Any] = {}
    for service, messages in sorted(_merge(published, sent).items()):
        for message in messages:
            channel = _route_channel(message)
            kind = "sends the command" if route_of(message).is_command else "publishes"
            operations[f"{service}.send.{_name(message)}"] = {
                "action": "send",
                "channel": _ref("channels", channel),
                "title": f"{service} {kind} {message.DESCRIPTOR.name}",
                "summary": f"The {service} service {kind} {_name(message)}, from its outbox "
                "(persistent, publisher-confirmed, mandatory).",
                "messages": [_ref("channels", channel, "messages", _name(message))],
                "x-service": service,
            }
    for exchange in sorted(
        {route_of(m).exchange for m in every.values() if not route_of(m).is_command}
    ):
        queue = unrouted_queue(exchange)
        channels[_queue_channel(queue)] = _queue(
            queue,
            f"Events of {exchange} that no subscriber's binding matches, kept (the newest "
            f"{UNROUTED_KEPT:,}): the queue of the exchange's alternate exchange.",
            [m for m in every.values() if route_of(m).exchange == exchange],
        )
    for service, found in sorted(subscriptions.items()):
        for subscription in found:
            queue_channels = _subscription_channels(subscription)
            channels.update(queue_channels)
            work = next(iter(queue_channels))
            operations[f"{service}.receive.{subscription.purpose}"] = {
                "action": "receive",
                "channel": _ref("channels", work),
                "title": f"{service} consumes {subscription.queue()}",
                "summary": queue_channels[work]["description"],
                "messages": [
                    _ref("channels", work, "messages", _name(m)) for m in subscription.handled
                ],
                "bindings": {"amqp": {"ack": True, "bindingVersion": AMQP_BINDING}},
                "x-service": service,
                "x-retry": {
                    "delays_s": list(subscription.retry_delays_s),
                    "queues": [
                        subscription.retry_queue(n)
                        for n in range(len(subscription.retry_delays_s))
                    ],
                    "dead_letter_queue": subscription.dead_letter_queue,
                    "delivery_limit": subscription.delivery_limit,
                },
            }  # fmt: skip
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "ordermesh event backbone",
            "version": "1.0.0",
            "description": "The events and commands of ordermesh on RabbitMQ: who publishes, who "
            "consumes, through which exchanges and queues. Generated from the contracts in proto/ "
            "and the services' subscriptions by `make gen` (tools/asyncapi.py); do not edit. "
            "Payloads are protobuf (binary); the envelope is in AMQP properties and headers.",
        },
        "defaultContentType": CONTENT_TYPE,
        "servers": {
            "broker": {
                "host": "127.0.0.1:5672",
                "protocol": "amqp",
                "protocolVersion": "0.9.1",
                "description": "The RabbitMQ of `make up` (RABBITMQ_URL elsewhere).",
            }
        },
        "channels": dict(sorted(channels.items())),
        "operations": dict(sorted(operations.items())),
        "components": {
            "messages": {name: _message(m, comments) for name, m in sorted(every.items())}
        },
    }


def _merge(
    published: dict[str, list[type[Message]]], sent: dict[str, list[type[Message]]]
) -> dict[str, list[type[Message]]]:
    return {s: [*published.get(s, []), *sent.get(s, [])] for s in {*published, *sent}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args()
    header = "# Generated from the contracts by `make gen` (tools/asyncapi.py): do not edit.\n"
    rendered = yaml.safe_dump(document(), sort_keys=False, width=100, allow_unicode=True)
    args.output.write_text(header + rendered)


if __name__ == "__main__":
    main()
