"""Fault switches (ordermesh.switches) from what their flag file holds: off by default, on for
exactly what the flag's targeting names, a malformed version ignored for the last good one, no
file meaning every switch off, each change logged and measured. Following the file on disk, the
command line and a consumer failing for real are in tests/integration/test_switches.py."""

from __future__ import annotations

import contextlib
import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
import pytest
from ordermesh.contracts.ops.v1 import ops_service_pb2 as ops_pb
from ordermesh.errors import FailedPrecondition
from ordermesh.faults import passing_fault
from ordermesh.flag_file import SwitchRefused, states, turn_on
from ordermesh.metrics import Metrics
from ordermesh.operations import Operations
from ordermesh.operator_api import OperatorApi
from ordermesh.switches import (
    GATEWAY_ABORTS,
    GATEWAY_LATENCY,
    HANDLER_FAILS,
    RPC_ERRORS,
    RPC_LATENCY,
    SWITCHES,
    InjectedFault,
    RpcFault,
    Switches,
)

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

    entries = {entry["switch"]: entry for entry in switches.listed()}

    assert set(entries) == set(SWITCHES)
    assert entries[HANDLER_FAILS]["on"] is True
    assert entries[HANDLER_FAILS]["where"] == {"queue": QUEUE, "type": APPROVED}
    assert entries[RPC_LATENCY]["on"] is False


def rpc_flags(**flags: dict[str, Any]) -> str:
    """A flag file with these RPC switches, each on for `where` ({}: everywhere) with the
    `metadata` given."""
    written = {}
    for switch, spec in flags.items():
        rule = [{"==": [{"var": k}, v]} for k, v in spec.get("where", {}).items()]
        flag: dict[str, Any] = {
            "state": "ENABLED",
            "variants": {"on": True, "off": False},
            "defaultVariant": "off" if rule else "on",
            "metadata": spec["metadata"],
        }
        if rule:
            flag["targeting"] = {"if": [rule[0] if len(rule) == 1 else {"and": rule}, "on", "off"]}
        written[switch.replace("_", "-")] = flag
    return json.dumps({"flags": written})


def test_rpc_switches_slow_and_fail_the_calls_their_targeting_names_with_their_settings():
    metrics = Metrics()
    switches = Switches(metrics=metrics.switches)
    assert switches.rpc_fault("order", "PlaceOrder") is None  # off by default

    switches.load(rpc_flags(
        rpc_latency={"where": {"service": "order", "method": "PlaceOrder"},
                     "metadata": {"latency_ms": 300}},
        rpc_errors={"where": {"service": "inventory"},
                    "metadata": {"percent": 100, "status": "RESOURCE_EXHAUSTED"}},
    ))  # fmt: skip

    assert switches.rpc_fault("order", "PlaceOrder") == RpcFault(delay_s=0.3)
    assert switches.rpc_fault("order", "GetOrder") is None
    assert switches.rpc_fault("inventory", "ListProducts") == RpcFault(
        status=grpc.StatusCode.RESOURCE_EXHAUSTED
    )
    for switch, count in ((RPC_LATENCY, 1), (RPC_ERRORS, 1)):
        labels = {"switch": switch}
        assert (
            metrics.registry.get_sample_value("ordermesh_fault_injections_total", labels) == count
        )
        assert metrics.registry.get_sample_value("ordermesh_fault_switch_active", labels) == 1
    listed = {entry["switch"]: entry for entry in switches.listed()}
    assert listed[RPC_ERRORS]["settings"] == {"percent": 100.0, "status": "RESOURCE_EXHAUSTED"}
    assert listed[RPC_LATENCY]["where"] == {"service": "order", "method": "PlaceOrder"}


