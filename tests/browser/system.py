"""What the browser tests share besides their fixtures (tests/browser/conftest.py): the running
system `make up` started (`RunningSystem`, the `up` fixture's value), and `eventually`.
Import them as `from tests.browser.system import RunningSystem, eventually`."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from harness import running
from harness.process import ManagedProcess
from tools.up import Page

__all__ = ["RunningSystem", "eventually", "printed_pages", "spki_pin"]


@dataclass
class RunningSystem:
    """The system `make up` runs for the browser suite (tests/browser/conftest.py says what
    each attribute is)."""

    process: ManagedProcess
    run_dir: Path
    env: dict[str, str]
    admin_email: str
    admin_password: str
    addresses: dict[str, str]
    pages: list[Page]

    @property
    def gateway_url(self) -> str:
        return self.addresses["GATEWAY_URL"]

    @property
    def ca_file(self) -> Path:
        return Path(self.addresses["GATEWAY_CA"])

    @property
    def gateway_certificate(self) -> Path:
        """The gateway's certificate (beside the CA that issued it: deploy/tls.py)."""
        return self.ca_file.with_name("gateway.crt")

    @property
    def output(self) -> str:
        """What `make up` printed so far."""
        return self.process.log_path.read_text(errors="replace")

    def pids(self) -> dict[str, int]:
        """The pid of every process it runs now, by name: instances (`order-2`), `envoy`,
        `agent`, `graphql`, `rabbitmq`, `redis`, `prometheus`, `alertmanager`..."""
        return running.processes(self.run_dir)

    def pid(self, name: str) -> int:
        pids = self.pids()
        if name not in pids:
            raise KeyError(f"no process {name!r} runs: {sorted(pids)}")
        return pids[name]

    def kill(self, name: str) -> int:
        """SIGKILL to process `name` and its children, as a crash (its supervisor starts it
        again after a second, under a new pid); returns the pid it had."""
        pid = self.pid(name)
        os.killpg(pid, signal.SIGKILL)
        return pid

    def pause(self, name: str) -> None:
        """SIGSTOP to `name`'s process group: it hangs, answering nothing, and nothing restarts
        it until `resume(name)` (call it before the test ends: the system is shared)."""
        os.killpg(self.pid(name), signal.SIGSTOP)

    def resume(self, name: str) -> None:
        os.killpg(self.pid(name), signal.SIGCONT)

    def tool(self, module: str, *args: str, timeout_s: float = 60.0) -> str:
        """What `python -m <module> args` prints (tools.status, tools.demo, tools.rollout...),
        run against this system as its `make` command would be; fails if it exits non-zero."""
        done = subprocess.run(
            [sys.executable, "-m", module, *args],
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout


def printed_pages(output: str) -> list[Page]:
    """The pages listed under "Open in a browser:" in what `make up` printed."""
    listed = output.partition("Open in a browser:\n")[2].split("\n\n")[0]
    return [Page(what, url) for url, what in re.findall(r"^  (\S+)  (.+)$", listed, re.M)]


def spki_pin(certificate: Path) -> str:
    """The base64 SHA-256 of a certificate's public key (its SubjectPublicKeyInfo), as
    Chromium's --ignore-certificate-errors-spki-list takes it."""
    key = x509.load_pem_x509_certificate(certificate.read_bytes()).public_key()
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def eventually(
    check: Callable[[], Any], *, timeout_s: float, every_s: float = 1.0, what: str = ""
) -> Any:
    """`check()`'s first truthy result; fails the test with its last one after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"{what or check} not seen in {timeout_s} s (last: {result!r})")
        time.sleep(every_s)
