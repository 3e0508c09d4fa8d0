"""The SQL stores' one schema and their dialects: what SQLite and PostgreSQL spell differently is
only spelling (the stores themselves are proven in tests/integration/test_store.py)."""

import re

from ordermesh.store import Collection
from ordermesh.store.sql.dialect import POSTGRES, SQLITE, schema

COLLECTIONS = [Collection("accounts", unique=["email"], indexed=["owner"])]
TYPES = re.compile(
    r"INTEGER PRIMARY KEY|BIGSERIAL PRIMARY KEY|INTEGER|BIGINT|BOOLEAN|REAL|DOUBLE PRECISION"
    r"|BLOB|BYTEA|JSONB| WITHOUT ROWID"
)


def test_both_dialects_create_the_same_tables_and_indexes_in_the_same_order():
    assert [name for name, _ in schema(SQLITE, COLLECTIONS)] == [
        name for name, _ in schema(POSTGRES, COLLECTIONS)
    ]


def test_the_outbox_inbox_and_lease_schema_differs_only_in_types_and_storage():
    sqlite, postgres = (dict(schema(dialect)) for dialect in (SQLITE, POSTGRES))

    assert {name: TYPES.sub("", sql) for name, sql in sqlite.items()} == {
        name: TYPES.sub("", sql) for name, sql in postgres.items()
    }


def test_the_outbox_indexes_cover_what_the_relay_and_unpark_read():
    outbox = dict(schema(SQLITE))

    assert outbox["outbox_pending"].endswith("(seq) WHERE sent_at IS NULL AND parked_at IS NULL")
    assert outbox["outbox_event"].endswith("(event_id) WHERE parked_at IS NOT NULL")


def test_sqlite_reads_the_numbered_parameters_as_its_own():
    sql = "SELECT doc FROM t WHERE json_extract(doc, '$.owner') = $1 AND id > $12 OR id = $1"

    assert SQLITE.statement(sql) == (
        "SELECT doc FROM t WHERE json_extract(doc, '$.owner') = ?1 AND id > ?12 OR id = ?1"
    )
    assert POSTGRES.statement(sql) == sql


def test_a_document_field_is_compared_as_each_database_stores_it():
    assert (SQLITE.field("owner"), SQLITE.compared("owner", 1)) == (
        "json_extract(doc, '$.owner')",
        "$1",
    )
    assert (POSTGRES.field("owner"), POSTGRES.compared("owner", 1)) == (
        "(doc -> 'owner')",
        "$1::jsonb",
    )
    assert POSTGRES.compared("_id", 2) == "$2"


def test_a_list_parameter_is_one_value_in_both():
    assert SQLITE.list_value([1, 2]) == "[1, 2]"
    assert POSTGRES.list_value((1, 2)) == [1, 2]
    assert SQLITE.in_list("seq", 2, "bigint") == "seq IN (SELECT value FROM json_each($2))"
    assert POSTGRES.in_list("seq", 2, "bigint") == "seq = ANY($2::bigint[])"
