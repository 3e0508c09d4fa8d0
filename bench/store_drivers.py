"""`make bench-store-drivers`: psycopg 3 or asyncpg under the PostgreSQL store? Measured with
the store's own operations, on one private PostgreSQL server, in one run.

    asyncpg   `ordermesh.store.postgres.PostgresStore` itself (asyncpg and its pool)
    psycopg   the same statements in the same transactions on psycopg 3 (async, the binary
              build) and psycopg_pool, the same pool size

Operations (each a transaction, as the services run them):

    use case  get a product, update it (optimistic version), publish one event (the outbox
              lock and row)
    consume   the inbox mark, get a product, update it
    read      get one document
    page      find 20 documents by an indexed field, ordered
    relay     read 100 pending outbox rows, mark them sent

Each operation runs CONCURRENCY at a time (the relay one at a time: one relay holds a store's
lease) for `--duration` seconds; printed: operations per second,
p50 and p99 latency per driver, and asyncpg's throughput as a ratio of psycopg's. Ends with a
RESULT line.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import psycopg
import psycopg_pool
from inventory.v1 import events_pb2
from ordermesh.events import outgoing
from ordermesh.store import Collection
from ordermesh.store.postgres import OUTBOX_LOCK, PostgresStore
from ordermesh.store.sql import OUTBOX_COLUMNS, OUTBOX_INSERT, outbox_row, outbox_values
from psycopg.types.json import Jsonb

from bench.machine import reference_ms
from harness.postgres import PrivatePostgres

CONCURRENCY = 16
POOL = 10
PRODUCTS = 1000
COLLECTIONS = [Collection("products", indexed=["owner"])]
Operation = Callable[[int], Awaitable[None]]


def _event(n: int) -> Any:
    return outgoing(
        events_pb2.StockAdjusted(product_id=f"p-{n}", delta=1, available_stock=n), producer="b"
    )


def adapter_operations(store: PostgresStore) -> dict[str, Operation]:
    """The store's operations, through `PostgresStore` (asyncpg)."""

    async def use_case(n: int) -> None:
        async with store.transaction() as tx:
            product = await tx.get("products", f"p-{n % PRODUCTS}")
            assert product is not None
            await tx.update("products", {**product, "stock": product["stock"] + 1})
            tx.publish(_event(n), key=product["_id"])

    async def consume(n: int) -> None:
        async with store.transaction() as tx:
            if await tx.first_time("bench", str(uuid.uuid4())):
                product = await tx.get("products", f"p-{n % PRODUCTS}")
                assert product is not None
                await tx.update("products", {**product, "stock": product["stock"] - 1})

    async def read(n: int) -> None:
        async with store.transaction() as tx:
            assert await tx.get("products", f"p-{n % PRODUCTS}") is not None

    async def page(n: int) -> None:
        async with store.transaction() as tx:
            found = await tx.find("products", where={"owner": f"o-{n % 10}"}, limit=20)
            assert len(found) == 20

    async def relay(_: int) -> None:
        rows = await store.pending(100)
        await store.mark_sent([row.seq for row in rows])

    return {"use case": use_case, "consume": consume, "read": read, "page": page, "relay": relay}


