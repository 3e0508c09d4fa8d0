"""Contracts back to proto3 text: a message of the contracts, with every message and enum it
uses, rendered from its descriptors as one self-contained proto3 file, with the contracts'
comments (AsyncAPI's protobuf schema parser takes no imports but Google's: docs/asyncapi.yaml
carries each payload this way, ordermesh.asyncapi).

The text compiles to the same shapes as the contract (the example's
tests/contract/test_asyncapi.py): types of other packages go by their simple names, each noted with
its full name; two types of the same simple name are refused rather than renamed; a type nested in
another stands for the one it is nested in, rendered whole; Google's well-known types stay imports.
"""

from __future__ import annotations

import subprocess  # nosec B404 - protoc, from this interpreter's grpcio-tools
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any, cast

import google.api
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor

from ordermesh import contracts
from ordermesh.events import Message

__all__ = ["Comments", "contracts_with_comments", "proto_text"]

F = FieldDescriptor
SCALARS = {
    F.TYPE_DOUBLE: "double", F.TYPE_FLOAT: "float", F.TYPE_INT64: "int64",
    F.TYPE_UINT64: "uint64", F.TYPE_INT32: "int32", F.TYPE_FIXED64: "fixed64",
    F.TYPE_FIXED32: "fixed32", F.TYPE_BOOL: "bool", F.TYPE_STRING: "string",
    F.TYPE_BYTES: "bytes", F.TYPE_UINT32: "uint32", F.TYPE_SFIXED32: "sfixed32",
    F.TYPE_SFIXED64: "sfixed64", F.TYPE_SINT32: "sint32", F.TYPE_SINT64: "sint64",
}  # fmt: skip


class Comments:
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


def contracts_with_comments(proto: Path) -> list[descriptor_pb2.FileDescriptorProto]:
    """The contracts under `proto` compiled with their comments (a descriptor set of their own),
    the runtime's own and Google's HTTP annotations on the include path. Needs protoc, from
    grpcio-tools (the runtime's `generators` extra)."""
    import grpc_tools  # type: ignore[import-untyped]  # only when generating

    protos = sorted(p.relative_to(proto).as_posix() for p in proto.rglob("*.proto"))
    # googleapis-common-protos' directory: google/api/annotations.proto and http.proto.
    googleapis = Path(google.api.__path__[0]).parent.parent
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "contracts.pb"
        subprocess.run(  # nosec B603 - this interpreter, fixed arguments, the project's files
            [
                sys.executable, "-m", "grpc_tools.protoc", f"-I{proto}",
                f"-I{contracts.include_path()}", f"-I{googleapis}",
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


def proto_text(message: type[Message], comments: Comments) -> str:
    """A self-contained proto3 text of `message` for AsyncAPI's protobuf schema parser."""
    # The class's descriptor, typed by the stubs as either of protobuf's two implementations.
    used = _used_types(cast(Descriptor, message.DESCRIPTOR))
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
        if scope is None:  # a field of a message, never an extension
            raise ValueError(f"{field.full_name} is an extension, not a message's field")
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
