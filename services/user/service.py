"""The user service's use cases: accounts, sessions, preferences, the credit the saga reserves."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import argon2
from common.v1 import money_pb2
from ordermesh.errors import InvalidArgument, NotFound
from ordermesh.events import outgoing
from ordermesh.store import DuplicateKey, Store, Transaction, run_transaction
from user.v1 import events_pb2, user_service_pb2

from services import vocabulary
from services.user import domain
from services.user.keys import SigningKeys
from services.user.store import CREDIT, REFRESH_TOKENS, SESSIONS, USERS

PRODUCER = "user"


@dataclass(frozen=True)
class TokenPolicy:
    issuer: str
    audience: str
    access_ttl_s: float
    refresh_ttl_s: float


@dataclass(frozen=True)
class CreditPolicy:
    limit_minor: int
    currency: str


@dataclass(frozen=True)
class Tokens:
    access_token: str
    access_expires_at: float
    refresh_token: str
    refresh_expires_at: float


def preferences_proto(preferences: Mapping[str, Any]) -> user_service_pb2.Preferences:
    return user_service_pb2.Preferences(
        subscriptions=[
            user_service_pb2.ChannelSubscription(
                kind=vocabulary.kind(kind),
                channels=[vocabulary.channel(c) for c in chosen],
            )
            for kind, chosen in preferences["channels"].items()
        ],
        phone_number=preferences["phone_number"],
        push_token=preferences["push_token"],
    )


def _hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Users:
    def __init__(
        self,
        store: Store,
        *,
        keys: SigningKeys,
        tokens: TokenPolicy,
        credit: CreditPolicy,
        hasher: argon2.PasswordHasher | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self._store = store
        self._keys = keys
        self._tokens = tokens
        self._credit = credit
        # OWASP's minimum for argon2id: 19 MiB, 2 iterations, 1 lane (about 36 ms here).
        self._hasher = hasher or argon2.PasswordHasher(
            time_cost=2, memory_cost=19 * 1024, parallelism=1
        )
        self._clock = clock
        # Verified against when the email is unknown, so both cases take as long.
        self._decoy_hash = self._hasher.hash(secrets.token_hex(16))

    # -- accounts --------------------------------------------------------------------------

    async def register(self, *, email: str, password: str, display_name: str) -> dict[str, Any]:
        """A customer's account; whatever its email, registering never makes an admin."""
        return await self._create(
            email=email, password=password, display_name=display_name, admin=False
        )

    async def create_admin(self, *, email: str, password: str) -> dict[str, Any]:
        """An admin's account: only by an operator's command (`python -m services.user
        create-admin`), never through the API; EmailTaken if the email has an account."""
        return await self._create(email=email, password=password, display_name="Admin", admin=True)

    async def _create(
        self, *, email: str, password: str, display_name: str, admin: bool
    ) -> dict[str, Any]:
        email = domain.normalise_email(email)
        domain.check_password(password, email=email)
        name = domain.check_display_name(display_name) or email.partition("@")[0]
        password_hash = await asyncio.to_thread(self._hasher.hash, password)
        user_id = str(uuid.uuid4())
        roles = [domain.ROLE_CUSTOMER, *([domain.ROLE_ADMIN] if admin else [])]
        now = self._clock()
        user: dict[str, Any] = {
            "email": email,
            "password_hash": password_hash,
            "display_name": name,
            "roles": roles,
            "create_time": now,
            "credit_limit_minor": self._credit.limit_minor,
            "credit_reserved_minor": 0,
            "currency": self._credit.currency,
            "preferences": domain.default_preferences(),
        }

        async def register(tx: Transaction) -> dict[str, Any]:
            stored = await tx.insert(USERS.name, user_id, user)
            event = events_pb2.UserRegistered(
                user_id=user_id,
                email=email,
                display_name=name,
                preferences=preferences_proto(user["preferences"]),
            )
            event.register_time.FromNanoseconds(int(now * 1e9))
            tx.publish(outgoing(event, producer=PRODUCER), key=user_id)
            return stored

        try:
            # Run again if it met another transaction (PostgreSQL's outbox lock, under load).
            stored = await run_transaction(self._store, register)
        except DuplicateKey:
            raise domain.EmailTaken(f"an account with email {email!r} exists already") from None
        return stored

    async def profile(self, user_id: str) -> dict[str, Any]:
        async with self._store.transaction() as tx:
            user = await tx.get(USERS.name, user_id)
        if user is None:
            raise NotFound(f"user {user_id} does not exist")
        return user

    async def update_profile(self, user_id: str, *, display_name: str | None) -> dict[str, Any]:
        async def update(tx: Transaction) -> dict[str, Any]:
            user = await tx.get(USERS.name, user_id)
            if user is None:
                raise NotFound(f"user {user_id} does not exist")
            if display_name is None:
                return user
            name = domain.check_display_name(display_name) or user["display_name"]
            return await tx.update(USERS.name, {**user, "display_name": name})

        return await run_transaction(self._store, update)

    async def update_preferences(
        self,
        user_id: str,
        *,
        channels: Mapping[str, Iterable[str]],
        phone_number: str | None,
        push_token: str | None,
    ) -> dict[str, Any]:
        async def update(tx: Transaction) -> dict[str, Any]:
            user = await tx.get(USERS.name, user_id)
            if user is None:
                raise NotFound(f"user {user_id} does not exist")
            preferences = domain.update_preferences(
                user["preferences"],
                channels=channels,
                phone_number=phone_number,
                push_token=push_token,
            )
            await tx.update(USERS.name, {**user, "preferences": preferences})
            event = events_pb2.PreferencesUpdated(
                user_id=user_id, preferences=preferences_proto(preferences)
            )
            tx.publish(outgoing(event, producer=PRODUCER), key=user_id)
            return preferences

        return await run_transaction(self._store, update)

    # -- sessions --------------------------------------------------------------------------

    async def login(self, *, email: str, password: str) -> Tokens:
        try:
            email = domain.normalise_email(email)
        except InvalidArgument:
            raise domain.InvalidCredentials("email or password is wrong") from None
        async with self._store.transaction() as tx:
            found = await tx.find(USERS.name, where={"email": email}, limit=1)
        user = found[0] if found else None
        if not await self._password_matches(user, password):
            raise domain.InvalidCredentials("email or password is wrong")
        assert user is not None
        session_id = str(uuid.uuid4())
        now = self._clock()

        async def start(tx: Transaction) -> str:
            await tx.insert(
                SESSIONS.name,
                session_id,
                {"user_id": user["_id"], "revoked": False, "create_time": now},
            )
            return await self._new_refresh_token(tx, user_id=user["_id"], session_id=session_id)

        refresh_token = await run_transaction(self._store, start)
        return await self._tokens_for(user, session_id=session_id, refresh_token=refresh_token)

    async def refresh(self, refresh_token: str) -> Tokens:
        """Rotates a refresh token; a token presented twice revokes its whole session."""
        now = self._clock()

        async def rotate(
            tx: Transaction,
        ) -> tuple[dict[str, Any], str, str] | domain.SessionEnded | domain.RefreshTokenReused:
            """The rotation, or the refusal to raise once the transaction has committed (a
            reuse must commit the revocation it caused)."""
            record = await tx.get(REFRESH_TOKENS.name, _hash_token(refresh_token))
            if record is None:
                return domain.SessionEnded("refresh token is not recognised")
            session = await tx.get(SESSIONS.name, record["session_id"])
            if session is None or session["revoked"]:
                return domain.SessionEnded("the session of this refresh token has ended")
            if record["used"]:
                await self._revoke(tx, session)
                return domain.RefreshTokenReused(
                    "refresh token was used before: its session is revoked"
                )
            if record["expire_time"] <= now:
                return domain.SessionEnded("refresh token has expired")
            user = await tx.get(USERS.name, record["user_id"])
            if user is None:
                return domain.SessionEnded("the account of this refresh token no longer exists")
            await tx.update(REFRESH_TOKENS.name, {**record, "used": True})
            token = await self._new_refresh_token(
                tx, user_id=user["_id"], session_id=record["session_id"]
            )
            return user, record["session_id"], token

        outcome = await run_transaction(self._store, rotate)
        if isinstance(outcome, Exception):
            raise outcome
        user, session_id, token = outcome
        return await self._tokens_for(user, session_id=session_id, refresh_token=token)

    async def logout(self, refresh_token: str) -> None:
        """Revokes the session of a refresh token; logging out twice is not an error."""

        async def revoke(tx: Transaction) -> None:
            record = await tx.get(REFRESH_TOKENS.name, _hash_token(refresh_token))
            if record is None:
                raise domain.SessionEnded("refresh token is not recognised")
            session = await tx.get(SESSIONS.name, record["session_id"])
            if session is not None and not session["revoked"]:
                await self._revoke(tx, session)

        await run_transaction(self._store, revoke)

    async def _revoke(self, tx: Transaction, session: dict[str, Any]) -> None:
        await tx.update(SESSIONS.name, {**session, "revoked": True})
        event = events_pb2.SessionRevoked(user_id=session["user_id"], session_id=session["_id"])
        event.expire_time.FromNanoseconds(int((self._clock() + self._tokens.access_ttl_s) * 1e9))
        tx.publish(outgoing(event, producer=PRODUCER), key=session["user_id"])

    async def _password_matches(self, user: Mapping[str, Any] | None, password: str) -> bool:
        stored = user["password_hash"] if user else self._decoy_hash
        try:
            await asyncio.to_thread(self._hasher.verify, stored, password)
        except argon2.exceptions.VerificationError:
            return False
        except argon2.exceptions.InvalidHashError:
            return False
        return user is not None

    async def _new_refresh_token(self, tx: Transaction, *, user_id: str, session_id: str) -> str:
        token = secrets.token_urlsafe(32)
        await tx.insert(
            REFRESH_TOKENS.name,
            _hash_token(token),
            {
                "user_id": user_id,
                "session_id": session_id,
                "used": False,
                "expire_time": self._clock() + self._tokens.refresh_ttl_s,
            },
        )
        return token

    async def _tokens_for(
        self, user: Mapping[str, Any], *, session_id: str, refresh_token: str
    ) -> Tokens:
        key = await self._keys.current()
        now = self._clock()
        expires_at = now + self._tokens.access_ttl_s
        access_token = key.sign(
            {
                "iss": self._tokens.issuer,
                "aud": self._tokens.audience,
                "sub": user["_id"],
                "iat": int(now),
                "exp": int(expires_at),
                "jti": str(uuid.uuid4()),
                "sid": session_id,
                "roles": list(user["roles"]),
            }
        )
        return Tokens(
            access_token=access_token,
            access_expires_at=int(expires_at),
            refresh_token=refresh_token,
            refresh_expires_at=now + self._tokens.refresh_ttl_s,
        )

    # -- credit (saga participant) ---------------------------------------------------------

    async def reserve_credit(
        self, tx: Transaction, *, order_id: str, user_id: str, amount: money_pb2.Money
    ) -> None:
        """Holds an order's amount once; replies CreditReserved or CreditLimitExceeded."""
        reservation = await tx.get(CREDIT.name, order_id)
        user = await tx.get(USERS.name, user_id)
        if reservation is None:
            if user is None:
                decision = domain.CreditDecision(granted=False, available_minor=0)
            else:
                decision = domain.decide_credit(
                    limit_minor=user["credit_limit_minor"],
                    reserved_minor=user["credit_reserved_minor"],
                    amount_minor=amount.amount_minor,
                    currency=user["currency"],
                    requested=amount.currency_code,
                )
            status = "RESERVED" if decision.granted else "REFUSED"
            reservation = await tx.insert(
                CREDIT.name,
                order_id,
                {
                    "user_id": user_id,
                    "amount_minor": amount.amount_minor,
                    "currency": amount.currency_code,
                    "status": status,
                },
            )
            if decision.granted and user is not None:
                reserved = user["credit_reserved_minor"] + amount.amount_minor
                user = await tx.update(USERS.name, {**user, "credit_reserved_minor": reserved})
        # A repeated command gets the same answer; a reservation released before it arrived
        # (the saga gave up waiting) stays released.
        available = money_pb2.Money(
            amount_minor=_available(user), currency_code=self._credit.currency
        )
        reply: events_pb2.CreditReserved | events_pb2.CreditLimitExceeded
        if reservation["status"] == "RESERVED":
            reply = events_pb2.CreditReserved(
                order_id=order_id, user_id=user_id, amount=amount, credit_available=available
            )
        else:
            reply = events_pb2.CreditLimitExceeded(
                order_id=order_id, user_id=user_id, requested=amount, credit_available=available
            )
        tx.publish(outgoing(reply, producer=PRODUCER), key=order_id)

    async def release_credit(self, tx: Transaction, *, order_id: str, user_id: str) -> None:
        """Gives back what an order holds, once; replies CreditReleased even if it held nothing."""
        reservation = await tx.get(CREDIT.name, order_id)
        amount = 0
        if reservation is None:
            await tx.insert(
                CREDIT.name,
                order_id,
                {
                    "user_id": user_id,
                    "amount_minor": 0,
                    "currency": self._credit.currency,
                    "status": "RELEASED",
                },
            )
        elif reservation["status"] == "RESERVED":
            amount = reservation["amount_minor"]
            await tx.update(CREDIT.name, {**reservation, "status": "RELEASED"})
            user = await tx.get(USERS.name, reservation["user_id"])
            if user is not None:
                reserved = max(0, user["credit_reserved_minor"] - amount)
                await tx.update(USERS.name, {**user, "credit_reserved_minor": reserved})
        reply = events_pb2.CreditReleased(
            order_id=order_id,
            user_id=user_id,
            amount=money_pb2.Money(amount_minor=amount, currency_code=self._credit.currency),
        )
        tx.publish(outgoing(reply, producer=PRODUCER), key=order_id)


def _available(user: Mapping[str, Any] | None) -> int:
    if user is None:
        return 0
    return max(0, int(user["credit_limit_minor"]) - int(user["credit_reserved_minor"]))
