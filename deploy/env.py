"""`make compose-env`: writes `.env` for compose.yaml with fresh secrets (mode 600).

    python -m deploy.env [-o .env] [--force] [NAME=VALUE ...]

Each secret compose.yaml requires is generated (`secrets.token_urlsafe`); NAME=VALUE pairs
are added (addresses, ports, images: e.g. the host-network ports the container tests use). An
existing file is kept unless `--force`: its secrets are those of the volumes made with it.
"""

from __future__ import annotations

import argparse
import secrets
import sys
from pathlib import Path

from deploy.compose import ROOT

SECRETS = (
    "RABBITMQ_PASSWORD",
    "REDIS_PASSWORD",
    "POSTGRES_PASSWORD",
    "ADMIN_PASSWORD",
    "GRAFANA_ADMIN_PASSWORD",
)


def render(extra: dict[str, str]) -> str:
    values = {name: secrets.token_urlsafe(32) for name in SECRETS} | extra
    lines = ["# Written by `make compose-env` (deploy/env.py): secrets of this deployment."]
    lines += [f"{name}={value}" for name, value in values.items()]
    return "\n".join(lines) + "\n"


def write(path: Path, extra: dict[str, str]) -> None:
    """Writes the env file, readable by its owner only."""
    path.touch(mode=0o600, exist_ok=True)
    path.chmod(0o600)
    path.write_text(render(extra))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, default=ROOT / ".env")
    parser.add_argument("--force", action="store_true", help="replace an existing file")
    parser.add_argument("pairs", nargs="*", metavar="NAME=VALUE")
    args = parser.parse_args()
    if args.output.exists() and not args.force:
        print(f"{args.output} exists: kept (its secrets are the volumes'; --force replaces it)")
        return 0
    extra = dict(pair.split("=", 1) for pair in args.pairs)
    write(args.output, extra)
    print(f"{args.output} written with fresh secrets")
    return 0


if __name__ == "__main__":
    sys.exit(main())
