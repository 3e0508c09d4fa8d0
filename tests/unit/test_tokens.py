"""Access tokens are accepted only when signed by a published key, with the pinned algorithm."""

from __future__ import annotations

import base64
import hashlib
import hmac
import inspect
import json
import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jwt.algorithms import OKPAlgorithm
from ordermesh.errors import Unauthenticated, Unavailable
from ordermesh.tokens import CLOCK_SKEW_S, InvalidToken, KeySet, TokenVerifier, bearer_token

from gateway import DESCRIPTOR_SET
from services.catalogue import CATALOGUE
from tests.clock import Clock

ISSUER, AUDIENCE = "ordermesh", "ordermesh"


class Keys:
    """A JWKS source over keys this test holds, counting how often it is fetched."""

    def __init__(self) -> None:
        self.private: dict[str, Ed25519PrivateKey] = {}
        self.fetches = 0
        self.down = False

    def add(self, kid: str) -> Ed25519PrivateKey:
        self.private[kid] = Ed25519PrivateKey.generate()
        return self.private[kid]

    async def __call__(self) -> dict:
        if self.down:
            raise ConnectionError("user service unreachable")
        self.fetches += 1
        keys = []
        for kid, key in self.private.items():
            jwk = json.loads(OKPAlgorithm.to_jwk(key.public_key()))
            keys.append({**jwk, "kid": kid, "alg": "EdDSA", "use": "sig"})
        return {"keys": keys}


def claims(**overrides) -> dict:
    now = int(time.time())
    return {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "u-1",
        "iat": now,
        "exp": now + 300,
        "sid": "s-1",
        "roles": ["customer"],
        **overrides,
    }


def signed(key: Ed25519PrivateKey, kid: str, **overrides) -> str:
    return jwt.encode(claims(**overrides), key, algorithm="EdDSA", headers={"kid": kid})


@pytest.fixture
def keys() -> Keys:
    source = Keys()
    source.add("k1")
    return source


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def verifier(keys: Keys, clock: Clock) -> TokenVerifier:
    key_set = KeySet(keys, refresh_interval_s=1.0, clock=clock)
    return TokenVerifier(key_set, issuer=ISSUER, audience=AUDIENCE)


async def test_a_token_signed_by_a_published_key_is_accepted(keys, verifier):
    verified = await verifier.verify(signed(keys.private["k1"], "k1", roles=["admin"]))

    assert verified.user_id == "u-1"
    assert verified.session_id == "s-1"
    assert verified.is_admin


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"exp": int(time.time()) - 60}, "expired"),
        ({"aud": "another-system"}, "audience"),
        ({"iss": "someone-else"}, "issuer"),
    ],
)
async def test_a_token_that_is_expired_or_meant_for_another_is_rejected(
    keys, verifier, overrides, reason
):
    with pytest.raises(InvalidToken, match=f"(?i){reason}"):
        await verifier.verify(signed(keys.private["k1"], "k1", **overrides))


@pytest.mark.parametrize("missing", ["exp", "iat", "iss", "aud", "sub"])
async def test_a_token_without_a_required_claim_is_rejected(keys, verifier, missing):
    payload = claims()
    del payload[missing]
    token = jwt.encode(payload, keys.private["k1"], algorithm="EdDSA", headers={"kid": "k1"})
    with pytest.raises(InvalidToken):
        await verifier.verify(token)


async def test_a_tampered_token_is_rejected(keys, verifier):
    header, payload, signature = signed(keys.private["k1"], "k1").split(".")
    forged = json.loads(base64.urlsafe_b64decode(payload + "=="))
    forged["roles"] = ["admin"]
    forged_payload = base64.urlsafe_b64encode(json.dumps(forged).encode()).rstrip(b"=").decode()

    with pytest.raises(InvalidToken, match="Signature"):
        await verifier.verify(f"{header}.{forged_payload}.{signature}")


async def test_a_token_signed_by_an_unknown_key_is_rejected(keys, verifier):
    stranger = Ed25519PrivateKey.generate()
    with pytest.raises(InvalidToken, match="unknown key"):
        await verifier.verify(signed(stranger, "k-stranger"))
    with pytest.raises(InvalidToken, match="Signature"):
        await verifier.verify(signed(stranger, "k1"))  # a known kid, the wrong key


async def test_alg_none_is_rejected(keys, verifier):
    token = jwt.encode(claims(), None, algorithm="none", headers={"kid": "k1"})
    with pytest.raises(InvalidToken, match="algorithm 'none'"):
        await verifier.verify(token)


async def test_a_token_hmac_signed_with_the_public_key_is_rejected(keys, verifier):
    """Key confusion: HS256 with the published public key as the shared secret."""
    public = (
        keys.private["k1"]
        .public_key()
        .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    )
    header = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT","kid":"k1"}').rstrip(b"=")
    body = base64.urlsafe_b64encode(json.dumps(claims()).encode()).rstrip(b"=")
    mac = hmac.new(public, header + b"." + body, hashlib.sha256).digest()
    token = b".".join([header, body, base64.urlsafe_b64encode(mac).rstrip(b"=")]).decode()

    with pytest.raises(InvalidToken, match="algorithm 'HS256'"):
        await verifier.verify(token)


async def test_an_rs256_token_is_rejected_even_with_a_valid_signature(keys, verifier):
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": "k1"})
    with pytest.raises(InvalidToken, match="algorithm 'RS256'"):
        await verifier.verify(token)


