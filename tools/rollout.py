"""`make rollout [SERVICE=name]`: a rolling restart of the system `make up` runs, all services or
one (harness/rollout.py: each instance replaced in turn, none unavailable).

It asks the running `make up` (its pid in .build/run/env) with SIGUSR1, the services named in
.build/run/rollout-request, and prints the progress `make up` writes to .build/run/rollout.log
until the rollout ends. Exits 1 if it failed or no system is running.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time

from harness import running

REQUEST = running.RUN_DIR / "rollout-request"
LOG = running.RUN_DIR / "rollout.log"
DONE, FAILED = "rollout done", "rollout failed"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("services", nargs="*", help="services to restart (all if none)")
    parser.add_argument("--timeout", type=float, default=900.0)
    args = parser.parse_args()
    pid = running.setting("UP_PID")
    if pid is None:
        print("no running system: start one with `make up`", file=sys.stderr)
        return 1
    LOG.unlink(missing_ok=True)
    REQUEST.write_text(" ".join(args.services))
    try:
        os.kill(int(pid), signal.SIGUSR1)
    except ProcessLookupError:
        print(f"`make up` (pid {pid}) is not running", file=sys.stderr)
        return 1
    shown = 0
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        lines = LOG.read_text().splitlines() if LOG.exists() else []
        for line in lines[shown:]:
            print(line, flush=True)
        shown = len(lines)
        if lines and lines[-1].startswith((DONE, FAILED)):
            return 0 if lines[-1].startswith(DONE) else 1
        time.sleep(0.2)
    print(f"no end of the rollout within {args.timeout:g} s", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
