"""Where an API or an event stands in its life, from its `(common.v1.api_lifecycle)` or
`(common.v1.message_lifecycle)` in the contract (docs/versioning.md).

What is policed here, for `make gen` (the gateway's configuration and the documents fail to
generate otherwise) and the contract suite:
- every API declares its stability;
- a deprecated one is also `deprecated = true` in the contract (what protoc, IDEs and client
  generators show), names a successor, and is served for at least its stability's deprecation
  period: a year for STABLE, 180 days for BETA (AIP-185), any time for ALPHA.

The gateway tells callers of a deprecated API in every answer: `Deprecation` (RFC 9745, a
structured-field date, `@<unix seconds>`) and `Sunset` (RFC 8594, an HTTP date).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from email.utils import format_datetime
from typing import Any

from google.protobuf import descriptor_pb2

from ordermesh.contracts.common.v1 import options_pb2
from ordermesh.vocabulary import enum_name

__all__ = ["DEPRECATION_PERIOD", "Lifecycle", "api_lifecycles", "lifecycle_of"]

# The least time a deprecated version is still served, by stability (AIP-185).
DEPRECATION_PERIOD = {
    options_pb2.STABILITY_ALPHA: timedelta(0),
    options_pb2.STABILITY_BETA: timedelta(days=180),
    options_pb2.STABILITY_STABLE: timedelta(days=365),
}


def _day(value: str, what: str) -> datetime | None:
    """The start (UTC) of a day written "YYYY-MM-DD"."""
    if not value:
        return None
    try:
        return datetime.combine(date.fromisoformat(value), time(), UTC)
    except ValueError:
        raise ValueError(f"{what}: {value!r} is not a date (YYYY-MM-DD)") from None


@dataclass(frozen=True)
class Lifecycle:
    name: str  # the API's or the message's full name
    stability: options_pb2.Stability.ValueType
    deprecated_at: datetime | None = None
    sunset_at: datetime | None = None
    successor: str = ""

    @property
    def stability_name(self) -> str:
        return enum_name(options_pb2.Stability, self.stability).lower()

    @property
    def deprecated(self) -> bool:
        return self.deprecated_at is not None

    def headers(self) -> dict[str, str]:
        """The headers of every answer of a deprecated API (none for another)."""
        if self.deprecated_at is None:
            return {}
        headers = {"Deprecation": f"@{int(self.deprecated_at.timestamp())}"}
        if self.sunset_at is not None:
            headers["Sunset"] = format_datetime(self.sunset_at, usegmt=True)
        return headers


def lifecycle_of(
    name: str,
    options: descriptor_pb2.ServiceOptions | descriptor_pb2.MessageOptions,
    extension: Any = options_pb2.api_lifecycle,
) -> Lifecycle:
    """The lifecycle that the options of an API (`api_lifecycle`) or a message
    (`message_lifecycle`) declare, checked against the policy; ValueError naming what is
    wrong."""
    declared: options_pb2.Lifecycle = options.Extensions[extension]
    if declared.stability not in DEPRECATION_PERIOD:
        raise ValueError(f"{name}: its contract declares no stability (common.v1 lifecycle)")
    lifecycle = Lifecycle(
        name=name,
        stability=declared.stability,
        deprecated_at=_day(declared.deprecation_date, f"{name}: deprecation_date"),
        sunset_at=_day(declared.sunset_date, f"{name}: sunset_date"),
        successor=declared.successor,
    )
    if lifecycle.deprecated_at is None:
        if lifecycle.sunset_at or lifecycle.successor:
            raise ValueError(f"{name}: a sunset or a successor without a deprecation_date")
        return lifecycle
    if not options.deprecated:
        raise ValueError(f"{name}: deprecated in its lifecycle but not `deprecated = true`")
    if not lifecycle.successor:
        raise ValueError(f"{name}: deprecated without a successor")
    period = DEPRECATION_PERIOD[lifecycle.stability]
    if lifecycle.sunset_at is None or lifecycle.sunset_at < lifecycle.deprecated_at + period:
        raise ValueError(
            f"{name}: a {lifecycle.stability_name} version is served at least {period.days} "
            f"days after its deprecation: its sunset_date must be at least that late"
        )
    return lifecycle


def api_lifecycles(files: descriptor_pb2.FileDescriptorSet) -> dict[str, Lifecycle]:
    """The lifecycle of every API of a descriptor set, by its full name."""
    return {
        f"{file.package}.{service.name}": lifecycle_of(
            f"{file.package}.{service.name}", service.options
        )
        for file in files.file
        for service in file.service
    }
