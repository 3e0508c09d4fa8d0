"""GraphQL's limits, through the real gateway (Envoy's /graphql, the federation gateway, the
subgraphs of real service processes): a fragment costs what its selections cost inline (a
property over queries generated from the supergraph), every operation is priced before any
subgraph is asked and its cost goes with each of its subgraph calls, aliases, directives and
list arguments are bounded, introspection is for admins and within the same limits, schema
hints stay hidden, cross-origin calls come only from configured origins, and nothing is read
from (or logged with) a URL.

Most tests go through the session's gateway. Those that must see the subgraph calls, or a
setting the session's gateway does not have (CORS_ORIGINS, debug logging), use a second
federation gateway of their own, calling Envoy's subgraph listener through a recording proxy.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import aiohttp
import graphql
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis_graphql import queries
from ordermesh.identity import INTERNAL_HEADER

from harness.graphql import GRAPHQL_DIR, PrivateGraphqlGateway
from harness.shop import PASSWORD, eventually

# The federation gateway's limits (gateway/graphql/gateway.config.mjs, by default).
MAX_COST, MAX_ALIASES, MAX_DIRECTIVES, MAX_TOKENS = 5000, 15, 10, 1000
SUPERGRAPH = graphql.build_schema((GRAPHQL_DIR / "supergraph.graphql").read_text())
SHOP_ORIGIN = "https://shop.example"
# Envoy puts the verified token's roles in this header, after removing any copy the client
# sent (ordermesh.gateway.envoy); the federation gateway lets admins introspect by it.
# A roles header, as a client could send one: the gateway believes only the verified token's.
ROLES = "x-ordermesh-roles"
COST = "x-ordermesh-graphql-cost"
# 3 pages of 1,000 products with their prices: 3 x (1 + 1,000 x 2) = 6,003, over MAX_COST.
PRICED = "products { name price { amountMinor } }"
COSTLY = {
    "inline": "{ " + " ".join(f"p{n}: products(first: 1000) {{ {PRICED} }}" for n in range(3))
        + " }",
    "a fragment on the page": "{ " + " ".join(f"p{n}: products(first: 1000) {{ ...P }}" for n in
        range(3)) + f" }} fragment P on ProductPage {{ {PRICED} }}",
    "a fragment on Query": "{ ...Q } fragment Q on Query { " + " ".join(
        f"p{n}: products(first: 1000) {{ {PRICED} }}" for n in range(3)) + " }",
    "inline fragments": "{ " + " ".join(f"p{n}: products(first: 1000) {{ ... on ProductPage {{ "
        f"{PRICED} }} }}" for n in range(3)) + " }",
    "fragments in fragments": "{ " + " ".join(f"p{n}: products(first: 1000) {{ ...A }}" for n in
        range(3)) + " } fragment A on ProductPage { ... { products { ...B } } } "
        "fragment B on Product { name ... on Product { price { amountMinor } } }",
}  # fmt: skip


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def error(self) -> dict[str, Any]:
        (error,) = self.body["errors"]
        return error

    @property
    def cost(self) -> int | None:
        """The operation's estimated cost, as the gateway says it."""
        cost = self.headers.get(COST)
        return None if cost is None else int(cost)


@pytest.fixture
async def graphql_at(gateway, system):
    """`ask(query, ...)` at the session's gateway, or at `url` (a federation gateway called
    directly, with the internal hops' secret, as Envoy calls it)."""
    async with aiohttp.ClientSession() as http:

        async def ask(
            query: str, token: str = "", *, url: str = "", headers=None, **variables
        ) -> Answer:
            sent = {"authorization": f"Bearer {token}"} if token else {}
            if url:
                sent[INTERNAL_HEADER] = system.internal_token
            async with http.post(
                f"{url or gateway.url}/graphql",
                json={"query": query, "variables": variables},
                headers={**sent, **(headers or {})},
            ) as response:
                assert response.content_type == "application/json", await response.text()
                headers = {k.lower(): v for k, v in response.headers.items()}
                return Answer(response.status, headers, await response.json())

        yield ask


def subgraph_calls(gateway) -> int:
    """How many calls Envoy's subgraph listener passed to the subgraphs, so far."""
    return sum(
        gateway.envoy.counter(f"cluster.{service}-graph.upstream_rq_total")
        for service in ("user", "inventory", "order")
    )


