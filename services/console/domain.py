"""What the console shows, as values, and how its pages' data is put together; no I/O.

- the live system: the registered instances of each service, with the figures Prometheus
  recorded for it (`live_system`), and a status a colour can show (ok, warning, critical);
- one request's story: the saga's history, what each service did with its messages and every
  process's log lines, merged in time order (`story_of`);
- the records of the operator API (dead letters, parked messages, sagas), as read.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

__all__ = [
    "AlertView",
    "DeadLetterView",
    "InstanceView",
    "LiveSystem",
    "MessageEvent",
    "ParkedView",
    "QueueView",
    "SagaStep",
    "SagaView",
    "Series",
    "ServiceView",
    "Story",
    "StoryEntry",
    "live_system",
    "story_of",
]

OK, WARNING, CRITICAL = "ok", "warning", "critical"
# The thresholds of monitoring/rules.yml's alerts: an error ratio of 1 %, an outbox message
# waiting 5 s.
ERROR_RATIO_CRITICAL, OUTBOX_AGE_CRITICAL_S = 0.01, 5.0


@dataclass(frozen=True)
class Series:
    """One series of a Prometheus answer: its labels and its value."""

    labels: Mapping[str, str]
    value: float


@dataclass(frozen=True)
class InstanceView:
    instance_id: str
    address: str
    version: str
    started_at: float
    draining: bool
    # destination -> closed, open or half-open, as the instance published them.
    breakers: Mapping[str, str] = field(default_factory=dict)
    notes: Mapping[str, str] = field(default_factory=dict)
    # Whether Prometheus's last scrape of it succeeded (`up`); None when not known.
    scraped: bool | None = None

    @property
    def health(self) -> str:
        if self.draining:
            return "draining"
        if self.scraped is False:
            return "not answering"
        return "serving"

    @property
    def status(self) -> str:
        if self.scraped is False:
            return CRITICAL
        if self.draining or "open" in self.breakers.values():
            return WARNING
        return OK

    def started(self) -> str:
        return datetime.fromtimestamp(self.started_at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass(frozen=True)
class ServiceView:
    name: str
    instances: Sequence[InstanceView]
    # rps, errors (a ratio), p99_ms, outbox_age_s, from Prometheus; absent when not known.
    figures: Mapping[str, float] = field(default_factory=dict)
    open_breakers: Sequence[str] = ()

    @property
    def status(self) -> str:
        if not self.instances:
            return CRITICAL
        errors = self.figures.get("errors", 0.0)
        if errors > ERROR_RATIO_CRITICAL or self.figures.get("outbox_age_s", 0.0) > (
            OUTBOX_AGE_CRITICAL_S
        ):
            return CRITICAL
        if self.open_breakers or any(i.status != OK for i in self.instances):
            return WARNING
        return OK


@dataclass(frozen=True)
class QueueView:
    """A consumer's queue: the messages waiting in it and its consumers (every instance's),
    its deliveries per second by outcome (the ledger's stages), and the messages waiting in
    its dead-letter queue."""

    name: str
    rates: Mapping[str, float] = field(default_factory=dict)
    dead_letters: float | None = None
    waiting: float | None = None
    consumers: float | None = None

    @property
    def status(self) -> str:
        if self.dead_letters:
            return WARNING
        return OK


@dataclass(frozen=True)
class AlertView:
    name: str
    severity: str
    summary: str
    since: str
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class LiveSystem:
    services: Sequence[ServiceView]
    queues: Sequence[QueueView]
    alerts: Sequence[AlertView]
    # Per service, the messages it published per second by stage (published, parked).
    published: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    # What could not be read, said on the page (Prometheus unreachable, ...).
    problems: Sequence[str] = ()
    read_at: float = 0.0


def _number(value: float) -> float | None:
    return None if math.isnan(value) or math.isinf(value) else value


def live_system(
    instances: Mapping[str, Sequence[InstanceView]],
    series: Iterable[Series],
    alerts: Sequence[AlertView] = (),
    *,
    problems: Sequence[str] = (),
    read_at: float = 0.0,
) -> LiveSystem:
    """The live system from one read of the registry (`instances` by service) and one answer
    of Prometheus, each series labelled with the `figure` it is (see clients.FIGURES)."""
    figures: dict[str, dict[str, float]] = {}
    breakers: dict[str, list[str]] = {}
    scraped: dict[str, bool] = {}
    rates: dict[str, dict[str, float]] = {}
    dead: dict[str, float] = {}
    depth: dict[str, dict[str, float]] = {}
    published: dict[str, dict[str, float]] = {}
    for one in series:
        figure, labels, value = one.labels.get("figure", ""), one.labels, _number(one.value)
        service = labels.get("service", "")
        if figure == "open_breaker":
            breakers.setdefault(service, []).append(labels.get("destination", "?"))
        elif figure == "up" and labels.get("instance_id"):
            scraped[labels["instance_id"]] = one.value == 1
        elif value is None:
            continue
        elif figure == "messages" and labels.get("queue"):
            rates.setdefault(labels["queue"], {})[labels.get("stage", "?")] = value
        elif figure == "messages" and service:
            published.setdefault(service, {})[labels.get("stage", "?")] = value
        elif figure == "dead_letters" and labels.get("queue"):
            dead[labels["queue"].removesuffix(".dlq")] = value
        elif figure in ("waiting", "consumers") and labels.get("queue"):
            depth.setdefault(labels["queue"], {})[figure] = value
        elif figure and service:
            figures.setdefault(service, {})[figure] = value
    services = []
    for name in sorted(set(instances) | set(figures)):
        views = [
            replace(i, scraped=scraped.get(i.instance_id, i.scraped))
            for i in instances.get(name, ())
        ]
        services.append(
            ServiceView(
                name=name,
                instances=views,
                figures=figures.get(name, {}),
                open_breakers=sorted(breakers.get(name, [])),
            )
        )
    queues = [
        QueueView(
            name=q,
            rates=rates.get(q, {}),
            dead_letters=dead.get(q),
            waiting=depth.get(q, {}).get("waiting"),
            consumers=depth.get(q, {}).get("consumers"),
        )
        for q in sorted(set(rates) | set(dead) | set(depth))
    ]
    return LiveSystem(
        services=services,
        queues=queues,
        alerts=alerts,
        published=published,
        problems=problems,
        read_at=read_at,
    )


# The operator API's records, as the console reads them.


@dataclass(frozen=True)
class DeadLetterView:
    queue: str
    event_id: str
    type: str
    correlation_id: str
    error: str
    attempts: int
    consumer: str
    instance: str
    failed_at: datetime | None
    original_route: str
    replays: Sequence[str]
    # The decoded message as pretty JSON; empty if it does not decode.
    body: str


@dataclass(frozen=True)
class ParkedView:
    seq: int
    event_id: str
    type: str
    route: str
    reason: str
    parked_at: datetime | None
    correlation_id: str
    body: str


@dataclass(frozen=True)
class SagaView:
    saga_id: str
    status: str
    state: str
    step: str
    started_at: datetime | None
    updated_at: datetime | None
    failure_reason: str
    correlation_id: str
    trace_id: str

    @property
    def needs_operator(self) -> bool:
        return self.status == "NEEDS_OPERATOR"


@dataclass(frozen=True)
class SagaStep:
    """One entry of a saga's history."""

    time: datetime | None
    kind: str
    step: str
    message_type: str
    saga_state: str
    detail: str
    actor: str


@dataclass(frozen=True)
class MessageEvent:
    """What one service did with one message (its GetMessageHistory)."""

    service: str
    time: datetime | None
    fate: str
    event_id: str
    type: str
    where: str
    instance: str
    actor: str
    detail: str


# One request's story.

# Where an entry comes from; at the same instant, a saga's entry first, then messages, then
# log lines (the saga decided what the messages carry, and a line tells of what happened).
SAGA, MESSAGE, LOG = "saga", "message", "log"
_RANK = {SAGA: 0, MESSAGE: 1, LOG: 2}
# Fields a log line always has, shown apart from the rest of it.
LOG_HEAD = ("timestamp", "service", "instance", "level", "event", "logger")


@dataclass(frozen=True)
class StoryEntry:
    time: datetime
    source: str
    # rpc, access, log, or a saga's or a message's kind (command sent, dead-lettered, ...).
    kind: str
    service: str
    instance: str
    title: str
    detail: str = ""
    level: str = ""


@dataclass(frozen=True)
class Story:
    key: str
    saga: SagaView | None
    correlation_id: str
    trace_id: str
    entries: Sequence[StoryEntry]
    # The service whose saga it is, if one is.
    saga_service: str = ""
    # Services (or sources) that did not answer, with why.
    problems: Sequence[str] = ()
    # Where the log lines came from, or why there are none.
    logs_note: str = ""
    trace_url: str = ""


def _when(text: object) -> datetime | None:
    try:
        moment = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _detail(record: Mapping[str, Any]) -> str:
    return " ".join(
        f"{key}={value}"
        for key, value in record.items()
        if key not in LOG_HEAD and key not in ("correlation_id", "trace_id", "span_id")
    )


def _log_entry(record: Mapping[str, Any]) -> StoryEntry | None:
    moment = _when(record.get("timestamp"))
    if moment is None:
        return None
    event = str(record.get("event", ""))
    if event == "rpc handled":
        kind = "rpc"
        title = f"{record.get('method', '?')} {record.get('code', '')} {record.get('ms', '')} ms"
    elif event == "access":
        kind = "access"
        title = f"{record.get('path', '?')} {record.get('status', '')} {record.get('flags', '')}"
    else:
        kind, title = LOG, event
    return StoryEntry(
        time=moment,
        source=LOG,
        kind=kind,
        service=str(record.get("service", "")),
        instance=str(record.get("instance", "")),
        title=title.strip(),
        detail=_detail(record),
        level=str(record.get("level", "")),
    )


def story_of(
    key: str,
    *,
    saga: SagaView | None,
    saga_history: Sequence[SagaStep] = (),
    saga_service: str = "",
    messages: Iterable[MessageEvent] = (),
    log_records: Iterable[Mapping[str, Any]] = (),
    correlation_id: str = "",
    trace_id: str = "",
    problems: Sequence[str] = (),
    logs_note: str = "",
    trace_url: str = "",
) -> Story:
    """The entries of every source in time order (ties: saga, messages, log lines, each in its
    source's own order); records without a time cannot be placed and are left out."""
    entries: list[tuple[datetime, int, int, StoryEntry]] = []

    def add(entry: StoryEntry) -> None:
        entries.append((entry.time, _RANK[entry.source], len(entries), entry))

    for step in saga_history:
        if step.time is not None:
            title = " ".join(filter(None, [step.kind, step.step, step.message_type]))
            detail = " ".join(
                filter(None, [f"state={step.saga_state}" if step.saga_state else "", step.detail])
            )
            if step.actor:
                detail = f"{detail} by={step.actor}".strip()
            add(StoryEntry(step.time, SAGA, step.kind, saga_service, "", title, detail))
    messages = list(messages)
    # A consumer's record (its inbox) names the event id, not always the type: the producer's
    # does.
    types = {m.event_id: m.type for m in messages if m.type}
    for message in messages:
        if message.time is not None:
            detail = " ".join(
                filter(
                    None,
                    [
                        f"event_id={message.event_id}",
                        f"where={message.where}" if message.where else "",
                        f"by={message.actor}" if message.actor else "",
                        message.detail,
                    ],
                )
            )
            kind = message.type or types.get(message.event_id) or f"message {message.event_id}"
            title = f"{kind} {message.fate}"
            add(
                StoryEntry(
                    message.time,
                    MESSAGE,
                    message.fate,
                    message.service,
                    message.instance,
                    title,
                    detail,
                )
            )
    for record in log_records:
        entry = _log_entry(record)
        if entry is not None:
            add(entry)
    entries.sort(key=lambda e: e[:3])
    return Story(
        key=key,
        saga=saga,
        correlation_id=correlation_id or (saga.correlation_id if saga else ""),
        trace_id=trace_id or (saga.trace_id if saga else ""),
        entries=[e[3] for e in entries],
        saga_service=saga_service if saga else "",
        problems=problems,
        logs_note=logs_note,
        trace_url=trace_url,
    )
