"""The channels' providers: email over SMTP, SMS and push through HTTP provider APIs.

Each `send()` returns once the provider accepted the notification, raises `PermanentFailure`
when it refused it for good (no retry helps), and raises anything else on a transient failure
(unreachable, timeout, 5xx, 429), which is retried with backoff. Each send carries an
idempotency key (the notification id) so a provider can drop the copy a retry may create.
"""

from __future__ import annotations

from email.message import EmailMessage
from typing import Protocol

import aiohttp
import aiosmtplib

from services.notification.domain import Draft, PermanentFailure


class Channel(Protocol):
    name: str

    async def send(self, draft: Draft, *, idempotency_key: str) -> None: ...


class EmailChannel:
    name = "email"

    def __init__(
        self,
        *,
        host: str,
        port: int,
        sender: str,
        username: str = "",
        password: str = "",
        timeout_s: float = 10.0,
    ):
        self._host = host
        self._port = port
        self._sender = sender
        self._username = username or None
        self._password = password or None
        self._timeout_s = timeout_s

    async def send(self, draft: Draft, *, idempotency_key: str) -> None:
        message = EmailMessage()
        message["From"] = self._sender
        message["To"] = draft.address
        message["Subject"] = draft.subject
        message["Message-ID"] = f"<{idempotency_key}@ordermesh>"
        message.set_content(draft.body)
        try:
            await aiosmtplib.send(
                message,
                hostname=self._host,
                port=self._port,
                username=self._username,
                password=self._password,
                timeout=self._timeout_s,
            )
        except aiosmtplib.SMTPRecipientsRefused as exc:
            raise PermanentFailure(f"the SMTP server refused {draft.address}: {exc}") from None
        except aiosmtplib.SMTPResponseException as exc:
            if 500 <= exc.code < 600:
                raise PermanentFailure(f"SMTP {exc.code}: {exc.message}") from None
            raise


class ProviderUnavailable(Exception):
    """The provider answered with a status that asks to try again later (5xx, 429)."""


class HttpChannel:
    """A provider API that takes `POST <url>` with `{"to", "subject", "body"}` as JSON."""

    def __init__(self, name: str, *, url: str, token: str = "", timeout_s: float = 10.0):
        self.name = name
        self._url = url
        self._token = token
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def send(self, draft: Draft, *, idempotency_key: str) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout)
        headers = {"Idempotency-Key": idempotency_key}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        body = {"to": draft.address, "subject": draft.subject, "body": draft.body}
        async with self._session.post(self._url, json=body, headers=headers) as response:
            if response.status < 300:
                return
            detail = (await response.text())[:200]
            if response.status == 429 or response.status >= 500:
                raise ProviderUnavailable(
                    f"{self.name} provider answered {response.status}: {detail}"
                )
            raise PermanentFailure(f"{self.name} provider refused it ({response.status}): {detail}")

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
