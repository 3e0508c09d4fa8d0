"""The AsyncAPI document (docs/asyncapi.yaml, from `make gen`; `make lint` validates it with
AsyncAPI's parser) tells a consumer everything it needs: every event and command with its
payload, who publishes and who consumes it, and what happens when its handling fails."""

import subprocess
import sys
import tempfile
from pathlib import Path

import grpc_tools
import yaml
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from ordermesh.prototext import Comments, proto_text

from services import messaging

ROOT = Path(__file__).resolve().parents[2]
DOCUMENT = yaml.safe_load((ROOT / "docs" / "asyncapi.yaml").read_text())
MESSAGES = DOCUMENT["components"]["messages"]
CHANNELS = DOCUMENT["channels"]
OPERATIONS = DOCUMENT["operations"]


def test_every_message_published_or_sent_is_there_with_its_publisher():
    sent = messaging.events_published()
    for service, commands in messaging.commands_sent().items():
        sent[service] = [*sent.get(service, []), *commands]
    for service, messages in sent.items():
        for message in messages:
            name = message.DESCRIPTOR.full_name
            operation = OPERATIONS[f"{service}.send.{name}"]
            assert operation["action"] == "send"
            assert name in MESSAGES


def test_every_subscription_has_its_queue_retry_queues_and_dead_letter_queue():
    for service, subscriptions in messaging.subscriptions().items():
        for subscription in subscriptions:
            operation = OPERATIONS[f"{service}.receive.{subscription.purpose}"]
            assert operation["channel"] == {"$ref": f"#/channels/queue~1{subscription.queue()}"}
            assert operation["x-retry"]["delays_s"] == list(subscription.retry_delays_s)
            for n in range(len(subscription.retry_delays_s)):
                assert f"queue/{subscription.retry_queue(n)}" in CHANNELS
            assert f"queue/{subscription.dead_letter_queue}" in CHANNELS
            received = {m["$ref"].rsplit("/", 1)[1] for m in operation["messages"]}
            assert received == {t.DESCRIPTOR.full_name for t in subscription.handled}


def test_a_moved_consumer_shows_the_successor_bound_and_the_old_type_draining():
    queue = CHANNELS["queue/notification.events"]
    assert "order.events 'order.v2.approved'" in queue["description"]
    assert "Still takes order.v1.OrderApproved" in queue["description"]
    old = MESSAGES["order.v1.OrderApproved"]
    assert old["x-lifecycle"]["successor"] == "order.v2.OrderApproved"
    assert old["x-lifecycle"]["sunset"] == "2027-12-03"


def test_every_payload_describes_the_same_wire_format_as_the_contract():
    """Each payload's proto text, compiled, has the fields (names, numbers, types) of the
    generated message it stands for."""
    for name, message in MESSAGES.items():
        text = message["payload"]["schema"]
        contract = descriptor_pool.Default().FindMessageTypeByName(name)
        rendered = _compiled(text, contract.file.package, contract.name)
        assert [(f.name, f.number, f.type, f.is_repeated) for f in rendered.fields] == [
            (f.name, f.number, f.type, f.is_repeated) for f in contract.fields
        ], name


def _compiled(text: str, package: str, name: str):
    """The message `name` of a proto text, compiled by protoc into a pool of its own."""
    pool, _ = _compiled_files(text)
    return pool.FindMessageTypeByName(f"{package}.{name}")


def _compiled_files(text: str):
    """A proto text compiled by protoc (with its comments): a pool of its own and its files."""
    with tempfile.TemporaryDirectory() as scratch:
        (Path(scratch) / "payload.proto").write_text(text)
        out = Path(scratch) / "payload.pb"
        subprocess.run(
            [sys.executable, "-m", "grpc_tools.protoc", f"-I{scratch}",
             f"-I{Path(grpc_tools.__path__[0]) / '_proto'}", "--include_imports",
             "--include_source_info", f"--descriptor_set_out={out}", "payload.proto"],
            check=True,
        )  # fmt: skip
        files = list(descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file)
    pool = descriptor_pool.DescriptorPool()
    for file in files:
        pool.Add(file)
    return pool, files


def _shape(message) -> list:
    """A message's wire format, nested types, maps and oneofs included, as comparable data."""

    def kind(field):
        entry = field.message_type
        if entry is not None and entry.GetOptions().map_entry:
            return ("map", kind(entry.fields_by_name["key"]), kind(entry.fields_by_name["value"]))
        named = field.message_type or field.enum_type
        return field.type if named is None else named.full_name.split(".", 1)[1]

    return [
        (f.name, f.number, f.is_repeated, kind(f), f.containing_oneof and f.containing_oneof.name)
        for f in message.fields
    ] + [_shape(nested) for nested in message.nested_types if not nested.GetOptions().map_entry]


def test_nested_types_maps_and_oneofs_are_rendered_as_the_contract_has_them():
    contract = """syntax = "proto3";
package shapes.v1;
import "google/protobuf/timestamp.proto";
// A parcel.
message Parcel {
  enum Size { SIZE_UNSPECIFIED = 0; SIZE_SMALL = 1; }
  message Label { string text = 1; Size size = 2; }
  // Where it goes.
  oneof destination {
    string locker_id = 1;
    Label address = 2;
  }
  map<string, Label> labels = 3;
  map<int32, Size> sizes = 4;
  repeated .shapes.v1.Label.Part parts = 5;  // not Parcel.Label's
  optional google.protobuf.Timestamp sent = 6;
  Stop next = 7;
}
message Label { message Part { int64 grams = 1; } }
message Stop { Parcel.Size size = 1; }
"""
    pool, files = _compiled_files(contract)
    parcel = pool.FindMessageTypeByName("shapes.v1.Parcel")
    message = message_factory.GetMessageClass(parcel)

    rendered = proto_text(message, Comments(files))

    assert "// Where it goes.\n  oneof destination {" in rendered
    again, _ = _compiled_files(rendered)
    for name in ("Parcel", "Label", "Stop"):
        assert _shape(again.FindMessageTypeByName(f"shapes.v1.{name}")) == _shape(
            pool.FindMessageTypeByName(f"shapes.v1.{name}")
        ), name
