"""Fault switches (chassis.switches) from what their flag file holds: off by default, on for
exactly what the flag's targeting names, a malformed version ignored for the last good one, no
file meaning every switch off, each change logged and measured. Following the file on disk, the
command line and a consumer failing for real are in tests/integration/test_switches.py."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest

from chassis.faults import passing_fault
from chassis.metrics import Metrics
from chassis.switches import HANDLER_FAILS, InjectedFault, Switches

QUEUE = "notification.events"
APPROVED = "order.v2.OrderApproved"


def flag_file(**handler_fails: Any) -> str:
    """A flagd flag file whose handler-fails flag fails what `targeting` names."""
    flag = {
        "state": "ENABLED",
        "variants": {"on": True, "off": False},
        "defaultVariant": "off",
        **handler_fails,
    }
    return json.dumps({"$schema": "https://flagd.dev/schema/v0/flags.json",
                       "flags": {HANDLER_FAILS: flag}})  # fmt: skip


def failing(queue: str = QUEUE, type_: str = APPROVED) -> str:
    rule = {"and": [{"==": [{"var": "queue"}, queue]}, {"==": [{"var": "type"}, type_]}]}
    return flag_file(targeting={"if": [rule, "on", "off"]})


def fails(switches: Switches, *, queue: str = QUEUE, type_: str = APPROVED) -> bool:
    return switches.is_on(HANDLER_FAILS, service="notification", queue=queue, type=type_)


def lines(output) -> list[dict]:
    return [json.loads(line) for line in output.getvalue().splitlines()]


def sample(metrics: Metrics, name: str) -> float | None:
    return metrics.registry.get_sample_value(name, {"switch": HANDLER_FAILS})


def test_every_switch_is_off_without_a_flag_file():
    switches = Switches()

    switches.refresh()

    assert not fails(switches)
    switches.inject(HANDLER_FAILS, service="notification", queue=QUEUE, type=APPROVED)


async def test_without_a_flag_file_nothing_is_followed():
    await Switches().follow()  # returns at once: nothing to read


def test_a_switch_is_on_for_the_queue_and_type_its_targeting_names_and_off_for_the_rest():
    switches = Switches()

    switches.load(failing())

    assert fails(switches)
    assert not fails(switches, type_="order.v2.OrderPlaced")
    assert not fails(switches, queue="order.saga")


def test_a_switch_without_targeting_takes_its_default_variant():
    switches = Switches()

    switches.load(flag_file(defaultVariant="on"))

    assert fails(switches)
    assert fails(switches, queue="order.saga", type_="inventory.v1.StockReserved")


def test_a_disabled_flag_is_off_whatever_its_targeting():
    switches = Switches()

    switches.load(flag_file(state="DISABLED", defaultVariant="on"))

    assert not fails(switches)


def test_the_targeting_sees_the_service():
    switches = Switches()
    rule = {"==": [{"var": "service"}, "notification"]}

    switches.load(flag_file(targeting={"if": [rule, "on", "off"]}))

    assert fails(switches)
    assert not switches.is_on(HANDLER_FAILS, service="order", queue=QUEUE, type=APPROVED)


def test_an_injected_fault_is_the_messages_own_not_one_that_passes():
    switches = Switches()
    switches.load(failing())

    with pytest.raises(InjectedFault, match=f"handler-fails is on .*type={APPROVED}") as raised:
        switches.inject(HANDLER_FAILS, service="notification", queue=QUEUE, type=APPROVED)

    assert passing_fault(raised.value) is None


@pytest.mark.parametrize(
    "malformed",
    [
        "{not json",
        json.dumps({"flags": []}),
        flag_file(state="HALF"),
        flag_file(variants={"on": "yes", "off": "no"}),
        flag_file(targeting={"no_such_operator": [1, 2]}),
    ],
    ids=["not-json", "flags-not-an-object", "bad-state", "variants-not-booleans", "bad-operator"],
)
def test_a_malformed_file_keeps_the_last_good_state_and_is_logged(malformed, output):
    switches = Switches("flags.json")
    switches.load(failing())

    switches.load(malformed)

    assert fails(switches)
    assert not fails(switches, type_="order.v2.OrderPlaced")
    [error] = [line for line in lines(output) if line["level"] == "error"]
    assert error["event"] == "fault switch file malformed; the switches keep their last good state"
    assert error["file"] == "flags.json"


def test_no_file_turns_every_switch_off():
    switches = Switches()
    switches.load(failing())

    switches.load(None)

    assert not fails(switches)


def test_a_rule_that_fails_for_one_message_answers_off_for_it_and_is_logged(output):
    switches = Switches()
    # A variant that is not there, reached only for this type: flagd fails to evaluate it.
    rule = {"if": [{"==": [{"var": "type"}, APPROVED]}, "missing", "off"]}
    switches.load(flag_file(targeting=rule))

    assert not fails(switches)
    assert not fails(switches)
    [error] = [line for line in lines(output) if line["level"] == "error"]
    assert error["event"] == "fault switch rule cannot be evaluated here; the switch is off for it"


def test_each_turn_on_or_off_is_logged_once_with_where_it_applies(output):
    switches = Switches("flags.json")

    switches.load(failing())
    switches.load(failing())  # the same again: no news
    switches.load(failing(type_="order.v2.OrderPlaced"))
    switches.load(flag_file(state="DISABLED"))

    said = [(line["event"], line.get("where")) for line in lines(output)]
    assert said == [
        ("fault switch on", {"queue": QUEUE, "type": APPROVED}),
        ("fault switch changed", {"queue": QUEUE, "type": "order.v2.OrderPlaced"}),
        ("fault switch off", None),
    ]
    assert lines(output)[0]["level"] == "warning"


def test_the_metrics_show_whether_a_switch_is_on_and_count_what_it_injected():
    metrics = Metrics()
    switches = Switches(metrics=metrics.switches)
    assert sample(metrics, "ordermesh_fault_switch_active") == 0

    switches.load(failing())
    for type_ in (APPROVED, "order.v2.OrderPlaced", APPROVED):
        with contextlib.suppress(InjectedFault):
            switches.inject(HANDLER_FAILS, service="notification", queue=QUEUE, type=type_)

    assert sample(metrics, "ordermesh_fault_switch_active") == 1
    assert sample(metrics, "ordermesh_fault_injections_total") == 2
    switches.load(None)
    assert sample(metrics, "ordermesh_fault_switch_active") == 0


def test_the_answers_follow_each_new_version_of_the_file():
    switches = Switches()
    switches.load(failing())
    assert fails(switches)

    switches.load(failing(type_="order.v2.OrderPlaced"))

    assert not fails(switches)
    assert fails(switches, type_="order.v2.OrderPlaced")


def test_the_list_names_each_switch_and_where_it_is_on():
    switches = Switches()
    switches.load(failing())

    [entry] = switches.listed()

    assert entry["switch"] == HANDLER_FAILS
    assert entry["on"] is True
    assert entry["where"] == {"queue": QUEUE, "type": APPROVED}
