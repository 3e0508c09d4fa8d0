"""The supervisor the runner uses: a process that dies is started again, with backoff."""

import sys
import time

from harness.process import ManagedProcess
from harness.supervisor import Supervisor


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


def test_a_killed_process_is_started_again_with_growing_backoff(tmp_path, capsys):
    process = sleeper(tmp_path)
    process.start()
    supervisor = Supervisor(min_backoff_s=0.2, max_backoff_s=5.0)
    supervisor.watch(process)
    supervisor.start()
    try:
        first = process.pid
        process.kill()
        wait_for(lambda: supervisor.restarts(process) == 1, timeout_s=3)
        assert process.running
        assert process.pid != first

        second = process.pid
        process.kill()
        wait_for(lambda: supervisor.restarts(process) == 2, timeout_s=3)
        assert process.running
        assert process.pid != second
        # The waits it chose (how long they took is the clock's business, not this test's).
        announced = [line for line in capsys.readouterr().out.splitlines() if "exited" in line]
        assert announced == [
            "sleeper exited; starting it again in 0.2 s",
            "sleeper exited; starting it again in 0.4 s",
        ]
    finally:
        supervisor.stop()
        process.stop()


def test_a_stopped_supervisor_restarts_nothing(tmp_path):
    process = sleeper(tmp_path)
    process.start()
    supervisor = Supervisor(min_backoff_s=0.1, poll_s=0.05, log=False)
    supervisor.watch(process)
    supervisor.start()
    process.kill()
    wait_for(lambda: supervisor.restarts(process) == 1, timeout_s=3)  # running, it restarts
    supervisor.stop()

    process.kill()  # the same crash, once it is stopped
    # Only waiting can show that something does not happen: 20 of its polls and 10 backoffs.
    time.sleep(1.0)

    assert supervisor.restarts(process) == 1
    assert not process.running
