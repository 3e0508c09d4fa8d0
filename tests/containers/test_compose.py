"""compose.yaml run for real: images built with Podman, the stack brought up with Docker Compose
v2 against Podman's API, the REST journey of the end-to-end tests through its gateway (HTTPS,
with a certificate of a local CA made for the stack, as `make compose-env` makes one; and the
same order through GraphQL), a service container killed and Redis paused under traffic (with
`python -m tools.chaos --compose`, as a person would), and everything torn down (containers,
volumes, images).

On this project's machines every container is on the host's network, listening on 127.0.0.1 on
free ports (deploy/compose.host-network.yaml; no bridge network is ever made), the images are
built on a Debian base made from Debian's packages (no registry is reachable), and the mail
provider is a real SMTP server in this process. The suite builds once and runs its cases
together, in order, on one stack.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import aiohttp
import pytest
from ordermesh.deploy.compose.monitoring import MONITORING
from ordermesh.gateway.envoy import graph_cluster
from ordermesh.gateway.envoy.names import web_cluster

from deploy import images
from harness.compose import PodmanApi, Stack
from harness.gateway import endpoints_of
from harness.process import free_port
from harness.prometheus import api as prometheus_api
from harness.rest import Rest
from harness.shop import PASSWORD, eventually
from harness.sinks import MailSink
from services import catalogue

pytestmark = pytest.mark.timeout(1500)
ADMIN_EMAIL = "admin@ordermesh.example"


def host_network_env(mail_port: int) -> dict[str, str]:
    """Images built here, every address on the loopback, every port a free one."""
    rabbitmq_port = free_port()
    return {
        "ORDERMESH_IMAGE": images.APP,
        "RABBITMQ_IMAGE": "localhost/ordermesh-rabbitmq:test",
        "REDIS_IMAGE": "localhost/ordermesh-redis:test",
        "POSTGRES_IMAGE": "localhost/ordermesh-postgres:test",
        "ENVOY_IMAGE": "localhost/ordermesh-envoy:test",
        "GRAPHQL_IMAGE": images.GRAPHQL,
        "PROMETHEUS_IMAGE": "localhost/ordermesh-prometheus:test",
        "ALERTMANAGER_IMAGE": "localhost/ordermesh-alertmanager:test",
        "PROMETHEUS_PORT": str(free_port()),
        "ALERTMANAGER_PORT": str(free_port()),
        "RABBITMQ_HOST": "127.0.0.1",
        "RABBITMQ_PORT": str(rabbitmq_port),
        "RABBITMQ_DIST_PORT": str(free_port()),
        "RABBITMQ_EPMD_PORT": str(free_port()),
        "RABBITMQ_NODENAME": f"ordermesh-compose-{rabbitmq_port}@localhost",
        "REDIS_HOST": "127.0.0.1",
        "REDIS_PORT": str(free_port()),
        "POSTGRES_HOST": "127.0.0.1",
        "POSTGRES_PORT": str(free_port()),
        "GATEWAY_PORT": str(free_port()),
        "GATEWAY_ADMIN_PORT": str(free_port()),
        "GATEWAY_AGENT_PORT": str(free_port()),
        "GRAPHQL_PORT": str(free_port()),
        "SUBGRAPHS_PORT": str(free_port()),
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(mail_port),
        "ADMIN_EMAIL": ADMIN_EMAIL,
    }


@pytest.fixture(scope="module")
def mail():
    sink = MailSink()
    sink.start()
    yield sink
    sink.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory, mail):
    directory = tmp_path_factory.mktemp("compose")
    started = time.monotonic()
    images.base()
    images.build_all(base_image=images.DEBIAN_BASE, infrastructure=True)
    built_s = time.monotonic() - started
    api = PodmanApi(directory)
    api.start()
    stack = Stack(directory, api, host_network_env(mail.port), profiles=[MONITORING])
    try:
        started = time.monotonic()
        # With Prometheus and Alertmanager (make verify reads the services' figures there), not
        # Grafana: no image of it can be made here.
        stack.up(*(name for name in stack.services() if name != "grafana"))
        print(
            f"\nimages built in {built_s:.0f} s; `compose up` in {time.monotonic() - started:.0f} s"
        )
        yield stack
    finally:
        try:
            stack.down()
            leftover = stack.podman("ps", "--all", "--filter", f"name={stack.project}", "-q")
            assert not leftover.strip(), f"containers left after down: {leftover}"
        finally:
            api.stop()
            images.remove()


@pytest.fixture(scope="module")
def base_url(stack) -> str:
    return stack.url


@pytest.fixture(scope="module")
def trusted(stack) -> ssl.SSLContext:
    """What a client of the gateway trusts: the CA of the stack's certificate."""
    return ssl.create_default_context(cafile=str(stack.ca_file))


