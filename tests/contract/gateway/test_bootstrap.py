"""The gateway's bootstrap (ordermesh.gateway.envoy.bootstrap, rendered into gateway/envoy.yaml) is
one Envoy accepts."""

import subprocess

from ordermesh.gateway.agent import prepare
from ordermesh.gateway.envoy import GatewayConfig

from deploy.ca import LocalCA
from deploy.envoy import envoy_binary
from gateway import DESCRIPTOR_SET, ROOT
from services.catalogue import CATALOGUE


def test_envoy_accepts_the_generated_config(tmp_path):
    """The committed gateway/envoy.yaml (`make lint` checks it is what `make gen` renders),
    validated by Envoy from a directory laid out as its relative paths expect, with the
    files the gateway's agent writes before Envoy starts, and its TLS certificate."""
    (tmp_path / "gen").mkdir()
    (tmp_path / "gen" / "descriptors.pb").symlink_to(DESCRIPTOR_SET)
    run = tmp_path / ".build" / "run" / "gateway"
    prepare(
        GatewayConfig(
            port=0,
            eds_dir=run / "eds",
            catalogue=CATALOGUE,
            descriptor_set=DESCRIPTOR_SET,
            policy_dir=run / "policy",
        )
    )
    LocalCA(tmp_path / ".build" / "tls").issue("gateway")  # what `make up` makes once
    validated = subprocess.run(
        [str(envoy_binary()), "--mode", "validate", "-c", str(ROOT / "gateway/envoy.yaml")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert validated.returncode == 0, validated.stdout + validated.stderr
