"""The caller the gateway forwards: believed only when signed with the shared key, and fresh."""

import base64
import json

import pytest

from chassis.errors import Unauthenticated
from chassis.identity import SignedIdentity
from chassis.tokens import Claims

KEY = "k" * 32
ADA = Claims(
    user_id="ada", roles=("customer",), session_id="s-1", token_id="t-1", expires_at=2000.0
)


def _as_bob(value: str) -> str:
    payload, mac = value.split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    data["sub"] = "bob"
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode() + "." + mac


def test_a_signed_identity_reads_back_as_the_same_caller():
    identity = SignedIdentity(KEY, clock=lambda: 1000.0)
    assert identity.verify(identity.sign(ADA)) == ADA


@pytest.mark.parametrize(
    "forge",
    [
        lambda value: _as_bob(value),  # claims changed, signature kept
        lambda value: value.split(".")[0] + ".",  # no signature
        lambda value: value.split(".")[0],  # no separator
        lambda value: SignedIdentity("x" * 32).sign(ADA),  # another key
        lambda value: value[:-2] + ("AA" if not value.endswith("AA") else "BB"),  # bad MAC
    ],
)
def test_an_identity_not_signed_with_the_key_is_refused(forge):
    identity = SignedIdentity(KEY, clock=lambda: 1000.0)
    with pytest.raises(Unauthenticated):
        identity.verify(forge(identity.sign(ADA)))


def test_an_identity_whose_token_expired_is_refused():
    signer = SignedIdentity(KEY, clock=lambda: 1000.0)
    later = SignedIdentity(KEY, clock=lambda: 2001.0)
    with pytest.raises(Unauthenticated, match="expired"):
        later.verify(signer.sign(ADA))


def test_a_short_key_is_refused():
    with pytest.raises(ValueError, match="32 bytes"):
        SignedIdentity("short")
