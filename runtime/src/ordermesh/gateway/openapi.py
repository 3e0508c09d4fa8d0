"""The REST API's OpenAPI 3 document, generated from the contracts the gateway transcodes.

Every RPC the gateway routes with a `google.api.http` rule becomes an operation: its path and
method from the rule (`{field}` templates as path parameters), the request's other fields as
query parameters (GET, DELETE) or the JSON body (`body: "*"`), the response message as the 200
answer, and the JSON error body `{"code", "message", "details"}` for every other status. Field
names are the JSON names the transcoder prints (lowerCamelCase; the proto names are accepted
too); types follow protobuf's JSON mapping (64-bit integers as strings, enums by name,
Timestamps as RFC 3339); the bounds of `(common.v1.bounds)` become maxLength and maxItems;
AUTHENTICATED and ADMIN operations require a bearer token.

    python -m ordermesh.gateway.openapi --descriptors gen/descriptors.pb \
        --catalogue services.catalogue:CATALOGUE -o gateway/openapi.json

(the example's `make gen`; `--title` and `--server` name the API and where the gateway is).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

from google.api import annotations_pb2
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor

from ordermesh import contracts
from ordermesh.bounds import bounds_of
from ordermesh.catalogue import Catalogue, load
from ordermesh.contracts.common.v1 import options_pb2
from ordermesh.gateway.contracts import routable_rpcs
from ordermesh.lifecycle import lifecycle_of

__all__ = ["document", "main", "methods_of"]

F = FieldDescriptor
INTEGERS = {
    F.TYPE_INT32: "int32",
    F.TYPE_SINT32: "int32",
    F.TYPE_SFIXED32: "int32",
    F.TYPE_UINT32: "int64",
    F.TYPE_FIXED32: "int64",
}
# 64-bit integers are JSON strings in protobuf's mapping (the transcoder also takes numbers).
LONGS = {F.TYPE_INT64, F.TYPE_SINT64, F.TYPE_SFIXED64, F.TYPE_UINT64, F.TYPE_FIXED64}
WELL_KNOWN: dict[str, dict[str, Any]] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string", "pattern": r"^-?\d+(\.\d+)?s$"},
    "google.protobuf.Empty": {"type": "object", "additionalProperties": False},
}
ERROR = {
    "type": "object",
    "description": "An error: its gRPC status code, a message naming what is wrong, details.",
    "required": ["code", "message"],
    "properties": {
        "code": {"type": "integer", "format": "int32"},
        "message": {"type": "string"},
        "details": {"type": "array", "items": {"type": "object"}},
    },
}
TEMPLATE = re.compile(r"\{([a-z_][a-z0-9_]*)(?:=[^}]*)?\}")


def _ref(descriptor: Descriptor) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{descriptor.full_name}"}


class _Schemas:
    """The schemas of the messages the operations use, each once, by full name."""

    def __init__(self) -> None:
        self.schemas: dict[str, Any] = {"ordermesh.Error": ERROR}

    def message(self, descriptor: Descriptor, *, without: frozenset[str] = frozenset()) -> Any:
        if descriptor.full_name in WELL_KNOWN:
            return WELL_KNOWN[descriptor.full_name]
        if without:  # a body without the fields the path carries: inline
            return self._object(descriptor, without)
        if descriptor.full_name not in self.schemas:
            self.schemas[descriptor.full_name] = {}  # reserved: a message may refer to itself
            self.schemas[descriptor.full_name] = self._object(descriptor, without)
        return _ref(descriptor)

    def _object(self, descriptor: Descriptor, without: frozenset[str]) -> dict[str, Any]:
        return {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                field.json_name: self.field(field)
                for field in descriptor.fields
                if field.name not in without
            },
        }

    def field(self, field: FieldDescriptor) -> dict[str, Any]:
        bounds = bounds_of(field)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            schema: dict[str, Any] = {
                "type": "object",
                "additionalProperties": self.field(field.message_type.fields_by_name["value"]),
            }
            if bounds is not None and bounds.max_items:
                schema["maxProperties"] = bounds.max_items
            return schema
        schema = self.value(field)
        if bounds is not None and bounds.max_length:
            schema["maxLength"] = bounds.max_length
        if field.is_repeated:
            schema = {"type": "array", "items": schema}
            if bounds is not None and bounds.max_items:
                schema["maxItems"] = bounds.max_items
        return schema

    def value(self, field: FieldDescriptor) -> dict[str, Any]:
        if field.message_type is not None:
            return dict(self.message(field.message_type))
        if field.enum_type is not None:
            return {"type": "string", "enum": [v.name for v in field.enum_type.values]}
        if field.type == F.TYPE_BOOL:
            return {"type": "boolean"}
        if field.type == F.TYPE_STRING:
            return {"type": "string"}
        if field.type == F.TYPE_BYTES:
            return {"type": "string", "format": "byte"}
        if field.type in (F.TYPE_DOUBLE, F.TYPE_FLOAT):
            return {"type": "number"}
        if field.type in LONGS:
            return {"type": "string", "format": "int64", "pattern": r"^-?\d+$"}
        return {"type": "integer", "format": INTEGERS[field.type]}


def methods_of(descriptor_set: bytes) -> dict[str, MethodDescriptor]:
    """The descriptors of every method, by its gRPC path, from the generated modules."""
    files = [
        f for f in descriptor_pb2.FileDescriptorSet.FromString(descriptor_set).file if f.service
    ]
    for file in files:
        contracts.module(file.name)
    pool = descriptor_pool.Default()
    return {
        f"/{service.full_name}/{method.name}": method
        for file in files
        for service in pool.FindFileByName(file.name).services_by_name.values()
        for method in service.methods
    }


def _operation(
    method: MethodDescriptor, access: int, template: str, schemas: _Schemas
) -> tuple[str, dict[str, Any]]:
    rule = method.GetOptions().Extensions[annotations_pb2.http]
    request = method.input_type
    in_path = TEMPLATE.findall(template)
    fields = request.fields_by_name
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": schemas.field(fields[name])}
        for name in in_path
    ]
    # `OrderService_PlaceOrder` in v1 (as it always was), `OrderServiceV2_PlaceOrder` in v2.
    version = method.containing_service.file.package.rsplit(".", 1)[-1]
    suffix = "" if version == "v1" else version.capitalize()
    operation: dict[str, Any] = {
        "operationId": f"{method.containing_service.name}{suffix}_{method.name}",
        "tags": [method.containing_service.full_name],
        "description": f"gRPC `{method.containing_service.full_name}/{method.name}`.",
    }
    if rule.body == "*":
        body = schemas.message(request, without=frozenset(in_path))
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": body}},
        }
    else:
        parameters += [
            {
                "name": field.json_name,
                "in": "query",
                "required": False,
                "schema": schemas.field(field),
            }
            for field in request.fields
            if field.name not in in_path and field.message_type is None
        ]
    if parameters:
        operation["parameters"] = parameters
    error = {
        "description": "an error, as JSON with its gRPC status",
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/ordermesh.Error"}}
        },
    }
    operation["responses"] = {
        "200": {
            "description": "OK",
            "content": {"application/json": {"schema": schemas.message(method.output_type)}},
        },
        "default": error,
    }
    if access in (options_pb2.ACCESS_AUTHENTICATED, options_pb2.ACCESS_ADMIN):
        operation["security"] = [{"bearer": []}]
    # OpenAPI paths name parameters only: `{order_id}` stays, a `=pattern` goes.
    return TEMPLATE.sub(lambda m: "{" + m.group(1) + "}", template), operation


def _tell_deprecation(operation: dict[str, Any], method: MethodDescriptor) -> None:
    """Marks the operations of a deprecated API, with the headers the gateway adds."""
    service = method.containing_service
    lifecycle = lifecycle_of(service.full_name, service.GetOptions())
    if not lifecycle.deprecated:
        return
    operation["deprecated"] = True
    operation["description"] += (
        f" Deprecated: use {lifecycle.successor}; served until "
        f"{lifecycle.headers().get('Sunset', 'further notice')}."
    )
    operation["responses"]["200"]["headers"] = {
        "Deprecation": {
            "description": "RFC 9745: when this API was deprecated (@<unix seconds>)",
            "schema": {"type": "string"},
        },
        "Sunset": {
            "description": "RFC 8594: after when it may no longer be served",
            "schema": {"type": "string"},
        },
    }


def document(
    descriptor_set: bytes,
    catalogue: Catalogue,
    *,
    title: str = "REST API",
    server: str = "http://127.0.0.1:8080",
) -> dict[str, Any]:
    """The OpenAPI 3.0 document of the REST API a gateway serves for the catalogue's services
    (`server`: where it listens)."""
    methods = methods_of(descriptor_set)
    schemas = _Schemas()
    paths: dict[str, dict[str, Any]] = {}
    for rpc in routable_rpcs(descriptor_set, catalogue):
        if not rpc.http_verb:
            continue
        method = methods[rpc.path]
        template = getattr(method.GetOptions().Extensions[annotations_pb2.http], rpc.http_verb)
        path, operation = _operation(method, rpc.access, template, schemas)
        _tell_deprecation(operation, method)
        paths.setdefault(path, {})[rpc.http_verb] = operation
    return {
        "openapi": "3.0.3",
        "info": {
            "title": title,
            "version": "v1",
            "description": "Generated from the contracts in proto/ by `make gen`; do not edit.",
        },
        "servers": [{"url": server}],
        "paths": dict(sorted(paths.items())),
        "components": {
            "schemas": dict(sorted(schemas.schemas.items())),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--descriptors", type=Path, required=True, help="the descriptor set")
    parser.add_argument(
        "--catalogue", required=True, help="the project's Catalogue, as module:attribute"
    )
    parser.add_argument("--title", default="REST API")
    parser.add_argument("--server", default="http://127.0.0.1:8080", help="the gateway's URL")
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args(argv)
    found = document(
        args.descriptors.read_bytes(), load(args.catalogue), title=args.title, server=args.server
    )
    args.output.write_text(json.dumps(found, indent=2, sort_keys=False) + "\n")


if __name__ == "__main__":
    main()
