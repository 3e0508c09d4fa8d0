"""`make compose-env`: writes `.env` for compose.yaml with fresh secrets (mode 600).

    python -m deploy.env [-o .env] [--force] [NAME=VALUE ...]

Each secret compose.yaml requires is generated: the passwords with `secrets.token_urlsafe` (the
PostgreSQL superuser's, and one for each role of each service's database: its owner and its
runtime role, ordermesh.deploy.databases), the edge policy's key pair with
`ordermesh.policy.new_policy_keys` (EDGE_POLICY_SIGNING_KEY for the auth service,
EDGE_POLICY_VERIFY_KEY for everyone who follows its policy), the secret of the internal hops
(INTERNAL_TOKEN: Envoy, the gateway's agent, the federation gateway, the services with a GraphQL
subgraph). NAME=VALUE pairs are added (addresses, ports, images: e.g. the host-network ports the
container tests use).

The gateway serves HTTPS and gRPC over TLS with the certificate and key the files
GATEWAY_TLS_CERT and GATEWAY_TLS_KEY name (compose secrets; paths relative to the directory of
the env file, compose's project directory), and the containers that call it (the console)
verify it with the CA that GATEWAY_TLS_CA names (PEM: the issuer's, or a system bundle for a
certificate of a public CA), given with them. Without them, a certificate of a local CA is
made under `.build/tls` beside the env file (deploy/tls.py), where compose.yaml looks by
default (its `ca.crt` too), and how to trust it is printed. GATEWAY_PLAINTEXT=1 asks for
plaintext instead.

An existing file is kept unless `--force`: its secrets are those of the volumes made with it.
What it lacks is added to it, every value it holds staying as it is: a file written before the
edge policy was signed gets a fresh key pair (nothing stored depends on it: the auth service
signs its next policy with the new key, and every follower is given the new public half at the
same `compose up`). A file with one half of the pair only, or two halves that do not match, is
refused, naming the key: guessing would leave every follower refusing the policy.
"""

from __future__ import annotations

import argparse
import secrets
import sys
from collections.abc import Mapping
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from ordermesh.deploy import databases, facts
from ordermesh.deploy.environment import POLICY_SIGNING_KEY, POLICY_VERIFY_KEY
from ordermesh.policy import new_policy_keys, signing_key, verify_key

from deploy.project import PROJECT
from deploy.tls import local_certificate

ROOT = Path(__file__).resolve().parents[1]

# The passwords of the roles of the services' databases: an older file gets them added, and
# `postgres-roles` makes the roles with them at the next `up`.
STORE_ROLE_PASSWORDS = tuple(
    databases.password_variable(role) for name in PROJECT.stores() for role in databases.roles(name)
)
SECRETS = (
    "RABBITMQ_PASSWORD",
    "REDIS_PASSWORD",
    "POSTGRES_PASSWORD",
    "GRAFANA_ADMIN_PASSWORD",
    # The project's steps' own (the admin's password).
    *(name for step in PROJECT.steps for name in step.secrets),
    # The secret of the internal hops (ordermesh.gateway.envoy's INTERNAL_HEADER).
    "INTERNAL_TOKEN",
    *STORE_ROLE_PASSWORDS,
)
# The edge policy's key pair (ordermesh.policy): the private half goes to the auth service only.
POLICY_KEYS = (POLICY_SIGNING_KEY, POLICY_VERIFY_KEY)
HEADER = "# Written by `make compose-env` (deploy/env.py): secrets of this deployment."
# The gateway's certificate chain and key (compose secrets, PEM): files the operator names,
# else a local CA's (deploy/tls.py); GATEWAY_PLAINTEXT=1 asks for plaintext.
TLS_FILES = ("GATEWAY_TLS_CERT", "GATEWAY_TLS_KEY")
# The CA the gateway's clients inside the deployment verify it with (compose's `gateway-ca`):
# given with TLS_FILES, else the local CA's.
CA_FILE = "GATEWAY_TLS_CA"
PLAINTEXT = "GATEWAY_PLAINTEXT"


def fresh() -> dict[str, str]:
    """Every secret compose.yaml requires, new."""
    signing, verify = new_policy_keys()
    values = {name: secrets.token_urlsafe(32) for name in SECRETS}
    return values | {POLICY_SIGNING_KEY: signing, POLICY_VERIFY_KEY: verify}


def render(extra: dict[str, str]) -> str:
    values = fresh() | extra
    lines = [HEADER] + [f"{name}={value}" for name, value in values.items()]
    return "\n".join(lines) + "\n"


def write(path: Path, extra: dict[str, str]) -> None:
    """Writes the env file, readable by its owner only."""
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text(render(extra))


def read(path: Path) -> dict[str, str]:
    """The NAME=VALUE lines of an env file (comments and blank lines skipped; quotes around a
    value taken off, as compose does)."""
    found = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            name, value = line.split("=", 1)
            found[name.strip()] = value.strip().strip("'\"")
    return found


