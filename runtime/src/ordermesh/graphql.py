"""GraphQL subgraphs (Apollo Federation v2, with strawberry) served by a service beside its gRPC
API: `/graphql` on the instance's HTTP server, the one of `/metrics`, whose port it registers.
The federation gateway (gateway/graphql) reaches them through Envoy; nothing else should.

What every subgraph gets from here, so that its resolvers only call its use cases:
- the caller, from `authorization: Bearer <token>`, verified as a gRPC call's is
  (ordermesh.tokens, the same cache); `caller_of(info)` in a resolver that needs one raises
  Unauthenticated, naming what is wrong with the token if one was sent; public fields ignore
  tokens, as public RPCs do;
- errors as GraphQL errors with the gRPC status in `extensions` (`code`: its name,
  `grpcStatus`: its number), with the message the gRPC edge would give (ordermesh.failures:
  a domain error's own message, INTERNAL without details); a query the schema refuses is
  INVALID_ARGUMENT;
- a correlation id for each request, from `x-correlation-id` (or Envoy's `x-request-id`) if it
  is a safe bounded token, else created (the refusal logged), as every edge does
  (`ordermesh.correlation.adopt`);
- batched loading: `load(info, name, key)` goes through a DataLoader per request, built from
  the subgraph's batch functions, so that the entities of one level cost one call;
- list arguments within the contracts' bounds: `page_size(first)` is the page a list field
  serves for its `first`, or InvalidArgument naming `first`;
- metrics: `ordermesh_graphql_requests_total{operation}` and, per batch function,
  `ordermesh_graphql_batches_total{loader}` and `ordermesh_graphql_batch_keys_total{loader}`.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, NewType

import grpc
import strawberry
from aiohttp import web
from graphql.error import GraphQLError
from multidict import CIMultiDictProxy
from prometheus_client import CollectorRegistry, Counter
from strawberry.aiohttp.views import GraphQLView
from strawberry.dataloader import DataLoader
from strawberry.extensions import ParserCache, SchemaExtension, ValidationCache
from strawberry.federation import Schema
from strawberry.schema.config import StrawberryConfig
from strawberry.types.scalar import ScalarDefinition

from ordermesh import pages
from ordermesh.correlation import adopt_header, correlation_id
from ordermesh.errors import InvalidArgument, Unauthenticated
from ordermesh.failures import failure
from ordermesh.identity import INTERNAL_HEADER, Authenticator
from ordermesh.logging import get_logger
from ordermesh.tokens import Claims, bearer_token

__all__ = [
    "GraphqlMetrics",
    "Int64",
    "Money",
    "Subgraph",
    "caller_of",
    "load",
    "money",
    "page_size",
]

log = get_logger(__name__)

# 64-bit integers as strings, as protobuf's JSON mapping (and so the REST API) has them:
# GraphQL's Int is 32 bits.
Int64 = NewType("Int64", int)
SCALARS: dict[object, ScalarDefinition] = {
    Int64: strawberry.scalar(
        name="Int64",
        serialize=str,
        parse_value=int,
        description="A 64-bit integer, as a string (protobuf's JSON mapping)",
    )
}


@strawberry.federation.type(shareable=True, description="An amount in integer minor units")
class Money:
    amount_minor: Int64
    currency_code: str


def money(amount_minor: int, currency: str) -> Money:
    return Money(amount_minor=Int64(amount_minor), currency_code=currency)


# The newest version The Guild's composition (tools/supergraph.py) knows; the one of @cost and
# @listSize, which the gateway's cost limit reads.
FEDERATION_VERSION: Final = "2.9"

DOCUMENTS_CACHED = 1024
# The answer to a call that did not come through the gateway (no INTERNAL_HEADER secret).
REFUSED_CALLER = {
    "errors": [
        {
            "message": "this port takes calls from the gateway only",
            "extensions": {"code": "UNAUTHENTICATED", "grpcStatus": 16},
        }
    ]
}

BatchFunction = Callable[[Sequence[Any]], Awaitable[Sequence[Any]]]


class GraphqlMetrics:
    """What the subgraph of one process was asked, and how its batches went."""

    def __init__(self, registry: CollectorRegistry):
        self.requests = Counter(
            "ordermesh_graphql_requests", "GraphQL operations the subgraph executed, by type",
            ["operation"], registry=registry,
        )  # fmt: skip
        self.batches = Counter(
            "ordermesh_graphql_batches", "Calls of a batch function (one per level and request)",
            ["loader"], registry=registry,
        )  # fmt: skip
        self.batch_keys = Counter(
            "ordermesh_graphql_batch_keys", "Keys the batch calls loaded",
            ["loader"], registry=registry,
        )  # fmt: skip


@dataclass
class Context:
    """A request's context: its verified caller (or why there is none) and its loaders."""

    caller: Claims | None
    token_problem: str
    loaders: dict[str, DataLoader[Any, Any]] = field(default_factory=dict)


def caller_of(info: strawberry.Info) -> Claims:
    """The verified caller; Unauthenticated for a request without a valid token."""
    context: Context = info.context
    if context.caller is None:
        raise Unauthenticated(context.token_problem)
    return context.caller


async def load(info: strawberry.Info, loader: str, key: Any) -> Any:
    """`key` loaded by the batch function `loader`, batched with the request's other loads."""
    context: Context = info.context
    return await context.loaders[loader].load(key)