def https(trusted: ssl.SSLContext) -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=trusted))


async def rest_client(base_url: str, trusted: ssl.SSLContext) -> Rest:
    """harness.rest's client, its session trusting the stack's CA (it makes one of its own,
    trusting the system's CAs only)."""
    rest = Rest(base_url)
    await rest.http.close()
    rest.http = https(trusted)
    return rest


async def test_the_stack_comes_up_and_every_service_answers_through_the_gateway(
    stack, base_url, trusted
):
    started = time.monotonic()

    async def ready() -> bool:
        async with https(trusted) as http:
            try:
                async with http.get(f"{base_url}/v1/products?pageSize=1") as answer:
                    if answer.status != 200:
                        return False
                async with http.get(f"{base_url}/.well-known/jwks.json") as answer:
                    return answer.status == 200
            except aiohttp.ClientError:
                return False

    await eventually(ready, timeout_s=240, what="the gateway answering from the services")
    # HTTPS with HSTS, from the certificate of the compose secrets; nothing in plaintext.
    async with https(trusted) as http, http.get(f"{base_url}/v1/products") as answer:
        assert answer.headers["strict-transport-security"].startswith("max-age=")
    plaintext = base_url.replace("https://", "http://")
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.ClientError):
            async with http.get(f"{plaintext}/v1/products") as answer:
                await answer.read()
    admin = f"http://127.0.0.1:{stack.settings['GATEWAY_ADMIN_PORT']}/clusters?format=json"

    async def every_instance_routed() -> bool:
        async with aiohttp.ClientSession() as http, http.get(admin) as answer:
            clusters = endpoints_of(await answer.text())
        healthy = {c: sum(f == ["HEALTHY"] for _, f in hosts) for c, hosts in clusters.items()}
        return (
            all(healthy.get(s.name) == 2 for s in catalogue.CATALOGUE if s.called_by_gateway)
            and all(
                healthy.get(graph_cluster(s.name)) == 2
                for s in catalogue.CATALOGUE.graph_services()
            )
            and all(
                healthy.get(web_cluster(s.name)) == 2 for s in catalogue.CATALOGUE.web_services()
            )
        )

    await eventually(every_instance_routed, timeout_s=120, what="2 healthy instances of each")
    print(f"every instance routed {time.monotonic() - started:.0f} s after `compose up` returned")
    for service in (s.name for s in catalogue.CATALOGUE):
        running = [c for c in stack.containers(service) if c["State"] == "running"]
        assert len(running) == 2, f"{service}: {stack.containers(service)}"
    # The agent's health check: a policy signed by the auth service's key from the env file,
    # verified with its public half, and endpoints of every service.
    [agent] = stack.containers("gateway-agent")
    assert await asyncio.to_thread(stack.healthy, agent["Name"]), "the gateway's agent is not ready"


async def test_the_rest_journey_through_the_containers(stack, base_url, trusted, mail):
    rest = await rest_client(base_url, trusted)
    try:
        email = f"compose-{uuid.uuid4().hex[:8]}@example.com"
        credentials = {"email": email, "password": PASSWORD}
        await rest.call("Register", "POST", "/v1/users", {**credentials, "displayName": "Ada"})
        token = (await rest.call("Login", "POST", "/v1/auth/login", credentials))["tokens"][
            "accessToken"
        ]
        admin_credentials = {"email": ADMIN_EMAIL, "password": stack.settings["ADMIN_PASSWORD"]}
        admin = (await rest.call("Login", "POST", "/v1/auth/login", admin_credentials))["tokens"][
            "accessToken"
        ]
        created = await rest.call(
            "CreateProduct",
            "POST",
            "/v1/products",
            {
                "sku": f"BOX-{uuid.uuid4().hex[:8]}",
                "name": "Container",
                "price": {"amountMinor": "1500", "currencyCode": "EUR"},
                "initialStock": 5,
            },
            token=admin,
        )
        product_id = created["product"]["productId"]
        placed = await rest.call(
            "PlaceOrder",
            "POST",
            "/v1/orders",
            {
                "idempotencyKey": str(uuid.uuid4()),
                "items": [{"productId": product_id, "quantity": 2}],
            },
            token=token,
        )
        order_id = placed["order"]["orderId"]

        async def approved() -> bool:
            order = await rest.call("GetOrder", "GET", f"/v1/orders/{order_id}", token=token)
            return order["order"]["status"] == "ORDER_STATUS_APPROVED"

        await eventually(approved, timeout_s=60, what="the order approved by the saga")

        async def notified() -> bool:
            listed = await rest.call("ListNotifications", "GET", "/v1/notifications", token=token)
            return any(n["status"] == "NOTIFICATION_STATUS_SENT" for n in listed["notifications"])

        await eventually(notified, timeout_s=60, what="the approval notification sent")
        assert mail.to(email), "no mail reached the SMTP server"

        # The same order through GraphQL: the federation gateway's container (our image), the
        # subgraphs of the order and inventory containers, each hop with the internal token.
        query = "{ me { orders { orderId state items { quantity product { name } } } } }"
        async with (
            https(trusted) as http,
            http.post(
                f"{base_url}/graphql",
                json={"query": query},
                headers={"authorization": f"Bearer {token}"},
            ) as answer,
        ):
            assert answer.status == 200, await answer.text()
            assert await answer.json() == {
                "data": {
                    "me": {
                        "orders": [
                            {
                                "orderId": order_id,
                                "state": "APPROVED",
                                "items": [{"quantity": 2, "product": {"name": "Container"}}],
                            }
                        ]
                    }
                }
            }

        # Another user is refused the order: not found, as if it did not exist.
        other = {"email": f"other-{uuid.uuid4().hex[:8]}@example.com", "password": PASSWORD}
        await rest.call("Register", "POST", "/v1/users", {**other, "displayName": "Eve"})
        eve = (await rest.call("Login", "POST", "/v1/auth/login", other))["tokens"]["accessToken"]
        await rest.call("GetOrder", "GET", f"/v1/orders/{order_id}", token=eve, expect=404)
    finally:
        await rest.close()


