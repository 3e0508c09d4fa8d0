"""Prometheus's targets follow the registry: instances come and go, and one that vanished
without draining stays, marked lost, for as long as it takes an operator to see it."""

import json
from dataclasses import replace

from ordermesh.registry import Instance
from ordermesh.targets import Targets


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


def instance(n: int, **fields) -> Instance:
    return Instance(
        service="order",
        instance_id=f"order-{n}",
        address=f"10.0.0.{n}:50051",
        metrics_port=9464,
        **fields,
    )


def listed(path) -> dict[str, dict[str, str]]:
    return {g["targets"][0]: g["labels"] for g in json.loads(path.read_text())}


def test_instances_that_come_are_targets_with_their_labels(tmp_path):
    path = tmp_path / "targets.json"
    targets = Targets(path, lost_kept_s=300, gateway_admin="127.0.0.1:9901")

    targets.update("order", [instance(1), instance(2, version="2.0")])

    assert listed(path) == {
        "10.0.0.1:9464": {"service": "order", "instance_id": "order-1", "version": ""},
        "10.0.0.2:9464": {"service": "order", "instance_id": "order-2", "version": "2.0"},
        "127.0.0.1:9901": {"service": "gateway", "__metrics_path__": "/stats/prometheus"},
    }


def test_an_instance_that_drained_leaves_at_once_one_that_vanished_stays_marked_lost(tmp_path):
    path = tmp_path / "targets.json"
    clock = Clock()
    targets = Targets(path, lost_kept_s=300, clock=clock)
    targets.update("order", [instance(1), instance(2)])
    targets.update("order", [replace(instance(1), draining=True), instance(2)])

    targets.update("order", [])  # 1 deregistered after draining; 2's lease ran out

    assert listed(path) == {
        "10.0.0.2:9464": {
            "service": "order", "instance_id": "order-2", "version": "", "lost": "true",
        }
    }  # fmt: skip
    clock.now += 299
    targets.write()
    assert "10.0.0.2:9464" in listed(path)
    clock.now += 2
    targets.write()
    assert listed(path) == {}


def test_a_lost_instance_that_comes_back_is_live_again_and_one_without_metrics_is_no_target(
    tmp_path,
):
    path = tmp_path / "targets.json"
    targets = Targets(path, lost_kept_s=300)
    targets.update("order", [instance(1)])
    targets.update("order", [])

    targets.update("order", [instance(1), replace(instance(3), metrics_port=0)])

    assert listed(path) == {
        "10.0.0.1:9464": {"service": "order", "instance_id": "order-1", "version": ""}
    }
