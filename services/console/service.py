"""The console's use cases: signing admins in and out, and the data of each page, read from what
the system publishes (the registry, Prometheus, the operator API through the gateway, the log
files), with the signed-in admin's token on every call to the system's APIs.

    SignedOut (ordermesh.web)       the session is gone, or the gateway no longer takes its token:
                                  sign in again
    NotAnAdmin (PermissionDenied) the account is not an admin's

Other failures are ordermesh.errors domain errors, their message shown on the page.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from ordermesh.errors import (
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from ordermesh.flag_file import SwitchRefused, states, turn_off, turn_on
from ordermesh.logging import get_logger
from ordermesh.registry import Registry
from ordermesh.tokens import TokenVerifier
from ordermesh.web.sessions import Session, Sessions, SignedOut, Tokens

from services.console.clients import MAX_IDS, Accounts, Operators, Prometheus
from services.console.config import ConsoleSettings
from services.console.domain import (
    DeadLetterView,
    LiveSystem,
    ParkedView,
    SagaStep,
    SagaView,
    Story,
)
from services.console.live import Alerts, LiveReader
from services.console.story import StoryReader

__all__ = ["Console", "MessagesPage", "NoSwitches", "NotAnAdmin"]

log = get_logger(__name__)
T = TypeVar("T")

MAX_REASON = 500


class NotAnAdmin(PermissionDenied):
    pass


class NoSwitches(FailedPrecondition):
    """This deployment has no fault switches: the console was given no FAULT_FLAGS_FILE."""


@dataclass(frozen=True)
class MessagesPage:
    service: str
    dead_letters: Sequence[DeadLetterView]
    # Every dead-letter queue of the service, with its depth.
    queues: Mapping[str, int]
    parked: Sequence[ParkedView]
    problems: Sequence[str]


def _reason(reason: str) -> str:
    reason = reason.strip()
    if not reason:
        raise InvalidArgument("a reason is required: say why you act")
    if len(reason) > MAX_REASON:
        raise InvalidArgument(f"the reason is {len(reason)} characters long; at most {MAX_REASON}")
    return reason


def _ids(ids: Sequence[str]) -> list[str]:
    chosen = list(dict.fromkeys(i.strip() for i in ids if i.strip()))
    if not chosen:
        raise InvalidArgument("no message chosen")
    if len(chosen) > MAX_IDS:
        raise InvalidArgument(f"{len(chosen)} messages chosen; at most {MAX_IDS} at a time")
    return chosen


class Console:
    def __init__(
        self,
        settings: ConsoleSettings,
        *,
        sessions: Sessions,
        accounts: Accounts,
        operators: Operators,
        verifier: TokenVerifier,
        registry: Registry,
        prometheus: Prometheus | None = None,
        alerts: Alerts | None = None,
        clock: Callable[[], float] = time.time,
    ):
        self.settings = settings
        self.sessions = sessions
        self._accounts = accounts
        self._operators = operators
        self._verifier = verifier
        # Read at most once per half refresh interval, whoever asks.
        self._live = LiveReader(
            registry,
            fresh_s=settings.console_refresh_s / 2,
            prometheus=prometheus,
            alerts=alerts,
            clock=clock,
        )
        self._stories = StoryReader(settings, operators)

    # Signing in and out.

    async def sign_in(self, email: str, password: str) -> Session:
        """A new session for an admin's account; Unauthenticated for a wrong e-mail or
        password, NotAnAdmin for an account that is not an admin's."""
        email = email.strip()
        if not email or not password or len(email) > 254 or len(password) > 128:
            raise InvalidArgument("give the e-mail and the password of an admin's account")
        tokens = await self._accounts.login(email, password)
        claims = await self._verifier.verify(tokens.access_token)
        if not claims.is_admin:
            await self._end(tokens.refresh_token)
            log.warning("console sign-in refused: not an admin", user_id=claims.user_id)
            raise NotAnAdmin("this account is not an admin's: the console is for admins only")
        try:
            email, name = await self._accounts.profile(tokens.access_token)
        except DomainError as exc:  # the name is for the nav bar; the e-mail will do
            log.warning("profile not read at sign-in", error=str(exc))
            name = ""
        session = await self.sessions.create(
            user_id=claims.user_id, email=email, name=name or email, roles=claims.roles,
            tokens=tokens,
        )  # fmt: skip
        log.info("admin signed in to the console", user_id=claims.user_id)
        return session

    async def _end(self, refresh_token: str) -> None:
        try:
            await self._accounts.logout(refresh_token)
        except DomainError as exc:  # the session ends here anyway; its tokens then expire
            log.warning("logout not confirmed by the user service", error=str(exc))

    async def sign_out(self, session: Session) -> None:
        await self.sessions.delete(session.id)
        await self._end(session.refresh_token)
        log.info("admin signed out of the console", user_id=session.user_id)

    async def _renew(self, refresh_token: str) -> Tokens:
        """New tokens for a session, if its account is still an admin's (else SignedOut)."""
        tokens = await self._accounts.refresh(refresh_token)
        claims = await self._verifier.verify(tokens.access_token)
        if not claims.is_admin:
            raise SignedOut("this account is no longer an admin's")
        return tokens

    async def _as(self, session: Session, call: Callable[[str], Awaitable[T]]) -> T:
        """`call(token)` with the admin's access token; a token the gateway refuses ends the
        session."""
        return await self.sessions.using(session, self._renew, call)

    def _operated(self, service: str) -> str:
        if service not in self.settings.operator_services:
            raise NotFound(f"no operator API of a service {service!r}")
        return service

    def _saga_service(self, service: str) -> str:
        if service not in self.settings.saga_services:
            raise NotFound(f"no saga API of a service {service!r}")
        return service

    # The live system and one request's story.

    async def live(self) -> LiveSystem:
        return await self._live.read()

    async def story(self, session: Session, key: str) -> Story:
        """Everything the system recorded of one request, found by an order id, a correlation
        id or a trace id."""
        return await self._stories.read(key, partial(self._as, session))

    # Dead letters and parked messages.

    async def messages(self, session: Session, service: str) -> MessagesPage:
        service = self._operated(service)
        problems: list[str] = []
        letters: list[DeadLetterView] = []
        queues: dict[str, int] = {}
        parked: list[ParkedView] = []
        dead, held = await asyncio.gather(
            self._as(session, lambda token: self._operators.dead_letters(token, service)),
            self._as(session, lambda token: self._operators.parked(token, service)),
            return_exceptions=True,
        )
        for answer in (dead, held):
            if isinstance(answer, SignedOut):
                raise answer
            if isinstance(answer, DomainError):
                problems.append(str(answer))
            elif isinstance(answer, BaseException):
                raise answer
        if not isinstance(dead, BaseException):
            letters, queues = dead
        if not isinstance(held, BaseException):
            parked = held
        return MessagesPage(service, letters, queues, parked, problems)

    async def dead_letter(
        self, session: Session, service: str, *, queue: str, event_id: str
    ) -> DeadLetterView:
        service = self._operated(service)
        letters, _ = await self._as(
            session, lambda token: self._operators.dead_letters(token, service, queue=queue)
        )
        for letter in letters:
            if letter.event_id == event_id:
                return letter
        raise NotFound(f"no dead letter {event_id!r} in {queue!r} now")

    async def parked_message(self, session: Session, service: str, event_id: str) -> ParkedView:
        service = self._operated(service)
        for message in await self._as(
            session, lambda token: self._operators.parked(token, service)
        ):
            if message.event_id == event_id:
                return message
        raise NotFound(f"no parked message {event_id!r} now")

    async def replay(
        self, session: Session, service: str, chosen: Sequence[tuple[str, str]], reason: str
    ) -> int:
        """Replays the chosen (queue, event id) dead letters; how many were."""
        return await self._on_dead_letters(session, service, chosen, reason, "replay")

    async def discard(
        self, session: Session, service: str, chosen: Sequence[tuple[str, str]], reason: str
    ) -> int:
        return await self._on_dead_letters(session, service, chosen, reason, "discard")

    async def _on_dead_letters(
        self,
        session: Session,
        service: str,
        chosen: Sequence[tuple[str, str]],
        reason: str,
        action: str,
    ) -> int:
        service, reason = self._operated(service), _reason(reason)
        by_queue: dict[str, list[str]] = {}
        for queue, event_id in chosen:
            by_queue.setdefault(queue.strip(), []).append(event_id)
        if not by_queue or "" in by_queue:
            raise InvalidArgument("no dead letter chosen (each names its queue)")
        act = self._operators.replay if action == "replay" else self._operators.discard
        done = 0
        for queue, ids in by_queue.items():
            event_ids = _ids(ids)
            done += await self._as(
                session,
                partial(act, service=service, queue=queue, event_ids=event_ids, reason=reason),
            )
        log.info("operator action", action=action, service=service, count=done,
                 user_id=session.user_id)  # fmt: skip
        return done

    async def unpark(
        self, session: Session, service: str, event_ids: Sequence[str], reason: str
    ) -> int:
        service, reason, ids = self._operated(service), _reason(reason), _ids(event_ids)
        done = await self._as(
            session,
            lambda token: self._operators.unpark(token, service, event_ids=ids, reason=reason),
        )
        log.info("operator action", action="unpark", service=service, count=done,
                 user_id=session.user_id)  # fmt: skip
        return done

    # Sagas.

    async def sagas(
        self,
        session: Session,
        service: str,
        *,
        status: str = "",
        min_age_s: int = 0,
        page_token: str = "",
    ) -> tuple[list[SagaView], str]:
        service = self._saga_service(service)
        if min_age_s < 0:
            raise InvalidArgument(f"minimum age {min_age_s} s is negative")
        return await self._as(
            session,
            lambda token: self._operators.sagas(
                token, service, status=status, min_age_s=min_age_s, page_token=page_token
            ),
        )

    async def saga(
        self, session: Session, service: str, saga_id: str
    ) -> tuple[SagaView, list[SagaStep]]:
        service = self._saga_service(service)
        return await self._as(session, lambda token: self._operators.saga(token, service, saga_id))

    async def retry_compensation(
        self, session: Session, service: str, saga_id: str, reason: str
    ) -> SagaView:
        service, reason = self._saga_service(service), _reason(reason)
        saga = await self._as(
            session,
            lambda token: self._operators.retry_compensation(
                token, service, saga_id, reason=reason
            ),
        )
        log.info("operator action", action="retry compensation", service=service,
                 saga_id=saga_id, user_id=session.user_id)  # fmt: skip
        return saga

    async def resolve_saga(
        self, session: Session, service: str, saga_id: str, reason: str
    ) -> SagaView:
        service, reason = self._saga_service(service), _reason(reason)
        saga = await self._as(
            session,
            lambda token: self._operators.resolve_saga(token, service, saga_id, reason=reason),
        )
        log.info("operator action", action="resolve saga", service=service, saga_id=saga_id,
                 user_id=session.user_id)  # fmt: skip
        return saga

    # Fault switches (ordermesh.switches), in the flag file every process of this system follows.

    def _flag_file(self) -> Path:
        if not self.settings.fault_flags_file:
            raise NoSwitches(
                "this deployment has no fault switches (the console was given no "
                "FAULT_FLAGS_FILE: make up and the tests give one, no deployment does)"
            )
        return Path(self.settings.fault_flags_file)

    async def fault_switches(self) -> list[dict[str, Any]]:
        """Each switch: on or off, where, its settings, what it does."""
        try:
            return await asyncio.to_thread(states, self._flag_file())
        except SwitchRefused as exc:
            raise FailedPrecondition(str(exc)) from None

    async def faults_on(self) -> list[dict[str, Any]]:
        """The switches that are on (none where there are no switches); a file the processes
        would not read shows as one entry saying so, as it is what an operator must fix."""
        if not self.settings.fault_flags_file:
            return []
        try:
            return [s for s in await self.fault_switches() if s["on"]]
        except FailedPrecondition as exc:
            return [{"switch": "flag file", "on": True, "where": {}, "settings": {},
                     "does": str(exc)}]  # fmt: skip

    async def turn_switch_on(
        self,
        session: Session,
        switch: str,
        *,
        conditions: Mapping[str, str],
        settings: Mapping[str, Any],
        reason: str,
    ) -> str:
        """Turns `switch` on for what `conditions` name, with its `settings`; says what it
        did. The admin's session is checked with the gateway first (a revoked one is refused,
        as for every other action)."""
        return await self._switch(session, switch, reason, turn_on, conditions, settings)

    async def turn_switch_off(self, session: Session, switch: str, reason: str) -> str:
        return await self._switch(session, switch, reason, turn_off)

    async def _switch(
        self, session: Session, switch: str, reason: str, change: Callable[..., str], *args: Any
    ) -> str:
        path, reason = self._flag_file(), _reason(reason)
        await self._as(session, self._accounts.profile)
        try:
            said = await asyncio.to_thread(change, path, switch, *args)
        except SwitchRefused as exc:
            raise InvalidArgument(str(exc)) from None
        log.warning("operator action", action="fault switch", switch=switch, outcome=said,
                    reason=reason, user_id=session.user_id)  # fmt: skip
        return said
