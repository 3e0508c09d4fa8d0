"""A consumer of order.v1.OrderPlaced built from whichever contract is first on the import path:
tests/integration/test_event_evolution.py runs it with the generated code of an earlier
contract (from git history) before today's. It keeps what it decoded of each event.

    python -m tests.integration.contract_consumer --amqp URL --store PATH
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal

from google.protobuf import json_format
from google.protobuf.unknown_fields import UnknownFieldSet
from order.v1 import events_pb2
from ordermesh.broker import Broker
from ordermesh.consumer import Consumer
from ordermesh.events import Envelope
from ordermesh.store import Collection, Transaction
from ordermesh.store.sqlite import SqliteStore
from ordermesh.topology import Subscription

SUBSCRIPTION = Subscription(
    service="evolution", purpose="placed", types=[events_pb2.OrderPlaced], retry_delays_s=(0.5,)
)
DECODED = Collection("decoded")


async def keep(message: events_pb2.OrderPlaced, envelope: Envelope, tx: Transaction) -> None:
    await tx.insert(
        DECODED.name,
        message.order_id,
        {
            # The fields this contract knows, and what the message held beyond them.
            "contract_fields": [f.name for f in message.DESCRIPTOR.fields],
            "fields": json_format.MessageToDict(message, preserving_proto_field_name=True),
            "unknown_fields": [f.field_number for f in UnknownFieldSet(message)],
        },
    )


async def main(args: argparse.Namespace) -> None:
    store = SqliteStore(args.store)
    await store.open([DECODED])
    broker = Broker(args.amqp, name="contract-consumer")
    await broker.connect()
    consumer = Consumer(SUBSCRIPTION, {events_pb2.OrderPlaced: keep}, store=store, broker=broker)  # type: ignore[dict-item]
    await consumer.start()
    print(f"consuming pid={os.getpid()}", flush=True)
    stopping = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)
    await stopping.wait()
    await consumer.stop()
    await broker.close()
    await store.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--amqp", required=True)
    parser.add_argument("--store", required=True)
    asyncio.run(main(parser.parse_args()))
