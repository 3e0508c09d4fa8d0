"""The edge policy is believed only when the auth service's key signed it, and never rolled back:
a follower keeps the newest verified policy through a flushed Redis, a forged document and an
older one (ordermesh.policy). The feed here is a dict: what Redis does is in the integration and
end-to-end tests (tests/integration/test_edge_policy.py, tests/e2e/test_gateway_auth.py)."""

from __future__ import annotations

import math

import pytest
from ordermesh.policy import (
    EdgePolicy,
    ForgedPolicy,
    PolicyFollower,
    export_metrics,
    new_policy_keys,
    seal,
    signing_key,
    unseal,
    verify_key,
)
from ordermesh.tokens import CLOCK_SKEW_S
from prometheus_client import CollectorRegistry

from tests.clock import Clock

JWKS = {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "AAAA", "kid": "k1", "alg": "EdDSA"}]}


class Feed:
    """What PolicyFeed offers a follower, over a value the test sets as Redis would hold it."""

    def __init__(self) -> None:
        self.sealed: bytes | None = None
        self.stamped: tuple[int, float] | None = None

    def put(self, policy: EdgePolicy, sealed: bytes) -> None:
        self.sealed, self.stamped = sealed, (policy.version, policy.issued_at)

    def flush(self) -> None:
        self.sealed = self.stamped = None

    async def stamp(self) -> tuple[int, float] | None:
        return self.stamped

    async def read(self) -> bytes | None:
        return self.sealed


@pytest.fixture
def keys():
    private, public = new_policy_keys()
    return signing_key(private), verify_key(public)


def policy(version: int, issued_at: float, **revoked: float) -> EdgePolicy:
    return EdgePolicy(version=version, issued_at=issued_at, jwks=JWKS, revoked=revoked)


def test_a_sealed_policy_opens_with_its_key_only(keys):
    private, public = keys
    sent = policy(3, 100.0, s1=200.0)
    assert unseal(seal(sent, private), public) == sent

    stranger, _ = new_policy_keys()
    with pytest.raises(ForgedPolicy):
        unseal(seal(sent, signing_key(stranger)), public)
    tampered = seal(sent, private).replace(b'"s1"', b'"s2"')
    with pytest.raises(ForgedPolicy):
        unseal(tampered, public)
    with pytest.raises(ForgedPolicy):
        unseal(b"not a policy", public)


@pytest.mark.parametrize("text", ["", "short", "A" * 60])
def test_a_key_that_is_not_32_bytes_of_base64url_is_refused_with_its_name(text):
    with pytest.raises(ValueError, match="EDGE_POLICY_VERIFY_KEY"):
        verify_key(text)


async def test_a_follower_keeps_the_newest_verified_policy_through_flushes_forgeries_and_replays(
    keys,
):
    private, public = keys
    clock = Clock(1000.0)
    feed = Feed()
    applied: list[int] = []
    follower = PolicyFollower(feed, public, lambda p: applied.append(p.version), clock=clock)  # type: ignore[arg-type]

    await follower.check()
    assert follower.held is None
    assert follower.age_s() is None

    first = policy(1, 990.0, ended=2000.0)
    feed.put(first, seal(first, private))
    await follower.check()
    assert follower.held == first
    assert follower.age_s() == 10.0
    assert follower.is_revoked("ended")
    assert not follower.is_revoked("other")

    feed.flush()  # Redis restarted: nothing lifts the revocation
    await follower.check()
    assert follower.is_revoked("ended")

    forged = policy(2, 995.0)  # a newer version without the revocation, signed by a stranger
    stranger, _ = new_policy_keys()
    feed.put(forged, seal(forged, signing_key(stranger)))
    await follower.check()
    assert follower.held == first
    assert follower.refused == 1

    replayed = policy(0, 999.0)  # an older version, really signed (an earlier document)
    feed.put(replayed, seal(replayed, private))
    feed.stamped = (9, 999.0)  # the unsigned stamp lies, to have it read
    await follower.check()
    assert follower.held == first
    assert follower.refused == 2

    reissued = policy(1, 1000.0, ended=2000.0)  # the same version issued again: fresher
    feed.put(reissued, seal(reissued, private))
    await follower.check()
    assert follower.held == reissued
    assert follower.age_s() == 0.0
    assert applied == [1, 1]

    clock.now = 2000.0 + CLOCK_SKEW_S - 1  # expired, but a verifier's clock may lag that much
    assert follower.is_revoked("ended")
    clock.now = 2000.0 + CLOCK_SKEW_S + 1  # its last token expired everywhere: nothing to refuse
    assert not follower.is_revoked("ended")


async def test_the_policy_held_is_exported_with_its_age(keys):
    private, public = keys
    clock = Clock(1000.0)
    feed = Feed()
    follower = PolicyFollower(feed, public, clock=clock)  # type: ignore[arg-type]
    registry = CollectorRegistry()
    export_metrics(follower, registry)
    assert math.isnan(registry.get_sample_value("ordermesh_edge_policy_age_seconds"))
    assert registry.get_sample_value("ordermesh_edge_policy_held") == 0.0

    sent = policy(7, 940.0)
    feed.put(sent, seal(sent, private))
    await follower.check()
    assert registry.get_sample_value("ordermesh_edge_policy_age_seconds") == 60.0
    assert registry.get_sample_value("ordermesh_edge_policy_version") == 7.0
