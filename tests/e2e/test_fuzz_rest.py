"""The REST API fuzzed through the real gateway from its OpenAPI document (schemathesis).

Requests generated from gateway/openapi.json (which `make gen` derives from the contracts),
sent anonymously and with a customer's token: no answer may be a server error (5xx: INTERNAL
is 500), and every answer must match the document (status, content type, body schema).
Bounded: `EXAMPLES` requests per operation and caller. After the run, the services' outboxes
drain and their consumers consume (tests/integration/test_fuzz_grpc.py checks both, after
its own run, on the same system).
"""

from __future__ import annotations

import json
import urllib.request
import uuid
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from harness.shop import PASSWORD

EXAMPLES = 20
SCHEMA = schemathesis.openapi.from_path(
    Path(__file__).resolve().parents[2] / "gateway" / "openapi.json"
)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
TRIED: dict[str, int] = {}


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())


@pytest.fixture(scope="module")
def bearer(gateway) -> dict[str, str]:
    email = f"fuzz-{uuid.uuid4().hex[:8]}@example.com"
    _post(f"{gateway.url}/v1/users", {"email": email, "password": PASSWORD})
    tokens = _post(f"{gateway.url}/v1/auth/login", {"email": email, "password": PASSWORD})
    return {"authorization": f"Bearer {tokens['tokens']['accessToken']}"}


@pytest.mark.parametrize("who", ["anonymous", "customer"])
@SCHEMA.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))  # fmt: skip
def test_no_generated_request_gets_a_server_error_or_breaks_the_document(
    case, who, gateway, bearer
):
    headers = bearer if who == "customer" else {}
    case.call_and_validate(base_url=gateway.url, headers=headers, checks=CHECKS)
    TRIED[who] = TRIED.get(who, 0) + 1


def test_the_fuzzing_ran(gateway):
    """Printed for the record (pytest -s): how many generated requests each caller sent."""
    print(f"\nREST fuzzing: requests by caller {TRIED}")
    assert TRIED.get("anonymous", 0) > 0
    assert TRIED.get("customer", 0) > 0
