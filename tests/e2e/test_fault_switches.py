"""Fault switches flipped while the session's system runs, from the command line and through
the operator API (an admin's REST calls to the gateway), seen by a client of the gateway: at
the gateway (Envoy's fault filter, rewritten by its agent from the flag file) a service's calls
delayed or aborted, one method only; in the services, an RPC failed with the status chosen.
Each switch is turned off again, and the calls pass as before. The RPC switches' own behaviour
on a server is in tests/integration/test_switches.py."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from ordermesh.switches import GATEWAY_ABORTS, GATEWAY_LATENCY, RPC_ERRORS

from harness.gateway import LocalGateway
from harness.rest import Rest
from harness.shop import Shop, eventually
from harness.system import System


def flip(flags: Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "ordermesh.switches", *args, "--file", str(flags)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def product_id(system: System) -> str:
    shop = Shop(system)
    try:
        return (await shop.product(name="Kettle")).product_id
    finally:
        await shop.close()


async def call(http: aiohttp.ClientSession, url: str) -> tuple[int, dict, float]:
    started = time.perf_counter()
    async with http.get(url) as answer:
        body = await answer.json(content_type=None)
        return answer.status, body, time.perf_counter() - started


@pytest.fixture
async def switched_off(system: System, gateway: LocalGateway, http: aiohttp.ClientSession):
    """Every switch this module turns on is off again after each test, as the gateway sees it:
    a call neither aborted nor delayed."""
    yield
    for switch in (GATEWAY_LATENCY, GATEWAY_ABORTS, RPC_ERRORS):
        flip(system.flags_file, "off", switch)

    async def passed() -> bool:
        before = gateway.envoy.counter(DELAYED)
        status, _, _ = await call(http, f"{gateway.url}/v1/products?pageSize=1")
        return status == 200 and gateway.envoy.counter(DELAYED) == before

    await eventually(passed, what="the gateway's faults off")


DELAYED = "http.gateway.fault.delays_injected"
ABORTED = "http.gateway.fault.aborts_injected"


async def answers(http: aiohttp.ClientSession, url: str, expected: int) -> bool:
    return (await call(http, url))[0] == expected


async def test_the_gateways_switches_abort_then_delay_a_services_calls_while_on(
    system, gateway, http, product_id, switched_off
):
    listing = f"{gateway.url}/v1/products?pageSize=1"
    one = f"{gateway.url}/v1/products/{product_id}"

    said = flip(system.flags_file, "on", GATEWAY_ABORTS, "--service", "inventory",
                "--method", "ListProducts", "--http-status", "503")  # fmt: skip
    assert said.startswith("gateway-aborts on for service=inventory, method=ListProducts")
    # Envoy takes the filter's new configuration from the agent's file a moment later.
    await eventually(lambda: answers(http, listing, 503), what="a listing aborted")
    assert gateway.envoy.counter(ABORTED) > 0
    status, body, _ = await call(http, one)  # the service's other methods are not named
    assert (status, body["product"]["productId"]) == (200, product_id)

    flip(system.flags_file, "off", GATEWAY_ABORTS)
    await eventually(lambda: answers(http, listing, 200), what="listings answered again")

    flip(system.flags_file, "on", GATEWAY_LATENCY, "--service", "inventory", "--latency-ms", "400")
    before = gateway.envoy.counter(DELAYED)

    async def delayed() -> float | None:
        status, _, took = await call(http, one)
        return took if status == 200 and gateway.envoy.counter(DELAYED) > before else None

    took = await eventually(delayed, what="a call delayed")
    assert took >= 0.4  # the delay it was told to add, to every call of the service


async def test_an_rpc_switch_fails_a_services_method_behind_the_gateway_until_off(
    system, gateway, http, product_id, switched_off
):
    one = f"{gateway.url}/v1/products/{product_id}"
    flip(system.flags_file, "on", RPC_ERRORS, "--service", "inventory", "--method", "GetProduct",
         "--status", "FAILED_PRECONDITION")  # fmt: skip

    async def refused() -> dict | None:
        status, body, _ = await call(http, one)
        return body if status == 400 else None

    # Every instance follows the file; each answers with the switch's status and says why.
    body = await eventually(refused, what="GetProduct refused by the switch")
    assert body["message"] == "fault switch rpc-errors is on (service=inventory, method=GetProduct)"
    for _ in range(4):  # whichever instance answers
        status, _, _ = await call(http, one)
        assert status == 400
    listed, _, _ = await call(http, f"{gateway.url}/v1/products?pageSize=1")
    assert listed == 200

    flip(system.flags_file, "off", RPC_ERRORS)
    await eventually(lambda: answers(http, one, 200), what="GetProduct answered again")


async def test_an_admin_turns_a_services_switch_on_and_off_through_the_operator_api(
    system, gateway, http, product_id, switched_off
):
    shop, rest = Shop(system), Rest(gateway.url)
    one = f"{gateway.url}/v1/products/{product_id}"
    path = "/v1/ops/inventory/fault-switches"
    on = {"settings": {"status": "FAILED_PRECONDITION"}, "reason": "drill"}
    try:
        admin, customer = await shop.admin(), await shop.register()
        # Nobody but an admin turns a switch, and a switch refused leaves everything off.
        await rest.call("TurnFaultSwitchOn", "POST", f"{path}/rpc-errors:turnOn", on,
                        token=customer.access_token, expect=403)  # fmt: skip
        await rest.call("TurnFaultSwitchOn", "POST", f"{path}/rpc-errors:turnOn", on, expect=401)
        await rest.call("TurnFaultSwitchOn", "POST", f"{path}/rpc-latency:turnOn",
                        {"reason": "no latency given"}, token=admin.access_token,
                        expect=400)  # fmt: skip
        listed = await rest.call("ListFaultSwitches", "GET", path, token=admin.access_token)
        assert not any(s.get("on") for s in listed["switches"]), listed

        turned = await rest.call("TurnFaultSwitchOn", "POST", f"{path}/rpc-errors:turnOn", on,
                                 token=admin.access_token)  # fmt: skip
        # On for the service the call named (its path), with what was asked, as the file says:
        # every RPC of the service fails, but for the operator API's.
        assert turned["switch"]["on"] is True
        assert turned["switch"]["where"] == {"service": "inventory"}
        settings = {k: v for k, v in turned["switch"]["settings"].items() if v}
        assert settings == {"percent": 100, "status": "FAILED_PRECONDITION"}

        async def refused() -> dict | None:
            status, body, _ = await call(http, one)
            return body if status == 400 else None

        body = await eventually(refused, what="GetProduct refused by the switch")
        assert body["message"].startswith("fault switch rpc-errors is on")

        async def held() -> bool:  # the instance that answers holds it
            listed = await rest.call("ListFaultSwitches", "GET", path, token=admin.access_token)
            return any(s["name"] == "rpc-errors" and s.get("on") for s in listed["switches"])

        await eventually(held, what="the switch listed on")
        # Nor does the gateway abort the operator API's calls of a service it aborts.
        aborts = {"settings": {"httpStatus": 503}, "reason": "drill"}
        await rest.call("TurnFaultSwitchOn", "POST", f"{path}/gateway-aborts:turnOn", aborts,
                        token=admin.access_token)  # fmt: skip
        await eventually(lambda: answers(http, one, 503), what="GetProduct aborted")

        over = {"reason": "drill over"}
        for switch in ("rpc-errors", "gateway-aborts"):
            turned = await rest.call("TurnFaultSwitchOff", "POST", f"{path}/{switch}:turnOff",
                                     over, token=admin.access_token)  # fmt: skip
            assert not turned["switch"].get("on")
        await eventually(lambda: answers(http, one, 200), what="GetProduct answered again")
    finally:
        await rest.close()
        await shop.close()