def page_size(first: int) -> int:
    """The page a list field serves for its `first`: from 1 to what every list RPC serves at
    most (ordermesh.pages.MAX_SIZE), or InvalidArgument naming it. A list RPC serves its default
    for 0; a GraphQL argument has its default in the schema, and the federation gateway prices
    a list by its `first`: 0 or 1,000 would be served more than they were priced."""
    if not 1 <= first <= pages.MAX_SIZE:
        raise InvalidArgument(f"first: {first}, not from 1 to {pages.MAX_SIZE}")
    return first


# graphql-js's "Did you mean ...?": it would tell a stranger the schema's names.
SUGGESTION = re.compile(r"\s*Did you mean .+?\?")


def _error_extensions(error: GraphQLError) -> tuple[str, dict[str, Any]]:
    original = error.original_error
    # The document itself (unparsable, or not valid for the schema), or its variables.
    if original is None or isinstance(original, GraphQLError):
        code, message = grpc.StatusCode.INVALID_ARGUMENT, SUGGESTION.sub("", error.message)
    elif isinstance(original, Exception):
        code, message = failure(original, what=".".join(str(p) for p in error.path or ()))
    else:
        raise original
    return message, {"code": code.name, "grpcStatus": code.value[0]}


class _Statuses(SchemaExtension):
    """Every error with its gRPC status in `extensions`, and the message the edge would give."""

    def on_operation(self) -> Iterator[None]:
        yield
        result = self.execution_context.result
        errors = getattr(result, "errors", None)
        if not errors:
            return
        answered = []
        for error in errors:
            message, extensions = _error_extensions(error)
            answered.append(
                GraphQLError(
                    message,
                    nodes=error.nodes,
                    source=error.source,
                    positions=error.positions,
                    path=error.path,
                    extensions={**(error.extensions or {}), **extensions},
                )
            )
        result.errors = answered  # type: ignore[union-attr]


class _Counted(SchemaExtension):
    """Counts the operations executed, by type."""

    def __init__(self, metrics: GraphqlMetrics):
        self._metrics = metrics

    def on_execute(self) -> Iterator[None]:
        operation = self.execution_context.operation_type
        self._metrics.requests.labels(operation.value if operation else "unknown").inc()
        yield


@dataclass(frozen=True)
class Subgraph:
    """A service's subgraph: its schema's root types and entities, and its batch functions
    (each takes keys and returns one value, or an exception, per key, in order)."""

    name: str
    query: type
    mutation: type | None = None
    types: Sequence[type] = ()
    loaders: Mapping[str, BatchFunction] = field(default_factory=dict)

    def schema(self, metrics: GraphqlMetrics | None = None) -> Schema:
        # The federation gateway sends the same few documents again and again: each is parsed
        # and validated once (a `me` query took 1.15 ms of CPU without these, 0.18 ms with).
        extensions: list[Any] = [
            _Statuses,
            lambda: ParserCache(maxsize=DOCUMENTS_CACHED),  # caches shared by every request
            lambda: ValidationCache(maxsize=DOCUMENTS_CACHED),
        ]
        if metrics is not None:
            extensions.append(lambda: _Counted(metrics))
        return Schema(
            query=self.query,
            federation_version=FEDERATION_VERSION,
            mutation=self.mutation,
            types=list(self.types),
            extensions=extensions,
            # Field suggestions ("did you mean ...") would tell a stranger the schema.
            config=StrawberryConfig(scalar_map=SCALARS, disable_field_suggestions=True),
        )

    def sdl(self) -> str:
        """The subgraph's schema in SDL with its federation directives, for composition."""
        return str(self.schema().as_str()) + "\n"

    def view(
        self,
        authenticator: Authenticator | None,
        registry: CollectorRegistry,
        *,
        internal_token: str = "",
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """The aiohttp handler of `/graphql`, its metrics in `registry`; with `internal_token`,
        a call without it in INTERNAL_HEADER is refused (401), before anything is parsed."""
        metrics = GraphqlMetrics(registry)
        loaders = self.loaders
        schema = self.schema(metrics)

        def counted(name: str, batch: BatchFunction) -> BatchFunction:
            async def load_batch(keys: Sequence[Any]) -> Sequence[Any]:
                metrics.batches.labels(name).inc()
                metrics.batch_keys.labels(name).inc(len(keys))
                return await batch(keys)

            return load_batch

        class View(GraphQLView[Context, None]):
            async def get_context(self, request: web.Request, response: object) -> Context:
                correlation_id.set(adopt_header(request.headers, edge="graphql"))
                caller, problem = await _caller(authenticator, request.headers)
                return Context(
                    caller=caller,
                    token_problem=problem,
                    loaders={
                        name: DataLoader(load_fn=counted(name, batch))
                        for name, batch in loaders.items()
                    },
                )

        view = View(schema=schema, graphql_ide=None, allow_queries_via_get=False)
        if not internal_token:
            log.warning("the GraphQL subgraph takes any caller: no INTERNAL_TOKEN")
            return view
        expected = internal_token.encode()

        async def from_the_gateway(request: web.Request) -> web.StreamResponse:
            given = request.headers.get(INTERNAL_HEADER, "").encode()
            if not hmac.compare_digest(given, expected):
                return web.json_response(REFUSED_CALLER, status=401)
            return await view(request)

        return from_the_gateway


async def _caller(
    authenticator: Authenticator | None, headers: CIMultiDictProxy[str]
) -> tuple[Claims | None, str]:
    """The verified caller, or why there is none. The header as HTTP joins it: two
    `authorization` values are refused, never one of them taken."""
    try:
        token = bearer_token(",".join(headers.getall("authorization", [])))
        if authenticator is None:
            return None, "this server verifies no tokens"
        return await authenticator.verify(token), ""
    except Unauthenticated as exc:
        return None, str(exc)
