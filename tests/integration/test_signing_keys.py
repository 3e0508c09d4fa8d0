"""The user service's signing keys rotate, and old and new keys overlap in the JWKS while tokens
signed by the old one may still be valid (a real SQLite store; the clock is the test's)."""

from __future__ import annotations

import time

import pytest

from chassis.store.sqlite import SqliteStore
from chassis.tokens import InvalidToken, KeySet, TokenVerifier
from services.user.keys import SIGNING_KEYS, SigningKeys
from tests.clock import Clock

LIFETIME_S, TOKEN_TTL_S = 3600.0, 900.0


@pytest.fixture
async def store(tmp_path):
    adapter = SqliteStore(tmp_path / "user.db")
    await adapter.open([SIGNING_KEYS])
    yield adapter
    await adapter.close()


def token(key) -> str:
    """A token valid now (PyJWT checks `exp` and `iat` against the real clock)."""
    now = int(time.time())
    return key.sign({"iss": "i", "aud": "a", "sub": "u", "iat": now, "exp": now + 900})


async def test_instances_sharing_a_store_sign_with_the_same_key(store):
    clock = Clock()
    first = SigningKeys(store, lifetime_s=LIFETIME_S, token_ttl_s=TOKEN_TTL_S, clock=clock)
    second = SigningKeys(store, lifetime_s=LIFETIME_S, token_ttl_s=TOKEN_TTL_S, clock=clock)

    assert (await first.current()).kid == (await second.current()).kid
    assert len((await first.jwks())["keys"]) == 1


async def test_a_rotated_key_stays_published_until_its_last_token_expired(store):
    clock = Clock()
    keys = SigningKeys(store, lifetime_s=LIFETIME_S, token_ttl_s=TOKEN_TTL_S, clock=clock)
    verifier = TokenVerifier(
        KeySet(keys.jwks, max_age_s=60, clock=clock),
        issuer="i",
        audience="a",
        clock=clock,
        cache_size=0,
    )
    old = await keys.current()
    old_token = token(old)

    clock.now += LIFETIME_S  # the old key's signing time is over
    new = await keys.current()

    assert new.kid != old.kid
    published = {k["kid"] for k in (await keys.jwks())["keys"]}
    assert published == {old.kid, new.kid}
    await verifier.verify(token(new))
    await verifier.verify(old_token)  # still published: still verifies

    clock.now += TOKEN_TTL_S + 1
    assert {k["kid"] for k in (await keys.jwks())["keys"]} == {new.kid}
    with pytest.raises(InvalidToken, match="unknown key"):
        await verifier.verify(old_token)


async def test_a_forced_rotation_signs_with_a_new_key_at_once(store):
    clock = Clock()
    keys = SigningKeys(store, lifetime_s=LIFETIME_S, token_ttl_s=TOKEN_TTL_S, clock=clock)
    old = await keys.current()

    new = await keys.rotate()

    assert (await keys.current()).kid == new.kid != old.kid
    assert {k["kid"] for k in (await keys.jwks())["keys"]} == {old.kid, new.kid}
