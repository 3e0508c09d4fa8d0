"""What a hostile or careless client sends through the gateway: it gets a clear 4xx and never
stops, corrupts or slows anything for anyone else."""

from __future__ import annotations

import uuid

import aiohttp
import pytest

from tests.integration.shop import PASSWORD, eventually


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
