"""Page tokens: what a service issued resumes a list; anything else is InvalidArgument."""

import base64
import json

import pytest

from chassis.errors import InvalidArgument
from chassis.pages import after_of, next_token


def forged(value) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode()


def test_a_token_this_service_issued_resumes_after_the_last_item():
    page = [{"_id": "a", "created_at": 1.5}, {"_id": "b", "created_at": 2.5}]

    token = next_token(page, size=1, order_by="created_at")

    assert after_of(token) == (1.5, "a")


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
    ],
)
def test_a_token_it_did_not_issue_is_invalid(token):
    with pytest.raises(InvalidArgument, match="page_token"):
        after_of(token)
