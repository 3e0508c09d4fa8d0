"""The edge policy the auth service decides: which keys verify tokens, which sessions are ended.

The policy's durable home is this service's store (every instance shares it): the revoked
sessions, one document each, and the current version with the key set. Every change bumps
the version in the transaction that makes it. From there it is signed with the policy key
(EDGE_POLICY_SIGNING_KEY) and published to every gateway and service through
`ordermesh.policy.PolicyFeed` (Redis), where each follower verifies it before using it; the auth
service is then on no request's path, except the RPCs whose contract asks for its check
(`api.py`).

- `revoke()`: a session ended before its access tokens expire, refused until the last of them
  does (the issuer's `revocations`, `consumers.py`), written in the consumer's transaction (applied
  once);
- `publish_keys()`: the token issuer's key set (its EdDSA keys that name a `kid`), fetched from
  the issuer every `keys_refresh_s`, a new version when it changed. The issuer publishes a new
  key before it signs with it (the example's services.user.keys), longer ahead than this interval,
  so a gateway knows every key before the first token it signs arrives;
- `keep_publishing()`: publishes the store's policy when Redis holds an older one or none (a
  change, or Redis restarted or flushed: within `check_s` of its return), and issues it again
  every `ordermesh.policy.REISSUE_S` (its age tells followers it is current); forgets
  revocations whose tokens have all expired.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ordermesh.errors import Unavailable
from ordermesh.gateway.auth.store import CURRENT, POLICY, REVOKED
from ordermesh.logging import get_logger
from ordermesh.policy import REISSUE_S, EdgePolicy, PolicyFeed, seal
from ordermesh.store import Store, Transaction, run_transaction
from ordermesh.tokens import ALGORITHMS, CLOCK_SKEW_S, JwksSource
from ordermesh.watch import follow

__all__ = ["EdgePolicyKeeper", "record_revocations"]

log = get_logger(__name__)

# How often Redis is checked for the current policy (a store read and a GET): a Redis restarted
# or flushed holds it again within this. Every 0.25 s, it was four wake-ups a second of every
# idle instance.
CHECK_S = 1.0
# Revocations kept this long after their tokens expired (a follower with a slow clock).
EXPIRED_KEPT_S = 300.0


class EdgePolicyKeeper:
    def __init__(
        self,
        store: Store,
        feed: PolicyFeed,
        keys: JwksSource,
        signing_key: Ed25519PrivateKey,
        *,
        keys_refresh_s: float,
        check_s: float = CHECK_S,
        reissue_s: float = REISSUE_S,
        clock: Callable[[], float] = time.time,
    ):
        self._store = store
        self._feed = feed
        self._keys = keys
        self._signing_key = signing_key
        self._keys_refresh_s = keys_refresh_s
        self._check_s = check_s
        self._reissue_s = reissue_s
        self._clock = clock
        self._changed = asyncio.Event()

    async def revoke(self, tx: Transaction, session_id: str, until: float) -> None:
        """Refuses `session_id` until `until` (a later expiry already recorded is kept)."""
        if await record_revocations(tx, {session_id: until}):
            self._changed.set()  # published once committed: the next check reads the version

    async def publish_keys(self) -> None:
        jwks = await self._keys()
        keys = [k for k in jwks.get("keys", ()) if k.get("alg") in ALGORITHMS and k.get("kid")]
        if not keys:
            raise Unavailable("the token issuer publishes no key this system accepts")
        accepted = {"keys": _sorted(keys)}

        async def change(tx: Transaction) -> bool:
            current = await tx.get(POLICY.name, CURRENT)
            if current is not None and current["jwks"] == accepted:
                return False
            await _next_version(tx, jwks=accepted)
            return True

        if await run_transaction(self._store, change):
            log.info("key set changed", kids=[k["kid"] for k in keys])
            self._changed.set()

    async def publish(self, *, force: bool = False) -> EdgePolicy | None:
        """Publishes the store's policy if Redis holds an older one, none, or one due to be
        issued again (or with `force`); the policy published, if one was."""
        current = await run_transaction(self._store, lambda tx: tx.get(POLICY.name, CURRENT))
        if current is None or current["jwks"] is None:
            return None  # nothing a gateway could verify a token with yet
        now = self._clock()
        stamp = await self._feed.stamp()
        if not force and stamp is not None:
            version, issued_at = stamp
            if version >= current["version"] and now - issued_at < self._reissue_s:
                return None

        async def read(tx: Transaction) -> EdgePolicy:
            current = await tx.get(POLICY.name, CURRENT)
            assert current is not None
            return EdgePolicy(
                version=current["version"],
                issued_at=now,
                jwks=current["jwks"],
                revoked={
                    r["_id"]: r["until"]
                    for r in await tx.find(REVOKED.name)
                    if r["until"] + CLOCK_SKEW_S > now
                },
            )

        policy = await run_transaction(self._store, read)
        await self._feed.publish(policy, seal(policy, self._signing_key))
        log.info("edge policy published", version=policy.version, revoked=len(policy.revoked))
        return policy

    async def forget_expired(self) -> int:
        """Deletes the revocations whose tokens all expired a while ago; how many."""
        before = self._clock() - EXPIRED_KEPT_S

        async def forget(tx: Transaction) -> int:
            expired = [r["_id"] for r in await tx.find(REVOKED.name) if r["until"] < before]
            for session in expired:
                await tx.delete(REVOKED.name, session)
            return len(expired)

        return await run_transaction(self._store, forget)

    async def keep_publishing(self) -> None:
        """Fetches the issuer's keys every `keys_refresh_s` and forgets expired revocations;
        checks every `check_s` (at once after a change) that Redis holds the current policy."""
        refreshed_at = float("-inf")

        async def one_round() -> None:
            nonlocal refreshed_at
            if time.monotonic() - refreshed_at >= self._keys_refresh_s:
                refreshed_at = time.monotonic()
                await self._attempt("keys not refreshed", self.publish_keys)
                await self._attempt("expired revocations not forgotten", self.forget_expired)
            await self._attempt("edge policy not published", self.publish)

        await follow(
            one_round,
            notices=self._changed,
            refresh_s=self._check_s,
            name="edge-policy-publisher",
            failed="edge policy round failed; trying again",
        )

    @staticmethod
    async def _attempt(what: str, work: Callable[[], Any]) -> None:
        try:
            await work()
        except Exception as exc:  # noqa: BLE001 - Redis, the store or the issuer: next round
            log.warning(what, error=f"{type(exc).__name__}: {exc}")


async def record_revocations(tx: Transaction, revoked: Mapping[str, float]) -> bool:
    """Records each session of `revoked` as refused until its time (a later expiry already
    recorded is kept), in a new version of the policy if any changed; whether one did."""
    changed = False
    for session_id, until in revoked.items():
        known = await tx.get(REVOKED.name, session_id)
        if known is None:
            await tx.insert(REVOKED.name, session_id, {"until": until})
        elif until > known["until"]:
            await tx.update(REVOKED.name, {**known, "until": until})
        else:
            continue
        changed = True
    if changed:
        await _next_version(tx)
    return changed


async def _next_version(tx: Transaction, **changed: Any) -> None:
    current = await tx.get(POLICY.name, CURRENT)
    if current is None:
        await tx.insert(POLICY.name, CURRENT, {"version": 1, "jwks": None, **changed})
    else:
        await tx.update(POLICY.name, {**current, "version": current["version"] + 1, **changed})


def _sorted(keys: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """In a stable order, so an unchanged set is recognised as unchanged."""
    return sorted((dict(k) for k in keys), key=lambda k: str(k["kid"]))
