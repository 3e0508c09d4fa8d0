"""Golden files of every message type our consumers take, as the contracts of earlier releases
encoded them (tests/golden), replayed byte for byte through today's consumers: the shared
system's real processes. Each is handled once (its event id is in its consumer's inbox) and
none is dead-lettered; the notification service still writes what they mean, and commands are
still answered."""

from __future__ import annotations

import base64
import json
import sqlite3
from datetime import UTC, datetime

import aio_pika
import pytest
from ordermesh.events import CONTENT_TYPE

from harness.shop import eventually
from services import messaging
from tests.golden.record import EMAIL, EVENTS

GOLDEN = sorted(EVENTS.glob("*/*.json"))
SUBSCRIPTIONS = [s for found in messaging.subscriptions().values() for s in found]
# The queue each type is consumed from, and the store (service) whose inbox records it.
CONSUMERS = {
    t.DESCRIPTOR.full_name: (s.queue(), s.service) for s in SUBSCRIPTIONS for t in s.handled
}
# Types a consumer still takes but is no longer bound to (replaced by a successor): what was
# queued before it moved. Their golden files go straight into its queue.
DRAINING = {t.DESCRIPTOR.full_name for s in SUBSCRIPTIONS for t in s.draining}


def consumer_of(golden: dict) -> tuple[str, str]:
    return CONSUMERS[golden["type"]]


def rows(system, service: str, sql: str, *parameters) -> list[tuple]:
    path = system.directory / service / "store.sqlite3"
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as db:
        return db.execute(sql, parameters).fetchall()


async def depth(channel, queue: str) -> int:
    declared = await channel.declare_queue(queue, passive=True)
    return declared.declaration_result.message_count or 0


def test_there_are_golden_files_of_every_consumed_type():
    recorded = {json.loads(path.read_text())["type"] for path in GOLDEN}
    assert set(CONSUMERS) <= recorded, set(CONSUMERS) - recorded


@pytest.mark.parametrize("version", sorted({p.parent.name for p in GOLDEN}))
async def test_golden_events_of_an_earlier_contract_are_handled_by_todays_consumers(
    system, version
):
    goldens = [json.loads(p.read_text()) for p in GOLDEN if p.parent.name == version]
    # Who the golden user is must be known before what concerns them.
    goldens.sort(key=lambda g: g["type"] != "user.v1.UserRegistered")
    connection = await aio_pika.connect(system.amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        queues = {consumer_of(g)[0] for g in goldens}
        dead_before = {q: await depth(channel, f"{q}.dlq") for q in queues}
        for golden in goldens:
            if golden["type"] in DRAINING:
                exchange, key = channel.default_exchange, consumer_of(golden)[0]
            else:
                exchange, key = await channel.get_exchange(golden["exchange"]), None
            await exchange.publish(
                aio_pika.Message(
                    base64.b64decode(golden["payload"]),
                    message_id=golden["event_id"],
                    type=golden["type"],
                    content_type=CONTENT_TYPE,
                    timestamp=datetime.now(UTC),
                    correlation_id=f"golden-{version}",
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                    headers={"producer": "golden", "causation-id": ""},
                ),
                routing_key=key or golden["routing_key"],
                mandatory=True,
            )

        def handled() -> list[str]:
            return [
                g["type"]
                for g in goldens
                if (queue_and_service := consumer_of(g))[1] != "auth"
                and rows(
                    system,
                    queue_and_service[1],
                    "SELECT 1 FROM inbox WHERE consumer = ? AND event_id = ?",
                    *(queue_and_service[0], g["event_id"]),
                )
            ]

        stored = [g["type"] for g in goldens if consumer_of(g)[1] != "auth"]
        await eventually(lambda: len(handled()) == len(stored), what="every golden event handled")

        async def drained() -> bool:
            return all([await depth(channel, q) == 0 for q in queues])

        await eventually(drained, what="every consumer's queue drained")
        assert {q: await depth(channel, f"{q}.dlq") for q in queues} == dead_before

    # What they mean, to today's consumers: the golden user was welcomed and told of the
    # order's outcomes (by email, as their preferences ask) ...
    subjects = await eventually(
        lambda: len(mail := system.mail.to(EMAIL)) >= 4 and [m["Subject"] for m in mail],
        what="the golden user's emails",
    )
    assert sorted(s.split()[-1] for s in subjects) == [
        "approved", "cancelled", "ordermesh", "rejected"
    ]  # fmt: skip
    approved = [m for m in system.mail.to(EMAIL) if m["Subject"].endswith("approved")]
    assert "2 x Golden teapot at 12.50 EUR" in approved[0].get_content()
    # ... and the commands were answered, each reply caused by its command.
    for golden in goldens:
        if golden["type"] in ("inventory.v1.ReserveStock", "user.v1.ReserveCredit"):
            service = consumer_of(golden)[1]
            replies = rows(
                system,
                service,
                "SELECT type FROM outbox WHERE json_extract(envelope, '$.causation_id') = ?",
                golden["event_id"],
            )
            assert replies, f"{golden['type']} of {version} was not answered"
