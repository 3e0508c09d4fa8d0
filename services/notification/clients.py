"""The channels' providers: email over SMTP, SMS and push through HTTP provider APIs.

Each `send()` returns once the provider accepted the notification, raises `PermanentFailure`
when it refused it for good (no retry helps), and raises anything else on a transient failure
(unreachable, timeout, 5xx, 429), which is retried with backoff. Each send carries an
idempotency key (the notification id) so a provider can drop the copy a retry may create.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import socket
from email.header import Header
from email.mime.text import MIMEText
from typing import Protocol

import aiohttp
import aiosmtplib

from services.notification.domain import Draft, PermanentFailure


class Channel(Protocol):
    name: str

    async def send(self, draft: Draft, *, idempotency_key: str) -> None: ...


class EmailChannel:
    """Sends through one SMTP connection, kept open between messages and opened again when the
    server closed it; messages go one at a time on it (a local relay takes each in well under a
    millisecond, and connecting costs more than sending)."""

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
        self._sender = sender
        self._envelope_sender = email.utils.parseaddr(sender)[1]
        self._options = {
            "hostname": host,
            "port": port,
            "username": username or None,
            "password": password or None,
            "timeout": timeout_s,
            # Named, so the client does not look up this host's FQDN (a blocking DNS query).
            "local_hostname": socket.gethostname(),
        }
        self._client: aiosmtplib.SMTP | None = None
        self._lock = asyncio.Lock()

    async def send(self, draft: Draft, *, idempotency_key: str) -> None:
        # MIMEText (the compat32 policy) builds a message in a fifth of EmailMessage's time.
        message = MIMEText(draft.body, "plain", "utf-8")
        message["From"] = self._sender
        message["To"] = draft.address
        message["Subject"] = Header(draft.subject, "utf-8").encode()
        message["Message-ID"] = f"<{idempotency_key}@ordermesh>"
        async with self._lock:
            try:
                await self._send(message)
            except aiosmtplib.SMTPServerDisconnected:
                self._client = None  # closed while idle: once more on a new connection
                await self._send(message)
            except aiosmtplib.SMTPRecipientsRefused as exc:
                raise PermanentFailure(f"the SMTP server refused {draft.address}: {exc}") from None
            except aiosmtplib.SMTPResponseException as exc:
                if 500 <= exc.code < 600:
                    raise PermanentFailure(f"SMTP {exc.code}: {exc.message}") from None
                raise

    async def _send(self, message: MIMEText) -> None:
        if self._client is None or not self._client.is_connected:
            client = aiosmtplib.SMTP(**self._options)  # type: ignore[arg-type]
            await client.connect()
            self._client = client
        try:
            await self._client.sendmail(self._envelope_sender, [message["To"]], message.as_bytes())
        except (aiosmtplib.SMTPServerDisconnected, aiosmtplib.SMTPTimeoutError, OSError):
            self._client = None
            raise

    async def close(self) -> None:
        if self._client is not None and self._client.is_connected:
            with contextlib.suppress(aiosmtplib.SMTPException, OSError):
                await self._client.quit()
        self._client = None


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
