"""The gateway's bootstrap as a file: `python -m ordermesh.gateway.envoy -o gateway/envoy.yaml`."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from ordermesh.catalogue import DEFAULT, load
from ordermesh.gateway.agent import prepare
from ordermesh.gateway.contracts import routable_rpcs
from ordermesh.gateway.envoy.bootstrap import bootstrap
from ordermesh.gateway.envoy.config import GatewayConfig
from ordermesh.gateway.envoy.names import GATEWAY_PORT, GRAPHQL_PORT, SUBGRAPHS_PORT


def main() -> None:
    """Writes the gateway's bootstrap as YAML: `python -m ordermesh.gateway.envoy -o
    gateway/envoy.yaml`.

    The project's catalogue is `--catalogue` (module:attribute) and its contracts'
    descriptor set `--descriptors`; with `--descriptor-set PATH` the bootstrap names the
    descriptor set at PATH (where Envoy will read it) and a copy of it is written there; with
    `--admin-port` it has an admin listener on 127.0.0.1 (a container's gateway, see
    compose.yaml). An output named *.json is
    written as JSON (Envoy reads either; the image has no YAML library), any other as YAML,
    which needs PyYAML."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("-o", "--output", type=Path, required=True)
    parser.add_argument("--catalogue", default=DEFAULT)
    parser.add_argument("--descriptors", type=Path, default=Path("gen/descriptors.pb"))
    parser.add_argument("--host", default="127.0.0.1", help="the address the gateway listens on")
    parser.add_argument("--port", type=int, default=GATEWAY_PORT)
    parser.add_argument("--eds-dir", type=Path, default=Path(".build/run/gateway/eds"))
    parser.add_argument("--descriptor-set", type=Path, help="where Envoy reads the contracts")
    parser.add_argument("--admin-port", type=int, help="an admin listener on 127.0.0.1")
    parser.add_argument(
        "--graphql-address",
        default=f"127.0.0.1:{GRAPHQL_PORT}",
        help="host:port of the GraphQL federation gateway ('' for no /graphql)",
    )
    parser.add_argument("--subgraphs-host", default="127.0.0.1")
    parser.add_argument("--subgraphs-port", type=int, default=SUBGRAPHS_PORT)
    parser.add_argument("--policy-dir", type=Path, default=Path(".build/run/gateway/policy"))
    parser.add_argument(
        "--tls-cert",
        type=Path,
        default=Path(".build/tls/gateway.crt"),
        help="the gateway's certificate chain (PEM), for HTTPS and gRPC over TLS",
    )
    parser.add_argument("--tls-key", type=Path, default=Path(".build/tls/gateway.key"))
    parser.add_argument(
        "--plaintext", action="store_true", help="no TLS (behind a TLS-terminating proxy)"
    )
    parser.add_argument(
        "--prepare",
        action="store_true",
        help="write each missing file Envoy reads at start (EDS and policy files)",
    )
    args = parser.parse_args()
    if args.descriptor_set is not None:
        shutil.copyfile(args.descriptors, args.descriptor_set)
    config = GatewayConfig(
        host=args.host,
        port=args.port,
        eds_dir=args.eds_dir,
        catalogue=load(args.catalogue),
        descriptor_set=args.descriptor_set or args.descriptors,
        policy_dir=args.policy_dir,
        graphql_address=args.graphql_address,
        subgraphs_host=args.subgraphs_host,
        subgraphs_port=args.subgraphs_port,
        tls_cert=None if args.plaintext else args.tls_cert,
        tls_key=None if args.plaintext else args.tls_key,
    )
    rendered = bootstrap(config, routable_rpcs(args.descriptors.read_bytes(), config.catalogue))
    if args.prepare:  # Envoy refuses to start on an EDS or ECDS path that does not exist yet
        prepare(config)
    if args.admin_port is not None:
        address = {"address": "127.0.0.1", "port_value": args.admin_port}
        rendered["admin"] = {"address": {"socket_address": address}}
    header = (
        "# Generated from the contracts by `make gen` (ordermesh.gateway.envoy): do not edit.\n"
        "# Paths are relative to the repository's root; `make up` and the tests render their own\n"
        "# copy with their ports and directories, and add an admin listener.\n"
    )
    if args.output.suffix == ".json":
        args.output.write_text(json.dumps(rendered, indent=1) + "\n")
        return
    import yaml

    args.output.write_text(header + yaml.safe_dump(rendered, sort_keys=False, width=100))


if __name__ == "__main__":
    main()
