"""A private PostgreSQL server on a free port: its own cluster (`initdb`), data directory and
password, from Debian's PostgreSQL binaries; never the machine's own server.

The cluster has one superuser, `ordermesh`, whose password (generated for each server) is
written to a file only its owner may read; clients connect over TCP on 127.0.0.1 with SCRAM.
`database(name)` creates a database (one per service) and returns its URL. PostgreSQL refuses
to run as root: when this process is root, the server runs as the `postgres` user (made by
Debian's package), and its data directory is a fresh one under the system's temporary folder
(pytest's temporary folders are readable by root only).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import secrets
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg

from harness.process import ManagedProcess, free_port, private_file

__all__ = ["PrivatePostgres", "postgres_binaries"]

USER = "ordermesh"
# Enough for bench-scale's 10 instances of each store-backed service with small pools.
MAX_CONNECTIONS = 300
DATABASE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


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
    def __init__(self, directory: Path):
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
        self.process = ManagedProcess(
            "postgres",
            [
                str(self._bin / "postgres"),
                *("-D", str(self.data), "-p", str(self.port)),
                *("-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.data}"),
                # Every commit is written to the OS before it is acknowledged, so a killed
                # server loses nothing; no fsync: only a crash of the machine could (test data).
                # Never synchronous_commit=off: a killed server then loses the commits of its
                # last ~0.6 s, acknowledged (measured: 19 of 3,000 consumed events' effects).
                *("-c", "fsync=off"),
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
                [
                    str(self._bin / "initdb"),
                    *("-D", str(self.data), "-U", USER, f"--pwfile={pwfile}"),
                    *("--auth-local=scram-sha-256", "--auth-host=scram-sha-256"),
                    # Byte order for text, as SQLite compares: the same pages in every store.
                    *("-E", "UTF8", "--locale=C", "--no-sync"),
                ],
                user=self._user.pw_name if self._user else None,
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
        """Creates database `name` (if missing) and returns its URL."""
        if not DATABASE_NAME.match(name):
            raise ValueError(f"database name {name!r}: expected [a-z][a-z0-9_]*")
        with psycopg.connect(self.url(), autocommit=True) as db:
            exists = db.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if exists is None:
                db.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def remove(self) -> None:
        """Stops the server and deletes its data."""
        self.stop()
        with contextlib.suppress(OSError):
            shutil.rmtree(self.data)
        shutil.rmtree(self.directory, ignore_errors=True)
