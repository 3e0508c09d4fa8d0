"""Records golden files: one message of every type our consumers subscribe to, encoded by the
contracts as they are now, kept so that every later version of the consumers is shown to still
handle them (tests/integration/test_golden_events.py replays them, byte for byte).

    python -m tests.golden.record        (after a release changed a consumed contract)

Each recording goes to `tests/golden/events/<version>/`, where `<version>` names the last
commit that changed proto/; earlier recordings are never rewritten.
"""

from __future__ import annotations

import base64
import json
import subprocess
import uuid
from pathlib import Path

from common.v1 import address_pb2, money_pb2, notification_pb2
from google.protobuf import json_format
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from inventory.v1 import commands_pb2 as inventory_commands
from inventory.v1 import events_pb2 as inventory_events
from order.v1 import events_pb2 as order_events
from order.v1 import order_service_pb2 as order_pb
from order.v2 import events_pb2 as order_events_v2
from order.v2 import order_service_pb2 as order_v2_pb
from ordermesh.events import route_of
from user.v1 import commands_pb2 as user_commands
from user.v1 import events_pb2 as user_events
from user.v1 import user_service_pb2 as user_pb

ROOT = Path(__file__).resolve().parents[2]
EVENTS = Path(__file__).resolve().parent / "events"
# The ids the messages share, so that a replay makes sense to the services: one user (whom the
# notification service learns of from UserRegistered), one order of one product.
USER, ORDER, PRODUCT, SESSION = "golden-user", "golden-order", "golden-product", "golden-session"
EMAIL = "golden@example.test"
WHEN = Timestamp(seconds=1_764_547_200)


def _money(amount_minor: int) -> money_pb2.Money:
    return money_pb2.Money(amount_minor=amount_minor, currency_code="EUR")


def examples() -> list[Message]:
    """A message of every consumed type, with every field of its contract set."""
    preferences = user_pb.Preferences(
        subscriptions=[
            user_pb.ChannelSubscription(kind=kind, channels=[notification_pb2.CHANNEL_EMAIL])
            for kind in (
                notification_pb2.NOTIFICATION_KIND_ACCOUNT_CREATED,
                notification_pb2.NOTIFICATION_KIND_ORDER_APPROVED,
                notification_pb2.NOTIFICATION_KIND_ORDER_REJECTED,
                notification_pb2.NOTIFICATION_KIND_ORDER_CANCELLED,
            )
        ],
        phone_number="+4915100000099",
        push_token="golden-device",
    )
    line = order_pb.OrderLine(
        product_id=PRODUCT, product_name="Golden teapot", quantity=2, unit_price=_money(1250)
    )
    stock = inventory_commands.StockLine(product_id=PRODUCT, quantity=2)
    return [
        user_events.UserRegistered(
            user_id=USER,
            email=EMAIL,
            display_name="Goldie",
            register_time=WHEN,
            preferences=preferences,
        ),
        user_events.PreferencesUpdated(user_id=USER, preferences=preferences),
        user_events.SessionRevoked(user_id=USER, session_id=SESSION, expire_time=WHEN),
        order_events.OrderApproved(
            order_id=ORDER, user_id=USER, lines=[line], total=_money(2500), approve_time=WHEN
        ),
        order_events_v2.OrderApproved(
            order_id=ORDER,
            user_id=USER,
            items=[
                order_v2_pb.Item(
                    product_id=PRODUCT,
                    product_name="Golden teapot",
                    quantity=2,
                    unit_price=_money(1250),
                    line_total=_money(2500),
                )
            ],
            total=_money(2500),
            delivery_address=address_pb2.PostalAddress(
                recipient="Goldie",
                address_lines=["1 Golden Row"],
                locality="Goldtown",
                postal_code="12345",
                region_code="DE",
            ),
            approve_time=WHEN,
        ),
        order_events.OrderRejected(
            order_id=ORDER, user_id=USER, reason="out of stock: golden", reject_time=WHEN
        ),
        order_events.OrderCancelled(
            order_id=ORDER, user_id=USER, reason="changed my mind", cancel_time=WHEN
        ),
        inventory_commands.ReserveStock(order_id=ORDER, lines=[stock]),
        inventory_commands.ReleaseStock(order_id=ORDER, reason="golden release"),
        user_commands.ReserveCredit(order_id=ORDER, user_id=USER, amount=_money(2500)),
        user_commands.ReleaseCredit(order_id=ORDER, user_id=USER, reason="golden release"),
        inventory_events.StockReserved(order_id=ORDER, lines=[stock]),
        inventory_events.StockReservationFailed(
            order_id=ORDER,
            reason=f"product {PRODUCT}: 2 requested, 1 available",
            shortages=[
                inventory_events.StockShortage(product_id=PRODUCT, requested=2, available=1)
            ],
        ),
        inventory_events.StockReleased(order_id=ORDER, lines=[stock]),
        user_events.CreditReserved(
            order_id=ORDER, user_id=USER, amount=_money(2500), credit_available=_money(7500)
        ),
        user_events.CreditLimitExceeded(
            order_id=ORDER, user_id=USER, requested=_money(2500), credit_available=_money(100)
        ),
        user_events.CreditReleased(order_id=ORDER, user_id=USER, amount=_money(2500)),
    ]


def contracts_version() -> str:
    """The last commit that changed the contracts, e.g. "3aafd38"."""
    return subprocess.run(
        ["git", "log", "-1", "--format=%h", "--", "proto"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def record(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for message in examples():
        name = message.DESCRIPTOR.full_name
        route = route_of(message)
        golden = {
            "type": name,
            "exchange": route.exchange,
            "routing_key": route.routing_key,
            # Fixed, so that a replay is applied once (the inbox keys on it) and recognisable.
            "event_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"ordermesh:{directory.name}:{name}")),
            "payload": base64.b64encode(message.SerializeToString()).decode(),
            # What the payload meant to the contract that wrote it, for a reader (and a check).
            "fields": json_format.MessageToDict(message, preserving_proto_field_name=True),
        }
        path = directory / f"{name}.json"
        path.write_text(json.dumps(golden, indent=2) + "\n")
        written.append(path)
    return written


def main() -> None:
    directory = EVENTS / contracts_version()
    if directory.exists():
        raise SystemExit(f"{directory} exists: golden files of a version are never rewritten")
    for path in record(directory):
        print(path.relative_to(ROOT))


if __name__ == "__main__":
    main()
