"""The keys that sign access tokens: Ed25519, rotated, published as a JWKS while they matter.

A key signs for `lifetime_s`; after that a new key takes over, and the old one stays published
until the last token it signed has expired, so tokens verify across a rotation (old and new
keys overlap in the JWKS). Keys live in the service's store, shared by its instances; a key is
created by whichever instance first finds none current. Private keys are kept as PEM in the
store: whoever can read the store can mint tokens (docs/decisions.md).
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

from chassis.store import Collection, Store, Transaction, run_transaction

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
        clock: Callable[[], float] = time.time,
    ):
        self._store = store
        self._lifetime_s = lifetime_s
        self._token_ttl_s = token_ttl_s
        self._clock = clock
        self._current: SigningKey | None = None

    async def current(self) -> SigningKey:
        """The key to sign with now; creates one if none is current."""
        now = self._clock()
        if self._current is None or self._current.sign_until <= now:
            self._current = await run_transaction(self._store, self._current_or_new)
        return self._current

    async def rotate(self) -> SigningKey:
        """Starts a new key now; the previous one stays published until its tokens expire."""

        async def rotate(tx: Transaction) -> SigningKey:
            now = self._clock()
            for document in await self._published(tx):
                if document["sign_until"] > now:
                    await tx.update(SIGNING_KEYS.name, {**document, "sign_until": now})
            return await self._create(tx)

        self._current = await run_transaction(self._store, rotate)
        return self._current

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
        return [d for d in documents if d["sign_until"] + self._token_ttl_s > now]

    async def _current_or_new(self, tx: Transaction) -> SigningKey:
        now = self._clock()
        for document in await self._published(tx):
            if document["sign_from"] <= now < document["sign_until"]:
                return _loaded(document)
        return await self._create(tx)

    async def _create(self, tx: Transaction) -> SigningKey:
        now = self._clock()
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
            "sign_from": now,
            "sign_until": now + self._lifetime_s,
        }
        await tx.insert(SIGNING_KEYS.name, kid, document)
        return _loaded({**document, "_id": kid})


def _loaded(document: Mapping[str, Any]) -> SigningKey:
    private_key = serialization.load_pem_private_key(document["private_pem"].encode(), None)
    assert isinstance(private_key, Ed25519PrivateKey)
    return SigningKey(
        kid=document["_id"], private_key=private_key, sign_until=document["sign_until"]
    )
