"""A site's sign-in sessions (the operator console's, the storefront's), kept server-side in
Redis; the browser holds only their id.

Guarantees:
- a session id is 256 random bits (`secrets`), given to the browser once, in its cookie; Redis
  keeps the session under the id's SHA-256, sealed (AES-GCM) with a key derived from the id
  (HKDF): whoever reads Redis (every service shares it) learns neither the id nor the user's
  tokens, so what Redis holds signs nobody in;
- a session ends after `ttl_s` without use (each use extends it, but not a page's own
  refreshes: `get(..., extend=False)`, so an open tab left alone is signed out), when its
  refresh token expires, or at sign-out; whichever comes first;
- its tokens (access and refresh) never leave the server: they go to the gateway only, in the
  calls made for its user (`using`), the access token renewed before it expires (`fresh`);
- each session has its own CSRF token (random, 256 bits), checked on every POST
  (ordermesh.web.security);
- one refresh at a time per session (`fresh`, under a Redis lock shared by every instance of
  the site): a rotated refresh token is never spent twice by two requests of one page.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass, replace
from typing import TypeVar

import redis.asyncio as aioredis
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ordermesh.errors import Unauthenticated

__all__ = ["REFRESH_MARGIN_S", "Session", "Sessions", "SignedOut", "Tokens", "new_token"]

T = TypeVar("T")
# An access token this close to its expiry is refreshed before it is used.
REFRESH_MARGIN_S = 30.0

# What a session id looks like (token_urlsafe(32)): anything else is not looked up.
SESSION_ID = re.compile(r"[A-Za-z0-9_-]{43}")


def new_token() -> str:
    return secrets.token_urlsafe(32)


def _key_of(session_id: str) -> bytes:
    """The key that seals a session: derived from its id, which only the browser keeps."""
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"ordermesh web session")
    return derived.derive(session_id.encode())


class SignedOut(Unauthenticated):
    """The session is gone, or the gateway no longer takes its token: sign in again."""


@dataclass(frozen=True)
class Tokens:
    """What a sign-in or a refresh gives: the access token and the refresh token, with the
    times (Unix seconds) they expire."""

    access_token: str
    access_expires_at: float
    refresh_token: str
    refresh_expires_at: float


@dataclass(frozen=True)
class Session:
    id: str
    user_id: str
    email: str
    name: str
    roles: tuple[str, ...]
    access_token: str
    access_expires_at: float
    refresh_token: str
    refresh_expires_at: float
    csrf_token: str
    created_at: float

    def sealed(self) -> str:
        """The session as Redis keeps it: its fields, sealed with its id's key."""
        fields = asdict(self)
        del fields["id"]
        nonce = secrets.token_bytes(12)
        sealed = AESGCM(_key_of(self.id)).encrypt(nonce, json.dumps(fields).encode(), None)
        return base64.b64encode(nonce + sealed).decode()

    @classmethod
    def unsealed(cls, session_id: str, raw: str) -> Session:
        """The session Redis kept; ValueError if it was not sealed with this id's key."""
        data = base64.b64decode(raw)
        try:
            opened = AESGCM(_key_of(session_id)).decrypt(data[:12], data[12:], None)
        except InvalidTag as exc:
            raise ValueError("a session not sealed with this id's key") from exc
        fields = json.loads(opened)
        fields["roles"] = tuple(fields.get("roles", ()))
        return cls(id=session_id, **fields)

    def with_tokens(self, tokens: Tokens) -> Session:
        return replace(self, **asdict(tokens))


class Sessions:
    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        ttl_s: float,
        namespace: str,
        clock: Callable[[], float] = time.time,
    ):
        """`redis` must decode responses (strings); `namespace`: the site's keys' prefix."""
        self._redis = redis
        self._ttl_s = ttl_s
        self._ns = namespace
        self._clock = clock

    def _key(self, session_id: str, kind: str = "session") -> str:
        digest = hashlib.sha256(session_id.encode()).hexdigest()
        return f"{self._ns}:{kind}:{digest}"

    def _expiry_ms(self, session: Session) -> int:
        left_s = min(self._ttl_s, session.refresh_expires_at - self._clock())
        return max(1, int(left_s * 1000))

    async def create(
        self, *, user_id: str, email: str, name: str, roles: tuple[str, ...], tokens: Tokens
    ) -> Session:
        session = Session(
            id=new_token(),
            user_id=user_id,
            email=email,
            name=name,
            roles=roles,
            **asdict(tokens),
            csrf_token=new_token(),
            created_at=self._clock(),
        )
        await self.save(session)
        return session

    async def get(self, session_id: str | None, *, extend: bool = True) -> Session | None:
        """The live session with this id, its life extended if `extend` (a person's request,
        not a page refreshing itself); None if there is none."""
        if not session_id or not SESSION_ID.fullmatch(session_id):
            return None
        key = self._key(session_id)
        raw = await self._redis.get(key)
        if raw is None:
            return None
        try:
            session = Session.unsealed(session_id, str(raw))
        except (ValueError, TypeError, KeyError):
            await self._redis.delete(key)
            return None
        if extend:
            await self._redis.pexpire(key, self._expiry_ms(session))
        return session

    async def save(self, session: Session) -> None:
        await self._redis.set(self._key(session.id), session.sealed(), px=self._expiry_ms(session))

    async def delete(self, session_id: str) -> None:
        await self._redis.delete(self._key(session_id), self._key(session_id, "flash"))

    async def flash(self, session_id: str, message: str) -> None:
        """A message for the next page this session shows (an action's outcome)."""
        await self._redis.set(self._key(session_id, "flash"), message, ex=60)

    async def take_flash(self, session_id: str) -> str:
        """The message left for this page, once."""
        message = await self._redis.getdel(self._key(session_id, "flash"))
        return str(message or "")

    @contextlib.asynccontextmanager
    async def _refreshing(self, session_id: str) -> AsyncIterator[None]:
        """Holds this session's refresh lock (every instance's), for up to 10 s."""
        lock = self._redis.lock(self._key(session_id, "refresh"), timeout=10, blocking_timeout=10)
        async with lock:
            yield

    async def fresh(self, session: Session, renew: Callable[[str], Awaitable[Tokens]]) -> Session:
        """The session with an access token that is not about to expire: renewed by
        `renew(refresh_token)` (once for every request of the session that needs it), which
        raises Unauthenticated for a refresh token no longer taken, or SignedOut for an account
        that may no longer use the site. Either ends the session (SignedOut)."""
        if session.access_expires_at - self._clock() > REFRESH_MARGIN_S:
            return session
        async with self._refreshing(session.id):
            current = await self.get(session.id)
            if current is None:
                raise SignedOut("the session ended: sign in again")
            if current.access_expires_at - self._clock() > REFRESH_MARGIN_S:
                return current
            try:
                tokens = await renew(current.refresh_token)
            except Unauthenticated as exc:
                await self.delete(session.id)
                if isinstance(exc, SignedOut):
                    raise
                raise SignedOut("the session expired: sign in again") from None
            refreshed = current.with_tokens(tokens)
            await self.save(refreshed)
            return refreshed

    async def using(
        self,
        session: Session,
        renew: Callable[[str], Awaitable[Tokens]],
        call: Callable[[str], Awaitable[T]],
    ) -> T:
        """`call(access_token)` with the session's fresh access token; a token the gateway
        refuses (Unauthenticated) ends the session (SignedOut)."""
        token = (await self.fresh(session, renew)).access_token
        try:
            return await call(token)
        except Unauthenticated:
            await self.delete(session.id)
            raise SignedOut("the gateway refused the session's token: sign in again") from None
