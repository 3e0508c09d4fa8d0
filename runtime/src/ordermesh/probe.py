"""`python -m ordermesh.probe`: exits 0 if the instance in this container answers SERVING.

The container health check of every service (compose.yaml, the image's HEALTHCHECK): it asks
the gRPC health service on GRPC_HOST (a wildcard means this machine, 127.0.0.1) and the port in
GRPC_PORT, or, when that is 0 (chosen at start), the port the server wrote to PORT_FILE.
Exits 1 naming what it found otherwise (not serving, no answer, no port yet). `--service NAME`
asks about one health name instead of the whole server (e.g. "liveness", ordermesh.grpc.LIVENESS).

With GRPC_TLS_CERT, GRPC_TLS_KEY and GRPC_TLS_CA set (ordermesh.tls), it connects as the server's
clients do: presenting the instance's own certificate and checking that the server's bears the
first DNS name of that certificate (the server presents the same one); the address dialled
proves nothing (ordermesh.tls).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import grpc
from cryptography import x509
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ordermesh.config import WILDCARDS
from ordermesh.tls import MutualTls, target_name_options

__all__ = ["channel_to", "main", "port_of"]


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


def channel_to(address: str, environ: os._Environ[str] | dict[str, str]) -> grpc.Channel:
    """A channel to this container's server: plaintext, or mutual TLS with its own certificate."""
    files = [environ.get(f"GRPC_TLS_{name}", "") for name in ("CERT", "KEY", "CA")]
    if not any(files):
        return grpc.insecure_channel(address)
    if not all(files):
        raise SystemExit("GRPC_TLS_CERT, GRPC_TLS_KEY and GRPC_TLS_CA: all three, or none")
    certificate, key, ca = files
    tls = MutualTls.from_files(certificate=certificate, key=key, ca=ca)
    names = (
        x509.load_pem_x509_certificate(tls.certificate)
        .extensions.get_extension_for_class(x509.SubjectAlternativeName)
        .value.get_values_for_type(x509.DNSName)
    )
    options = target_name_options(names[0]) if names else []
    return grpc.secure_channel(address, tls.channel_credentials(), options=options)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timeout", type=float, default=2.0)
    parser.add_argument("--service", default="", help="a health name; default: the server")
    args = parser.parse_args()
    port = port_of(os.environ)
    if port is None:
        print("no port yet: GRPC_PORT is 0 and PORT_FILE has none", file=sys.stderr)
        return 1
    host = os.environ.get("GRPC_HOST", "127.0.0.1")
    host = "127.0.0.1" if host in WILDCARDS else host
    try:
        with channel_to(f"{host}:{port}", os.environ) as channel:
            answer = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=args.service), timeout=args.timeout
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
