"""Page tokens: what a service issued resumes a list; anything else is InvalidArgument."""

import base64
import json

import pytest
from ordermesh.errors import InvalidArgument
from ordermesh.pages import after_of, next_token


def forged(value) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode()


def forged_json(text: str) -> str:
    """A token of JSON text that `json.dumps` would not write (e.g. a lone surrogate escape)."""
    return base64.urlsafe_b64encode(text.encode()).decode()


def test_a_token_this_service_issued_resumes_after_the_last_item():
    page = [{"_id": "a", "created_at": 1.5}, {"_id": "b", "created_at": 2.5}]

    token = next_token(page, size=1, order_by="created_at")

    assert after_of(token) == (1.5, "a")


@pytest.mark.parametrize("value", ["sku-é-✓", -(2**63), 2**63 - 1, -1.5e300, 0.0])
def test_every_value_a_store_can_compare_makes_a_token(value):
    token = next_token(
        [{"_id": "a", "sku": value}, {"_id": "b", "sku": value}], size=1, order_by="sku"
    )

    assert after_of(token) == (value, "a")


@pytest.mark.parametrize(
    "token",
    [
        "not base64!",
        forged({"a": 1}),
        forged([1, 2, 3]),
        forged([{"a": 1}, "id"]),
        forged([[1], "id"]),
        forged([2**64, "id"]),
        forged([True, "id"]),
        forged(["x", 7]),
        forged([None, "id"]),
        # Values no store can compare: PostgreSQL's JSONB has no Infinity nor NaN, its text
        # holds no NUL, and UTF-8 has no lone surrogate (INTERNAL there until they were refused).
        forged([float("inf"), "id"]),
        forged([float("-inf"), "id"]),
        forged([float("nan"), "id"]),
        forged_json('[1e400, "id"]'),
        forged(["a\0b", "id"]),
        forged(["x", "id\0"]),
        forged_json('["\\ud800", "id"]'),
        forged_json('["x", "\\udc00"]'),
        forged_json("[" * 100_000),
    ],
)
def test_a_token_it_did_not_issue_is_invalid(token):
    with pytest.raises(InvalidArgument, match="page_token"):
        after_of(token)
