"""On PostgreSQL each service's database is its own: a service runs as a role that reads and
writes its own tables and nothing else, and only its database's owner changes the schema.

A private PostgreSQL (harness.postgres) gets the databases and roles every deployment makes
(ordermesh.deploy.databases's psql script), and each schema is made by the command compose and
Kubernetes run before a service starts (`python -m services.schema <name>`, as the owner).
Before this, every service connected as one superuser: the order service's credentials read
the user service's private signing keys.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import psycopg
import pytest
from order.v1 import order_service_pb2 as order_pb
from ordermesh.catalogue import Need
from ordermesh.deploy import databases
from ordermesh.store import StoreError
from ordermesh.store.postgres import PostgresStore

from harness.postgres import PrivatePostgres
from harness.shop import Shop
from harness.system import System
from services import catalogue
from services.schema import collections

STORES = [s.name for s in catalogue.CATALOGUE if Need.STORE in s.needs]


def schema_step(postgres: PrivatePostgres, name: str) -> subprocess.CompletedProcess[str]:
    """`python -m services.schema <name>` as the database's owner, as compose runs it."""
    return subprocess.run(
        [sys.executable, "-m", "services.schema", name],
        env={**os.environ, "STORE_URL": postgres.database(name)},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def elsewhere(url: str, database: str) -> str:
    """The same role and server, another database."""
    return url.rsplit("/", 1)[0] + f"/{database}"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    """A PostgreSQL of this module's own, with the user's and the order's databases made."""
    postgres = PrivatePostgres(tmp_path_factory.mktemp("postgres-roles"))
    postgres.start()
    try:
        for name in ("user", "order"):
            done = schema_step(postgres, name)
            assert done.returncode == 0, done.stderr
            assert f"the schema of {name} is in place" in done.stdout
        yield postgres
    finally:
        postgres.remove()


def test_the_order_services_roles_cannot_open_the_user_services_database(server):
    with psycopg.connect(server.runtime_url("user")) as user:  # its own role reads its keys
        user.execute("SELECT count(*) FROM doc_signing_keys").fetchone()
    order_runtime, order_owner = server.runtime_url("order"), server.database("order")
    for url in (order_runtime, order_owner):
        for database in ("user", "postgres"):
            with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
                psycopg.connect(elsewhere(url, database)).close()


@pytest.mark.parametrize(
    "statement",
    [
        "CREATE TABLE doc_stolen (id TEXT)",
        "DROP TABLE doc_orders",
        "ALTER TABLE doc_orders ADD COLUMN extra TEXT",
        "TRUNCATE doc_orders",
        "CREATE INDEX stolen ON doc_orders (version)",
        "CREATE TEMPORARY TABLE scratch (id TEXT)",
        "CREATE SCHEMA stolen",
        "SET ROLE order_owner",
        "CREATE ROLE stolen LOGIN",
        "CREATE DATABASE stolen",
    ],
)
def test_the_order_services_runtime_role_changes_no_schema(server, statement):
    with (
        psycopg.connect(server.runtime_url("order"), autocommit=True) as db,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        db.execute(statement)


def test_the_runtime_role_reads_and_writes_its_own_tables_and_sequences(server):
    with psycopg.connect(server.runtime_url("order")) as db:
        db.execute("INSERT INTO doc_orders (id, version, doc) VALUES ('o-1', 1, '{}')")
        db.execute("UPDATE doc_orders SET version = 2 WHERE id = 'o-1'")
        db.execute(
            "INSERT INTO outbox (key, event_id, type, exchange, exchange_type, routing_key,"
            " is_command, payload, envelope) VALUES ('k', 'e', 't', 'x', 'topic', 'r', false,"
            " '', '')"
        )  # its seq from the outbox's sequence
        db.execute("DELETE FROM doc_orders WHERE id = 'o-1'")
        db.rollback()
    with psycopg.connect(server.url()) as db:
        attributes = db.execute(
            "SELECT rolname, rolsuper OR rolcreatedb OR rolcreaterole OR rolbypassrls"
            " OR rolreplication FROM pg_roles WHERE rolname LIKE 'order\\_%' ORDER BY rolname"
        ).fetchall()
    assert attributes == [("order_owner", False), ("order_runtime", False)]


async def test_a_runtime_role_whose_schema_is_missing_is_told_to_ask_its_owner(server):
    """A service started before its schema step (or without one) stops with a StoreError
    that says what to do, instead of running on half a schema."""
    name = f"fresh_{uuid.uuid4().hex[:8]}"
    server.database(name)
    store = PostgresStore(server.runtime_url(name))
    try:
        with pytest.raises(StoreError, match="create the schema as the database's owner"):
            await store.open(collections("order"))
    finally:
        await store.close()


def test_the_roles_script_takes_over_tables_an_older_version_made_as_the_superuser(server):
    """A deployment upgraded in place: its tables were the superuser's; the script, run again
    at the next deployment, gives them to the owner and the runtime role its privileges."""
    name = f"old_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server.url(), autocommit=True) as db:
        db.execute(f'CREATE DATABASE "{name}"')
    with psycopg.connect(elsewhere(server.url(), name), autocommit=True) as db:
        db.execute("CREATE TABLE doc_things (id TEXT PRIMARY KEY, n BIGSERIAL)")
    server.database(name)
    with psycopg.connect(server.runtime_url(name)) as db:
        db.execute("INSERT INTO doc_things (id) VALUES ('t-1')")
        assert db.execute("SELECT n FROM doc_things").fetchall() == [(1,)]
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            db.execute("DROP TABLE doc_things")
    with psycopg.connect(elsewhere(server.url(), name)) as db:
        [(owner,)] = db.execute(
            "SELECT tableowner FROM pg_tables WHERE tablename = 'doc_things'"
        ).fetchall()
    assert owner == databases.owner(name)


def test_the_schema_step_refuses_without_the_owners_url():
    done = subprocess.run(
        [sys.executable, "-m", "services.schema", "order"],
        env={k: v for k, v in os.environ.items() if k != "STORE_URL"},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert "STORE_URL is not set" in done.stderr


async def test_the_system_runs_end_to_end_with_each_service_on_its_runtime_role(
    rabbitmq, redis_factory, postgres_factory, tmp_path
):
    """Every service of the catalogue (the gateway's auth service, which keeps state, too)
    on PostgreSQL: an order approved by the saga across three services, its notification
    recorded; each database is used by its own runtime role only."""
    postgres = postgres_factory()
    system = System(
        tmp_path / "system",
        amqp_url=rabbitmq.add_vhost(f"roles-{uuid.uuid4().hex[:8]}"),
        env={"REDIS_URL": redis_factory().url},
        postgres=postgres,
    )
    system.start()
    shop = Shop(system)
    try:
        product = await shop.product(stock=5)
        ada = await shop.register()
        placed = await shop.place(ada, [(product.product_id, 2)])
        order = await shop.settled(ada, placed.order_id, timeout_s=30)
        assert order.status == order_pb.ORDER_STATUS_APPROVED
        assert await shop.available(product.product_id) == 3

        with psycopg.connect(postgres.url()) as db:
            users = db.execute(
                "SELECT DISTINCT datname, usename FROM pg_stat_activity"
                " WHERE datname = ANY(%s) ORDER BY datname",
                (STORES,),
            ).fetchall()
        assert users == sorted((name, databases.runtime(name)) for name in STORES)
    finally:
        await shop.close()
        system.stop()
