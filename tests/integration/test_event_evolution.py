"""An event evolved compatibly is still handled by a consumer built before the change:
order.v1.OrderPlaced gained `delivery_address` (field 6). The test takes the contracts of the
commit before that field from git history, generates their code in a directory of its own, and
runs a consumer built from them (tests/integration/contract_consumer.py) in a process of its own
against the shared system's broker; today's order service then places an order through
order.v2, with an address, and the old consumer decodes everything it knew, keeps the new field
as unknown (for anything it passes on), acks, and dead-letters nothing."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import tarfile
import uuid
from io import BytesIO
from pathlib import Path

import aio_pika
import grpc
import grpc_tools
import pytest
from common.v1 import address_pb2
from order.v2 import order_service_pb2 as order_v2
from order.v2 import order_service_pb2_grpc as order_v2_grpc
from ordermesh import contracts as runtime_contracts

from harness import ManagedProcess
from harness.shop import eventually
from tests.integration.contract_consumer import SUBSCRIPTION
from tools import contracts

ROOT = Path(__file__).resolve().parents[2]
EVOLVED = "proto/order/v1/events.proto"
ADDED = "common.v1.PostalAddress delivery_address = 6;"


def git(*args: str) -> bytes:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True).stdout


def previous_contract(directory: Path) -> tuple[str, Path]:
    """The commit before the one that added the field, and its contracts' generated code."""
    commits = git("log", "--reverse", "--format=%H", "-S", ADDED, "--", EVOLVED).split()
    assert commits, (
        f"no commit adds {ADDED!r} to {EVOLVED} in this checkout's history (a shallow clone? "
        "fetch the history: git fetch --unshallow)"
    )
    before = f"{commits[0].decode()}^"
    with tarfile.open(fileobj=BytesIO(git("archive", before, "proto"))) as archive:
        archive.extractall(directory, filter="data")
    contracts.copy_deps(directory)
    generated = directory / "gen"
    generated.mkdir()
    protos = sorted(
        p.relative_to(directory / "proto").as_posix()
        for p in (directory / "proto").rglob("*.proto")
    )
    subprocess.run(
        [
            sys.executable, "-m", "grpc_tools.protoc",
            f"-I{directory / 'proto'}", f"-I{directory / '.build' / 'protodeps'}",
            f"-I{Path(grpc_tools.__path__[0]) / '_proto'}",
            f"--python_out={generated}", *protos,
        ],
        check=True,
    )  # fmt: skip
    # Built on today's runtime, as gen/ is: its own contracts are the runtime's modules.
    runtime_contracts.adopt(generated)
    # Regular packages, as gen/ has: they, not gen/'s, are found first on the path.
    for folder in [p for p in generated.rglob("*") if p.is_dir()]:
        (folder / "__init__.py").touch()
    return before, generated


@pytest.fixture
def old_consumer(system, tmp_path):
    revision, generated = previous_contract(tmp_path)
    store = tmp_path / "consumer.sqlite3"
    log = tmp_path / "contract-consumer.log"
    process = ManagedProcess(
        "contract-consumer",
        [sys.executable, "-m", "tests.integration.contract_consumer",
         "--amqp", system.amqp_url, "--store", str(store)],
        directory=tmp_path,
        # The old contract's code first: it, not gen/, is what `order.v1` imports.
        env={"PYTHONPATH": f"{generated}:{ROOT}"},
        ready=lambda: "consuming pid=" in log.read_text() if log.exists() else False,
    )  # fmt: skip
    process.start()
    try:
        yield revision, store
    finally:
        process.stop()
        asyncio.run(_delete_queues(system.amqp_url))


async def _delete_queues(url: str) -> None:
    """The test's queues go with it: the shared system's consumers are all that is left."""
    connection = await aio_pika.connect(url)
    async with connection:
        channel = await connection.channel()
        retries = [SUBSCRIPTION.retry_queue(n) for n in range(len(SUBSCRIPTION.retry_delays_s))]
        for queue in (SUBSCRIPTION.queue(), SUBSCRIPTION.dead_letter_queue, *retries):
            await channel.queue_delete(queue)


def decoded(store: Path, order_id: str) -> dict | None:
    with sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=10) as db:
        row = db.execute("SELECT doc FROM doc_decoded WHERE id = ?", (order_id,)).fetchone()
    return json.loads(row[0]) if row else None


async def test_a_consumer_built_before_a_new_field_handles_what_todays_producer_sends(
    old_consumer, shop, system, rabbitmq
):
    revision, store = old_consumer
    ada = await shop.register()
    product = await shop.product(price_minor=700, name="Kettle")

    async with grpc.aio.insecure_channel(system.address("order")) as channel:
        placed = await order_v2_grpc.OrderServiceStub(channel).PlaceOrder(
            order_v2.PlaceOrderRequest(
                idempotency_key=str(uuid.uuid4()),
                items=[order_v2.NewItem(product_id=product.product_id, quantity=2)],
                delivery_address=address_pb2.PostalAddress(
                    recipient="Ada", address_lines=["Main St 1"], locality="Berlin",
                    region_code="DE",
                ),
            ),
            metadata=ada.metadata,
            timeout=10,
        )  # fmt: skip
    order_id = placed.order.order_id

    seen = await eventually(
        lambda: decoded(store, order_id), what=f"OrderPlaced decoded by {revision}"
    )
    assert "delivery_address" not in seen["contract_fields"], "not the previous contract"
    assert seen["fields"]["user_id"] == ada.user_id
    assert seen["fields"]["lines"] == [
        {
            "product_id": product.product_id,
            "product_name": "Kettle",
            "quantity": "2",
            "unit_price": {"amount_minor": "700", "currency_code": "EUR"},
        }
    ]
    assert seen["fields"]["total"] == {"amount_minor": "1400", "currency_code": "EUR"}
    assert seen["unknown_fields"] == [6]  # kept, not dropped
    vhost = system.amqp_url.rsplit("/", 1)[1]
    queues = dict(
        line.split("\t")
        for line in rabbitmq.ctl(
            "list_queues", "-p", vhost, "name", "messages", "--quiet"
        ).splitlines()
        if line.startswith(SUBSCRIPTION.queue())
    )
    assert queues[SUBSCRIPTION.dead_letter_queue] == "0"