def chaos(stack: Stack, *args: str) -> subprocess.Popen[str]:
    """`python -m tools.chaos --compose PROJECT args`, as a person runs it against the stack
    (DOCKER_HOST: the Podman API compose runs against)."""
    return subprocess.Popen(
        [sys.executable, "-m", "tools.chaos", "--compose", stack.project, *args],
        env={**stack.api.env, "DOCKER_HOST": stack.api.docker_host},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def chaos_said(stack: Stack, *args: str) -> str:
    done = chaos(stack, *args)
    out, err = done.communicate(timeout=60)
    assert done.returncode == 0, out + err
    return out


class Traffic:
    """GET /v1/users/me as a signed-in customer, about 30 a second (under the gateway's limit
    of reads per client), until stopped: each answer's status (or error) and when it came."""

    def __init__(self, base_url: str, trusted: ssl.SSLContext, token: str):
        self.outcomes: Counter[str] = Counter()
        self.answered_at: list[float] = []
        self._stop = asyncio.Event()
        self._task = asyncio.create_task(self._run(base_url, trusted, token))

    async def _run(self, base_url: str, trusted: ssl.SSLContext, token: str) -> None:
        headers = {"authorization": f"Bearer {token}"}
        async with https(trusted) as http:
            while not self._stop.is_set():
                try:
                    async with http.get(f"{base_url}/v1/users/me", headers=headers) as answer:
                        self.outcomes[str(answer.status)] += 1
                        self.answered_at.append(time.monotonic())
                except aiohttp.ClientError as exc:
                    self.outcomes[type(exc).__name__] += 1
                await asyncio.sleep(0.03)

    async def stop(self) -> None:
        self._stop.set()
        await self._task

    def answered_while(self, what: str, start: float, end: float) -> None:
        """Says what was answered between two moments, and asserts some was (else the test
        proved nothing) and every answer was a 200."""
        during = sum(start <= t <= end for t in self.answered_at)
        print(f"GET /v1/users/me while {what} ({end - start:.1f} s): {dict(self.outcomes)}, "
              f"{during} of them meanwhile")  # fmt: skip
        assert during >= 3, f"nothing answered while {what}: the test proved nothing"
        assert set(self.outcomes) == {"200"}, f"answers other than 200: {dict(self.outcomes)}"


async def customer_token(rest: Rest, name: str) -> str:
    credentials = {"email": f"{name}-{uuid.uuid4().hex[:8]}@example.com", "password": PASSWORD}
    await rest.call("Register", "POST", "/v1/users", {**credentials, "displayName": "Kim"})
    tokens = (await rest.call("Login", "POST", "/v1/auth/login", credentials))["tokens"]
    return str(tokens["accessToken"])


async def test_a_killed_service_container_is_restarted_while_traffic_is_answered(
    stack, base_url, trusted
):
    """`python -m tools.chaos --compose ... kill`: the container's process killed as a crash
    would be; its restart policy starts it again, and the gateway answered every request
    meanwhile from the other instance."""
    rest = await rest_client(base_url, trusted)
    try:
        token = await customer_token(rest, "kill")
        listed = chaos_said(stack, "list").splitlines()
        [victim, *_] = sorted(c["Name"] for c in stack.containers("user"))
        assert f"{victim} running" in listed, listed
        before = stack.started_at(victim)
        traffic = Traffic(base_url, trusted, token)
        await asyncio.sleep(2)
        crashed = time.monotonic()
        assert f"{victim} (pid " in await asyncio.to_thread(chaos_said, stack, "kill", victim)

        async def restarted() -> bool:
            state = {c["Name"]: c["State"] for c in stack.containers("user")}
            return (
                state.get(victim) == "running"
                and stack.started_at(victim) != before
                and await asyncio.to_thread(stack.healthy, victim)
            )

        await eventually(restarted, timeout_s=90, what=f"{victim} restarted and serving again")
        back = time.monotonic()
        await asyncio.sleep(3)
        await traffic.stop()
    finally:
        await rest.close()
    traffic.answered_while(f"{victim} was killed and restarted", crashed, back)


async def test_redis_paused_by_hand_is_waited_out_and_every_request_answered(
    stack, base_url, trusted
):
    """`python -m tools.chaos --compose ... pause`: Redis frozen for 5 s (its connections
    open, nothing answered) and thawed; the gateway answered every request meanwhile (the
    rate limits fail open, the registry's leases outlive the pause)."""
    rest = await rest_client(base_url, trusted)
    [redis] = [c["Name"] for c in stack.containers("redis")]
    try:
        token = await customer_token(rest, "pause")
        traffic = Traffic(base_url, trusted, token)
        await asyncio.sleep(2)
        # Every wait off the event loop: the traffic runs on it meanwhile.
        pausing = chaos(stack, "pause", redis, "5")
        assert pausing.stdout is not None
        said = await asyncio.to_thread(pausing.stdout.readline)
        assert said.startswith(f"{redis} (container) paused for 5 s"), said
        paused = time.monotonic()
        states = await asyncio.to_thread(stack.containers, "redis")
        assert [c["State"] for c in states] == ["paused"]
        assert await asyncio.to_thread(pausing.wait, 60) == 0
        thawed = time.monotonic()
        states = await asyncio.to_thread(stack.containers, "redis")
        assert [c["State"] for c in states] == ["running"]
        await asyncio.sleep(3)
        await traffic.stop()
    finally:
        await rest.close()
    traffic.answered_while(f"{redis} was paused", paused, thawed)


def test_make_verify_proves_the_four_claims_on_the_stack_while_it_kills_a_container_of_each(
    stack, tmp_path
):
    """`make verify` against the compose stack, as an operator runs it against theirs: orders
    at a fixed rate while one container of every service is killed in turn (through the
    Docker Engine API), then the four claims reconciled through the gateway and the stack's
    Prometheus. It waits first until Prometheus scrapes every registered instance (its targets
    file is re-read every 30 s). Its report goes to $ORDERMESH_VERIFY_REPORT when that is set
    (docs/verify/compose was recorded so), to a temporary folder otherwise."""
    prometheus = f"http://127.0.0.1:{stack.settings['PROMETHEUS_PORT']}"
    services = {s.name for s in catalogue.CATALOGUE}

    def scraped() -> bool:
        try:
            result = prometheus_api(prometheus, "query", {"query": 'up{job="ordermesh"} == 1'})
        except OSError:
            return False
        return {r["metric"].get("service") for r in result["result"]} >= services

    deadline = time.monotonic() + 180
    while not scraped():
        assert time.monotonic() < deadline, "not every service scraped by the stack's Prometheus"
        time.sleep(2)
    report = Path(os.environ.get("ORDERMESH_VERIFY_REPORT") or tmp_path / "verify")
    done = subprocess.run(
        [
            sys.executable, "-m", "tools.verify", "--compose", stack.project,
            "--gateway", stack.url, "--ca", str(stack.ca_file), "--prometheus", prometheus,
            "--admin-email", ADMIN_EMAIL, "--seconds", "60", "--rate", "5", "--customers", "10",
            "--addresses", "5", "--report", str(report),
        ],
        env={**stack.api.env, "DOCKER_HOST": stack.api.docker_host,
             "ADMIN_PASSWORD": stack.settings["ADMIN_PASSWORD"]},
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    print(done.stdout[-3000:])
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    found = json.loads((report / "verify.json").read_text())
    claims = {c["name"]: c for c in found["claims"]}
    assert all(c["passed"] for c in claims.values()), claims
    killed = {k["service"] for k in found["kills"] if k["said"]}
    assert killed == services, found["kills"]
