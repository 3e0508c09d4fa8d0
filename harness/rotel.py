"""A real OpenTelemetry collector on loopback: rotel (PyPI `rotel`, a Rust OTLP receiver).

`PrivateRotel(directory)` runs `rotel-agent` on a free port, receiving OTLP over gRPC and
dropping what it receives (the blackhole exporter), writing a description of every batch to
its log (`--debug-log traces`, detailed): `services()` reads from it which services sent
spans; what `make up`'s trace test checks. The benches export to one that describes nothing
(`describe=False`): describing every span costs the collector more CPU than the spans cost
the services, on the cores they share here.
"""

from __future__ import annotations

import re
from pathlib import Path

import rotel

from harness.process import ManagedProcess, accepts, free_port

__all__ = ["PrivateRotel"]

SERVICE_NAME = re.compile(r"-> service\.name: Str\((?P<name>[^)]*)\)")


def rotel_binary() -> Path:
    return Path(rotel.__file__).parent / "rotel-agent"


class PrivateRotel:
    def __init__(self, directory: Path, *, describe: bool = True):
        self.port = free_port()
        http_port = free_port()
        self.process = ManagedProcess(
            "rotel",
            [
                str(rotel_binary()),
                "start",
                *("--otlp-grpc-endpoint", f"127.0.0.1:{self.port}"),
                *("--otlp-http-endpoint", f"127.0.0.1:{http_port}"),
                *("--exporter", "blackhole"),
                *(
                    ("--debug-log", "traces", "--debug-log-verbosity", "detailed")
                    if describe
                    else ()
                ),
                *("--pid-file", str(directory / "rotel.pid")),
                *("--log-file", str(directory / "rotel-agent.log")),
            ],
            directory=directory,
            ready=lambda: accepts(self.port),
            ready_timeout_s=30.0,
        )

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.process.start()

    def stop(self) -> None:
        self.process.stop()

    def services(self) -> set[str]:
        """The services whose spans it received so far."""
        text = self.process.log_path.read_text(errors="replace")
        return {match["name"] for match in SERVICE_NAME.finditer(text)}
