"""Notifications: who gets what through which channel, what it says, when to try again; no I/O."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

PENDING, SENT, FAILED = "PENDING", "SENT", "FAILED"
ACCOUNT_CREATED = "account_created"
ORDER_APPROVED, ORDER_REJECTED, ORDER_CANCELLED = (
    "order_approved",
    "order_rejected",
    "order_cancelled",
)


class RecipientUnknown(Exception):
    """A notification for a user whose account this service has not heard of yet.

    Transient: the account's UserRegistered is on its way (events of different producers are
    not ordered), so the consumer retries the message later.
    """


class PermanentFailure(Exception):
    """A channel refused a notification for good (bad address, rejected request): no retry."""


@dataclass(frozen=True)
class Draft:
    """A notification to send through one channel."""

    channel: str
    address: str
    subject: str
    body: str


def address_of(recipient: Mapping[str, Any], channel: str) -> str:
    if channel == "email":
        return str(recipient["email"])
    if channel == "sms":
        return str(recipient["preferences"]["phone_number"])
    return str(recipient["preferences"]["push_token"])


def drafts(recipient: Mapping[str, Any], kind: str, subject: str, body: str) -> list[Draft]:
    """One draft per channel the recipient wants for this kind and can be reached on."""
    wanted = recipient["preferences"]["channels"].get(kind, [])
    found = []
    for channel in wanted:
        address = address_of(recipient, channel)
        if address:
            found.append(Draft(channel=channel, address=address, subject=subject, body=body))
    return found


def money(amount_minor: int, currency: str) -> str:
    return f"{amount_minor / 100:.2f} {currency}"


def order_text(
    kind: str,
    *,
    name: str,
    order_id: str,
    reason: str = "",
    lines: Sequence[str] = (),
    delivery: Sequence[str] = (),
) -> tuple[str, str]:
    """Subject and body of an order notification; `delivery`: the lines of the address an
    approved order goes to, if it has one."""
    short = order_id[:8]
    if kind == ORDER_APPROVED:
        items = "\n".join(f"  - {line}" for line in lines)
        goes_to = "".join(f"\n  {line}" for line in delivery)
        return (
            f"Order {short} approved",
            f"Hello {name},\n\nyour order {order_id} is approved:\n{items}\n"
            + (f"\nIt will be delivered to:{goes_to}\n" if delivery else ""),
        )
    if kind == ORDER_REJECTED:
        return (
            f"Order {short} rejected",
            f"Hello {name},\n\nyour order {order_id} could not be accepted: {reason}.\n",
        )
    return (
        f"Order {short} cancelled",
        f"Hello {name},\n\nyour order {order_id} is cancelled."
        + (f" Reason: {reason}.\n" if reason else "\n"),
    )


def address_lines(
    recipient: str, lines: Sequence[str], postal_code: str, locality: str, region_code: str
) -> list[str]:
    """An address as it is written on a parcel (the postal code before the locality)."""
    town = " ".join(part for part in (postal_code, locality) if part)
    return [line for line in (recipient, *lines, town, region_code) if line]


def welcome_text(name: str) -> tuple[str, str]:
    return "Welcome to ordermesh", f"Hello {name},\n\nyour account is ready.\n"


def next_attempt_delay(attempts: int, delays_s: Sequence[float]) -> float | None:
    """Seconds until the next attempt after `attempts` failed ones; None when none is left."""
    if attempts > len(delays_s):
        return None
    return delays_s[attempts - 1]


def masked(channel: str, address: str) -> str:
    """The address as ListNotifications shows it: enough to recognise, not to harvest."""
    if channel == "email":
        local, _, domain = address.partition("@")
        return f"{local[:1]}***@{domain}"
    if channel == "sms":
        return f"{address[:3]}{'*' * max(0, len(address) - 7)}{address[-4:]}"
    return f"{address[:6]}..." if len(address) > 6 else "***"
