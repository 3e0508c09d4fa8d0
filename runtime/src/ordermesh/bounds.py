"""Request bounds from the contracts, checked at the gRPC edge before any handler runs.

Each string, bytes, repeated and map field of a request declares its bounds in the contract
(`(common.v1.bounds)`: `max_length` in characters or bytes, `max_items` in entries); the
contract suite checks that none is left unbounded. Enum fields must hold a value the contract
defines: proto3 keeps unknown numbers, and a handler must never meet one. A request that breaks
a rule is refused with InvalidArgument naming the field, e.g.
`items[2].product_id: 65 characters, at most 64`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

from ordermesh.contracts.common.v1 import options_pb2
from ordermesh.errors import InvalidArgument

__all__ = ["bounds_of", "check"]

TEXT = (FieldDescriptor.TYPE_STRING, FieldDescriptor.TYPE_BYTES)


@dataclass(frozen=True)
class _Rule:
    field: FieldDescriptor
    max_length: int
    max_items: int
    # The numbers an enum field may hold, and its name; None if it is no enum.
    enum_values: frozenset[int] | None
    enum_name: str
    # The message type to check inside, if it is a message (not a map) field.
    nested: Descriptor | None


def bounds_of(field: FieldDescriptor) -> options_pb2.Bounds | None:
    """The bounds a field declares, or None."""
    options = field.GetOptions()
    return (
        options.Extensions[options_pb2.bounds] if options.HasExtension(options_pb2.bounds) else None
    )


def _is_map(field: FieldDescriptor) -> bool:
    return field.message_type is not None and field.message_type.GetOptions().map_entry


@functools.cache
def _rules(descriptor: Descriptor) -> dict[str, _Rule]:
    rules = {}
    for field in descriptor.fields:
        bounds = bounds_of(field)
        enum = field.enum_type
        nested = (
            field.message_type if field.message_type is not None and not _is_map(field) else None
        )
        if nested is not None and nested.full_name.startswith("google.protobuf."):
            nested = None  # well-known types carry no request input to bound
        if bounds is None and enum is None and nested is None:
            continue
        rules[field.name] = _Rule(
            field=field,
            max_length=bounds.max_length if bounds else 0,
            max_items=bounds.max_items if bounds else 0,
            enum_values=frozenset(v.number for v in enum.values) if enum else None,
            enum_name=enum.full_name if enum else "",
            nested=nested,
        )
    return rules


def check(message: Message, path: str = "") -> None:
    """Raises InvalidArgument naming the first field of `message` that breaks its contract."""
    rules = _rules(message.DESCRIPTOR)
    if not rules:
        return
    for field, value in message.ListFields():
        rule = rules.get(field.name)
        if rule is None:
            continue
        name = f"{path}{field.name}"
        if field.is_repeated:
            if rule.max_items and len(value) > rule.max_items:
                raise InvalidArgument(f"{name}: {len(value)} items, at most {rule.max_items}")
            if _is_map(field):
                continue
            for i, item in enumerate(value):
                _check_one(rule, item, f"{name}[{i}]")
        else:
            _check_one(rule, value, name)


def _check_one(rule: _Rule, value: object, name: str) -> None:
    if rule.nested is not None:
        assert isinstance(value, Message)
        check(value, f"{name}.")
    elif rule.enum_values is not None:
        if value not in rule.enum_values:
            raise InvalidArgument(f"{name}: {value} is not a value of {rule.enum_name}")
    elif rule.max_length and rule.field.type in TEXT:
        assert isinstance(value, str | bytes)
        if len(value) > rule.max_length:
            unit = "characters" if isinstance(value, str) else "bytes"
            raise InvalidArgument(f"{name}: {len(value)} {unit}, at most {rule.max_length}")
