"""The ledger's stages are named once (ordermesh.ledger.Stage) and counted, and shown to
Prometheus, as the same strings as before they had names."""

from __future__ import annotations

import pytest
from ordermesh.ledger import STAGES, Ledger, Stage
from prometheus_client import CollectorRegistry


def test_each_stage_is_its_string():
    assert list(STAGES) == [
        "published", "delivered", "processed", "duplicate",
        "retried", "dead_lettered", "parked", "waited",
    ]  # fmt: skip
    assert [str(stage) for stage in Stage] == list(STAGES)


def test_a_stage_named_or_written_counts_as_one():
    registry = CollectorRegistry()
    ledger = Ledger(registry)

    ledger.record("order.v1.OrderPlaced", Stage.PROCESSED, queue="q")
    ledger.record("order.v1.OrderPlaced", "processed", queue="q")

    assert ledger.count(Stage.PROCESSED) == 2
    assert ledger.count("processed", "order.v1.OrderPlaced") == 2
    labels = {"type": "order.v1.OrderPlaced", "stage": "processed", "queue": "q"}
    assert registry.get_sample_value("ordermesh_messages_total", labels) == 2


def test_an_unknown_stage_is_refused_with_the_list():
    with pytest.raises(ValueError, match=r"unknown ledger stage 'acked'.*'processed'"):
        Ledger().record("t", "acked")


def test_the_age_of_each_processed_message_is_a_histogram_per_type_and_queue():
    registry = CollectorRegistry()
    ledger = Ledger(registry)

    for seconds in (0.004, 0.02, 0.03, 2.0, -0.5):  # a consumer's clock behind counts as 0
        ledger.processed_at_age("order.v1.OrderPlaced", "q", seconds)

    labels = {"type": "order.v1.OrderPlaced", "queue": "q"}
    sample = registry.get_sample_value
    assert sample("ordermesh_message_age_seconds_count", labels) == 5
    assert sample("ordermesh_message_age_seconds_sum", labels) == pytest.approx(2.054)
    assert sample("ordermesh_message_age_seconds_bucket", {**labels, "le": "0.005"}) == 2
    assert sample("ordermesh_message_age_seconds_bucket", {**labels, "le": "0.05"}) == 4
    assert sample("ordermesh_message_age_seconds_bucket", {**labels, "le": "+Inf"}) == 5
