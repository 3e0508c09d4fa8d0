"""The keys that sign access tokens: Ed25519, rotated, published as a JWKS while they matter.

A key signs for `lifetime_s`; then its successor takes over, and it stays published until the
last token it signed has expired, so tokens verify across a rotation. The successor is
published `lead_s` before it signs anything: a verifier that refreshes the key set more often
than that (the gateways, through the auth service) knows every key before the first token it
signs, so no valid token is ever refused for an unknown key. A forced rotation (`rotate()`)
keeps that promise too: the new key is published at once and takes over after `lead_s`.

Keys live in the service's store, shared by its instances; a key (or a successor) is created
by whichever instance first finds it missing. Each instance re-reads which key signs at least
every `recheck_s`, so all follow a rotation another made; a key stays published `recheck_s`
longer than its tokens live, for the tokens an instance signed before it noticed. Private keys
are kept as PEM in the store: whoever can read the store can mint tokens (docs/decisions.md).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from jwt.algorithms import OKPAlgorithm
from ordermesh.store import Collection, Store, Transaction, run_transaction

SIGNING_KEYS = Collection("signing_keys", indexed=("sign_until",))
ALGORITHM = "EdDSA"


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private_key: Ed25519PrivateKey
    sign_until: float

    def sign(self, claims: Mapping[str, Any]) -> str:
        return jwt.encode(
            dict(claims), self.private_key, algorithm=ALGORITHM, headers={"kid": self.kid}
        )


class SigningKeys:
    def __init__(
        self,
        store: Store,
        *,
        lifetime_s: float,
        token_ttl_s: float,
        lead_s: float,
        recheck_s: float = 30.0,
        clock: Callable[[], float] = time.time,
    ):
        if not 0 < lead_s < lifetime_s:
            raise ValueError(f"lead_s={lead_s} must be above 0 and below lifetime_s={lifetime_s}")
        self._store = store
        self._lifetime_s = lifetime_s
        self._token_ttl_s = token_ttl_s
        self._lead_s = lead_s
        self._recheck_s = recheck_s
        self._clock = clock
        self._current: SigningKey | None = None
        self._checked_at = float("-inf")

    async def current(self) -> SigningKey:
        """The key to sign with now; creates one (and its successor, when due) if missing."""
        now = self._clock()
        if (
            self._current is None
            or self._current.sign_until <= now
            or now - self._checked_at >= self._recheck_s
        ):
            self._current = await run_transaction(self._store, self._current_or_new)
            self._checked_at = now
        return self._current

    async def rotate(self) -> SigningKey:
        """Publishes a new key now, which takes over signing after `lead_s`; the keys before
        it sign until then, and stay published until their tokens expire."""

        async def rotate(tx: Transaction) -> SigningKey:
            handover = self._clock() + self._lead_s
            for document in await self._published(tx):
                if document["sign_until"] > handover:  # cut short; a successor never signs
                    cut = max(document["sign_from"], handover)
                    await tx.update(SIGNING_KEYS.name, {**document, "sign_until": cut})
            return await self._create(tx, sign_from=handover)

        new = await run_transaction(self._store, rotate)
        self._current = None
        return new

    async def jwks(self) -> dict[str, Any]:
        """The public keys that verify tokens now: the current key and those still needed."""
        async with self._store.transaction() as tx:
            documents = await self._published(tx)
        return {"keys": [document["public_jwk"] for document in documents]}

    async def _published(self, tx: Transaction) -> list[dict[str, Any]]:
        now = self._clock()
        documents = await tx.find(
            SIGNING_KEYS.name, order_by="sign_until", descending=True, limit=20
        )
        kept_s = self._token_ttl_s + self._recheck_s
        return [d for d in documents if d["sign_until"] + kept_s > now]

    async def _current_or_new(self, tx: Transaction) -> SigningKey:
        now = self._clock()
        published = await self._published(tx)
        signing = [d for d in published if d["sign_from"] <= now < d["sign_until"]]
        if signing:
            current = _loaded(signing[0])
        else:  # the system's first key (or none signed for a whole lifetime): no lead to give
            current = await self._create(tx, sign_from=now)
        successor = any(d["sign_from"] >= current.sign_until for d in published)
        if current.sign_until - now <= self._lead_s and not successor:
            await self._create(tx, sign_from=current.sign_until)
        return current

    async def _create(self, tx: Transaction, *, sign_from: float) -> SigningKey:
        private_key = Ed25519PrivateKey.generate()
        kid = uuid.uuid4().hex
        public_jwk = json.loads(OKPAlgorithm.to_jwk(private_key.public_key()))
        public_jwk.update(kid=kid, use="sig", alg=ALGORITHM)
        pem = private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        document = {
            "private_pem": pem,
            "public_jwk": public_jwk,
            "sign_from": sign_from,
            "sign_until": sign_from + self._lifetime_s,
        }
        await tx.insert(SIGNING_KEYS.name, kid, document)
        return _loaded({**document, "_id": kid})


def _loaded(document: Mapping[str, Any]) -> SigningKey:
    private_key = serialization.load_pem_private_key(document["private_pem"].encode(), None)
    assert isinstance(private_key, Ed25519PrivateKey)
    return SigningKey(
        kid=document["_id"], private_key=private_key, sign_until=document["sign_until"]
    )
