"""The schema step: a service's tables and indexes, created by its database's owner before the
service runs as a role that may not create them.

    STORE_URL=postgresql://order_owner:...@postgres:5432/order python -m services.schema order

Compose runs it as a one-shot container (`<name>-schema`) that the service's containers wait
for, Kubernetes as the first init container of the service's pods, the test harness
(`harness.system`) before it starts a service on PostgreSQL. At run time a service connects as
its runtime role (ordermesh.deploy.databases), which reads and writes the tables but can create,
alter or drop none: its `Store.open()` then finds everything here, and creates nothing. What exists
is left alone, so the step runs at every deployment (a new collection or index of a new
version is made before that version starts).

The collections are those the service's `main` opens (`<its package>.store.COLLECTIONS`) and
the runtime's own (`ordermesh.runtime.RUNTIME_COLLECTIONS`: the operators' audit trail). It
waits for the database up to STARTUP_WAIT_S (120 s) like a service does; any other failure exits
non-zero, naming it.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import os
import sys
import time
from collections.abc import Sequence

from ordermesh.catalogue import Need
from ordermesh.runtime import RUNTIME_COLLECTIONS
from ordermesh.store import Collection, StoreError, StoreUnavailable, open_store

from services import catalogue

__all__ = ["collections", "create_schema"]


def collections(service: str) -> Sequence[Collection]:
    """The collections service `service` keeps: what its main passes to `Runtime.open`, and
    what the runtime keeps beside them (RUNTIME_COLLECTIONS)."""
    module = catalogue.CATALOGUE.entry(service).module  # the gateway's own: the runtime's
    found: Sequence[Collection] = importlib.import_module(f"{module}.store").COLLECTIONS
    return [*found, *RUNTIME_COLLECTIONS]


async def create_schema(service: str, url: str, *, wait_s: float = 120.0) -> None:
    """Creates what service `service`'s store lacks, at `url` (its owner's), waiting up to
    `wait_s` for the database to answer."""
    store = open_store(url, database=service)
    deadline = time.monotonic() + wait_s
    try:
        while True:
            try:
                await store.open(collections(service))
                return
            except StoreUnavailable:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(1.0)
    finally:
        await store.close()


def main() -> int:
    stores = [s.name for s in catalogue.CATALOGUE if Need.STORE in s.needs]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("service", choices=stores)
    service = parser.parse_args().service
    url = os.environ.get("STORE_URL")
    if not url:
        print("STORE_URL is not set: give the URL of the database's owner", file=sys.stderr)
        return 2
    wait_s = float(os.environ.get("STARTUP_WAIT_S", "120"))
    started = time.monotonic()
    try:
        asyncio.run(create_schema(service, url, wait_s=wait_s))
    except (StoreError, OSError) as exc:
        print(f"the schema of {service}: {exc}", file=sys.stderr)
        return 1
    print(f"the schema of {service} is in place ({time.monotonic() - started:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
