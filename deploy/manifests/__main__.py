"""`python -m deploy.manifests`: writes deploy/kubernetes/{base,overlays/dev,overlays/prod}
(`make gen`), each file from the module of its concern."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

import yaml

from deploy import databases, facts
from deploy.databases import stores
from deploy.manifests.gateway import GRAPHQL_FILES, gateway_bootstrap, gateway_deployment
from deploy.manifests.infrastructure import postgres, rabbitmq, rabbitmq_conf, redis
from deploy.manifests.monitoring import ALERTMANAGER_CONFIG, alertmanager
from deploy.manifests.overlays import RABBITMQ_PROD_NODES, autoscalers, budgets, prod_patches
from deploy.manifests.pods import GRAPHQL_IMAGE, IMAGE, NAMESPACE, cluster_service
from deploy.manifests.policies import network_policies, store_policies
from deploy.manifests.services import services
from gateway import DESCRIPTOR_SET
from services import catalogue

ROOT = Path(__file__).resolve().parents[2]

HEADER = "# Generated from the service catalogue by `make gen` (deploy/manifests): do not edit.\n"


def namespace() -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": NAMESPACE,
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


def write(root: Path) -> None:
    out = root / "deploy" / "kubernetes"
    shutil.rmtree(out, ignore_errors=True)
    base, dev, prod = out / "base", out / "overlays" / "dev", out / "overlays" / "prod"
    for directory in (base, dev, prod):
        directory.mkdir(parents=True)
    (base / "namespace.yaml").write_text(dump_all([namespace()]))
    (base / "services.yaml").write_text(dump_all(services()))
    (base / "gateway.yaml").write_text(
        dump_all(
            [
                gateway_deployment(),
                cluster_service("gateway", "gateway", "https", facts.GATEWAY_PORT),
            ]
        )
    )
    (base / "envoy.json").write_text(json.dumps(gateway_bootstrap(), indent=1) + "\n")
    for name in GRAPHQL_FILES:
        shutil.copyfile(ROOT / "gateway" / "graphql" / name, base / name)
    shutil.copyfile(DESCRIPTOR_SET, base / "descriptors.pb")
    (base / "redis.yaml").write_text(dump_all(redis()))
    (base / "rabbitmq.yaml").write_text(dump_all(rabbitmq(1, "1Gi")))
    (base / "alertmanager.yaml").write_text(dump_all(alertmanager()))
    shutil.copyfile(ROOT / "monitoring" / "alertmanager.yml", base / "alertmanager.yml")
    (base / "network-policies.yaml").write_text(dump_all(network_policies()))
    (base / "kustomization.yaml").write_text(
        kustomization(
            namespace=NAMESPACE,
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
                {"name": "gateway-envoy", "files": ["envoy.json", "descriptors.pb"]},
                {"name": "gateway-graphql", "files": list(GRAPHQL_FILES)},
                {"name": "rabbitmq-config", "files": ["rabbitmq.conf", "enabled_plugins"]},
                {"name": ALERTMANAGER_CONFIG, "files": ["alertmanager.yml"]},
            ],
        )
    )
    (base / "rabbitmq.conf").write_text(rabbitmq_conf(1))
    (base / "enabled_plugins").write_text("[rabbitmq_prometheus].\n")

    (dev / "postgres.yaml").write_text(dump_all([*postgres(), *store_policies(in_cluster=True)]))
    (dev / "init.sql").write_text(databases.init_sql(stores()))
    (dev / "kustomization.yaml").write_text(
        kustomization(
            namespace=NAMESPACE,
            resources=["../../base", "postgres.yaml"],
            configMapGenerator=[{"name": "postgres-init", "files": ["init.sql"]}],
            images=[
                {"name": IMAGE, "newName": "localhost/ordermesh", "newTag": "latest"},
                {
                    "name": GRAPHQL_IMAGE,
                    "newName": "localhost/ordermesh-graphql",
                    "newTag": "latest",
                },
            ],
        )
    )

    (prod / "patches.yaml").write_text(dump_all(prod_patches()))
    (prod / "envoy.json").write_text(
        json.dumps(gateway_bootstrap(mutual_tls=True), indent=1) + "\n"
    )
    (prod / "rabbitmq.conf").write_text(rabbitmq_conf(RABBITMQ_PROD_NODES))
    (prod / "availability.yaml").write_text(dump_all([*budgets(), *autoscalers()]))
    (prod / "store.yaml").write_text(dump_all(store_policies(in_cluster=False)))
    (prod / "kustomization.yaml").write_text(
        kustomization(
            namespace=NAMESPACE,
            resources=["../../base", "availability.yaml", "store.yaml"],
            patches=[{"path": "patches.yaml"}],
            # The bootstrap with mutual TLS to the services, in place of base's (same ConfigMap,
            # its descriptors kept; a new name, so a change rolls the gateway out).
            configMapGenerator=[
                {"name": "rabbitmq-config", "behavior": "merge", "files": ["rabbitmq.conf"]},
                {"name": "gateway-envoy", "behavior": "merge", "files": ["envoy.json"]},
            ],
            images=[
                {"name": IMAGE, "newName": "ordermesh", "newTag": _version()},
                {"name": GRAPHQL_IMAGE, "newName": "ordermesh-graphql", "newTag": _version()},
            ],
        )
    )


def _version() -> str:
    return str(catalogue.CATALOGUE[0].settings.model_fields["service_version"].default)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=ROOT)
    write(parser.parse_args().root)


if __name__ == "__main__":
    main()
