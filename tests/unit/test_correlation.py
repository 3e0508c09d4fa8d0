"""Every edge takes a correlation id the same way (ordermesh.correlation.adopt): a safe bounded
token is kept, anything else is replaced by a new id and the refusal logged in one line shape;
the gRPC and GraphQL edges read ours first, then Envoy's request id."""

from __future__ import annotations

import io
import json
import uuid

import pytest
from ordermesh.correlation import adopt, adopt_header


def lines(output: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in output.getvalue().splitlines()]


def test_a_safe_token_is_adopted_as_it_is(output):
    assert adopt("order-42.retry:1", source="grpc x-correlation-id") == "order-42.retry:1"
    assert lines(output) == []


@pytest.mark.parametrize("value", [None, ""])
def test_work_that_came_with_none_gets_a_new_one_without_a_word(output, value):
    created = adopt(value, source="amqp message e-1")

    assert uuid.UUID(created)
    assert lines(output) == []


@pytest.mark.parametrize("value", ["x" * 129, "has space", "-leading", "line\nbreak"])
def test_an_unsafe_one_is_replaced_and_the_refusal_logged_with_its_source(output, value):
    created = adopt(value, source="graphql x-request-id")

    assert uuid.UUID(created)
    [line] = lines(output)
    assert line["event"] == "correlation id refused: not a safe bounded token; a new one is used"
    assert line["level"] == "warning"
    assert line["source"] == "graphql x-request-id"
    assert line["length"] == len(value)
    assert line["correlation_id"] == created


def test_the_edges_read_ours_first_then_envoys_request_id():
    both = {"x-correlation-id": "ours", "x-request-id": "envoys"}

    assert adopt_header(both, edge="grpc") == "ours"
    assert adopt_header({"x-request-id": "envoys"}, edge="grpc") == "envoys"
    assert adopt_header({"x-correlation-id": "", "x-request-id": "envoys"}, edge="grpc") == "envoys"
    assert uuid.UUID(adopt_header({}, edge="grpc"))


def test_a_refused_header_is_not_passed_over_for_the_next(output):
    created = adopt_header({"x-correlation-id": "bad id", "x-request-id": "envoys"}, edge="grpc")

    assert created != "envoys"
    [line] = lines(output)
    assert line["source"] == "grpc x-correlation-id"
