"""The breaking-change gate fails a contract change that would break clients, and only those.

Each test copies the real contracts, changes the copy as a developer might, and runs the same
buf comparison that `make lint` runs (tools/contracts.py) against the real contracts.
"""

import shutil
from pathlib import Path

import pytest

from tools import contracts


@pytest.fixture(scope="module")
def landed(tmp_path_factory) -> Path:
    image = tmp_path_factory.mktemp("landed") / "landed.binpb"
    contracts.build_image(contracts.ROOT, image)
    return image


@pytest.fixture
def workspace(tmp_path) -> Path:
    shutil.copytree(contracts.PROTO, tmp_path / "proto")
    shutil.copyfile(contracts.ROOT / "buf.yaml", tmp_path / "buf.yaml")
    return tmp_path


def edit(workspace: Path, file: str, old: str, new: str) -> None:
    path = workspace / "proto" / file
    text = path.read_text()
    assert old in text, f"{old!r} not in {file}"
    path.write_text(text.replace(old, new, 1))


def changes(workspace: Path, landed: Path) -> str:
    image = workspace / "changed.binpb"
    contracts.build_image(workspace, image)
    return contracts.breaking_changes(image, landed)


def test_unchanged_contracts_pass(workspace, landed):
    assert changes(workspace, landed) == ""


def test_adding_a_field_passes(workspace, landed):
    edit(workspace, "inventory/v1/inventory_service.proto",
         "  google.protobuf.Timestamp update_time = 8;\n",
         "  google.protobuf.Timestamp update_time = 8;\n  string brand = 9;\n")  # fmt: skip

    assert changes(workspace, landed) == ""


def test_deleting_a_field_fails(workspace, landed):
    edit(workspace, "inventory/v1/inventory_service.proto", "  int64 available_stock = 6;\n", "")

    report = changes(workspace, landed)

    assert 'field "6" with name "available_stock" on message "Product" was deleted' in report


def test_renaming_an_rpc_fails(workspace, landed):
    edit(workspace, "order/v1/order_service.proto",
         "rpc CancelOrder(CancelOrderRequest)", "rpc AbortOrder(CancelOrderRequest)")  # fmt: skip

    report = changes(workspace, landed)

    assert '"CancelOrder" on service "OrderService" was deleted' in report


def test_changing_a_field_type_fails(workspace, landed):
    edit(workspace, "common/v1/money.proto", "int64 amount_minor = 1;", "double amount_minor = 1;")

    assert 'changed type from "int64" to "double"' in changes(workspace, landed)


def test_changing_an_events_route_fails(workspace, landed):
    """Consumers' queues are bound to the old routing key: buf does not compare the option's
    value, the gate does."""
    edit(workspace, "order/v1/events.proto",
         'routing_key: "order.approved"', 'routing_key: "order.accepted"')  # fmt: skip
    image = workspace / "changed.binpb"
    contracts.build_image(workspace, image)

    assert changes(workspace, landed) == ""  # buf alone lets it through
    assert contracts.route_changes(image, landed) == (
        "order.v1.OrderApproved: route changed from order.events (EXCHANGE_KIND_TOPIC) "
        "'order.approved' MESSAGE_KIND_EVENT to order.events (EXCHANGE_KIND_TOPIC) "
        "'order.accepted' MESSAGE_KIND_EVENT"
    )


def test_renaming_an_events_field_fails(workspace, landed):
    """Binary consumers would still decode it, JSON ones (and code reading it by name) not."""
    edit(workspace, "order/v1/events.proto", "  string user_id = 2;", "  string customer_id = 2;")

    assert 'changed name from "user_id" to "customer_id"' in changes(workspace, landed)


def test_adding_an_event_passes(workspace, landed):
    edit(
        workspace,
        "order/v1/events.proto",
        "message OrderApproved {",
        """message OrderShipped {
  option (common.v1.route) = {
    exchange: "order.events"
    exchange_kind: EXCHANGE_KIND_TOPIC
    routing_key: "order.shipped"
    kind: MESSAGE_KIND_EVENT
  };
  string order_id = 1;
}

message OrderApproved {""",
    )
    image = workspace / "changed.binpb"
    contracts.build_image(workspace, image)

    assert changes(workspace, landed) == ""
    assert contracts.route_changes(image, landed) == ""
