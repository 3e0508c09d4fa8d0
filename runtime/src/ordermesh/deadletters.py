"""The operator's actions on one service's failed messages, from the command line: the same code
paths as the operator API (ordermesh.operations), run against the service's broker and store.

    python -m ordermesh.deadletters list    --amqp URL --queue order.saga.dlq
    python -m ordermesh.deadletters replay  --amqp URL --store STORE_URL --queue order.saga.dlq \
        --reason WHY (--id EVENT_ID ... | --all)
    python -m ordermesh.deadletters discard --amqp URL --store STORE_URL --queue order.saga.dlq \
        --reason WHY (--id EVENT_ID ... | --all)
    python -m ordermesh.deadletters parked  --store STORE_URL [--database NAME]
    python -m ordermesh.deadletters unpark  --store STORE_URL [--database NAME] --reason WHY \
        (--id EVENT_ID ... | --all)

`list` prints one JSON object per dead letter: its queue, event id, type, correlation id,
failure (class, message, attempts, consumer, instance, time), original route, earlier replays
and decoded body; it leaves the queue as it was. `replay` publishes the chosen messages again
to their original exchange and routing key, with their original event ids, and removes each
from the queue only once the broker confirmed its replay; `discard` removes them for good.

`parked` prints the messages the service's outbox relay parked because the broker refused them
as they are (ordermesh.outbox), one JSON object each; `unpark` makes the chosen ones pending
again, so that the running relay publishes them (after the cause was fixed).

Every action needs a reason and is recorded in the service's audit trail (its store: hence
`--store` on replay and discard) as taken by `cli:<user>@<host>`.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import socket
import sys
from typing import Any

from ordermesh import logging as chassis_logging
from ordermesh.broker import Broker, BrokerError
from ordermesh.decoding import decoded
from ordermesh.errors import DomainError
from ordermesh.operations import OPERATOR_ACTIONS, Operations, Operator
from ordermesh.store import ParkedRow, open_store

__all__ = ["main", "parked_as_json"]


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
            "body": decoded(message.envelope.type, message.payload),
        },
        default=str,
    )


def _operator(reason: str) -> Operator:
    return Operator(actor=f"cli:{getpass.getuser()}@{socket.gethostname()}", reason=reason)


def _refused(exc: Exception) -> int:
    print(f"not done: {exc}", file=sys.stderr)
    return 1


async def _run(args: argparse.Namespace, operations: Operations) -> int:
    chosen = None if getattr(args, "all", False) else set(getattr(args, "id", []))
    if args.command == "list":
        for letter in await operations.dead_letters(args.queue, limit=args.limit):
            print(json.dumps(letter.as_json(), default=str))
    elif args.command == "parked":
        for parked in await operations.parked(limit=args.limit):
            print(parked_as_json(parked))
    elif args.command == "unpark":
        count = await operations.unpark(chosen, _operator(args.reason))
        print(f"{count} parked message(s) pending again")
    elif args.command == "replay":
        count = await operations.replay(args.queue, chosen, _operator(args.reason))
        print(f"replayed {count} message(s) from {args.queue}")
    else:
        count = await operations.discard(args.queue, chosen, _operator(args.reason))
        print(f"discarded {count} message(s) from {args.queue}")
    return 0


async def _main(args: argparse.Namespace) -> int:
    if args.command in ("replay", "discard", "unpark") and not args.all and not args.id:
        print(f"{args.command} needs --id EVENT_ID (repeatable) or --all", file=sys.stderr)
        return 2
    queue = getattr(args, "queue", "")
    store: Any = None
    broker: Any = None
    try:
        if getattr(args, "store", None):
            store = open_store(args.store, database=args.database)
            await store.open([OPERATOR_ACTIONS])
        if getattr(args, "amqp", None):
            broker = Broker(args.amqp, name="deadletters")
            await broker.connect()
        operations = Operations(
            service=queue.split(".")[0],
            store=store,
            broker=broker,
            dead_letter_queues=lambda: [queue] if queue else [],
        )
        return await _run(args, operations)
    except (DomainError, BrokerError) as exc:  # a bad argument, or the broker refusing
        return _refused(exc)
    finally:
        if broker is not None:
            await broker.close()
        if store is not None:
            await store.close()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name, what in (
        ("list", "list a dead-letter queue"),
        ("replay", "replay dead letters"),
        ("discard", "discard dead letters"),
        ("parked", "list parked outbox messages"),
        ("unpark", "make parked messages pending"),
    ):
        command = commands.add_parser(name, help=what)
        if name in ("list", "replay", "discard"):
            command.add_argument("--amqp", required=True, help="RabbitMQ URL")
            command.add_argument("--queue", required=True, help="<service>.<purpose>.dlq")
        if name != "list":
            needed = name != "parked"
            command.add_argument("--store", required=True, help="the service's STORE_URL")
            command.add_argument("--database", default="", help="MongoDB's (STORE_DATABASE)")
            if needed:
                command.add_argument("--reason", required=True, help="why (audited)")
                command.add_argument("--id", action="append", default=[], help="an event id")
                command.add_argument("--all", action="store_true", help="every message")
        if name in ("list", "parked"):
            command.add_argument("--limit", type=int, default=500, help="the most listed")
    return parser


def main() -> int:
    args = _parser().parse_args()
    # What it prints is the answer; its log lines (the audit's among them) go to stderr.
    chassis_logging.configure(
        service="deadletters", instance=socket.gethostname(), stream=sys.stderr
    )
    return asyncio.run(_main(args))


if __name__ == "__main__":
    sys.exit(main())