# Not passed on by the recording proxy: its own connection's, and the body's encoding (it
# passes the answer on as it gets it).
HOP_BY_HOP = ("host", "connection", "content-length", "transfer-encoding", "accept-encoding")


class RecordingProxy:
    """Passes each request on to `target` (Envoy's subgraph listener) and records its path and
    headers: what the federation gateway tells Envoy on each subgraph call."""

    def __init__(self, target: str):
        self.calls: list[tuple[str, dict[str, str]]] = []
        calls, forwarded = self.calls, target

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"]))
                headers = {k.lower(): v for k, v in self.headers.items()}
                calls.append((self.path, headers))
                request = urllib.request.Request(
                    forwarded + self.path,
                    data=body,
                    headers={k: v for k, v in headers.items() if k not in HOP_BY_HOP},
                )
                try:
                    with urllib.request.urlopen(request, timeout=10) as answer:
                        status, answered, content = answer.status, answer.headers, answer.read()
                except urllib.error.HTTPError as refused:
                    status, answered, content = refused.code, refused.headers, refused.read()
                self.send_response(status)
                self.send_header("content-type", answered["content-type"])
                self.send_header("content-length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@dataclass
class SecondGateway:
    url: str
    calls: list[tuple[str, dict[str, str]]]
    log_path: Path
    # What Envoy's public listener adds to a call of it: the internal hops' secret.
    internal: dict[str, str]


@pytest.fixture(scope="module")
def second(gateway, system, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecondGateway]:
    """A federation gateway of this module's, with CORS_ORIGINS and debug logging, calling the
    subgraphs through a recording proxy in front of the session gateway's subgraph listener."""
    proxy = RecordingProxy(f"http://127.0.0.1:{gateway.config.subgraphs_port}")
    running = PrivateGraphqlGateway(
        tmp_path_factory.mktemp("graphql"),
        subgraphs_url=proxy.url,
        env={
            "CORS_ORIGINS": SHOP_ORIGIN,
            "LOG_LEVEL": "debug",
            "INTERNAL_TOKEN": system.internal_token,
        },
    )
    proxy.start()
    try:
        running.start()
        yield SecondGateway(
            f"http://{running.address}",
            proxy.calls,
            running.log_path,
            {INTERNAL_HEADER: system.internal_token},
        )
    finally:
        running.stop()
        proxy.stop()


# ---- Cost -------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", COSTLY)
async def test_a_fragment_costs_what_its_selections_cost_inline(graphql_at, gateway, shape):
    before = subgraph_calls(gateway)

    answer = await graphql_at(COSTLY[shape])

    assert answer.error["extensions"]["code"] == "RESOURCE_EXHAUSTED", answer.body
    assert answer.error["extensions"]["cost"] == {"estimated": 6003, "max": MAX_COST}
    assert answer.cost == 6003
    assert (
        answer.error["message"] == "Operation estimated cost 6003 exceeded configured maximum 5000"
    )
    assert subgraph_calls(gateway) == before  # refused before any subgraph was asked

    # Within the limit, the same selections answered at the same cost either way.
    inline = await graphql_at("{ products(first: 100) { products { name } } }")
    spread = await graphql_at(
        "{ products(first: 100) { ...P } } fragment P on ProductPage { ... { products { name } } }"
    )
    assert "errors" not in inline.body
    assert "errors" not in spread.body
    assert inline.cost == spread.cost == 101


def _with_fragments(document: graphql.DocumentNode, draw: st.DrawFn) -> graphql.DocumentNode:
    """The same operation with runs of its selections moved into named fragments (one per
    distinct selection on a type, spread wherever it occurs), inline fragments with and
    without a type condition, or left in place, as `draw` decides."""
    fragments: dict[tuple[str, str], graphql.FragmentDefinitionNode] = {}

    def named(type_name: str) -> graphql.NamedTypeNode:
        return graphql.NamedTypeNode(name=graphql.NameNode(value=type_name))

    def rewritten(selection_set: graphql.SelectionSetNode, parent: Any) -> graphql.SelectionSetNode:
        selections = []
        for selection in selection_set.selections:
            assert isinstance(selection, graphql.FieldNode)
            if selection.selection_set is not None:  # an object: its own selections too
                field_type = graphql.get_named_type(parent.fields[selection.name.value].type)
                selection = dataclasses.replace(
                    selection, selection_set=rewritten(selection.selection_set, field_type)
                )
            selections.append(selection)
        how = draw(st.sampled_from(["in place", "named", "inline", "inline without a type"]))
        if how == "in place":
            return graphql.SelectionSetNode(selections=tuple(selections))
        start = draw(st.integers(0, len(selections) - 1))
        end = draw(st.integers(start + 1, len(selections)))
        run = graphql.SelectionSetNode(selections=tuple(selections[start:end]))
        moved: graphql.SelectionNode
        if how == "named":
            key = (parent.name, graphql.print_ast(run))
            if key not in fragments:
                fragments[key] = graphql.FragmentDefinitionNode(
                    name=graphql.NameNode(value=f"F{len(fragments)}"),
                    type_condition=named(parent.name),
                    selection_set=run,
                )
            moved = graphql.FragmentSpreadNode(name=fragments[key].name)
        else:
            condition = named(parent.name) if how == "inline" else None
            moved = graphql.InlineFragmentNode(type_condition=condition, selection_set=run)
        return graphql.SelectionSetNode(selections=(*selections[:start], moved, *selections[end:]))

    (operation,) = document.definitions
    assert isinstance(operation, graphql.OperationDefinitionNode)
    operation = dataclasses.replace(
        operation, selection_set=rewritten(operation.selection_set, SUPERGRAPH.query_type)
    )
    return graphql.DocumentNode(definitions=(operation, *fragments.values()))


def _tokens(source: str) -> int:
    lexer = graphql.language.Lexer(graphql.Source(source))
    count = 0
    while lexer.advance().kind != graphql.language.TokenKind.EOF:
        count += 1
    return count


def _post(url: str, query: str) -> Answer:
    request = urllib.request.Request(
        f"{url}/graphql",
        data=json.dumps({"query": query}).encode(),
        headers={"content-type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            status, headers, body = answer.status, answer.headers, answer.read()
    except urllib.error.HTTPError as refused:
        status, headers, body = refused.code, refused.headers, refused.read()
    return Answer(status, {k.lower(): v for k, v in headers.items()}, json.loads(body))


def _verdict(answer: Answer) -> tuple[int, int | None, bool, list[str]]:
    """What the gateway decided: the status, the estimated cost, whether the operation was
    executed, and its refusals (errors of the whole operation, not of a field)."""
    refusals = sorted(e["message"] for e in answer.body.get("errors", []) if "path" not in e)
    return answer.status, answer.cost, "data" in answer.body, refusals


@settings(max_examples=200, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))  # fmt: skip
@given(
    document=queries(SUPERGRAPH, print_ast=lambda d: d, allow_x00=False),
    data=st.data(),
)
def test_fragments_cost_exactly_what_the_same_selections_cost_inline(gateway, document, data):
    """Each generated query, sent once as generated and once with its selections moved into
    fragments: the same estimated cost, and the same refusal or answer."""
    query = graphql.print_ast(document)
    spread = graphql.print_ast(_with_fragments(document, data.draw))
    assume(_tokens(spread) <= MAX_TOKENS)  # the fragments' names and braces count too
    inline = _post(gateway.url, query)
    rewritten = _post(gateway.url, spread)

    assert _verdict(rewritten) == _verdict(inline), f"{query}\n{spread}"
    if "data" in inline.body:  # every executed operation was priced, within the limit
        assert inline.cost is not None
        assert inline.cost <= MAX_COST
    if inline.cost is not None and inline.cost > MAX_COST:
        assert inline.error["extensions"]["code"] == "RESOURCE_EXHAUSTED"


async def test_every_subgraph_call_carries_the_operations_cost(graphql_at, second, shop):
    ada = await shop.register()
    mug = await shop.product(price_minor=500, name="Blue mug", stock=10)
    for _ in range(2):
        await shop.place(ada, [(mug.product_id, 1)])
    second.calls.clear()

    answer = await graphql_at(
        "{ me { email orders(first: 5) { items { quantity product { name } } } } }",
        ada.access_token,
        url=second.url,
    )

    assert "errors" not in answer.body, answer.body
    # me 1, 5 orders of (1 + 10 items of (1 + their product 1)): 1 + 5 x 21.
    assert answer.cost == 106
    # The user, order and inventory subgraphs, one call each, all told the operation's cost
    # and which of its calls they are.
    assert sorted(path for path, _ in second.calls) == [
        "/graphql/inventory", "/graphql/order", "/graphql/user",
    ]  # fmt: skip
    assert [h["x-ordermesh-graphql-cost"] for _, h in second.calls] == ["106"] * 3
    assert sorted(h["x-ordermesh-graphql-call"] for _, h in second.calls) == ["1", "2", "3"]
    assert all("x-ordermesh-graphql-operation" not in h for _, h in second.calls)

    second.calls.clear()
    cancelled = await graphql_at(
        'mutation { cancelOrder(orderId: "no-such-order") { orderId } }',
        ada.access_token,
        url=second.url,
    )
    assert cancelled.error["extensions"]["code"] == "NOT_FOUND"
    ((_, headers),) = second.calls
    assert headers["x-ordermesh-graphql-cost"] == "1"
    assert headers["x-ordermesh-graphql-operation"] == "mutation"


# ---- Bounds -------------------------------------------------------------------------------


async def test_list_arguments_are_bounded_as_in_the_contracts(graphql_at, shop):
    ada = await shop.register()
    for first in (0, 101):
        products = await graphql_at(f"{{ products(first: {first}) {{ products {{ name }} }} }}")
        assert products.error["extensions"]["code"] == "INVALID_ARGUMENT", products.body
        assert products.error["message"] == f"first: {first}, not from 1 to 100"

        orders = await graphql_at(
            f"{{ me {{ orders(first: {first}) {{ orderId }} }} }}", ada.access_token
        )
        assert orders.error["extensions"]["code"] == "INVALID_ARGUMENT", orders.body
        assert orders.error["message"] == f"first: {first}, not from 1 to 100"

    after = await graphql_at(
        "query($after: String!) { products(after: $after) { nextPageToken } }", after="x" * 513
    )
    assert after.error["extensions"]["code"] == "INVALID_ARGUMENT"
    assert after.error["message"] == "after: 513 characters, at most 512"

    for answered in (
        await graphql_at("{ products(first: 100) { products { name } } }"),
        await graphql_at("{ me { orders(first: 100) { orderId } } }", ada.access_token),
    ):
        assert "errors" not in answered.body, answered.body


async def test_aliases_and_directives_are_counted_and_bounded(graphql_at, gateway):
    def aliased(n: int) -> str:
        return " ".join(f'a{i}: product(productId: "p{i}") {{ name }}' for i in range(n))

    before = subgraph_calls(gateway)
    too_many = await graphql_at(f"{{ {aliased(MAX_ALIASES + 1)} }}")
    assert too_many.status == 400
    assert too_many.error["message"] == "Syntax Error: Aliases limit of 15 exceeded, found 16."
    assert too_many.error["extensions"] == {"code": "INVALID_ARGUMENT", "grpcStatus": 3}
    # Counted where a fragment is spread: 2 + 2 x 7.
    names = " ".join(f"n{i}: name" for i in range(7))
    spread = await graphql_at(
        "{ x: products { ...P } y: products { ...P } } "
        f"fragment P on ProductPage {{ products {{ {names} }} }}"
    )
    assert spread.error["message"] == "Syntax Error: Aliases limit of 15 exceeded, found 16."

    directed = " ".join(f"t{i}: __typename @include(if: true)" for i in range(MAX_DIRECTIVES + 1))
    directives = await graphql_at(f"{{ {directed} }}")
    assert directives.error["message"] == (
        "Syntax Error: Directives limit of 10 exceeded, found 11."
    )
    assert subgraph_calls(gateway) == before

    within = await graphql_at(f"{{ {aliased(MAX_ALIASES)} }}")  # executed: no such products
    assert {e["extensions"]["code"] for e in within.body["errors"]} == {"NOT_FOUND"}
    assert "data" in within.body


# ---- Introspection -------------------------------------------------------------------------

INTROSPECTION = "{ __schema { queryType { name } } }"


async def test_introspection_is_refused_to_anyone_but_an_admin(graphql_at, shop):
    for query in (
        INTROSPECTION,
        '{ __type(name: "Query") { name } }',
        "{ ...I } fragment I on Query { ... { __schema { types { name } } } }",
    ):
        anonymous = await graphql_at(query)
        assert anonymous.status == 401, anonymous.body
        assert anonymous.error["extensions"] == {"code": "UNAUTHENTICATED", "grpcStatus": 16}
        assert anonymous.error["message"] == "introspection is for admins: send an admin's token"
        assert "data" not in anonymous.body

    # A roles header from a client without a token is nothing.
    forged = await graphql_at(INTROSPECTION, headers={ROLES: "admin"})
    assert forged.status == 401

    ada = await shop.register()
    customer = await graphql_at(INTROSPECTION, ada.access_token)
    assert customer.status == 403
    assert customer.error["extensions"] == {"code": "PERMISSION_DENIED", "grpcStatus": 7}

    # What every client needs stays open.
    typename = await graphql_at("{ __typename }")
    assert typename.body["data"] == {"__typename": "Query"}


async def test_introspection_is_within_the_limits_of_every_query(graphql_at, second, shop):
    admin = await shop.admin()
    # At the federation gateway, as Envoy passes an admin's call on.
    as_admin = {"url": second.url}

    small = await graphql_at(INTROSPECTION, admin.access_token, **as_admin)
    assert small.body["data"] == {"__schema": {"queryType": {"name": "Query"}}}
    assert small.cost == 2

    aliases = " ".join(f"s{i}: __schema {{ queryType {{ name }} }}" for i in range(16))
    many = await graphql_at(f"{{ {aliases} }}", admin.access_token, **as_admin)
    assert many.error["message"] == "Syntax Error: Aliases limit of 15 exceeded, found 16."

    deep = "{ __schema { types { fields { type " + "{ ofType " * 4 + "{ name }" + " }" * 8
    too_deep = await graphql_at(deep, admin.access_token, **as_admin)
    assert too_deep.error["message"] == "Syntax Error: Query depth limit of 8 exceeded, found 9."

    # 1 + 10 types x (1 + 10 fields x (1 + 10 arguments x 2)) = 2,111 each.
    costly = " ".join(
        f"s{i}: __schema {{ types {{ fields {{ args {{ type {{ name }} }} }} }} }}"
        for i in range(3)
    )
    refused = await graphql_at(f"{{ {costly} }}", admin.access_token, **as_admin)
    assert refused.error["extensions"]["code"] == "RESOURCE_EXHAUSTED"
    assert refused.error["extensions"]["cost"] == {"estimated": 6333, "max": MAX_COST}

    # The introspection query of the usual tools goes past the depth limit too: the composed
    # schema is published as a file (gateway/graphql/supergraph.graphql).
    usual = await graphql_at(graphql.get_introspection_query(), admin.access_token, **as_admin)
    assert usual.error["extensions"]["code"] == "INVALID_ARGUMENT"
    assert "depth limit" in usual.error["message"]


async def test_an_admin_may_introspect(graphql_at, shop):
    admin = await shop.admin()
    answer = await graphql_at(INTROSPECTION, admin.access_token)
    assert answer.body.get("data") == {"__schema": {"queryType": {"name": "Query"}}}, answer.body


async def test_a_customer_who_says_he_is_an_admin_may_not_introspect(graphql_at, shop):
    ada = await shop.register()
    answer = await graphql_at(INTROSPECTION, ada.access_token, headers={ROLES: "admin"})
    assert answer.status == 403, answer.body


async def test_no_error_suggests_a_name_of_the_schema(graphql_at):
    """blockFieldSuggestions hides them in the document's errors; a variable's misspelt input
    field is checked later, and hidden too."""
    address = {"recipient": "Ada", "addressLines": ["Main St 1"], "locality": "Berlin",
               "regionCode": "DE", "regionCod": "DE"}  # fmt: skip
    answer = await graphql_at(
        "mutation($input: PlaceOrderInput!) { placeOrder(input: $input) { orderId } }",
        input={"idempotencyKey": "k", "items": [], "deliveryAddress": address},
    )
    (error,) = answer.body["errors"]
    assert error["extensions"]["code"] == "INVALID_ARGUMENT"
    assert error["message"].endswith(
        'Field "regionCod" is not defined by type "PostalAddressInput".'
    )


# ---- HTTP ---------------------------------------------------------------------------------


async def test_no_cross_origin_call_but_from_a_configured_origin(gateway, second):
    async with aiohttp.ClientSession() as http:

        def hop(url: str) -> dict[str, str]:
            return second.internal if url == second.url else {}

        async def preflight(url: str, origin: str) -> aiohttp.ClientResponse:
            async with http.options(
                f"{url}/graphql",
                headers={
                    "origin": origin,
                    "access-control-request-method": "POST",
                    "access-control-request-headers": "authorization, content-type",
                    **hop(url),
                },
            ) as response:
                await response.read()
                return response

        async def post(url: str, origin: str) -> aiohttp.ClientResponse:
            async with http.post(
                f"{url}/graphql",
                json={"query": "{ __typename }"},
                headers={"origin": origin, **hop(url)},
            ) as response:
                await response.read()
                return response

        def cors(response: aiohttp.ClientResponse) -> dict[str, str]:
            return {
                k.lower(): v for k, v in response.headers.items()
                if k.lower().startswith("access-control-")
            }  # fmt: skip

        # None configured (the session's gateway, behind Envoy): nobody's page may call.
        for url in (gateway.url, second.url):
            refused = await preflight(url, "https://evil.example")
            assert refused.status == 403
            assert cors(refused) == {}
            answered = await post(url, "https://evil.example")
            assert answered.status == 200  # the browser keeps it from the page
            assert cors(answered) == {}
        assert cors(await preflight(gateway.url, SHOP_ORIGIN)) == {}

        # CORS_ORIGINS=https://shop.example: its pages may, without credentials (cookies).
        allowed = await preflight(second.url, SHOP_ORIGIN)
        assert allowed.status == 204
        assert cors(allowed) == {
            "access-control-allow-origin": SHOP_ORIGIN,
            "access-control-allow-methods": "POST",
            "access-control-allow-headers": (
                "authorization, content-type, x-request-id, traceparent, tracestate"
            ),
            "access-control-max-age": "600",
        }
        called = await post(second.url, SHOP_ORIGIN)
        assert cors(called)["access-control-allow-origin"] == SHOP_ORIGIN
        assert cors(called)["access-control-expose-headers"] == COST  # the page may read it
        assert "access-control-allow-credentials" not in cors(called)
        assert "Origin" in called.headers.getall("vary", [])


async def test_nothing_is_read_from_a_url_nor_a_token_logged(gateway, second, shop):
    ada = await shop.register()
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{gateway.url}/graphql", params={"query": "{ __typename }"}) as got:
            assert got.status == 405
            assert "data" not in await got.json()

        # A token in the URL is no token, be it refused by Envoy (401) or the gateway (400).
        async with http.post(
            f"{gateway.url}/graphql",
            params={"access_token": ada.access_token},
            json={"query": "{ me { email } }"},
        ) as sent:
            assert sent.status in (400, 401)
            assert "data" not in await sent.json()

        async with http.post(
            f"{second.url}/graphql",
            params={"access_token": ada.access_token},
            json={"query": "{ me { email } }"},
            headers=second.internal,
        ) as direct:
            assert direct.status == 400
            assert (await direct.json())["errors"][0]["message"] == (
                "nothing goes in the URL: the operation in the body, a token in "
                "'authorization: Bearer'"
            )

        # At debug level the gateway logs each subgraph call with its headers: not the token.
        async with http.post(
            f"{second.url}/graphql",
            json={"query": "{ me { email } }"},
            headers={"authorization": f"Bearer {ada.access_token}", **second.internal},
        ) as answered:
            assert (await answered.json())["data"] == {"me": {"email": ada.email}}
    log = second.log_path.read_text()
    assert '"authorization":"[Redacted]"' in log
    assert ada.access_token not in log
    assert PASSWORD not in log


async def test_a_token_sent_in_a_url_is_not_in_envoys_log(gateway, shop):
    ada = await shop.register()
    marker = uuid.uuid4().hex
    async with aiohttp.ClientSession() as http:
        async with http.post(
            f"{gateway.url}/graphql",
            params={"access_token": ada.access_token},
            json={"query": "{ me { email } }"},
        ) as sent:
            assert sent.status in (400, 401)
        # Refused after it (404): once its line is written, so is the one before.
        async with http.post(f"{gateway.url}/graphql/{marker}", json={}) as after:
            assert after.status == 404
    log = gateway.envoy.process.log_path
    await eventually(lambda: marker in log.read_text(), timeout_s=10, what="Envoy's access log")
    assert ada.access_token not in log.read_text()
