"""Real receivers for what the notification service sends: an SMTP server and HTTP provider APIs.

`MailSink` is an SMTP server (aiosmtpd) that keeps every message it accepts; `HttpSink` is an
HTTP server (aiohttp) that keeps every request it accepts and can be told to fail the next ones
(with a status, to exercise retries and permanent failures). Each runs its own event loop in a
thread, so tests and the runner use them without sharing a loop; both listen on 127.0.0.1.

    python -m harness.sinks --smtp-port 2525 --http-port 8090

runs both as a process (the runner's local providers), logging what arrives: SMS at
`/sms`, push at `/push`, and what was received at `GET /received`.
"""

from __future__ import annotations

import argparse
import asyncio
import email
import email.policy
import json
import threading
import time
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from harness.process import free_port

__all__ = ["HttpSink", "MailSink", "Received"]


def _parsed(raw: bytes) -> EmailMessage:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


class _KeepMessages:
    def __init__(self, sink: MailSink):
        self._sink = sink

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.content if isinstance(envelope.content, bytes) else b""
        with self._sink.lock:
            self._sink.received.append((list(envelope.rcpt_tos), raw))
        return "250 Message accepted for delivery"


class MailSink:
    def __init__(self, port: int = 0):
        self.port = port or free_port()
        # (envelope recipients, raw message), parsed only when asked for.
        self.received: list[tuple[list[str], bytes]] = []
        self.lock = threading.Lock()
        self._controller = Controller(_KeepMessages(self), hostname="127.0.0.1", port=self.port)

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self._controller.stop()

    @property
    def messages(self) -> list[EmailMessage]:
        with self.lock:
            return [_parsed(raw) for _, raw in self.received]

    def to(self, address: str) -> list[EmailMessage]:
        with self.lock:
            return [_parsed(raw) for recipients, raw in self.received if address in recipients]


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    time: float


class HttpSink:
    """Accepts `POST /<anything>` with a JSON body; answers 202, or a scripted failure."""

    def __init__(self, port: int = 0):
        self.port = port or free_port()
        self.received: list[Received] = []
        self.lock = threading.Lock()
        self._failures: list[int] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}"

    def fail_next(self, *statuses: int) -> None:
        """The next requests are answered with these statuses, in order, and not kept."""
        with self.lock:
            self._failures.extend(statuses)

    def to(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if r.path == path]

    def start(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._serve(), self._loop).result(timeout=10)

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _serve(self) -> None:
        app = web.Application()
        app.router.add_post("/{path:.*}", self._post)
        app.router.add_get("/received", self._list)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def _post(self, request: web.Request) -> web.Response:
        with self.lock:
            failure = self._failures.pop(0) if self._failures else None
        if failure is not None:
            return web.Response(status=failure, text="scripted failure")
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return web.Response(status=400, text="body is not JSON")
        with self.lock:
            self.received.append(Received(request.path, dict(request.headers), body, time.time()))
        return web.json_response({"accepted": True}, status=202)

    async def _list(self, _: web.Request) -> web.Response:
        with self.lock:
            items = [{"path": r.path, "body": r.body, "time": r.time} for r in self.received]
        return web.json_response(items)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smtp-port", type=int, required=True)
    parser.add_argument("--http-port", type=int, required=True)
    args = parser.parse_args()
    mail, http = MailSink(args.smtp_port), HttpSink(args.http_port)
    mail.start()
    http.start()
    print(f"smtp on 127.0.0.1:{mail.port}, http on 127.0.0.1:{http.port}", flush=True)
    seen_mail = seen_http = 0
    try:
        while True:
            time.sleep(0.5)
            with mail.lock:
                mails = mail.received[seen_mail:]
            for recipients, raw in mails:
                print(f"email to {', '.join(recipients)}: {_parsed(raw)['Subject']}", flush=True)
            with http.lock:
                requests = http.received[seen_http:]
            for request in requests:
                print(f"{request.path} to {request.body.get('to')}: {request.body}", flush=True)
            seen_mail, seen_http = seen_mail + len(mails), seen_http + len(requests)
    except KeyboardInterrupt:
        pass
    finally:
        mail.stop()
        http.stop()


if __name__ == "__main__":
    main()