def psycopg_operations(pool: psycopg_pool.AsyncConnectionPool) -> dict[str, Operation]:
    """The statements PostgresStore sends, in the same transactions, through psycopg 3 (async,
    binary build) and psycopg_pool."""

    async def get(db: psycopg.AsyncConnection[Any], id: str) -> dict[str, Any]:
        cursor = await db.execute(
            'SELECT id, version, doc FROM "doc_products" WHERE id = %s', (id,)
        )
        row = await cursor.fetchone()
        assert row is not None
        return {**row[2], "_id": row[0], "_version": row[1]}

    async def update(db: psycopg.AsyncConnection[Any], document: dict[str, Any]) -> None:
        body = {k: v for k, v in document.items() if k not in ("_id", "_version")}
        cursor = await db.execute(
            'UPDATE "doc_products" SET version = version + 1, doc = %s '
            "WHERE id = %s AND version = %s",
            (Jsonb(body), document["_id"], document["_version"]),
        )
        assert cursor.rowcount == 1

    async def use_case(n: int) -> None:
        async with pool.connection() as db, db.transaction():
            product = await get(db, f"p-{n % PRODUCTS}")
            await update(db, {**product, "stock": product["stock"] + 1})
            await db.execute("SELECT pg_advisory_xact_lock(%s)", (OUTBOX_LOCK,))
            async with db.cursor() as cursor:
                await cursor.executemany(
                    f"INSERT INTO outbox ({OUTBOX_INSERT}) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    [outbox_values(_event(n), product["_id"])],
                )

    async def consume(n: int) -> None:
        async with pool.connection() as db, db.transaction():
            cursor = await db.execute(
                "INSERT INTO inbox (consumer, event_id, processed_at) VALUES (%s, %s, %s) "
                "ON CONFLICT DO NOTHING",
                ("bench", str(uuid.uuid4()), time.time()),
            )
            if cursor.rowcount == 1:
                product = await get(db, f"p-{n % PRODUCTS}")
                await update(db, {**product, "stock": product["stock"] - 1})

    async def read(n: int) -> None:
        async with pool.connection() as db, db.transaction():
            await get(db, f"p-{n % PRODUCTS}")

    async def page(n: int) -> None:
        async with pool.connection() as db, db.transaction():
            cursor = await db.execute(
                "SELECT id, version, doc FROM \"doc_products\" WHERE (doc -> 'owner') = %s "
                "ORDER BY id ASC, id ASC LIMIT %s",
                (Jsonb(f"o-{n % 10}"), 20),
            )
            assert len(await cursor.fetchall()) == 20

    async def relay(_: int) -> None:
        async with pool.connection() as db:
            cursor = await db.execute(
                f"SELECT {OUTBOX_COLUMNS} FROM outbox "
                "WHERE sent_at IS NULL AND parked_at IS NULL AND seq > %s ORDER BY seq LIMIT %s",
                (0, 100),
            )
            seqs = [outbox_row(row).seq for row in await cursor.fetchall()]
        async with pool.connection() as db:
            await db.execute(
                "UPDATE outbox SET sent_at = %s WHERE seq = ANY(%s)", (time.time(), seqs)
            )

    return {"use case": use_case, "consume": consume, "read": read, "page": page, "relay": relay}


async def measure(
    operation: Operation, duration_s: float, concurrency: int
) -> tuple[float, float, float]:
    """(operations/s, p50 ms, p99 ms) with `concurrency` running at once."""
    latencies: list[float] = []
    deadline = time.perf_counter() + duration_s
    counter = iter(range(10**9))

    async def worker() -> None:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            await operation(next(counter))
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    cuts = statistics.quantiles(latencies, n=100)
    return len(latencies) / elapsed, cuts[49] * 1000, cuts[98] * 1000


async def fill(store: PostgresStore) -> None:
    async with store.transaction() as tx:
        for n in range(PRODUCTS):
            await tx.insert("products", f"p-{n}", {"stock": 10**6, "owner": f"o-{n % 10}"})
    for _ in range(30):  # rows for the relay to read and mark
        async with store.transaction() as tx:
            for n in range(100):
                tx.publish(_event(n), key=f"p-{n}")


async def run(duration_s: float) -> None:
    print(f"reference: {reference_ms():.0f} ms (bench.machine; lower is a faster machine)")
    with tempfile.TemporaryDirectory() as scratch:
        server = PrivatePostgres(Path(scratch) / "postgres")
        server.start()
        try:
            results: dict[str, dict[str, tuple[float, float, float]]] = {}
            for driver in ("psycopg", "asyncpg"):
                url = server.database(f"bench_{driver}")
                store = PostgresStore(url, pool_size=POOL)
                await store.open(COLLECTIONS)
                await fill(store)
                pool = None
                if driver == "asyncpg":
                    operations = adapter_operations(store)
                else:
                    pool = psycopg_pool.AsyncConnectionPool(
                        url, min_size=POOL, max_size=POOL, kwargs={"autocommit": True}, open=False
                    )
                    await pool.open(wait=True)
                    operations = psycopg_operations(pool)
                results[driver] = {}
                for name, operation in operations.items():
                    concurrency = 1 if name == "relay" else CONCURRENCY
                    await measure(operation, 1.0, concurrency)  # warm: connections, statements
                    results[driver][name] = await measure(operation, duration_s, concurrency)
                if pool is not None:
                    await pool.close()
                await store.close()
        finally:
            server.remove()
    print(f"\n{'operation':<10} {'driver':<8} {'ops/s':>8} {'p50 ms':>7} {'p99 ms':>7}")
    ratios = []
    for name in results["psycopg"]:
        for driver in ("psycopg", "asyncpg"):
            rate, p50, p99 = results[driver][name]
            print(f"{name:<10} {driver:<8} {rate:>8.0f} {p50:>7.2f} {p99:>7.2f}")
        ratios.append(results["asyncpg"][name][0] / results["psycopg"][name][0])
        print(f"{'':<10} asyncpg/psycopg throughput {ratios[-1]:.2f}x")
    print(
        "RESULT asyncpg/psycopg throughput per operation: "
        + ", ".join(f"{n} {r:.2f}x" for n, r in zip(results["psycopg"], ratios, strict=True))
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per operation")
    asyncio.run(run(parser.parse_args().duration))


if __name__ == "__main__":
    main()
