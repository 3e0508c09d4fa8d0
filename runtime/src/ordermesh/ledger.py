"""The ledger: how many messages of each type reached each stage, in this process.

Stages: `published` (confirmed by the broker), `delivered` (received by a consumer),
`processed` (its effects committed), `duplicate` (recognised by the inbox, no second effect),
`retried` (sent to a retry queue), `dead_lettered` (sent to a dead-letter queue), `parked`
(refused by the broker as it is, and kept in the outbox with the reason); and `waited`, which
counts tries, not messages: each time a message met a fault that passes (the infrastructure's,
or contention: ordermesh.faults) and waits to be tried again. Once every message has settled,
`published == processed + dead_lettered` should hold summed over all processes, but nothing
sums them: the integration tests compare the counts within one process. A consumer's stages
also name the queue, so that the counters, served as the Prometheus metric
`ordermesh_messages_total{type, stage, queue}`, tell each queue's deliveries by outcome.

How old each message was when its consumer had processed it (its effects committed), from the
moment it was made (written to its producer's outbox, `occurred-at`), is a histogram per type
and queue, `ordermesh_message_age_seconds`: the whole way of a message (outbox, relay, broker,
delivery, handler), on the clocks of two processes (one machine's, or hosts kept in step).

These counters live in memory and end with the process. What must survive a crash is counted
by durable state instead: the outbox (sent rows), the inbox (handled ids) and the dead-letter
queues; the chaos tests reconcile those.
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterator
from enum import StrEnum

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["AGE_BUCKETS", "STAGES", "Ledger", "Stage"]

# From a millisecond to a minute: a message goes through in a few milliseconds, or waits out
# a relay's poll, a lease's expiry (10 s), a retry's backoff, an outage. 15 and 20 s are there
# because a quantile is interpolated within a bucket: without them, messages that waited 11 s
# for a lease were reported as a p99 of 27 s (issue 29).
AGE_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 20.0,
    30.0, 60.0,
)  # fmt: skip


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
        # (type, queue) -> the count in each bucket of AGE_BUCKETS (and one over), and the sum.
        self._ages: dict[tuple[str, str], list[int]] = {}
        self._age_sums: dict[tuple[str, str], float] = {}

    def record(self, type: str, stage: str, *, queue: str = "", count: int = 1) -> None:
        if stage not in STAGES:
            raise ValueError(f"unknown ledger stage {stage!r}; stages are {STAGES}")
        self._counts[(type, stage, queue)] += count

    def processed_at_age(self, type: str, queue: str, seconds: float) -> None:
        """A message of `type` processed from `queue` `seconds` after it was made (a clock
        behind its producer's counts as 0)."""
        seconds = max(seconds, 0.0)
        counts = self._ages.get((type, queue))
        if counts is None:  # not `setdefault`: that would make a list for every message
            counts = self._ages[(type, queue)] = [0] * (len(AGE_BUCKETS) + 1)
        counts[bisect.bisect_left(AGE_BUCKETS, seconds)] += 1
        self._age_sums[(type, queue)] = self._age_sums.get((type, queue), 0.0) + seconds

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "ordermesh_messages", "Messages by type and stage on the event backbone",
            labels=["type", "stage", "queue"],
        )  # fmt: skip
        for labels, count in sorted(self._counts.items()):
            family.add_metric(labels, count)
        yield family
        ages = HistogramMetricFamily(
            "ordermesh_message_age_seconds",
            "How long after it was made (its producer's outbox) a message was processed",
            labels=["type", "queue"],
        )
        bounds = [repr(b) for b in AGE_BUCKETS] + ["+Inf"]
        for (type, queue), counts in sorted(self._ages.items()):
            cumulative, buckets = 0, []
            for bound, count in zip(bounds, counts, strict=True):
                cumulative += count
                buckets.append((bound, cumulative))
            ages.add_metric([type, queue], buckets, self._age_sums[(type, queue)])
        yield ages

    def count(self, stage: str, type: str | None = None) -> int:
        return sum(n for (t, s, _), n in self._counts.items() if s == stage and type in (None, t))
