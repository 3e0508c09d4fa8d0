"""Enum values on the wire and the names domain code uses, in both directions.

Every enum of our contracts prefixes its values with its own name in UPPER_SNAKE_CASE, as the
Protobuf style guide has it and buf lint (ENUM_VALUE_PREFIX) enforces: ops.v1's SagaStatus has
SAGA_STATUS_NEEDS_OPERATOR, whose name here is "NEEDS_OPERATOR". `enum_name` and `enum_value`
translate any such enum, the prefix derived from the enum's descriptor; an unknown name is a
ValueError naming the enum and the name (a caller turns it into InvalidArgument).
"""

from __future__ import annotations

import re
from functools import cache
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    # The stubs' generic wrapper: mypy-protobuf's enums are its subclasses, each with its own
    # ValueType, so a value keeps its enum's type through `enum_value`.
    from google.protobuf.internal.enum_type_wrapper import _EnumTypeWrapper

__all__ = [
    "enum_name",
    "enum_prefix",
    "enum_value",
]

V = TypeVar("V", bound=int)


# Where a word of a PascalCase name begins: after a lower-case letter or a digit, or at the last
# capital of an acronym that a word follows ("HTTPMethod" -> HTTP_METHOD).
_WORD = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


@cache
def _prefix(enum: str) -> str:
    return _WORD.sub("_", enum).upper() + "_"


def enum_prefix(enum_type: _EnumTypeWrapper[V]) -> str:
    """The prefix of the enum's values: SagaStatus -> "SAGA_STATUS_"."""
    return _prefix(enum_type.DESCRIPTOR.name)


def enum_name(enum_type: _EnumTypeWrapper[V], value: V) -> str:
    """SAGA_STATUS_NEEDS_OPERATOR -> "NEEDS_OPERATOR"; a number the enum does not define is
    protobuf's ValueError."""
    return enum_type.Name(value).removeprefix(enum_prefix(enum_type))


def enum_value(enum_type: _EnumTypeWrapper[V], name: str) -> V:
    """The value the name stands for, matched exactly: "NEEDS_OPERATOR" ->
    SAGA_STATUS_NEEDS_OPERATOR."""
    prefix = enum_prefix(enum_type)
    try:
        return enum_type.Value(prefix + name)
    except ValueError:
        known = ", ".join(v.name.removeprefix(prefix) for v in enum_type.DESCRIPTOR.values)
        raise ValueError(
            f"{enum_type.DESCRIPTOR.full_name} has no value named {name!r} (known: {known})"
        ) from None
