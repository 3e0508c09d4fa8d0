"""The user service's signing keys rotate: a new key is published `lead_s` before it signs, and
an old one stays published while tokens it signed may still be valid (a real SQLite store; the
clock is the test's)."""

from __future__ import annotations

import time

import pytest
from ordermesh.store.sqlite import SqliteStore
from ordermesh.tokens import InvalidToken, KeySet, TokenVerifier

from services.user.keys import SIGNING_KEYS, SigningKeys
from tests.clock import Clock

LIFETIME_S, TOKEN_TTL_S, LEAD_S, RECHECK_S = 3600.0, 900.0, 600.0, 30.0


@pytest.fixture
async def store(tmp_path):
    adapter = SqliteStore(tmp_path / "user.db")
    await adapter.open([SIGNING_KEYS])
    yield adapter
    await adapter.close()


def signing_keys(store, clock) -> SigningKeys:
    return SigningKeys(
        store,
        lifetime_s=LIFETIME_S,
        token_ttl_s=TOKEN_TTL_S,
        lead_s=LEAD_S,
        recheck_s=RECHECK_S,
        clock=clock,
    )


def kids(jwks) -> set[str]:
    return {k["kid"] for k in jwks["keys"]}


def token(key) -> str:
    """A token valid now (PyJWT checks `exp` and `iat` against the real clock)."""
    now = int(time.time())
    return key.sign({"iss": "i", "aud": "a", "sub": "u", "iat": now, "exp": now + 900})


async def test_instances_sharing_a_store_sign_with_the_same_key(store):
    clock = Clock()
    first, second = signing_keys(store, clock), signing_keys(store, clock)

    assert (await first.current()).kid == (await second.current()).kid
    assert len((await first.jwks())["keys"]) == 1


async def test_a_rotated_key_stays_published_until_its_last_token_expired(store):
    clock = Clock()
    keys = signing_keys(store, clock)
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
    assert kids(await keys.jwks()) == {old.kid, new.kid}
    await verifier.verify(token(new))
    await verifier.verify(old_token)  # still published: still verifies

    clock.now += TOKEN_TTL_S + RECHECK_S + 1
    assert kids(await keys.jwks()) == {new.kid}
    with pytest.raises(InvalidToken, match="unknown key"):
        await verifier.verify(old_token)


async def test_the_next_key_is_published_lead_s_before_it_signs(store):
    clock = Clock()
    keys = signing_keys(store, clock)
    first = await keys.current()
    assert kids(await keys.jwks()) == {first.kid}

    clock.now = first.sign_until - LEAD_S  # the successor is due: published, not signing
    assert (await keys.current()).kid == first.kid
    (successor,) = kids(await keys.jwks()) - {first.kid}

    clock.now = first.sign_until
    assert (await keys.current()).kid == successor


async def test_a_forced_rotation_publishes_the_new_key_at_once_and_signs_with_it_after_lead_s(
    store,
):
    clock = Clock()
    keys, other_instance = signing_keys(store, clock), signing_keys(store, clock)
    old = await keys.current()
    assert (await other_instance.current()).kid == old.kid

    new = await keys.rotate()

    assert kids(await keys.jwks()) == {old.kid, new.kid}
    assert (await keys.current()).kid == old.kid
    clock.now += LEAD_S
    assert (await keys.current()).kid == new.kid
    assert (await other_instance.current()).kid == new.kid  # it re-reads within recheck_s