async def test_a_rotated_key_is_fetched_when_a_token_names_it(keys, verifier, clock):
    await verifier.verify(signed(keys.private["k1"], "k1"))
    new_key = keys.add("k2")
    clock.now += 1.0

    verified = await verifier.verify(signed(new_key, "k2"))

    assert verified.user_id == "u-1"
    assert keys.fetches == 2
    # The old key still verifies: a token of other claims, so not the string verified (and
    # cached) above.
    assert (await verifier.verify(signed(keys.private["k1"], "k1", sub="u-2"))).user_id == "u-2"


async def test_made_up_key_ids_do_not_make_the_key_set_refetch_each_time(keys, verifier):
    stranger = Ed25519PrivateKey.generate()
    for n in range(20):
        with pytest.raises(InvalidToken):
            await verifier.verify(signed(stranger, f"made-up-{n}"))
    assert keys.fetches == 1


async def test_garbage_is_rejected_with_a_reason(verifier):
    with pytest.raises(InvalidToken, match="malformed"):
        await verifier.verify("not-a-jwt")


async def test_a_key_the_issuer_stopped_publishing_is_forgotten(keys, clock):
    verifier = TokenVerifier(
        KeySet(keys, max_age_s=60, clock=clock), issuer=ISSUER, audience=AUDIENCE, cache_size=0
    )
    old = keys.private["k1"]
    await verifier.verify(signed(old, "k1"))
    del keys.private["k1"]

    clock.now += 61

    with pytest.raises(InvalidToken, match="unknown key"):
        await verifier.verify(signed(old, "k1"))


async def test_the_last_key_set_serves_while_its_source_is_down(keys, clock):
    verifier = TokenVerifier(
        KeySet(keys, max_age_s=60, clock=clock), issuer=ISSUER, audience=AUDIENCE, cache_size=0
    )
    await verifier.verify(signed(keys.private["k1"], "k1"))

    keys.down = True  # the source fails from now on
    clock.now += 61

    assert (await verifier.verify(signed(keys.private["k1"], "k1"))).user_id == "u-1"


async def test_without_any_key_set_verification_is_unavailable(clock):
    async def down() -> dict:
        raise ConnectionError("user service unreachable")

    verifier = TokenVerifier(KeySet(down, clock=clock), issuer=ISSUER, audience=AUDIENCE)
    with pytest.raises(Unavailable):
        await verifier.verify(signed(Ed25519PrivateKey.generate(), "k1"))


async def test_a_revoked_sessions_token_is_refused_even_once_verified_and_cached(keys, clock):
    revoked: set[str] = set()
    key_set = KeySet(keys, clock=clock)
    verifier = TokenVerifier(
        key_set, issuer=ISSUER, audience=AUDIENCE, revoked=lambda session: session in revoked
    )
    token = signed(keys.private["k1"], "k1", sid="s-ended")
    assert (await verifier.verify(token)).session_id == "s-ended"  # verified, and cached

    revoked.add("s-ended")
    with pytest.raises(InvalidToken, match="this session was ended"):
        await verifier.verify(token)
    # Another session of the same user is not affected.
    assert await verifier.verify(signed(keys.private["k1"], "k1", sid="s-other"))


@pytest.mark.parametrize(
    "value",
    [
        "",  # none
        "bearer {token}",  # the scheme as jwt_authn does not read it: never "no token"
        "BEARER {token}",
        "Bearer  {token}",
        "Basic dXNlcjpwYXNz",
        "Bearer {token},Bearer {token}",  # two values, as HTTP joins a repeated header
        "Bearer {token} extra",
        "Bearer",
    ],
)
def test_the_credential_rule_takes_one_bearer_token_as_written_and_refuses_the_rest(value):
    token = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ1In0.c2ln"
    assert bearer_token(f"Bearer {token}") == token
    with pytest.raises(Unauthenticated):
        bearer_token(value.format(token=token))


@pytest.mark.parametrize(
    ("issuer_ahead_s", "accepted"),
    [(CLOCK_SKEW_S - 5, True), (-(CLOCK_SKEW_S - 5), True), (CLOCK_SKEW_S + 5, False)],
)
async def test_a_token_from_a_host_whose_clock_is_shifted_within_the_skew_is_accepted(
    keys, clock, issuer_ahead_s, accepted
):
    """The issuer's clock runs `issuer_ahead_s` ahead of this service's (behind if negative):
    a token it just issued is accepted within the one skew every verifier tolerates
    (CLOCK_SKEW_S, jwt_authn's clock_skew_seconds too), refused beyond it."""
    issued = time.time() + issuer_ahead_s
    token = signed(keys.private["k1"], "k1", iat=int(issued), exp=int(issued) + 60)
    verifier = TokenVerifier(KeySet(keys, clock=clock), issuer=ISSUER, audience=AUDIENCE)
    if accepted:
        assert (await verifier.verify(token)).user_id == "u-1"
    else:
        with pytest.raises(InvalidToken):
            await verifier.verify(token)


def test_every_verifier_tolerates_the_same_clock_skew():
    from ordermesh.gateway.envoy import GatewayConfig, jwt_authn_config

    config = jwt_authn_config(
        GatewayConfig(port=0, eds_dir=Path(), catalogue=CATALOGUE, descriptor_set=DESCRIPTOR_SET),
        {"keys": []},
    )
    (provider,) = config.providers.values()
    assert provider.clock_skew_seconds == CLOCK_SKEW_S
    assert inspect.signature(TokenVerifier).parameters["leeway_s"].default == CLOCK_SKEW_S