def missing(existing: Mapping[str, str]) -> dict[str, str]:
    """The secrets an env file holding `existing` lacks, new; ValueError if it holds half of
    the edge policy's key pair, or a pair that does not match."""
    added = {name: value for name, value in fresh().items() if name not in existing}
    held = [name for name in POLICY_KEYS if name in existing]
    if len(held) == 1:
        raise ValueError(
            f"{held[0]} is set but not its other half: remove it, and a fresh pair of "
            f"{' and '.join(POLICY_KEYS)} is added"
        )
    if held and _raw(signing_key(existing[POLICY_SIGNING_KEY]).public_key()) != _raw(
        verify_key(existing[POLICY_VERIFY_KEY])
    ):
        raise ValueError(
            f"{POLICY_VERIFY_KEY} is not the public half of {POLICY_SIGNING_KEY}: every "
            "follower would refuse the auth service's policy (remove both: a fresh pair is added)"
        )
    return added


def _raw(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def complete(path: Path) -> list[str]:
    """Adds to the existing env file at `path` the secrets it lacks (its values stay); the
    names added."""
    added = missing(read(path))
    if added:
        text = path.read_text()
        lines = [text.rstrip("\n")] if text.strip() else []
        lines += [f"{name}={value}" for name, value in added.items()]
        path.chmod(0o600)
        path.write_text("\n".join(lines) + "\n")
    return list(added)


def gateway_tls(values: Mapping[str, str], project: Path) -> str:
    """What the gateway will serve with, as a line to print: the files the env file's
    `values` name (relative to `project`, compose's project directory), or a local CA's
    certificate under `project`/.build/tls, made if missing or about to expire (made even for
    plaintext: compose mounts the files its secrets name). ValueError if one of TLS_FILES is
    set without the other, if they are set without CA_FILE (or it without them), or if one
    names no file."""
    given = {name: values[name] for name in TLS_FILES if values.get(name)}
    if len(given) == 1:
        [held] = given
        [other] = [name for name in TLS_FILES if name != held]
        raise ValueError(f"{held} is set but not {other}: the gateway needs both")
    if values.get(CA_FILE):
        given[CA_FILE] = values[CA_FILE]
    absent = [f"{name}={path}" for name, path in given.items() if not (project / path).is_file()]
    if absent:
        raise ValueError(f"{', '.join(absent)}: no such file")
    if len(given) == 1:  # the CA alone
        raise ValueError(
            f"{CA_FILE} is set without {' and '.join(TLS_FILES)}: it would not be the CA of "
            "the local certificate made for the gateway"
        )
    if given and CA_FILE not in given:
        raise ValueError(
            f"{' and '.join(TLS_FILES)} are set but not {CA_FILE}: the CA that issued the "
            "certificate, which the console verifies the gateway with (a system bundle, e.g. "
            "/etc/ssl/certs/ca-certificates.crt, for a public CA's)"
        )
    made = None if given else local_certificate(project / ".build" / "tls")
    if values.get(PLAINTEXT) == "1":
        return (
            f"the gateway serves plaintext ({PLAINTEXT}=1): HTTP and gRPC without TLS (set "
            f"GATEWAY_URL=http://gateway:{facts.GATEWAY_PORT} too: the console's way to it)"
        )
    if made is None:
        return (
            f"the gateway serves HTTPS and gRPC over TLS with {given[TLS_FILES[0]]}, verified "
            f"with {given[CA_FILE]}"
        )
    address = values.get("GATEWAY_PUBLISH", f"127.0.0.1:{facts.GATEWAY_PORT}")
    ca = _shown(made.ca)
    return (
        f"the gateway serves HTTPS and gRPC over TLS with {_shown(made.certificate)}, of a "
        f"local CA {'made now' if made.made else 'made before'} ({ca}); trust it: "
        f"curl --cacert {ca} https://{address}/v1/products, grpcurl -cacert {ca} {address} ..."
    )


def _shown(path: Path) -> str:
    """`path` relative to the working directory when it is under it (what a reader types)."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, default=ROOT / ".env")
    parser.add_argument("--force", action="store_true", help="replace an existing file")
    parser.add_argument("pairs", nargs="*", metavar="NAME=VALUE")
    args = parser.parse_args()
    if args.output.exists() and not args.force:
        try:
            added = complete(args.output)
        except ValueError as exc:
            print(f"{args.output}: {exc}", file=sys.stderr)
            return 1
        kept = f"{args.output} exists: kept (its secrets are the volumes'; --force replaces it)"
        print(f"{kept}; added {', '.join(added)}" if added else kept)
    else:
        extra = dict(pair.split("=", 1) for pair in args.pairs)
        write(args.output, extra)
        print(f"{args.output} written with fresh secrets")
    try:
        print(gateway_tls(read(args.output), args.output.parent))
    except ValueError as exc:
        print(f"{args.output}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
