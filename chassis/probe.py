"""`python -m chassis.probe`: exits 0 if the instance in this container answers SERVING.

The container health check of every service (compose.yaml, the image's HEALTHCHECK): it asks
the gRPC health service on GRPC_HOST (a wildcard means this machine, 127.0.0.1) and the port in
GRPC_PORT, or, when that is 0 (chosen at start), the port the server wrote to PORT_FILE.
Exits 1 naming what it found otherwise (not serving, no answer, no port yet).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from chassis.config import WILDCARDS


def port_of(environ: os._Environ[str] | dict[str, str]) -> int | None:
    """The port to probe: GRPC_PORT, or the one written to PORT_FILE; None if not known yet."""
    port = int(environ.get("GRPC_PORT") or 0)
    if port:
        return port
    path = environ.get("PORT_FILE", "")
    try:
        return int(Path(path).read_text()) if path else None
    except (FileNotFoundError, ValueError):
        return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=2.0)
    args = parser.parse_args()
    port = port_of(os.environ)
    if port is None:
        print("no port yet: GRPC_PORT is 0 and PORT_FILE has none", file=sys.stderr)
        return 1
    host = os.environ.get("GRPC_HOST", "127.0.0.1")
    host = "127.0.0.1" if host in WILDCARDS else host
    try:
        with grpc.insecure_channel(f"{host}:{port}") as channel:
            answer = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=args.timeout
            )
    except grpc.RpcError as exc:
        print(f"{host}:{port} does not answer: {exc.code().name}", file=sys.stderr)
        return 1
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
    if answer.status != health_pb2.HealthCheckResponse.SERVING:
        print(f"{host}:{port} is {status}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
