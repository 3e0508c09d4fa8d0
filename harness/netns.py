"""A network namespace of the caller's own, where the tests may cut connections with iptables.

`network_namespace()` moves the calling thread (and so every process and thread it starts
from then on) into a new network namespace with only a loopback interface, brought up; on
exit the thread goes back to the namespace it came from. Only that thread: threads that
existed before (an event loop's thread pool) stay outside, and so does what they start.
Rules made with `iptables()` inside exist only there: the machine's own firewall, interfaces
and services are never touched, and nothing outside the namespace can be reached from it.
The namespace disappears with the last process in it.

Needs CAP_SYS_ADMIN and CAP_NET_ADMIN (root, as on this project's machines): otherwise
`NamespaceUnavailable` says why, for the caller to skip.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import subprocess
from collections.abc import Iterator

__all__ = ["NamespaceUnavailable", "iptables", "network_namespace"]

CLONE_NEWNET = 0x40000000


class NamespaceUnavailable(RuntimeError):
    pass


@contextlib.contextmanager
def network_namespace() -> Iterator[None]:
    if shutil.which("iptables") is None:
        raise NamespaceUnavailable("iptables is not installed (Debian package iptables)")
    libc = ctypes.CDLL(None, use_errno=True)
    original = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        if libc.unshare(CLONE_NEWNET) != 0:
            raise NamespaceUnavailable(
                f"unshare(CLONE_NEWNET): {os.strerror(ctypes.get_errno())} (needs root)"
            )
        try:
            subprocess.run(["ip", "link", "set", "lo", "up"], check=True, timeout=10)
            yield
        finally:
            if libc.setns(original, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back to the original network namespace")
    finally:
        os.close(original)


def iptables(*rule: str) -> None:
    """Runs iptables in the namespace of the calling thread (inside `network_namespace`)."""
    subprocess.run(["iptables", "-w", "5", *rule], check=True, timeout=10, capture_output=True)
