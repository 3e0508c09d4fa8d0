"""The ledger: how many messages of each type reached each stage, in this process.

Stages: `published` (confirmed by the broker), `delivered` (received by a consumer),
`processed` (its effects committed), `duplicate` (recognised by the inbox, no second effect),
`retried` (sent to a retry queue), `dead_lettered` (sent to a dead-letter queue), `parked`
(refused by the broker as it is, and kept in the outbox with the reason); and `waited`, which
counts tries, not messages: each time a message met a fault that passes (the infrastructure's,
or contention: chassis.faults) and waits to be tried again. Once every message has settled,
`published == processed + dead_lettered` should hold summed over all processes, but nothing
sums them: the integration tests compare the counts within one process. A consumer's stages
also name the queue, so that the counters, served as the Prometheus metric
`ordermesh_messages_total{type, stage, queue}`, tell each queue's deliveries by outcome.

These counters live in memory and end with the process. What must survive a crash is counted
by durable state instead: the outbox (sent rows), the inbox (handled ids) and the dead-letter
queues; the chaos tests reconcile those.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from enum import StrEnum

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

__all__ = ["STAGES", "Ledger", "Stage"]


class Stage(StrEnum):
    """The stages a message is counted at (see the module doc), named once: each is the string
    the ledger stores and Prometheus shows (`Stage.PROCESSED == "processed"`)."""

    PUBLISHED = "published"
    DELIVERED = "delivered"
    PROCESSED = "processed"
    DUPLICATE = "duplicate"
    RETRIED = "retried"
    DEAD_LETTERED = "dead_lettered"
    PARKED = "parked"
    WAITED = "waited"


STAGES = tuple(stage.value for stage in Stage)


class Ledger(Collector):
    """Counts in a plain dict (the hot path pays one increment); Prometheus reads it on scrape."""

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        self.registry.register(self)
        self._counts: Counter[tuple[str, str, str]] = Counter()

    def record(self, type: str, stage: str, *, queue: str = "", count: int = 1) -> None:
        if stage not in STAGES:
            raise ValueError(f"unknown ledger stage {stage!r}; stages are {STAGES}")
        self._counts[(type, stage, queue)] += count

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily(
            "ordermesh_messages", "Messages by type and stage on the event backbone",
            labels=["type", "stage", "queue"],
        )  # fmt: skip
        for labels, count in sorted(self._counts.items()):
            family.add_metric(labels, count)
        yield family

    def count(self, stage: str, type: str | None = None) -> int:
        return sum(n for (t, s, _), n in self._counts.items() if s == stage and type in (None, t))
