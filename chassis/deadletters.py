"""Dead-letter tooling: see what a consumer or a relay could not deliver and why; replay it.

    python -m chassis.deadletters list   --amqp URL --queue order.saga.dlq
    python -m chassis.deadletters replay --amqp URL --queue order.saga.dlq --id EVENT_ID [--id ...]
    python -m chassis.deadletters replay --amqp URL --queue order.saga.dlq --all
    python -m chassis.deadletters parked --store STORE_URL [--database NAME]
    python -m chassis.deadletters unpark --store STORE_URL [--database NAME] --id EVENT_ID | --all

`list` prints one JSON object per message: its event id, type, failure (class, message,
attempts, consumer, time), original route and decoded body; it leaves the queue as it was.
`replay` publishes the chosen messages again to their original exchange and routing key, with
their original event id (a message that failed was never recorded by the inbox, so it will be
processed; one that somehow was is absorbed as a duplicate), and removes each from the
dead-letter queue only once the broker confirmed its replay. Messages not chosen stay.

`parked` prints the messages a service's outbox relay parked because the broker refused them as
they are (see chassis.outbox), one JSON object each: seq, event id, type, route, the reason,
when, the correlation id and the decoded body. `unpark` makes the chosen ones pending again, so
the running relay publishes them at its next full read (after the cause was fixed, e.g. the
broker's message size limit raised).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import sys
from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aio_pika
import aio_pika.abc
from common.v1 import options_pb2
from google.protobuf import descriptor_pool, json_format, message_factory

from chassis.broker import Broker, BrokerError
from chassis.store import ParkedRow, Store, open_store

__all__ = ["DeadLetter", "list_dead_letters", "parked_as_json", "replay"]

FAILURE_HEADERS = ("x-error-class", "x-error-message", "x-attempts", "x-consumer", "x-failed-at",
                   "x-last-error")  # fmt: skip


def _load_contracts() -> None:
    """Imports every generated module, so that any message type can be decoded by name."""
    root = Path(options_pb2.__file__).parents[2]
    for module in root.rglob("*_pb2.py"):
        importlib.import_module(".".join(module.relative_to(root).with_suffix("").parts))


def _decode(type_name: str | None, body: bytes) -> dict[str, Any] | None:
    if not type_name:
        return None
    try:
        descriptor = descriptor_pool.Default().FindMessageTypeByName(type_name)
        message = message_factory.GetMessageClass(descriptor).FromString(body)
    except Exception:  # noqa: BLE001 - an unknown type or bad body is listed undecoded
        return None
    return json_format.MessageToDict(message, preserving_proto_field_name=True)


@dataclass(frozen=True)
class DeadLetter:
    event_id: str
    type: str
    headers: dict[str, Any]
    body: dict[str, Any] | None

    @property
    def original_exchange(self) -> str:
        return str(self.headers.get("x-original-exchange", ""))

    @property
    def original_routing_key(self) -> str:
        return str(self.headers.get("x-original-routing-key", ""))

    def as_json(self) -> str:
        failure = {k.removeprefix("x-"): v for k, v in self.headers.items() if k in FAILURE_HEADERS}
        return json.dumps(
            {
                "event_id": self.event_id,
                "type": self.type,
                "failure": failure,
                "original_route": [self.original_exchange, self.original_routing_key],
                "body": self.body,
            },
            default=str,
        )


def _dead_letter(message: aio_pika.abc.AbstractIncomingMessage) -> DeadLetter:
    headers = {
        k: v.decode() if isinstance(v, bytes) else v for k, v in (message.headers or {}).items()
    }
    return DeadLetter(
        event_id=message.message_id or "",
        type=message.type or "",
        headers=headers,
        body=_decode(message.type, message.body),
    )


@asynccontextmanager
async def _held(
    connection: aio_pika.abc.AbstractConnection, queue: str
) -> AsyncIterator[list[aio_pika.abc.AbstractIncomingMessage]]:
    """Every message now in `queue`, taken unacked; those not acked go back when this ends."""
    channel = await connection.channel()
    try:
        declared = await channel.declare_queue(queue, passive=True)
        count = declared.declaration_result.message_count or 0
        held = []
        for _ in range(count):
            message = await declared.get(fail=False)
            if message is None:
                break
            held.append(message)
        yield held
    finally:
        await channel.close()  # the broker requeues whatever was not acked


async def list_dead_letters(
    connection: aio_pika.abc.AbstractConnection, queue: str
) -> list[DeadLetter]:
    async with _held(connection, queue) as held:
        return [_dead_letter(message) for message in held]


async def replay(broker: Broker, queue: str, event_ids: Collection[str] | None = None) -> int:
    """Replays the dead letters with these event ids (all if None); returns how many."""
    replayed = 0
    async with _held(broker.connection, queue) as held:
        for message in held:
            letter = _dead_letter(message)
            if event_ids is not None and letter.event_id not in event_ids:
                continue
            headers = {k: v for k, v in (message.headers or {}).items()
                       if k not in FAILURE_HEADERS and not k.startswith("x-original-")}  # fmt: skip
            again = aio_pika.Message(
                message.body, message_id=message.message_id, type=message.type,
                timestamp=message.timestamp, correlation_id=message.correlation_id,
                content_type=message.content_type, app_id=message.app_id,
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                headers={**headers, "x-replayed-from": queue},
            )  # fmt: skip
            await broker.send(again, exchange=letter.original_exchange,
                              routing_key=letter.original_routing_key)  # fmt: skip
            await message.ack()
            replayed += 1
    return replayed


def parked_as_json(parked: ParkedRow) -> str:
    message = parked.row.message
    return json.dumps(
        {
            "seq": parked.row.seq,
            "event_id": message.envelope.event_id,
            "type": message.envelope.type,
            "route": [message.route.exchange, message.route.routing_key],
            "reason": parked.reason,
            "parked_at": parked.parked_at,
            "correlation_id": message.envelope.correlation_id,
            "body": _decode(message.envelope.type, message.payload),
        },
        default=str,
    )


async def _outbox(args: argparse.Namespace) -> int:
    store: Store = open_store(args.store, database=args.database)
    await store.open()
    try:
        if args.command == "parked":
            for parked in await store.parked(limit=args.limit):
                print(parked_as_json(parked))
            return 0
        if not args.all and not args.id:
            print("unpark needs --id EVENT_ID (repeatable) or --all", file=sys.stderr)
            return 2
        count = await store.unpark(None if args.all else args.id)
        print(f"{count} parked message(s) pending again")
        return 0
    finally:
        await store.close()


async def _main(args: argparse.Namespace) -> int:
    _load_contracts()
    if args.command in ("parked", "unpark"):
        return await _outbox(args)
    broker = Broker(args.amqp, name="deadletters")
    await broker.connect()
    try:
        if args.command == "list":
            for letter in await list_dead_letters(broker.connection, args.queue):
                print(letter.as_json())
            return 0
        if not args.all and not args.id:
            print("replay needs --id EVENT_ID (repeatable) or --all", file=sys.stderr)
            return 2
        try:
            count = await replay(broker, args.queue, None if args.all else set(args.id))
        except BrokerError as exc:
            print(f"replay stopped: {exc}", file=sys.stderr)
            return 1
        print(f"replayed {count} message(s) from {args.queue}")
        return 0
    finally:
        await broker.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name, what in (("list", "list a dead-letter queue"), ("replay", "replay dead letters")):
        command = commands.add_parser(name, help=what)
        command.add_argument("--amqp", required=True, help="RabbitMQ URL")
        command.add_argument(
            "--queue", required=True, help="a dead-letter queue, <service>.<purpose>.dlq"
        )
    for name, what in (("parked", "list parked outbox messages"), ("unpark", "make them pending")):
        command = commands.add_parser(name, help=what)
        command.add_argument("--store", required=True, help="the service's STORE_URL")
        command.add_argument("--database", default="", help="the MongoDB database (STORE_DATABASE)")
    commands.choices["parked"].add_argument("--limit", type=int, default=1000, help="most listed")
    for name in ("replay", "unpark"):
        command = commands.choices[name]
        command.add_argument("--id", action="append", default=[], help="event id (repeatable)")
        command.add_argument("--all", action="store_true", help="every message")
    return asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
