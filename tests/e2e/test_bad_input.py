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
