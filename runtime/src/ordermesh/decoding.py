"""A message's body as JSON, decoded by its contract, for an operator to read: a dead letter's
(ordermesh.dead_letter), a parked outbox message's (ordermesh.operator_api, ordermesh.deadletters).

Guarantees:
- a type is looked up among the contracts' messages; the first time one of a contract
  package's types is asked for, that package's generated modules are imported, and only a
  contract package (`<name>.v<N>`): the type name comes from a message's headers, which anyone
  who can publish writes;
- a type that is not known or a body that does not parse is shown undecoded (None), never an
  error.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pool, json_format, message_factory

__all__ = ["decoded"]

# The package of a contract's message type, e.g. "inventory.v1": the only modules a decoding
# imports (a type name comes from a message's headers, which anyone who can publish writes).
CONTRACT_PACKAGE = re.compile(r"[a-z][a-z0-9_]*\.v[0-9]+")


def _message_class(type_name: str) -> Any:
    """The generated class of a contract's message type, its package's modules imported the
    first time one of its types is asked for; KeyError if there is none."""
    pool = descriptor_pool.Default()
    try:
        return message_factory.GetMessageClass(pool.FindMessageTypeByName(type_name))
    except KeyError:
        package = type_name.rpartition(".")[0]
        if not CONTRACT_PACKAGE.fullmatch(package):
            raise
    spec = importlib.util.find_spec(package)
    for location in (spec.submodule_search_locations or []) if spec else []:
        for module in sorted(Path(location).glob("*_pb2.py")):
            importlib.import_module(f"{package}.{module.stem}")
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(type_name))


def decoded(type_name: str, body: bytes) -> dict[str, Any] | None:
    """A message's body as JSON, from its contract; None if its type is unknown or it does not
    parse."""
    try:
        message = _message_class(type_name).FromString(body)
    except Exception:  # noqa: BLE001 - an unknown type or a bad body is shown undecoded
        return None
    return json_format.MessageToDict(message, preserving_proto_field_name=True)
