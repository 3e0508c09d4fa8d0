"""The system's public REST API, as the storefront calls it: JSON over HTTP(S) to the gateway,
like any client, each call bounded in time and, for a customer's call, with the customer's
access token. Only routes the gateway publishes (gateway/openapi.json) are used; orders through
order.v2.

A refused call is raised as the ordermesh.errors domain error of its status (the `code` of the
gateway's error body, a gRPC status: `ordermesh.failures.error_of`), its message the gateway's;
no answer at all (refused connection, timeout) is Unavailable.
"""

from __future__ import annotations

import json
import re
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiohttp
import grpc
from ordermesh.errors import DomainError, Unavailable
from ordermesh.failures import error_of
from ordermesh.web.sessions import Tokens
from ordermesh.web.site import naming_the_browser

__all__ = [
    "Address",
    "Api",
    "Line",
    "Notification",
    "Order",
    "Product",
    "Step",
    "money",
]

CODES = {code.value[0]: code for code in grpc.StatusCode}
SEGMENT = re.compile(r"[A-Za-z0-9_-]{1,64}")


def money(value: Mapping[str, Any] | None) -> str:
    """A common.v1.Money as a customer reads it: "12.50 EUR" (two minor digits)."""
    if not value:
        return ""
    minor = int(value.get("amountMinor", 0))
    sign = "-" if minor < 0 else ""
    whole, cents = divmod(abs(minor), 100)
    return f"{sign}{whole:,}.{cents:02d} {value.get('currencyCode', '')}".strip()


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


@dataclass(frozen=True)
class Product:
    product_id: str
    sku: str
    name: str
    description: str
    price: str
    available: int

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> Product:
        return cls(
            product_id=body["productId"],
            sku=body.get("sku", ""),
            name=body.get("name", ""),
            description=body.get("description", ""),
            price=money(body.get("price")),
            available=int(body.get("availableStock", 0)),
        )


@dataclass(frozen=True)
class Address:
    recipient: str
    line: str
    locality: str
    postal_code: str
    region_code: str

    def as_body(self) -> dict[str, Any]:
        return {
            "recipient": self.recipient,
            "addressLines": [self.line],
            "locality": self.locality,
            "postalCode": self.postal_code,
            "regionCode": self.region_code,
        }


@dataclass(frozen=True)
class Line:
    product_id: str
    name: str
    quantity: int
    unit_price: str
    total: str


@dataclass(frozen=True)
class Order:
    order_id: str
    # PENDING, APPROVED, REJECTED or CANCELLED (order.v2.OrderState without its prefix).
    state: str
    reason: str
    lines: Sequence[Line]
    total: str
    created_at: datetime | None
    updated_at: datetime | None

    @property
    def decided(self) -> bool:
        """Its saga has ended: nothing will change it but the customer's cancel."""
        return self.state != "PENDING"

    @property
    def cancellable(self) -> bool:
        return self.state in ("PENDING", "APPROVED")

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> Order:
        return cls(
            order_id=body["orderId"],
            state=str(body.get("state", "")).removeprefix("ORDER_STATE_"),
            reason=body.get("stateReason", ""),
            lines=[
                Line(
                    product_id=item.get("productId", ""),
                    name=item.get("productName", ""),
                    quantity=int(item.get("quantity", 0)),
                    unit_price=money(item.get("unitPrice")),
                    total=money(item.get("lineTotal")),
                )
                for item in body.get("items", [])
            ],
            total=money(body.get("total")),
            created_at=_time(body.get("createTime")),
            updated_at=_time(body.get("updateTime")),
        )


@dataclass(frozen=True)
class Step:
    """One entry of an order's saga history, as the customer is shown it."""

    at: datetime | None
    kind: str
    step: str
    detail: str

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> Step:
        return cls(
            at=_time(body.get("time")),
            kind=str(body.get("kind", "")).removeprefix("HISTORY_ENTRY_KIND_"),
            step=body.get("step", ""),
            detail=body.get("detail", ""),
        )


@dataclass(frozen=True)
class Notification:
    kind: str
    channel: str
    status: str
    subject: str
    subject_id: str
    created_at: datetime | None

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> Notification:
        return cls(
            kind=str(body.get("kind", "")).removeprefix("NOTIFICATION_KIND_"),
            channel=str(body.get("channel", "")).removeprefix("CHANNEL_"),
            status=str(body.get("status", "")).removeprefix("NOTIFICATION_STATUS_"),
            subject=body.get("subject", ""),
            subject_id=body.get("subjectId", ""),
            created_at=_time(body.get("createTime")),
        )


def _tokens(pair: Mapping[str, Any]) -> Tokens:
    return Tokens(
        access_token=pair["accessToken"],
        access_expires_at=_expiry(pair.get("accessTokenExpireTime")),
        refresh_token=pair["refreshToken"],
        refresh_expires_at=_expiry(pair.get("refreshTokenExpireTime")),
    )


def _expiry(value: str | None) -> float:
    at = _time(value)
    return at.timestamp() if at else 0.0


