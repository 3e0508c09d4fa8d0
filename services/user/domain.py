"""Accounts, sessions, notification preferences and credit: the user service's rules, no I/O."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ordermesh.errors import AlreadyExists, FailedPrecondition, InvalidArgument, Unauthenticated

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
PASSWORD_MIN, PASSWORD_MAX = 10, 128
DISPLAY_NAME_MAX = 100
PUSH_TOKEN_MAX = 4096

# The vocabulary of common.v1's Channel and NotificationKind, by name (the domain has no proto).
CHANNELS = ("email", "sms", "push")
KINDS = ("account_created", "order_approved", "order_rejected", "order_cancelled")
ROLE_CUSTOMER, ROLE_ADMIN = "customer", "admin"


class EmailTaken(AlreadyExists):
    pass


class InvalidCredentials(Unauthenticated):
    pass


class SessionEnded(Unauthenticated):
    pass


class RefreshTokenReused(Unauthenticated):
    pass


def normalise_email(email: str) -> str:
    normalised = email.strip().lower()
    if len(normalised) > 254 or not EMAIL.match(normalised):
        raise InvalidArgument(f"email {email!r} is not a valid address")
    return normalised


def check_password(password: str, *, email: str) -> None:
    """OWASP-style policy: length is what counts; no composition rules, no email as password."""
    if len(password) < PASSWORD_MIN:
        raise InvalidArgument(f"password must have at least {PASSWORD_MIN} characters")
    if len(password) > PASSWORD_MAX:
        raise InvalidArgument(f"password must have at most {PASSWORD_MAX} characters")
    if password.strip().lower() == email:
        raise InvalidArgument("password must not be the email address")


def check_display_name(name: str) -> str:
    name = name.strip()
    if len(name) > DISPLAY_NAME_MAX:
        raise InvalidArgument(f"display name must have at most {DISPLAY_NAME_MAX} characters")
    return name


def default_preferences() -> dict[str, Any]:
    """A new account gets email for every kind of notification, and nothing else."""
    return {
        "channels": {kind: ["email"] for kind in KINDS},
        "phone_number": "",
        "push_token": "",
    }


def update_preferences(
    current: Mapping[str, Any],
    *,
    channels: Mapping[str, Iterable[str]],
    phone_number: str | None,
    push_token: str | None,
) -> dict[str, Any]:
    """The preferences after a change: listed kinds replaced, contact details set if given."""
    updated = {**current, "channels": dict(current["channels"])}
    for kind, chosen in channels.items():
        if kind not in KINDS:
            raise InvalidArgument(f"notification kind {kind!r} is not one of {KINDS}")
        chosen = list(dict.fromkeys(chosen))
        unknown = [c for c in chosen if c not in CHANNELS]
        if unknown:
            raise InvalidArgument(f"channel {unknown[0]!r} is not one of {CHANNELS}")
        updated["channels"][kind] = chosen
    if phone_number is not None:
        if phone_number and not E164.match(phone_number):
            raise InvalidArgument(f"phone number {phone_number!r} is not in E.164 form (+4915...)")
        updated["phone_number"] = phone_number
    if push_token is not None:
        if len(push_token) > PUSH_TOKEN_MAX:
            raise InvalidArgument(f"push token must have at most {PUSH_TOKEN_MAX} characters")
        updated["push_token"] = push_token
    wanted = {c for chosen in updated["channels"].values() for c in chosen}
    if "sms" in wanted and not updated["phone_number"]:
        raise FailedPrecondition("SMS notifications need a phone number")
    if "push" in wanted and not updated["push_token"]:
        raise FailedPrecondition("push notifications need a push token")
    return updated


@dataclass(frozen=True)
class CreditDecision:
    """The outcome of a credit reservation: granted or not, and what is left after it."""

    granted: bool
    available_minor: int


def credit_available(user: Mapping[str, Any]) -> int:
    """What a user may still reserve: the limit minus current reservations, never below 0."""
    return max(0, int(user["credit_limit_minor"]) - int(user["credit_reserved_minor"]))


def decide_credit(
    *, limit_minor: int, reserved_minor: int, amount_minor: int, currency: str, requested: str
) -> CreditDecision:
    """Grants a reservation only if it fits the limit: credit never goes below zero."""
    available = max(0, limit_minor - reserved_minor)
    if amount_minor <= 0 or requested != currency or amount_minor > available:
        return CreditDecision(granted=False, available_minor=available)
    return CreditDecision(granted=True, available_minor=available - amount_minor)