def test_an_error_rate_fails_about_that_share_of_the_calls():
    switches = Switches()
    switches.load(rpc_flags(rpc_errors={"metadata": {"percent": 25, "status": "UNAVAILABLE"}}))

    failed = sum(switches.rpc_fault("user", "GetProfile") is not None for _ in range(4000))

    assert 800 <= failed <= 1200  # 1,000 expected; the bounds are over 7 standard deviations


@pytest.mark.parametrize(
    ("switch", "metadata", "why"),
    [
        ("rpc_latency", {}, "names no latency_ms"),
        ("rpc_latency", {"latency_ms": 0}, "from 1 to 60000"),
        ("rpc_latency", {"latency_ms": 2.5}, "whole number"),
        ("rpc_errors", {"percent": 0, "status": "UNAVAILABLE"}, "above 0"),
        ("rpc_errors", {"percent": 150, "status": "UNAVAILABLE"}, "at most 100"),
        ("rpc_errors", {"percent": 50, "status": "OK"}, "other than OK"),
        ("rpc_errors", {"percent": 50}, "names no status"),
    ],
)
def test_an_rpc_switch_with_settings_out_of_range_is_malformed(switch, metadata, why, output):
    switches = Switches("flags.json")
    switches.load(rpc_flags(rpc_latency={"metadata": {"latency_ms": 50}}))

    switches.load(rpc_flags(**{switch: {"metadata": metadata}}))

    assert switches.rpc_fault("order", "PlaceOrder") == RpcFault(delay_s=0.05)  # the last good
    [error] = [line for line in lines(output) if line["level"] == "error"]
    assert why in error["error"]


def test_operators_changing_the_file_at_once_lose_nothing(tmp_path):
    """The console and the command line may change the file at the same moment: each change
    is made under a lock, on what the other wrote."""
    flags = tmp_path / "flags.json"
    changes = [
        (RPC_LATENCY, {"service": "order"}, {"latency_ms": 50}),
        (RPC_ERRORS, {"service": "inventory"}, {"percent": 10.0, "status": "UNAVAILABLE"}),
        (GATEWAY_LATENCY, {}, {"latency_ms": 5, "percent": 100.0}),
        (GATEWAY_ABORTS, {"method": "PlaceOrder"}, {"percent": 1.0, "http_status": 503}),
        (HANDLER_FAILS, {"queue": "q"}, {}),
    ]
    for _ in range(5):
        flags.unlink(missing_ok=True)
        with ThreadPoolExecutor(len(changes)) as pool:
            list(pool.map(lambda change: turn_on(flags, *change), changes))
        assert {s["switch"] for s in states(flags) if s["on"]} == set(SWITCHES)


@pytest.mark.parametrize(
    ("switch", "conditions", "settings", "why"),
    [
        (RPC_ERRORS, {"queue": "q"}, {"percent": 1.0, "status": "INTERNAL"}, "does not look at"),
        (RPC_LATENCY, {}, {}, "needs latency_ms"),
        (RPC_ERRORS, {}, {"percent": 101.0, "status": "INTERNAL"}, "percent is a number"),
        ("no-such-switch", {}, {}, "no switch"),
    ],
)
def test_what_a_switch_cannot_take_is_refused_and_nothing_written(
    tmp_path, switch, conditions, settings, why
):
    flags = tmp_path / "flags.json"

    with pytest.raises(SwitchRefused, match=why):
        turn_on(flags, switch, conditions, settings)
    assert not flags.exists()


async def test_a_deployment_without_a_flag_file_says_so_through_the_operator_api():
    api = OperatorApi(Operations("order", store=None, broker=None), Switches(""))  # type: ignore[arg-type]
    listing = ops_pb.ListFaultSwitchesRequest(service="order")
    turning = ops_pb.TurnFaultSwitchOnRequest(service="order", name="rpc-errors", reason="drill")
    for call in (api.ListFaultSwitches(listing, None), api.TurnFaultSwitchOn(turning, None)):  # type: ignore[arg-type]
        with pytest.raises(FailedPrecondition, match="this deployment has no fault switches"):
            await call
