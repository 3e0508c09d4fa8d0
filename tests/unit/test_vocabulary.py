"""An enum value on the wire and the name domain code uses are one another's translation, for
every enum the code translates (ordermesh.vocabulary): the prefix is the enum's name in
UPPER_SNAKE_CASE, and a name the enum does not know is an error that names both."""

from types import ModuleType

import pytest
from common.v1 import notification_pb2
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.internal.enum_type_wrapper import EnumTypeWrapper
from notification.v1 import notification_service_pb2
from order.v1 import order_service_pb2 as order_v1
from order.v2 import order_service_pb2 as order_v2
from ordermesh.contracts.common.v1 import options_pb2
from ordermesh.contracts.ops.v1 import ops_service_pb2
from ordermesh.vocabulary import enum_name, enum_prefix, enum_value

from services import vocabulary

# The generated modules whose enums the code translates (ops.v1's and common.v1's among them).
MODULES = (notification_pb2, options_pb2, ops_service_pb2, notification_service_pb2)
MODULES += (order_v1, order_v2)


def _enums(module: ModuleType) -> list[EnumTypeWrapper]:
    return [getattr(module, name) for name in module.DESCRIPTOR.enum_types_by_name]


ENUMS = [enum for module in MODULES for enum in _enums(module)]


def _built(name: str, *values: str) -> EnumTypeWrapper:
    """An enum `name` of values `values`, built from its descriptor (no generated code)."""
    file = descriptor_pb2.FileDescriptorProto(
        name="vocabulary_test.proto", package="vocabulary.test", syntax="proto3"
    )
    enum = file.enum_type.add(name=name)
    for number, value in enumerate(values):
        enum.value.add(name=value, number=number)
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return EnumTypeWrapper(pool.FindEnumTypeByName(f"vocabulary.test.{name}"))


def test_the_enums_translated_include_ops_and_the_notification_vocabulary():
    names = {enum.DESCRIPTOR.full_name for enum in ENUMS}

    assert {"ops.v1.SagaStatus", "ops.v1.SagaHistoryKind", "ops.v1.MessageFate"} <= names
    assert {"common.v1.Channel", "common.v1.NotificationKind", "common.v1.Stability"} <= names


@pytest.mark.parametrize("enum", ENUMS, ids=lambda enum: enum.DESCRIPTOR.full_name)
def test_every_value_of_every_enum_is_its_prefix_and_its_name_and_back(enum):
    for wire_name, value in enum.items():
        name = enum_name(enum, value)

        assert enum_prefix(enum) + name == wire_name
        assert enum_value(enum, name) == value


@pytest.mark.parametrize(
    ("enum", "prefix"),
    [
        (ops_service_pb2.SagaStatus, "SAGA_STATUS_"),
        (ops_service_pb2.SagaHistoryKind, "SAGA_HISTORY_KIND_"),
        (ops_service_pb2.MessageFate, "MESSAGE_FATE_"),
        (notification_pb2.Channel, "CHANNEL_"),
        (notification_pb2.NotificationKind, "NOTIFICATION_KIND_"),
        (_built("HTTPMethod", "HTTP_METHOD_UNSPECIFIED"), "HTTP_METHOD_"),
        (_built("Http2Setting", "HTTP2_SETTING_UNSPECIFIED"), "HTTP2_SETTING_"),
    ],
)
def test_the_prefix_is_the_enums_name_in_upper_snake_case(enum, prefix):
    assert enum_prefix(enum) == prefix


def test_a_name_is_the_value_without_its_prefix():
    assert enum_name(ops_service_pb2.SagaStatus, ops_service_pb2.SAGA_STATUS_NEEDS_OPERATOR) == (
        "NEEDS_OPERATOR"
    )
    assert enum_value(ops_service_pb2.SagaHistoryKind, "OPERATOR_RETRIED") == (
        ops_service_pb2.SAGA_HISTORY_KIND_OPERATOR_RETRIED
    )
    assert enum_name(ops_service_pb2.SagaStatus, 0) == "UNSPECIFIED"


@pytest.mark.parametrize("name", ["PARKING", "SAGA_STATUS_RUNNING", "running", ""])
def test_an_unknown_name_is_an_error_naming_the_enum_and_the_name(name):
    with pytest.raises(ValueError, match=r"ops\.v1\.SagaStatus has no value named") as raised:
        enum_value(ops_service_pb2.SagaStatus, name)

    assert repr(name) in str(raised.value)
    assert "NEEDS_OPERATOR" in str(raised.value)  # the names it knows


def test_the_notification_vocabulary_is_lower_case_and_read_in_any_case():
    assert vocabulary.channel_name(notification_pb2.CHANNEL_EMAIL) == "email"
    assert vocabulary.channel_name(notification_pb2.CHANNEL_UNSPECIFIED) == "unspecified"
    assert vocabulary.kind_name(notification_pb2.NOTIFICATION_KIND_ORDER_APPROVED) == (
        "order_approved"
    )
    assert vocabulary.channel("sms") == vocabulary.channel("SMS") == notification_pb2.CHANNEL_SMS
    assert vocabulary.kind("order_cancelled") == notification_pb2.NOTIFICATION_KIND_ORDER_CANCELLED


def test_an_unknown_channel_names_the_enum_and_the_channel():
    with pytest.raises(ValueError, match=r"common\.v1\.Channel has no value named 'FAX'"):
        vocabulary.channel("fax")
