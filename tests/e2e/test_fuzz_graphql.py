"""The GraphQL API fuzzed through the real gateway from the supergraph (hypothesis-graphql).

Queries and mutations generated from gateway/graphql/supergraph.graphql, each argument written
inline or sent as a variable, go to Envoy's /graphql (the federation gateway, the subgraphs of
real service processes) anonymously and with a customer's token. No answer may be a server error
(5xx), no error INTERNAL; every error carries its gRPC status in `extensions` (`code` and
`grpcStatus`, which agree), and no executed operation costs more than the limit (MAX_COST, as
the answer's x-ordermesh-graphql-cost says). IDs are drawn from the customer's own product,
order and user as well as generated, and sizes from the contracts' bounds as well as any
integer, so that operations reach past NOT_FOUND and INVALID_ARGUMENT and near the cost limit.
Bounded: EXAMPLES operations per caller, each answered within DEADLINE.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections import Counter
from datetime import timedelta
from typing import Any

import graphql
import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis_graphql import from_schema

from harness.graphql import GRAPHQL_DIR
from harness.shop import Shop
from harness.system import System

EXAMPLES = 150
# A generated operation answered slower than this is a finding too (the limits bound the work).
DEADLINE = timedelta(seconds=5)
MAX_COST = 5000  # gateway/graphql/gateway.config.mjs, by default
COST = "x-ordermesh-graphql-cost"
SUPERGRAPH = graphql.build_schema((GRAPHQL_DIR / "supergraph.graphql").read_text())
STATUS_NUMBERS = {code.name: code.value[0] for code in grpc.StatusCode}

REQUESTS: Counter[str] = Counter()  # by caller
STATUSES: Counter[int] = Counter()  # HTTP
CODES: Counter[str] = Counter()  # extensions.code of every error
ANSWERED: Counter[str] = Counter()  # executed ("data" in the answer) / refused
COSTS: list[int] = []  # of the executed operations
OPERATIONS: Counter[str] = Counter()  # query / mutation, with variables or without


@pytest.fixture(scope="module")
async def customer(system: System) -> tuple[str, list[str]]:
    """A customer's token, and IDs that exist: a product on sale, and the customer's order."""
    shop = Shop(system)
    try:
        session = await shop.register()
        mug = await shop.product(price_minor=500, name="Fuzzed mug", stock=1000)
        order = await shop.place(session, [(mug.product_id, 1)])
        return session.access_token, [mug.product_id, order.order_id, session.user_id]
    finally:
        await shop.close()


def _operations(known_ids: list[str]) -> st.SearchStrategy[graphql.DocumentNode]:
    ids = st.one_of(st.sampled_from(known_ids), st.text(max_size=40)).map(
        lambda value: graphql.StringValueNode(value=value)
    )
    # Half the sizes within the contracts' bounds (1 to 100), so that lists are served and
    # operations come near the cost limit, not only refused for their `first`.
    ints = st.one_of(st.integers(1, 100), st.integers(-(2**31), 2**31 - 1)).map(
        lambda value: graphql.IntValueNode(value=str(value))
    )
    return from_schema(SUPERGRAPH, custom_scalars={"ID": ids, "Int": ints}, print_ast=lambda d: d)


def _with_variables(
    document: graphql.DocumentNode, draw: st.DrawFn
) -> tuple[graphql.DocumentNode, dict[str, Any]]:
    """The same operation with each argument left inline or moved into a variable of the
    argument's type (with its value in the request's variables), as `draw` decides."""
    type_info = graphql.TypeInfo(SUPERGRAPH)
    definitions: list[graphql.VariableDefinitionNode] = []
    variables: dict[str, Any] = {}

    class Lift(graphql.Visitor):
        def enter_argument(self, node: graphql.ArgumentNode, *_: Any) -> Any:
            argument = type_info.get_argument()
            if argument is None or not draw(st.booleans()):
                return None
            name = f"v{len(definitions)}"
            variables[name] = graphql.value_from_ast(node.value, argument.type)
            definitions.append(
                graphql.VariableDefinitionNode(
                    variable=graphql.VariableNode(name=graphql.NameNode(value=name)),
                    type=graphql.parse_type(str(argument.type)),
                )
            )
            return graphql.ArgumentNode(
                name=node.name, value=graphql.VariableNode(name=graphql.NameNode(value=name))
            )

    lifted = graphql.visit(document, graphql.TypeInfoVisitor(type_info, Lift()))
    (operation,) = lifted.definitions
    operation = graphql.OperationDefinitionNode(
        operation=operation.operation,
        name=operation.name,
        variable_definitions=tuple(definitions),
        directives=operation.directives,
        selection_set=operation.selection_set,
    )
    return graphql.DocumentNode(definitions=(operation,)), variables


def _post(
    url: str, body: dict[str, Any], headers: dict[str, str]
) -> tuple[int, dict[str, str], dict[str, Any]]:
    request = urllib.request.Request(
        f"{url}/graphql",
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json", **headers},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            status, answered, content = answer.status, answer.headers, answer.read()
    except urllib.error.HTTPError as refused:
        status, answered, content = refused.code, refused.headers, refused.read()
    assert answered.get_content_type() == "application/json", (status, content)
    return status, {k.lower(): v for k, v in answered.items()}, json.loads(content)


def _check(status: int, headers: dict[str, str], body: dict[str, Any]) -> None:
    """No server error, every error with an agreeing gRPC status and none INTERNAL, and no
    executed operation over the cost limit (nor unpriced)."""
    assert status < 500
    for error in body.get("errors", []):
        extensions = error.get("extensions", {})
        code, number = extensions.get("code"), extensions.get("grpcStatus")
        CODES[str(code)] += 1
        assert STATUS_NUMBERS.get(code) == number, error  # a gRPC status, name and number
        assert code != "INTERNAL", error
        assert "serviceName" not in extensions, error  # which subgraph: the system's inside
    if "data" in body:
        assert COST in headers  # executed, so priced
        cost = int(headers[COST])
        COSTS.append(cost)
        assert cost <= MAX_COST


@pytest.mark.parametrize("who", ["anonymous", "customer"])
@settings(max_examples=EXAMPLES, deadline=DEADLINE, database=None,
          suppress_health_check=list(HealthCheck))  # fmt: skip
@given(data=st.data())
def test_no_generated_operation_gets_a_server_error_an_internal_error_or_past_the_cost_limit(
    gateway, customer, who, data
):
    token, known_ids = customer
    document, variables = _with_variables(data.draw(_operations(known_ids)), data.draw)
    query = graphql.print_ast(document)
    headers = {"authorization": f"Bearer {token}"} if who == "customer" else {}

    status, answered, body = _post(gateway.url, {"query": query, "variables": variables}, headers)

    REQUESTS[who] += 1
    (operation,) = document.definitions
    assert isinstance(operation, graphql.OperationDefinitionNode)
    OPERATIONS[operation.operation.value + (" with variables" if variables else "")] += 1
    STATUSES[status] += 1
    ANSWERED["executed" if "data" in body else "refused"] += 1
    try:
        _check(status, answered, body)
    except AssertionError as failed:
        raise AssertionError(
            f"{who}: {query}\nvariables {json.dumps(variables)}\n"
            f"HTTP {status}, cost {answered.get(COST)}: {json.dumps(body)}"
        ) from failed


def test_each_failing_root_field_of_one_subgraph_keeps_its_own_status(gateway):
    """Two root fields of the inventory subgraph, both failing: the error answered is its
    field's own, never INTERNAL "Unexpected error.". Both are non-null, so `data` is null at
    the first to fail, and only its error may be reported. Found by the fuzzing: when Hive
    merged the two into one subgraph call, the subgraph reported one error and the other field
    got null without one (gateway/graphql/gateway.config.mjs, __experimental__batchExecution)."""
    query = '{ product(productId: "") { name } products(first: 5, after: "zz") { nextPageToken } }'
    own = {"product": "NOT_FOUND", "products": "INVALID_ARGUMENT"}

    status, _, body = _post(gateway.url, {"query": query}, {})

    assert status == 200, body
    assert body["data"] is None, body
    assert body["errors"], body
    for error in body["errors"]:
        (field,) = error["path"]
        assert error["extensions"]["code"] == own[field], body


def test_the_fuzzing_ran() -> None:
    """Printed for the record (pytest -s): what the generated operations got."""
    print(
        f"\nGraphQL fuzzing: requests by caller {dict(REQUESTS)}, {dict(OPERATIONS)}, "
        f"HTTP statuses {dict(STATUSES)}, {dict(ANSWERED)}, "
        f"error codes {dict(CODES.most_common())}, "
        f"highest cost executed {max(COSTS, default=None)}"
    )
    assert REQUESTS["anonymous"] > 0
    assert REQUESTS["customer"] > 0