class Api:
    """The gateway at `url` (http(s)://host[:port]), trusting `ca` (a PEM; None: the system's
    authorities), every call bounded by `timeout_s`. A call made for a browser names it
    (ordermesh.web.site.naming_the_browser, with the internal hops' secret `internal_token`), so
    that the gateway counts it against that browser's limits (sign-ins, writes and reads per
    address), as if the browser had called it."""

    def __init__(
        self,
        url: str,
        *,
        ca: bytes | None,
        http: aiohttp.ClientSession,
        timeout_s: float,
        internal_token: str,
    ):
        self.url = url.rstrip("/")
        self._internal_token = internal_token
        self._http = http
        self._ssl: ssl.SSLContext | bool = (
            ssl.create_default_context(cadata=ca.decode()) if ca else True
        )
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)

    async def _call(
        self,
        method: str,
        path: str,
        what: str,
        *,
        token: str = "",
        body: Mapping[str, Any] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        headers = naming_the_browser(self._internal_token)
        if token:
            headers["authorization"] = f"Bearer {token}"
        try:
            async with self._http.request(
                method,
                f"{self.url}{path}",
                json=body,
                params=params,
                headers=headers,
                ssl=self._ssl if self.url.startswith("https") else False,
                timeout=self._timeout,
            ) as answer:
                text = await answer.text()
                status = answer.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise Unavailable(f"{what}: the system did not answer ({type(exc).__name__})") from None
        try:
            parsed: Any = json.loads(text) if text else {}
        except ValueError:
            parsed = {}
        if status == 200 and isinstance(parsed, dict):
            return parsed
        raise _refusal(status, parsed, what)

    # The catalogue (public).

    async def products(self) -> list[Product]:
        """The catalogue's first page (the gateway's page size bound)."""
        body = await self._call("GET", "/v1/products", "reading the catalogue")
        return [Product.of(p) for p in body.get("products", [])]

    # Accounts (public; the sign-in limits of the gateway apply).

    async def register(self, email: str, password: str, name: str) -> None:
        await self._call(
            "POST",
            "/v1/users",
            "registering",
            body={"email": email, "password": password, "displayName": name},
        )

    async def login(self, email: str, password: str) -> Tokens:
        body = await self._call(
            "POST", "/v1/auth/login", "signing in", body={"email": email, "password": password}
        )
        return _tokens(body["tokens"])

    async def refresh(self, refresh_token: str) -> Tokens:
        body = await self._call(
            "POST",
            "/v1/auth/refresh",
            "renewing the session",
            body={"refreshToken": refresh_token},
        )
        return _tokens(body["tokens"])

    async def logout(self, refresh_token: str) -> None:
        await self._call(
            "POST", "/v1/auth/logout", "signing out", body={"refreshToken": refresh_token}
        )

    async def profile(self, token: str) -> tuple[str, str, str]:
        """The signed-in customer's id, e-mail and display name."""
        body = await self._call("GET", "/v1/users/me", "reading the profile", token=token)
        profile = body.get("profile", {})
        return profile.get("userId", ""), profile.get("email", ""), profile.get("displayName", "")

    # Orders (order.v2) and notifications: the customer's own.

    async def place_order(
        self, token: str, *, key: str, items: Mapping[str, int], address: Address
    ) -> Order:
        body = await self._call(
            "POST",
            "/v2/orders",
            "placing the order",
            token=token,
            body={
                "idempotencyKey": key,
                "items": [{"productId": p, "quantity": str(q)} for p, q in items.items()],
                "deliveryAddress": address.as_body(),
            },
        )
        return Order.of(body["order"])

    async def orders(self, token: str) -> list[Order]:
        body = await self._call("GET", "/v2/orders", "reading your orders", token=token)
        return [Order.of(o) for o in body.get("orders", [])]

    async def order(self, token: str, order_id: str) -> Order:
        body = await self._call(
            "GET", f"/v2/orders/{_segment(order_id)}", "reading the order", token=token
        )
        return Order.of(body["order"])

    async def history(self, token: str, order_id: str) -> list[Step]:
        body = await self._call(
            "GET",
            f"/v2/orders/{_segment(order_id)}/history",
            "reading the order's steps",
            token=token,
        )
        return [Step.of(e) for e in body.get("entries", [])]

    async def cancel(self, token: str, order_id: str, reason: str) -> Order:
        body = await self._call(
            "POST",
            f"/v2/orders/{_segment(order_id)}:cancel",
            "cancelling the order",
            token=token,
            body={"reason": reason},
        )
        return Order.of(body["order"])

    async def notifications(self, token: str) -> list[Notification]:
        body = await self._call(
            "GET", "/v1/notifications", "reading your notifications", token=token
        )
        return [Notification.of(n) for n in body.get("notifications", [])]


def _segment(value: str) -> str:
    """An id as one path segment: 1 to 64 ASCII letters, digits, '-' or '_'; else refused."""
    if not SEGMENT.fullmatch(value):
        raise error_of(grpc.StatusCode.INVALID_ARGUMENT)(f"{value[:64]!r} is not an order id")
    return value


def _refusal(status: int, body: Any, what: str) -> DomainError:
    """The domain error of a refused call: the gRPC status in the gateway's error body, else
    the HTTP status's (a 429 of the gateway's own limits, a 5xx with no body)."""
    message = body.get("message", "") if isinstance(body, dict) else ""
    code = CODES.get(body.get("code")) if isinstance(body, dict) else None
    if code is None:
        code = {
            400: grpc.StatusCode.INVALID_ARGUMENT,
            401: grpc.StatusCode.UNAUTHENTICATED,
            403: grpc.StatusCode.PERMISSION_DENIED,
            404: grpc.StatusCode.NOT_FOUND,
            409: grpc.StatusCode.ALREADY_EXISTS,
            429: grpc.StatusCode.RESOURCE_EXHAUSTED,
        }.get(status, grpc.StatusCode.UNAVAILABLE)
    return error_of(code)(f"{what}: {message or f'HTTP {status}'}")
