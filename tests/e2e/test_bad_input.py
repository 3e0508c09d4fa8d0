"""What a hostile or careless client sends through the gateway: it gets a clear 4xx and never
stops, corrupts or slows anything for anyone else."""

from __future__ import annotations

import asyncio
import uuid

import aiohttp
import pytest

from harness.shop import PASSWORD, eventually


@pytest.fixture
async def http(gateway):
    async with aiohttp.ClientSession(gateway.url) as session:
        yield session


async def register(http: aiohttp.ClientSession, email: str, **headers: str) -> None:
    body = {"email": email, "password": PASSWORD, "displayName": "Ada"}
    async with http.post("/v1/users", json=body, headers=headers) as response:
        assert response.status == 200, await response.text()


async def test_a_correlation_id_amqp_cannot_carry_stops_no_ones_events(http, system):
    """An unauthenticated client's 300-byte x-correlation-id once wedged the user service's
    outbox: its UserRegistered was never sent, nor any event after it."""
    hostile, next_user = (f"{who}-{uuid.uuid4().hex[:8]}@example.com" for who in "ab")

    await register(http, hostile, **{"x-correlation-id": "c" * 300})
    await register(http, next_user)

    for email in (hostile, next_user):
        await eventually(lambda e=email: system.mail.to(e), what=f"welcome email to {email}")


@pytest.fixture
async def token(http):
    email = f"bounds-{uuid.uuid4().hex[:8]}@example.com"
    await register(http, email)
    async with http.post("/v1/auth/login", json={"email": email, "password": PASSWORD}) as answer:
        return (await answer.json())["tokens"]["accessToken"]


@pytest.mark.parametrize(
    ("method", "path", "body", "problem"),
    [
        ("POST", "/v1/orders/o-1:cancel", {"reason": "r" * 501},
         "reason: 501 characters, at most 500"),
        ("POST", "/v1/orders", {"idempotencyKey": "k", "items": [{"productId": "p"}] * 101},
         "items: 101 items, at most 100"),
        ("PATCH", "/v1/users/me/preferences",
         {"subscriptions": [{"kind": "NOTIFICATION_KIND_ORDER_APPROVED", "channels": [99]}]},
         "subscriptions[0].channels[0]: 99 is not a value of common.v1.Channel"),
        ("GET", "/v1/orders?pageToken=WyB7fSwgImlkIl0=", None,
         "page_token 'WyB7fSwgImlkIl0=' is not a token this service issued"),
    ],
)  # fmt: skip
async def test_input_beyond_the_contract_is_a_400_naming_the_field(
    http, token, method, path, body, problem
):
    headers = {"authorization": f"Bearer {token}"}
    async with http.request(method, path, json=body, headers=headers) as answer:
        error = await answer.json(content_type=None)

    assert answer.status == 400, error
    assert error["code"] == 3  # INVALID_ARGUMENT
    assert error["message"] == problem


async def test_a_body_or_headers_beyond_the_gateways_limits_are_413_and_431(http, gateway):
    too_long = "x" * (gateway.config.max_request_bytes + 1)
    async with http.post("/v1/users", json={"email": too_long}) as answer:
        assert answer.status == 413
        assert (await answer.json(content_type=None))["code"] == 8  # RESOURCE_EXHAUSTED

    header = "h" * (gateway.config.max_request_headers_kb * 1024)
    async with http.get("/v1/products", headers={"x-large": header}) as answer:
        assert answer.status == 431


async def test_clients_holding_partial_requests_are_cut_off_and_others_still_served(http, gateway):
    """A slow client (slowloris) holds a connection only until the request-headers timeout."""
    host, port = gateway.address.split(":")
    held = []
    for _ in range(100):
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"GET /v1/products HTTP/1.1\r\nHost: gateway\r\nX-Slow: ")  # never ends
        await writer.drain()
        held.append((reader, writer))

    async with http.get("/v1/products") as answer:
        assert answer.status == 200

    waited_s = gateway.config.request_headers_timeout_s + 10  # a bound on waiting, not a timing
    answers = await asyncio.wait_for(
        asyncio.gather(*(reader.read() for reader, _ in held)), timeout=waited_s
    )
    assert all(answer.startswith(b"HTTP/1.1 408") for answer in answers), answers[0][:200]
    for _, writer in held:
        writer.close()


def ejections(gateway, cluster: str) -> int:
    return gateway.envoy.counter(f"cluster.{cluster}.outlier_detection.ejections_enforced_total")


async def test_no_request_a_client_crafts_ejects_an_instance(http, gateway):
    """Outlier detection ejects instances that fail to answer, not those whose callers set a
    deadline too short to meet: the gateway enforces a client's grpc-timeout itself (504) and
    does not pass it on, so no service answers DEADLINE_EXCEEDED for a client's choice."""
    before = ejections(gateway, "inventory")

    statuses = []
    for _ in range(100):
        async with http.get("/v1/products", headers={"grpc-timeout": "1n"}) as answer:
            statuses.append(answer.status)
    await asyncio.sleep(2)  # two outlier detection intervals

    assert set(statuses) <= {200, 504}
    assert ejections(gateway, "inventory") == before
    async with http.get("/v1/products") as answer:
        assert answer.status == 200


async def test_a_header_name_grpc_cannot_carry_is_a_400_not_an_internal_error(http):
    """Found by the REST fuzzing: a header named with a backtick or a quote, valid in HTTP,
    reached the service as gRPC metadata it refused with INTERNAL (500)."""
    async with http.get("/v1/products", headers={"x`odd'name": "1"}) as answer:
        error = await answer.json(content_type=None)

    assert answer.status == 400, error
    assert error["code"] == 3
    assert "header name" in error["message"]
    async with http.get("/v1/products", headers={"x-fine-name.1": "1"}) as answer:
        assert answer.status == 200
