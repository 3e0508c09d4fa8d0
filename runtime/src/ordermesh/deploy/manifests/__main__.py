"""`python -m ordermesh.deploy.manifests --project MODULE:ATTRIBUTE [--root DIR]`: writes a
project's deploy/kubernetes/{base,overlays/dev,overlays/prod} under DIR (its root; the current
directory by default), each file from the module of its concern."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from ordermesh.deploy import databases, facts
from ordermesh.deploy.manifests.gateway import (
    GRAPHQL_CONFIGMAP,
    gateway_bootstrap,
    gateway_deployment,
)
from ordermesh.deploy.manifests.infrastructure import postgres, rabbitmq, rabbitmq_conf, redis
from ordermesh.deploy.manifests.monitoring import ALERTMANAGER_CONFIG, alertmanager
from ordermesh.deploy.manifests.overlays import (
    RABBITMQ_PROD_NODES,
    autoscalers,
    budgets,
    prod_patches,
)
from ordermesh.deploy.manifests.pods import GRAPHQL_IMAGE, IMAGE, cluster_service
from ordermesh.deploy.manifests.policies import network_policies, store_policies
from ordermesh.deploy.manifests.services import services
from ordermesh.deploy.project import Project, run_generator

HEADER = "# Generated from the service catalogue by ordermesh.deploy.manifests: do not edit.\n"


def namespace(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": name,
            "labels": {
                "pod-security.kubernetes.io/enforce": "restricted",
                "pod-security.kubernetes.io/enforce-version": "latest",
            },
        },
    }


def dump_all(documents: list[dict[str, Any]]) -> str:
    return HEADER + str(yaml.safe_dump_all(documents, sort_keys=False, width=100))


def kustomization(**fields: Any) -> str:
    document = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", **fields}
    return HEADER + str(yaml.safe_dump(document, sort_keys=False, width=100))


def write(project: Project, root: Path) -> None:
    # Its files are read from its root (a relative descriptor set's too).
    project = replace(project, descriptor_set=root / project.descriptor_set)
    out = root / "deploy" / "kubernetes"
    shutil.rmtree(out, ignore_errors=True)
    base, dev, prod = out / "base", out / "overlays" / "dev", out / "overlays" / "prod"
    for directory in (base, dev, prod):
        directory.mkdir(parents=True)
    name, federation = project.name, project.federation
    (base / "namespace.yaml").write_text(dump_all([namespace(name)]))
    (base / "services.yaml").write_text(dump_all(services(project)))
    (base / "gateway.yaml").write_text(
        dump_all(
            [
                gateway_deployment(project),
                cluster_service("gateway", "gateway", "https", facts.GATEWAY_PORT),
            ]
        )
    )
    (base / "envoy.json").write_text(json.dumps(gateway_bootstrap(project), indent=1) + "\n")
    shutil.copyfile(project.descriptor_set, base / "descriptors.pb")
    (base / "redis.yaml").write_text(dump_all(redis()))
    (base / "rabbitmq.yaml").write_text(dump_all(rabbitmq(1, "1Gi", name)))
    (base / "alertmanager.yaml").write_text(dump_all(alertmanager()))
    shutil.copyfile(root / project.monitoring / "alertmanager.yml", base / "alertmanager.yml")
    (base / "network-policies.yaml").write_text(dump_all(network_policies(project.catalogue)))
    config_maps = [{"name": "gateway-envoy", "files": ["envoy.json", "descriptors.pb"]}]
    # The images the overlays name: the application's, and the federation gateway's.
    images = [(IMAGE, project.image)]
    if federation is not None:
        for file in federation.files:
            shutil.copyfile(root / federation.directory / file, base / file)
        config_maps.append({"name": GRAPHQL_CONFIGMAP, "files": list(federation.files)})
        images.append((GRAPHQL_IMAGE, federation.image))
    (base / "kustomization.yaml").write_text(
        kustomization(
            namespace=name,
            resources=[
                "namespace.yaml",
                "services.yaml",
                "gateway.yaml",
                "redis.yaml",
                "rabbitmq.yaml",
                "alertmanager.yaml",
                "network-policies.yaml",
            ],
            configMapGenerator=[
                *config_maps,
                {"name": "rabbitmq-config", "files": ["rabbitmq.conf", "enabled_plugins"]},
                {"name": ALERTMANAGER_CONFIG, "files": ["alertmanager.yml"]},
            ],
        )
    )
    (base / "rabbitmq.conf").write_text(rabbitmq_conf(1, name))
    (base / "enabled_plugins").write_text("[rabbitmq_prometheus].\n")

    stores = project.stores()
    (dev / "postgres.yaml").write_text(
        dump_all([*postgres(stores), *store_policies(stores, in_cluster=True)])
    )
    (dev / "init.sql").write_text(databases.init_sql(stores))
    (dev / "kustomization.yaml").write_text(
        kustomization(
            namespace=name,
            resources=["../../base", "postgres.yaml"],
            configMapGenerator=[{"name": "postgres-init", "files": ["init.sql"]}],
            # Built on the machine: Podman's names.
            images=[
                {"name": placeholder, "newName": f"localhost/{image}", "newTag": "latest"}
                for placeholder, image in images
            ],
        )
    )

    (prod / "patches.yaml").write_text(dump_all(prod_patches(project)))
    (prod / "envoy.json").write_text(
        json.dumps(gateway_bootstrap(project, mutual_tls=True), indent=1) + "\n"
    )
    (prod / "rabbitmq.conf").write_text(rabbitmq_conf(RABBITMQ_PROD_NODES, name))
    (prod / "availability.yaml").write_text(dump_all([*budgets(project), *autoscalers(project)]))
    (prod / "store.yaml").write_text(dump_all(store_policies(stores, in_cluster=False)))
    (prod / "kustomization.yaml").write_text(
        kustomization(
            namespace=name,
            resources=["../../base", "availability.yaml", "store.yaml"],
            patches=[{"path": "patches.yaml"}],
            # The bootstrap with mutual TLS to the services, in place of base's (same ConfigMap,
            # its descriptors kept; a new name, so a change rolls the gateway out).
            configMapGenerator=[
                {"name": "rabbitmq-config", "behavior": "merge", "files": ["rabbitmq.conf"]},
                {"name": "gateway-envoy", "behavior": "merge", "files": ["envoy.json"]},
            ],
            # The release's images, by the project's version.
            images=[
                {"name": placeholder, "newName": image, "newTag": project.version}
                for placeholder, image in images
            ],
        )
    )


def main() -> None:
    run_generator(__doc__.splitlines()[0], write)


if __name__ == "__main__":
    main()
