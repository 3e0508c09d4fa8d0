"""A message's envelope as AMQP carries it: when it was made travels to the microsecond."""

from datetime import UTC, datetime

import pamqp.commands
import pamqp.header
from aiormq.abc import DeliveredMessage
from inventory.v1 import events_pb2
from ordermesh.events import TypeRegistry, amqp_properties, outgoing


def delivered(properties) -> DeliveredMessage:
    return DeliveredMessage(
        delivery=pamqp.commands.Basic.Deliver(delivery_tag=1),
        header=pamqp.header.ContentHeader(properties=properties),
        body=events_pb2.StockAdjusted(product_id="p").SerializeToString(),
        channel=None,  # type: ignore[arg-type]
    )


def test_when_a_message_was_made_arrives_to_the_microsecond():
    made = outgoing(events_pb2.StockAdjusted(product_id="p"), producer="inventory").envelope

    properties = amqp_properties(made)
    envelope, _ = TypeRegistry([events_pb2.StockAdjusted]).decode(delivered(properties))

    assert envelope.occurred_at == made.occurred_at
    assert envelope.occurred_at.microsecond == made.occurred_at.microsecond


def test_a_message_without_the_header_keeps_the_timestamps_whole_seconds():
    made = outgoing(events_pb2.StockAdjusted(product_id="p"), producer="inventory").envelope
    properties = amqp_properties(made)
    del properties.headers["occurred-at"]
    properties.timestamp = datetime(2026, 12, 6, 10, 0, 1, tzinfo=UTC)

    envelope, _ = TypeRegistry([events_pb2.StockAdjusted]).decode(delivered(properties))

    assert envelope.occurred_at == datetime(2026, 12, 6, 10, 0, 1, tzinfo=UTC)
