"""Both versions of the order API can say everything the saga records."""

import pytest
from order.v1 import order_service_pb2 as v1
from order.v2 import order_service_pb2 as v2
from ordermesh.saga import HistoryKind

from services.order.api import history_proto


@pytest.mark.parametrize("messages", [v1, v2], ids=["v1", "v2"])
@pytest.mark.parametrize("kind", list(HistoryKind))
def test_every_kind_of_saga_history_entry_has_a_value_in_the_api(messages, kind):
    entry = {"kind": kind.value, "step": "reserve_credit", "message_type": "", "state": "X",
             "detail": "", "time": "2026-12-03T10:00:00+00:00"}  # fmt: skip

    proto = history_proto(entry, messages)

    assert isinstance(proto, messages.HistoryEntry)
    assert messages.HistoryEntryKind.Name(proto.kind) == f"HISTORY_ENTRY_KIND_{kind.value}"
