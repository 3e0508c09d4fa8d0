"""`python -m ordermesh.deploy.compose --project MODULE:ATTRIBUTE [--root DIR]`: writes a
project's compose.yaml, deploy/compose.host-network.yaml, deploy/compose.mongodb.yaml and
deploy/postgres/init.sql under DIR (the project's root; the current directory by default)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ordermesh.deploy import compose, databases
from ordermesh.deploy.compose.gateway import gateway
from ordermesh.deploy.compose.monitoring import Block, configs, monitoring
from ordermesh.deploy.compose.overrides import Reset, ResetValue, host_network, mongodb
from ordermesh.deploy.project import Project, run_generator


def document(project: Project) -> dict[str, Any]:
    """compose.yaml: the system, every service of the catalogue in it."""
    return {
        "name": project.name,
        "services": {
            **compose.infrastructure(),
            **compose.stores_and_schemas(project),
            **compose.steps(project),
            **gateway(project),
            **compose.services(project),
            **monitoring(project),
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


def write(project: Project, root: Path) -> None:
    base = document(project)
    (root / "compose.yaml").write_text(dump(base))
    (root / "deploy" / "postgres").mkdir(parents=True, exist_ok=True)
    (root / "deploy" / "compose.host-network.yaml").write_text(dump(host_network(base)))
    (root / "deploy" / "compose.mongodb.yaml").write_text(dump(mongodb(project)))
    # The databases and roles of every service that keeps state.
    (root / "deploy" / "postgres" / "init.sql").write_text(databases.init_sql(project.stores()))


def main() -> None:
    run_generator(__doc__.splitlines()[0], write)


if __name__ == "__main__":
    main()
