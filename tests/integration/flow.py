"""The backbone chaos tests' processes and what they reconcile: a producer and a consumer of
`tests.integration.backbone_app` in processes of their own, and the durable records they leave
(the producer's outbox, the consumer's inbox and per-product totals)."""

import asyncio
import sqlite3
import sys
import time
from collections import Counter
from pathlib import Path

import aio_pika

from harness import ManagedProcess
from tests.integration.backbone_app import KEYS, SUBSCRIPTION

ROOT = Path(__file__).resolve().parents[2]
CONSUMER = SUBSCRIPTION.queue()


def app(mode: str, directory: Path, *args: str, name: str = "") -> ManagedProcess:
    """A producer or consumer process; `name` (default: the mode) names it and its log."""
    name = name or mode
    log = directory / f"{name}.log"

    def ready() -> bool:
        # This start's own line: the log keeps those of every earlier start.
        return mode != "consume" or f"consuming pid={process.pid}" in log.read_text()

    process = ManagedProcess(
        name,
        [sys.executable, "-m", "tests.integration.backbone_app", mode, *args],
        directory=directory,
        ready=ready,
        env={"PYTHONPATH": str(ROOT)},
        ready_timeout_s=60,
    )
    return process


class Flow:
    """A producer and a consumer on one broker (every node of a cluster: `url`), events at
    `rate` per second from the producer's outbox to the consumer's inbox, on quorum queues of
    `quorum_size` members; their stores and logs in `directory`; `name` prefixes their
    connections' names (`<name>-producer`, `<name>-consumer`)."""

    def __init__(self, directory: Path, url: str, *, name: str, rate: int, quorum_size: int = 3):
        self.producer_db, self.consumer_db = directory / "producer.db", directory / "consumer.db"
        self._directory, self._name, self._rate = directory, name, rate
        self._common = ("--amqp", url, "--quorum-size", str(quorum_size))

    def consumer(self) -> ManagedProcess:
        return app("consume", self._directory, "--store", f"sqlite:///{self.consumer_db}",
                   *self._common, "--instance", f"{self._name}-consumer")  # fmt: skip

    def producer(self, total: int) -> ManagedProcess:
        """Commits events until its outbox holds `total`, and exits once all are confirmed."""
        return app("produce", self._directory, "--store", f"sqlite:///{self.producer_db}",
                   *self._common, "--instance", f"{self._name}-producer", "--total", str(total),
                   "--rate", str(self._rate))  # fmt: skip


def query(db: Path, sql: str, *parameters) -> list[tuple]:
    with sqlite3.connect(db, timeout=30) as connection:
        return connection.execute(sql, parameters).fetchall()


def outbox(db: Path) -> tuple[list[str], int]:
    """Committed event ids, and how many are not yet confirmed by the broker."""
    rows = query(db, "SELECT event_id, sent_at IS NULL FROM outbox")
    return [r[0] for r in rows], sum(r[1] for r in rows)


def inbox(db: Path) -> list[str]:
    return [r[0] for r in query(db, "SELECT event_id FROM inbox WHERE consumer = ?", CONSUMER)]


def totals(db: Path) -> dict[str, int]:
    return {
        r[0]: r[1] for r in query(db, "SELECT id, json_extract(doc, '$.total') FROM doc_totals")
    }


def expected_totals(total: int) -> dict[str, int]:
    return dict(Counter(f"p-{seq % KEYS}" for seq in range(total)))


async def wait_until(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.25)


async def queue_depth(url: str, queue: str) -> int:
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        return declared.declaration_result.message_count or 0


async def assert_exactly_once(producer_db: Path, consumer_db: Path, url: str, total: int) -> None:
    """Every one of the `total` events committed, confirmed, handled and applied once, and
    none dead-lettered (`url`: a broker node's)."""
    committed, unconfirmed = outbox(producer_db)
    handled = inbox(consumer_db)
    assert unconfirmed == 0
    assert len(committed) == len(set(committed)) == total
    assert sorted(handled) == sorted(committed), "lost or unknown events"
    assert totals(consumer_db) == expected_totals(total), "an event applied twice"
    assert await queue_depth(url, SUBSCRIPTION.dead_letter_queue) == 0
