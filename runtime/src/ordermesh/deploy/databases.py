"""PostgreSQL's databases and roles: for each service that keeps state, a database and two roles.

- `<name>_owner` owns the database and everything in it: the schema step
  (the project's schema_module, ordermesh.deploy.project) creates the tables and indexes as this
  role, before the service starts;
- `<name>_runtime` is what the service connects as: CONNECT on its own database only, and
  SELECT, INSERT, UPDATE, DELETE on its tables (USAGE on their sequences), granted by default
  for whatever its owner creates. It can create, alter, drop or truncate nothing, make no
  temporary table, and open no other service's database: PUBLIC's CONNECT and TEMPORARY are
  revoked on each. Neither role is a superuser, nor may create roles or databases.

`init_sql(names)` is one psql script for all of them (the example's deploy/postgres/init.sql),
idempotent: it creates what is missing and sets each role's password, its privileges and the owner
of tables an older version made as the superuser, so it runs again at every deployment (compose's
`postgres-roles` one-shot, the Kubernetes dev overlay's Job, the harness for each database it
makes). It is run as a superuser (or an administrator with CREATEROLE and CREATEDB). Passwords
never appear in it: psql reads each role's from the environment (`\\getenv`), from the variable
`password_variable(role)` (POSTGRES_ORDER_RUNTIME_PASSWORD, ...). On a server of its own it
also closes the server's other databases (`postgres`, `template1`, ...) to PUBLIC; on a server
shared with others, run it with `-v shared_server=1` to leave theirs alone. `stores()` names the
services that keep state (a database each); `ROLES_COMMAND` runs the script where the server
may still be starting (compose's `postgres-roles`, the Kubernetes Job).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from ordermesh.catalogue import Catalogue, Need

__all__ = [
    "ROLES_COMMAND",
    "init_sql",
    "owner",
    "password_variable",
    "roles",
    "runtime",
    "stores",
]

# What a database name may be: with `_runtime` after it, a role name within PostgreSQL's 63.
NAME = re.compile(r"^[a-z][a-z0-9_]{0,54}$")
HEADER = "-- Generated from the service catalogue (ordermesh.deploy.databases): do not edit."
RUNTIME_TABLES = "SELECT, INSERT, UPDATE, DELETE"
RUNTIME_SEQUENCES = "USAGE, SELECT"
# Waits for the server (up to 2 minutes: nothing here waits for health checks), then runs the
# roles script as the superuser. `$$` is a `$` to compose and to Kubernetes alike (its Job).
ROLES_COMMAND = (
    "i=0; until pg_isready -q; do i=$$((i + 1)); [ $$i -lt 120 ] || exit 1; sleep 1; done; "
    "exec psql -X -q -v ON_ERROR_STOP=1 -f /ordermesh/init.sql"
)


def stores(catalogue: Catalogue) -> list[str]:
    """The services of `catalogue` that keep state, in start order: each has its database."""
    return [s.name for s in catalogue.in_start_order() if Need.STORE in s.needs]


def _checked(name: str) -> str:
    if not NAME.match(name):
        raise ValueError(f"database name {name!r}: expected [a-z][a-z0-9_]*, at most 55")
    return name


def owner(name: str) -> str:
    """The role that owns database `name` and its schema."""
    return f"{_checked(name)}_owner"


def runtime(name: str) -> str:
    """The role the service of database `name` runs as."""
    return f"{_checked(name)}_runtime"


def roles(name: str) -> tuple[str, str]:
    return owner(name), runtime(name)


def password_variable(role: str) -> str:
    """The environment variable that holds `role`'s password: POSTGRES_ORDER_OWNER_PASSWORD."""
    return f"POSTGRES_{role.upper()}_PASSWORD"


