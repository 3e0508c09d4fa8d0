"""One request's story, found by an order id, a correlation id or a trace id: its saga and the
saga's history (from the services with a saga API), what every service did with its messages
(their operator APIs), and the log lines of every process that carry its ids (the log files).
What a service could not answer is a problem shown on the page; the rest of the story is shown.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any, Protocol, TypeVar

from ordermesh import logfiles
from ordermesh.errors import DomainError, InvalidArgument, NotFound, Unauthenticated

from services.console.clients import MAX_IDS, Operators
from services.console.config import ConsoleSettings
from services.console.domain import MessageEvent, SagaStep, SagaView, Story, story_of

__all__ = ["Ask", "StoryReader"]

T = TypeVar("T")

# The ids a story is asked for by: an order id (a UUID), a correlation id, a trace id (32 hex
# digits).
STORY_KEY = re.compile(r"[A-Za-z0-9._:-]{1,128}")
LOG_LIMIT = 2000


class Ask(Protocol):
    """Calls the system's APIs as the signed-in admin: `call(token)` with the admin's token."""

    async def __call__(self, call: Callable[[str], Awaitable[T]]) -> T: ...


def _ids_in(records: Sequence[Mapping[str, object]], key: str) -> tuple[str, str]:
    """The correlation id and trace id of the request whose lines carry `key`."""
    for record in records:
        if key in (record.get("correlation_id"), record.get("trace_id")):
            return str(record.get("correlation_id") or key), str(record.get("trace_id") or "")
    return key, ""


class StoryReader:
    def __init__(self, settings: ConsoleSettings, operators: Operators):
        self.settings = settings
        self._operators = operators

    async def read(self, key: str, ask: Ask) -> Story:
        key = key.strip()
        if not STORY_KEY.fullmatch(key):
            raise InvalidArgument("give an order id, a correlation id or a trace id")
        problems: list[str] = []
        saga, history, saga_service = await self._saga_of(key, ask, problems)
        correlation_id = saga.correlation_id if saga and saga.correlation_id else ""
        trace_id = saga.trace_id if saga else ""
        if not correlation_id:  # the key's own lines say which request it names
            correlation_id, trace_id = _ids_in(await self._log_lines({key}), key)
        messages, records = await asyncio.gather(
            self._messages_of(correlation_id, ask, problems),
            self._log_lines({key, correlation_id, trace_id} - {""}),
        )
        jaeger = self.settings.jaeger_url.rstrip("/")
        return story_of(
            key,
            saga=saga,
            saga_history=history,
            saga_service=saga_service,
            messages=messages,
            log_records=records,
            correlation_id=correlation_id,
            trace_id=trace_id,
            problems=problems,
            logs_note=self._logs_note(len(records)),
            trace_url=f"{jaeger}/trace/{trace_id}" if jaeger and trace_id else "",
        )

    async def _saga_of(
        self, key: str, ask: Ask, problems: list[str]
    ) -> tuple[SagaView | None, list[SagaStep], str]:
        for service in self.settings.saga_services:
            try:
                saga, history = await ask(
                    partial(self._operators.saga, service=service, saga_id=key)
                )
            except (NotFound, InvalidArgument):
                continue
            except Unauthenticated:
                raise
            except DomainError as exc:
                problems.append(str(exc))
                continue
            return saga, history, service
        return None, [], ""

    async def _messages_of(
        self, correlation_id: str, ask: Ask, problems: list[str]
    ) -> list[MessageEvent]:
        """What every service did with the request's messages. A service's inbox keeps no
        correlation ids: every service is asked for the correlation id, then again for the
        event ids the answers named (what each consumed)."""
        if not correlation_id:
            return []
        first = await self._histories(ask, problems, correlation_id=correlation_id)
        event_ids = list(dict.fromkeys(e.event_id for e in first if e.event_id))
        found = list(first)
        for start in range(0, len(event_ids), MAX_IDS):
            found += await self._histories(
                ask, problems, event_ids=event_ids[start : start + MAX_IDS]
            )
        return list(dict.fromkeys(found))  # each record once, in the order first seen

    async def _histories(
        self,
        ask: Ask,
        problems: list[str],
        *,
        correlation_id: str = "",
        event_ids: Sequence[str] = (),
    ) -> list[MessageEvent]:
        def history(service: str) -> Awaitable[list[MessageEvent]]:
            return ask(
                partial(
                    self._operators.message_history,
                    service=service,
                    correlation_id=correlation_id,
                    event_ids=event_ids,
                )
            )

        services = self.settings.operator_services
        answers = await asyncio.gather(*(history(s) for s in services), return_exceptions=True)
        events: list[MessageEvent] = []
        for answer in answers:
            if isinstance(answer, Unauthenticated):
                raise answer
            if isinstance(answer, DomainError):
                if str(answer) not in problems:
                    problems.append(str(answer))
            elif isinstance(answer, BaseException):
                raise answer
            else:
                events.extend(answer)
        return events

    async def _log_lines(self, ids: set[str]) -> list[dict[str, Any]]:
        if not self.settings.log_dir:
            return []
        return await asyncio.to_thread(
            logfiles.search, Path(self.settings.log_dir), ids, limit=LOG_LIMIT
        )

    def _logs_note(self, found: int) -> str:
        where = self.settings.log_dir
        if not where:
            return (
                "Log lines are not read here (LOG_DIR is not set): under `make up` they are in "
                ".build/run, and `make logs ID=<correlation id>` shows them."
            )
        if not Path(where).is_dir():
            return f"No log directory at {where}."
        if found >= LOG_LIMIT:
            return f"The first {LOG_LIMIT} log lines of {where}."
        return f"Log lines from {where}."
