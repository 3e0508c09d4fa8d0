"""What the operator API of sagas says of a saga, and what an operator's entries in its history
store and measure (ordermesh.saga_operations, ordermesh.saga_record): pure mappings, no store."""

from datetime import UTC, datetime

import pytest
from ordermesh.contracts.ops.v1 import ops_service_pb2 as pb
from ordermesh.metrics import SagaMetrics
from ordermesh.saga import SagaView
from ordermesh.saga_operations import entry_proto, saga_proto, status_of
from ordermesh.saga_record import HistoryKind, SagaStatus, measure, record, stored
from prometheus_client import CollectorRegistry

START = 1_800_000_000.0


def entry(kind: str, **fields: str) -> dict:
    return {"kind": kind, "step": "", "message_type": "", "state": "X", "detail": "",
            "time": "2027-01-15T08:00:00.250000+00:00", **fields}  # fmt: skip


@pytest.mark.parametrize("status", list(SagaStatus))
def test_every_saga_status_is_a_value_of_the_api_and_back(status):
    view = SagaView(
        saga_id="o-1",
        status=status,
        state=str(status),
        step="",
        started_at=datetime.fromtimestamp(START, UTC),
        updated_at=datetime.fromtimestamp(START + 1.5, UTC),
        failure_reason="",
        history=[],
    )

    proto = saga_proto(view)

    assert pb.SagaStatus.Name(proto.status) == f"SAGA_STATUS_{status}"
    assert status_of(proto.status) == status
    assert proto.update_time.ToNanoseconds() - proto.start_time.ToNanoseconds() == 1_500_000_000


def test_an_unspecified_status_lists_every_saga():
    assert status_of(pb.SAGA_STATUS_UNSPECIFIED) is None


@pytest.mark.parametrize("kind", list(HistoryKind))
def test_every_kind_of_history_entry_is_a_value_of_the_api(kind):
    proto = entry_proto(entry(kind.value, detail="why", actor="u-admin"))

    assert pb.SagaHistoryKind.Name(proto.kind) == f"SAGA_HISTORY_KIND_{kind.value}"
    assert (proto.detail, proto.actor) == ("why", "u-admin")
    assert proto.time.ToJsonString() == "2027-01-15T08:00:00.250Z"


def test_an_entry_of_an_earlier_version_has_no_actor_and_one_of_a_later_kind_is_unspecified():
    earlier = entry_proto(entry("SAGA_PARKED"))  # written before entries named an actor
    later = entry_proto(entry("SOMETHING_NEW", detail="kept", actor="u-9"))

    assert earlier.actor == ""
    assert later.kind == pb.SAGA_HISTORY_KIND_UNSPECIFIED
    assert later.detail == "kept"


def saga_with(*kinds: tuple[str, float, str]) -> dict:
    saga: dict = {"status": SagaStatus.NEEDS_OPERATOR, "history": []}
    for kind, at, state in kinds:
        record(saga, kind, saga_name="test", at=at, state=state, actor="u-admin")
    return saga


def test_a_saga_is_stored_with_the_time_of_its_last_entry_and_each_entry_with_its_actor():
    saga = saga_with(("SAGA_STARTED", START, "STARTED"), ("OPERATOR_RETRIED", START + 42.5, "C"))

    assert stored(saga)["updated_at"] == START + 42.5
    assert saga["history"][-1]["actor"] == "u-admin"


def test_a_resolve_is_measured_as_a_compensated_end_and_a_retry_not_at_all():
    metrics = SagaMetrics(CollectorRegistry())
    saga = saga_with(
        ("SAGA_STARTED", START, "STARTED"),
        ("SAGA_PARKED", START + 10, "NEEDS_OPERATOR"),
        ("OPERATOR_RETRIED", START + 20, "COMPENSATING_RESERVE_STOCK"),
        ("SAGA_PARKED", START + 30, "NEEDS_OPERATOR"),
        ("OPERATOR_RESOLVED", START + 40, "COMPENSATED"),
        ("SAGA_ENDED", START + 40, "COMPENSATED"),
    )

    measure(metrics, "test", saga["history"], since=2)

    def ended(outcome: str) -> float:
        return metrics.ended.labels("test", outcome)._value.get()

    assert (ended("needs_operator"), ended("compensated")) == (1, 1)
