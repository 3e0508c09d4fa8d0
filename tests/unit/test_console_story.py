"""One request's story: the saga's history, every service's message history and every
process's log lines, merged into one timeline in time order."""

from datetime import UTC, datetime, timedelta

from services.console.domain import MessageEvent, SagaStep, SagaView, story_of

T0 = datetime(2026, 12, 5, 10, 0, 0, tzinfo=UTC)


def at(ms):
    return T0 + timedelta(milliseconds=ms)


def iso(ms):
    return at(ms).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


SAGA = SagaView(
    saga_id="order-1",
    status="COMPLETED",
    state="APPROVED",
    step="",
    started_at=at(0),
    updated_at=at(40),
    failure_reason="",
    correlation_id="corr-1",
    trace_id="a" * 32,
)


def step(ms, kind, **given):
    return SagaStep(
        **{
            "time": at(ms),
            "kind": kind,
            "step": "reserve stock",
            "message_type": "inventory.v1.ReserveStock",
            "saga_state": "RESERVING_STOCK",
            "detail": "",
            "actor": "",
            **given,
        }
    )


def message(ms, fate, service="inventory", **given):
    return MessageEvent(
        **{
            "service": service,
            "time": at(ms) if ms is not None else None,
            "fate": fate,
            "event_id": f"ev-{ms}",
            "type": "inventory.v1.StockReserved",
            "where": "",
            "instance": f"{service}-1",
            "actor": "",
            "detail": "",
            **given,
        }
    )


def line(at_ms, event, **fields):
    return {"timestamp": iso(at_ms), "service": "order", "instance": "order-2", "level": "info",
            "event": event, "correlation_id": "corr-1", **fields}  # fmt: skip


def test_every_source_is_merged_in_time_order():
    story = story_of(
        "order-1",
        saga=SAGA,
        saga_service="order",
        saga_history=[step(1, "saga started"), step(2, "command sent"), step(30, "saga ended")],
        messages=[message(10, "processed"), message(5, "published", service="order")],
        log_records=[
            line(0, "rpc handled", method="/order.v1.OrderService/PlaceOrder", code="OK", ms=3.1),
            line(20, "message processed"),
        ],
    )

    assert [(e.source, e.kind) for e in story.entries] == [
        ("log", "rpc"),
        ("saga", "saga started"),
        ("saga", "command sent"),
        ("message", "published"),
        ("message", "processed"),
        ("log", "log"),
        ("saga", "saga ended"),
    ]
    assert story.entries[0].title == "/order.v1.OrderService/PlaceOrder OK 3.1 ms"
    assert story.entries[3].service == "order"
    assert (story.correlation_id, story.trace_id, story.saga_service) == (
        "corr-1",
        "a" * 32,
        "order",
    )


def test_at_the_same_instant_the_saga_comes_first_then_messages_then_log_lines():
    story = story_of(
        "order-1",
        saga=SAGA,
        saga_history=[step(7, "reply received")],
        messages=[message(7, "processed")],
        log_records=[line(7, "saga step"), line(7, "second line")],
    )

    assert [e.source for e in story.entries] == ["saga", "message", "log", "log"]
    assert [e.title for e in story.entries[2:]] == ["saga step", "second line"]


def test_log_times_of_another_precision_and_offset_are_placed_by_their_instant():
    story = story_of(
        "corr-1",
        saga=None,
        messages=[message(2, "published")],
        log_records=[
            {**line(0, "x"), "timestamp": "2026-12-05T11:00:00.003+01:00"},  # Envoy's offset
            {**line(0, "y"), "timestamp": "2026-12-05T10:00:00.001Z"},  # millisecond precision
        ],
    )

    assert [e.title for e in story.entries] == ["y", "inventory.v1.StockReserved published", "x"]


def test_records_without_a_time_are_left_out():
    story = story_of(
        "corr-1",
        saga=None,
        messages=[message(None, "processed")],
        log_records=[{**line(0, "x"), "timestamp": "yesterday"}, {"event": "no time"}],
    )

    assert story.entries == []


def test_the_gateways_access_lines_an_operators_actions_and_dead_letters_say_what_they_are():
    story = story_of(
        "corr-1",
        saga=None,
        correlation_id="corr-1",
        messages=[message(3, "dead-lettered", detail="ValueError: boom",
                          where="inventory.commands"),
                  message(4, "operator-action", actor="admin-1", detail="replayed: fixed")],
        log_records=[{**line(1, "access"), "service": "gateway", "path": "/v1/orders",
                      "status": "503", "flags": "UH"}],
    )  # fmt: skip

    access, dead, action = story.entries
    assert (access.kind, access.title, access.service) == ("access", "/v1/orders 503 UH", "gateway")
    assert dead.kind == "dead-lettered"
    assert "where=inventory.commands" in dead.detail
    assert "ValueError: boom" in dead.detail
    assert "by=admin-1" in action.detail


def test_a_log_lines_detail_holds_its_own_fields_not_the_ids_every_line_has():
    (entry,) = story_of(
        "corr-1", saga=None, log_records=[line(0, "stock reserved", product_id="p-1")]
    ).entries

    assert entry.detail == "product_id=p-1"
    assert (entry.service, entry.instance, entry.level) == ("order", "order-2", "info")


def test_without_a_saga_the_ids_are_those_given():
    story = story_of("corr-9", saga=None, correlation_id="corr-9", trace_id="b" * 32)

    assert (story.saga, story.saga_service) == (None, "")
    assert (story.correlation_id, story.trace_id) == ("corr-9", "b" * 32)


def test_a_consumers_record_without_a_type_takes_the_producers():
    story = story_of(
        "corr-1",
        saga=None,
        messages=[
            message(1, "published", service="order", event_id="ev-1"),
            message(2, "processed", event_id="ev-1", type=""),
            message(3, "processed", event_id="ev-2", type=""),
        ],
    )

    assert [e.title for e in story.entries] == [
        "inventory.v1.StockReserved published",
        "inventory.v1.StockReserved processed",
        "message ev-2 processed",
    ]
