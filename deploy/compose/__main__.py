"""`python -m deploy.compose`: writes compose.yaml, deploy/compose.host-network.yaml,
deploy/compose.mongodb.yaml and deploy/postgres/init.sql (`make gen`)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import yaml

from deploy import compose, databases
from deploy.compose.monitoring import Block, configs, monitoring
from deploy.compose.overrides import Reset, ResetValue, host_network, mongodb

ROOT = Path(__file__).resolve().parents[2]


def document() -> dict[str, Any]:
    """compose.yaml: the system, every service of the catalogue in it."""
    return {
        "name": "ordermesh",
        "services": {
            **compose.infrastructure(),
            **compose.stores_and_schemas(),
            **compose.gateway(),
            **compose.services(),
            **monitoring(),
        },
        "volumes": {
            "rabbitmq": {},
            "postgres": {},
            "gateway": {},
            "prometheus-targets": {},
            "prometheus": {},
            "alertmanager": {},
        },
        "configs": configs(),
        "secrets": {
            name: {"file": path}
            for name, path in {**compose.TLS_SECRETS, **compose.CA_SECRETS}.items()
        },
    }


class _Dumper(yaml.SafeDumper):  # type: ignore[misc]
    def ignore_aliases(self, data: Any) -> bool:
        return True


_Dumper.add_representer(Reset, lambda dumper, _: dumper.represent_sequence("!reset", []))
_Dumper.add_representer(ResetValue, lambda dumper, _: dumper.represent_scalar("!reset", ""))
_Dumper.add_representer(
    Block, lambda dumper, text: dumper.represent_scalar("tag:yaml.org,2002:str", text, style="|")
)


def dump(document: dict[str, Any]) -> str:
    return compose.HEADER + str(yaml.dump(document, Dumper=_Dumper, sort_keys=False, width=100))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=ROOT)
    root = parser.parse_args().root
    base = document()
    (root / "compose.yaml").write_text(dump(base))
    (root / "deploy" / "compose.host-network.yaml").write_text(dump(host_network(base)))
    (root / "deploy" / "compose.mongodb.yaml").write_text(dump(mongodb()))
    (root / "deploy" / "postgres").mkdir(exist_ok=True)
    # The databases and roles of every service that keeps state.
    (root / "deploy" / "postgres" / "init.sql").write_text(databases.init_sql(databases.stores()))


if __name__ == "__main__":
    main()
