"""The supervisor the runner uses: a process that dies is started again, with backoff."""

import sys
import time

from chassis.testing.process import ManagedProcess
from chassis.testing.supervisor import Supervisor


def sleeper(directory) -> ManagedProcess:
    return ManagedProcess(
        "sleeper",
        [sys.executable, "-c", "import time; time.sleep(120)"],
        directory=directory,
        ready=lambda: True,
    )


def wait_for(condition, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "not in time"
        time.sleep(0.05)


def test_a_killed_process_is_started_again_with_growing_backoff(tmp_path):
    process = sleeper(tmp_path)
    process.start()
    supervisor = Supervisor(min_backoff_s=0.2, max_backoff_s=5.0, log=False)
    supervisor.watch(process)
    supervisor.start()
    try:
        first = process.pid
        process.kill()
        wait_for(lambda: supervisor.restarts(process) == 1, timeout_s=3)
        assert process.running
        assert process.pid != first

        second = process.pid
        killed = time.monotonic()
        process.kill()
        wait_for(lambda: supervisor.restarts(process) == 2, timeout_s=3)
        assert time.monotonic() - killed >= 0.4  # the second restart waited twice as long
        assert process.running
        assert process.pid != second
    finally:
        supervisor.stop()
        process.stop()


def test_a_stopped_supervisor_restarts_nothing(tmp_path):
    process = sleeper(tmp_path)
    process.start()
    supervisor = Supervisor(min_backoff_s=0.1, log=False)
    supervisor.watch(process)
    supervisor.start()
    supervisor.stop()
    process.stop()
    time.sleep(0.5)
    assert not process.running
