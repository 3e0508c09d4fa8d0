"""A private PostgreSQL server on a free port: its own cluster (`initdb`), data directory and
password, from Debian's PostgreSQL binaries; never the machine's own server.

The cluster has one superuser, `ordermesh`, whose password (generated for each server) is
written to a file only its owner may read; clients connect over TCP on 127.0.0.1 with SCRAM.
`database(name)` makes a database (one per service) with its two roles, as every deployment
does (ordermesh.deploy.databases, the same psql script): `<name>_owner`, whose URL it returns (it
creates the schema: a test that opens a store of its own uses it), and `<name>_runtime`, the
role a service runs as (`runtime_url(name)`), which may read and write the tables but change
none, nor open another database. Each role's password is generated once and kept in a file
of mode 600 under the server's folder (`roles/<role>.password`). PostgreSQL refuses
to run as root: when this process is root, the server runs as the `postgres` user (made by
Debian's package), and its data directory is a fresh one under the system's temporary folder
(pytest's temporary folders are readable by root only).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg
from ordermesh.deploy import databases

from deploy.private import private_file
from harness.process import ManagedProcess, as_user, free_port

__all__ = ["PrivatePostgres", "postgres_binaries"]

USER = "ordermesh"
# Enough for bench-scale's 10 instances of each store-backed service with small pools.
MAX_CONNECTIONS = 300


def postgres_binaries() -> Path:
    """The bin folder of the newest PostgreSQL under /usr/lib/postgresql (Debian's layout)."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if not found:
        raise FileNotFoundError(
            "PostgreSQL's binaries not found under /usr/lib/postgresql: install them with "
            "`apt-get install postgresql` (tests start private servers, never the machine's)"
        )
    return found[-1].parent


class PrivatePostgres:
    def __init__(self, directory: Path, *, durable: bool = False):
        """`durable`: every commit flushed to disk before it is acknowledged (fsync, as a
        production server runs); by default not (see below)."""
        self.directory = directory
        self.port = free_port()
        self.password = secrets.token_urlsafe(24)
        self._bin = postgres_binaries()
        self._user: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            try:
                self._user = pwd.getpwnam("postgres")
            except KeyError:
                raise RuntimeError(
                    "PostgreSQL does not run as root and there is no `postgres` user: "
                    "install Debian's postgresql package, or run the tests as another user"
                ) from None
            self.data = Path(tempfile.mkdtemp(prefix="ordermesh-pg-"))
            os.chown(self.data, self._user.pw_uid, self._user.pw_gid)
        else:
            self.data = directory / "data"
        self._initialised = False
        # The databases whose roles this object made or brought up to date (once each).
        self._provisioned: set[str] = set()
        self.process = ManagedProcess(
            "postgres",
            [
                str(self._bin / "postgres"),
                *("-D", str(self.data), "-p", str(self.port)),
                *("-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.data}"),
                # Unless durable, `fsync=off`: every commit is written to the OS before it is
                # acknowledged, so a killed server loses nothing, but nothing is flushed to
                # disk: a crash of the machine could lose it (test data). Never
                # synchronous_commit=off: a killed server then loses the commits of its last
                # ~0.6 s, acknowledged (measured: 19 of 3,000 consumed events' effects).
                *(() if durable else ("-c", "fsync=off")),
                *("-c", f"max_connections={MAX_CONNECTIONS}", "-c", "shared_buffers=128MB"),
            ],
            directory=directory,
            ready=self._answers,
            ready_timeout_s=60.0,
            user=self._user.pw_name if self._user else None,
        )

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{USER}:{self.password}@127.0.0.1:{self.port}/{database}"

    def _answers(self) -> bool:
        try:
            with psycopg.connect(self.url(), connect_timeout=1):
                return True
        except psycopg.OperationalError:
            return False

    def _initdb(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as scratch:
            pwfile = private_file(Path(scratch) / "pw", self.password + "\n")
            if self._user is not None:
                os.chown(scratch, self._user.pw_uid, self._user.pw_gid)
                os.chown(pwfile, self._user.pw_uid, self._user.pw_gid)
            subprocess.run(
                as_user(
                    [
                        str(self._bin / "initdb"),
                        *("-D", str(self.data), "-U", USER, f"--pwfile={pwfile}"),
                        *("--auth-local=scram-sha-256", "--auth-host=scram-sha-256"),
                        # Byte order for text, as SQLite compares: the same pages in every store.
                        *("-E", "UTF8", "--locale=C", "--no-sync"),
                    ],
                    self._user.pw_name if self._user else None,
                ),
                capture_output=True,
                text=True,
                check=True,
                timeout=120,
            )
        self._initialised = True

    def start(self) -> None:
        if not self._initialised:
            self._initdb()
        self.process.start()

    def stop(self) -> None:
        self.process.stop()

    def kill(self) -> None:
        self.process.kill()

    def database(self, name: str) -> str:
        """Makes database `name` and its roles (what is missing, once per server object), and
        returns its owner's URL."""
        if name not in self._provisioned:
            self._provision(name)
            self._provisioned.add(name)
        return self._role_url(databases.owner(name), name)

    def runtime_url(self, name: str) -> str:
        """The URL of database `name` (made with `database(name)`) for its runtime role."""
        return self._role_url(databases.runtime(name), name)

    def _role_url(self, role: str, database: str) -> str:
        return f"postgresql://{role}:{self._password(role)}@127.0.0.1:{self.port}/{database}"

    def _password(self, role: str) -> str:
        """`role`'s password: generated on first use, kept in a file of mode 600."""
        path = self.directory / "roles" / f"{role}.password"
        if not path.exists():
            private_file(path, secrets.token_urlsafe(24) + "\n")
        return path.read_text().strip()

    def _provision(self, name: str) -> None:
        """Runs ordermesh.deploy.databases's script for `name`, as the superuser, with psql."""
        env = {
            **os.environ,
            "PGPASSWORD": self.password,
            **{databases.password_variable(r): self._password(r) for r in databases.roles(name)},
        }
        done = subprocess.run(
            [
                str(self._bin / "psql"),
                *("-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(self.port)),
                *("-U", USER, "-d", "postgres", "-f", "-"),
            ],
            input=databases.init_sql([name]),
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"making database {name!r} and its roles: {done.stderr.strip()}")

    def remove(self) -> None:
        """Stops the server and deletes its data."""
        self.stop()
        with contextlib.suppress(OSError):
            shutil.rmtree(self.data)
        shutil.rmtree(self.directory, ignore_errors=True)
