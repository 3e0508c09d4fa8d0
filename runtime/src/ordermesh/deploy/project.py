"""What the deployment generators are told of a project: its catalogue, its image, its
contracts' descriptor set, and the pieces that are its own (`Step`, `Federation`).

A project names one `Project`, as it names its catalogue, and hands it to every generator
(`--project module:attribute`):

    PROJECT = Project(
        name="parcel",
        catalogue=CATALOGUE,
        descriptor_set=ROOT / "gen" / "descriptors.pb",
        image="parcel",
        version="0.1.0",
        schema_module="parcel.schema",
        catalogue_at="parcel.catalogue:CATALOGUE",
    )

`python -m ordermesh.deploy.compose --project parcel.deploy:PROJECT` then writes its
compose.yaml and `python -m ordermesh.deploy.manifests --project ...` its Kubernetes manifests.
"""

from __future__ import annotations

import argparse
import importlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from ordermesh import catalogue as catalogues
from ordermesh.catalogue import Catalogue, Service
from ordermesh.deploy import databases

__all__ = ["RESERVED", "Federation", "Project", "SecretKey", "Step", "load", "run_generator"]

# The names of what the runtime's deployments run beside a project's services: a step may take
# none of them (nor a service's, nor `<service>-schema`), nor `schema`, its pods' first step.
RESERVED = frozenset(
    {
        "rabbitmq", "redis", "postgres", "postgres-roles", "gateway", "gateway-config",
        "gateway-agent", "graphql", "prometheus", "prometheus-targets", "alertmanager", "grafana",
        "jaeger", "mongodb", "mongodb-init", "schema",
    }
)  # fmt: skip
# A container's and a compose service's name: a DNS label.
NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


@dataclass(frozen=True)
class SecretKey:
    """Where Kubernetes finds a step's secret: a Secret the operator creates, and its key."""

    secret: str
    key: str


@dataclass(frozen=True)
class Step:
    """A one-shot step of a service, run in the application's image at every start (so it must
    be idempotent): Kubernetes runs it as an init container of the service's pods, to
    completion before the service starts; compose starts it before the service and restarts it
    until it succeeds, while the service starts (nothing in compose waits for health, and a
    step may wait on what the service's start makes ready): what the service needs at once
    belongs in its schema step or its own start. It is started
    with its service's settings (what ordermesh.deploy.environment decides for it, less what only a
    serving process holds) and its own: `settings` (plain values, each a default the operator
    may override in compose's env file) and `secrets` (each a variable compose requires and
    Kubernetes reads from its `SecretKey`). `command` runs by `sh -c`, written for a POSIX
    shell (`$NAME` reads a variable)."""

    name: str
    service: str
    command: str
    settings: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    secrets: Mapping[str, SecretKey] = field(default_factory=lambda: MappingProxyType({}))


@dataclass(frozen=True)
class Federation:
    """The GraphQL federation gateway behind Envoy's /graphql: an image of Hive Gateway
    (`supergraph --config-path ...`), its own, that the project builds (`image` is named as
    `Project.image` is), with the configuration and the supergraph of `directory` (relative to
    the project's root) mounted into it."""

    image: str
    directory: str
    files: tuple[str, ...] = ("gateway.config.mjs", "supergraph.graphql")
    # Of `files`, the configuration it is started with (`--config-path`).
    config: str = "gateway.config.mjs"

    def __post_init__(self) -> None:
        if self.config not in self.files:
            raise ValueError(f"the federation's config {self.config!r} is not among its files")

    def local_image(self) -> str:
        """Its image as built on the machine."""
        return f"localhost/{self.image}:latest"


@dataclass(frozen=True)
class Project:
    """A system built on the runtime, as its deployments see it.

    `name` names the compose project and the Kubernetes namespace. `image` is the name of the
    application's image, in which every service runs: built on the machine, it is
    `localhost/<image>:latest` (compose's default for ORDERMESH_IMAGE, the dev overlay's); a
    release is `<image>:<version>` (the prod overlay's); the image holds the descriptor set at
    `gen/descriptors.pb` under its working directory, where the gateway's agent and Envoy's
    configuration read it. `descriptor_set` is that file on the machine that renders (relative
    to the project's root, or absolute). `schema_module` is run as
    `python -m <schema_module> <service>` to make a store-backed service's schema as its
    database's owner (required when a service keeps state). `monitoring` is the directory
    (relative to the root) of Prometheus's rules (`rules.yml`), Alertmanager's configuration
    (`alertmanager.yml`) and Grafana's provisioning and dashboards (`grafana/`). `catalogue_at`
    is where the runtime's processes that read the catalogue (the gateway's agent and auth
    service, Prometheus's targets) import it from, `module:attribute` (CATALOGUE)."""

    name: str
    catalogue: Catalogue
    descriptor_set: Path
    image: str
    version: str
    schema_module: str = ""
    steps: tuple[Step, ...] = ()
    federation: Federation | None = None
    monitoring: str = "monitoring"
    catalogue_at: str = catalogues.DEFAULT

    def __post_init__(self) -> None:
        found: object
        try:
            found = catalogues.load(self.catalogue_at)
        except (ImportError, ValueError) as exc:
            found = exc
        if found is not self.catalogue:
            raise ValueError(
                f"catalogue_at={self.catalogue_at!r} does not name the project's catalogue "
                f"({found!r}): give its module:attribute"
            )
        if self.stores() and not self.schema_module:
            raise ValueError(
                f"{', '.join(self.stores())} keep state: name the project's schema_module"
            )
        taken = RESERVED | {s.name for s in self.catalogue}
        taken |= {f"{name}-schema" for name in self.stores()}
        for step in self.steps:
            self.catalogue.entry(step.service)  # raises for a service it does not hold
            if step.name in taken or not NAME.match(step.name):
                raise ValueError(
                    f"step {step.name!r}: name it apart from the deployments' other containers, "
                    "as a DNS label ([a-z0-9-], 63 at most)"
                )
            taken |= {step.name}
        if self.catalogue.graph_services() and self.federation is None:
            raise ValueError("services have GraphQL subgraphs: name the project's federation")

    def stores(self) -> list[str]:
        """The services that keep state, in start order: each has its database."""
        return databases.stores(self.catalogue)

    def steps_of(self, service: Service) -> tuple[Step, ...]:
        return tuple(step for step in self.steps if step.service == service.name)

    def local_image(self) -> str:
        """The application's image as built on the machine."""
        return f"localhost/{self.image}:latest"

    def schema_command(self, service: str) -> list[str]:
        return ["python", "-m", self.schema_module, service]


def load(spec: str) -> Project:
    """A project's deployment by its place, "module:attribute" (the example's:
    "deploy.project:PROJECT"), imported."""
    module, _, attribute = spec.partition(":")
    found = getattr(importlib.import_module(module), attribute or "PROJECT", None)
    if not isinstance(found, Project):
        raise ValueError(f"{spec} is not a Project: name one as module:attribute")
    return found


def run_generator(description: str, write: Callable[[Project, Path], None]) -> None:
    """A deployment generator's command line: `--project module:attribute` (`load`) and
    `--root DIR`, the project's root, where it writes (the current directory by default)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--project", required=True, help="module:attribute of the Project")
    parser.add_argument("--root", type=Path, default=Path())
    args = parser.parse_args()
    write(load(args.project), args.root)