def _server() -> list[str]:
    return [
        "-- A server of this system's own: no database of it open to every role (psql -v",
        "-- shared_server=1 leaves a shared server's other databases as they are).",
        r"\if :{?shared_server}",
        r"\else",
        "SELECT format('REVOKE CONNECT, TEMPORARY ON DATABASE %I FROM PUBLIC', datname)",
        "  FROM pg_database WHERE datallowconn",
        "  AND (has_database_privilege('public', oid, 'CONNECT')",
        r"    OR has_database_privilege('public', oid, 'TEMPORARY')) \gexec",
        r"\endif",
    ]


def _role(role: str) -> list[str]:
    variable = role  # a psql variable, named after the role
    return [
        rf"\getenv {variable} {password_variable(role)}",
        rf"\if :{{?{variable}}}",
        r"\else",
        f"DO $$ BEGIN RAISE EXCEPTION '{password_variable(role)} is not set'; END $$;",
        r"\endif",
        f"SELECT 'CREATE ROLE {role}' WHERE NOT EXISTS "
        rf"(SELECT FROM pg_roles WHERE rolname = '{role}') \gexec",
        f"ALTER ROLE {role} WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION "
        f"NOBYPASSRLS PASSWORD :'{variable}';",
    ]


def _database(name: str) -> list[str]:
    owns, runs = roles(name)
    database = f'"{name}"'
    lines = [f"-- {name}: owned by {owns}; the service runs as {runs}."]
    lines += _role(owns) + _role(runs)
    lines += [
        f"SELECT 'CREATE DATABASE {database} OWNER {owns}' WHERE NOT EXISTS "
        rf"(SELECT FROM pg_database WHERE datname = '{name}') \gexec",
        f"ALTER DATABASE {database} OWNER TO {owns};",
        f"REVOKE ALL ON DATABASE {database} FROM PUBLIC;",
        f"GRANT CONNECT ON DATABASE {database} TO {runs};",
        rf"\connect {database}",
        # PostgreSQL 15 already gives PUBLIC no CREATE here; older servers do.
        "REVOKE CREATE ON SCHEMA public FROM PUBLIC;",
        f"GRANT USAGE ON SCHEMA public TO {runs};",
        f"ALTER DEFAULT PRIVILEGES FOR ROLE {owns} IN SCHEMA public "
        f"GRANT {RUNTIME_TABLES} ON TABLES TO {runs};",
        f"ALTER DEFAULT PRIVILEGES FOR ROLE {owns} IN SCHEMA public "
        f"GRANT {RUNTIME_SEQUENCES} ON SEQUENCES TO {runs};",
        # Tables an older version made as the superuser become the owner's, with the runtime's
        # privileges; what is already so is left alone (no catalog write, no lock, at each run).
        f"SELECT format('ALTER TABLE public.%I OWNER TO {owns}', tablename) FROM pg_tables",
        rf"  WHERE schemaname = 'public' AND tableowner <> '{owns}' \gexec",
        f"SELECT format('GRANT {RUNTIME_TABLES} ON public.%I TO {runs}', c.relname)",
        "  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace",
        "  WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT (",
        *(
            f"    {'AND ' if i else ''}has_table_privilege('{runs}', c.oid, '{privilege}')"
            for i, privilege in enumerate(RUNTIME_TABLES.split(", "))
        ),
        r"  ) \gexec",
        f"SELECT format('GRANT {RUNTIME_SEQUENCES} ON SEQUENCE public.%I TO {runs}', c.relname)",
        "  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace",
        "  WHERE n.nspname = 'public' AND c.relkind = 'S' AND NOT (",
        f"    has_sequence_privilege('{runs}', c.oid, 'USAGE')",
        f"    AND has_sequence_privilege('{runs}', c.oid, 'SELECT')",
        r"  ) \gexec",
        r"\connect postgres",
    ]
    return lines


def init_sql(names: Iterable[str]) -> str:
    """The psql script that makes (or brings up to date) the databases `names` and their roles."""
    lines = [HEADER, "", *_server()]
    for name in names:
        lines += ["", *_database(name)]
    return "\n".join(lines) + "\n"
