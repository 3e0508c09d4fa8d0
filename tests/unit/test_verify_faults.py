"""What `make verify` breaks and when, as a user asks for it: the faults chosen on the command
line, and the services' failures by their switches each in a slot of its own after the calm
part, short enough for their messages to be retried rather than dead-lettered."""

from __future__ import annotations

import argparse
import itertools

import pytest

from tools.verify.__main__ import _faults
from tools.verify.faults import WINDOW_S, _slots


def test_the_faults_are_none_or_some_of_kill_and_switches():
    assert _faults("kill") == {"kill"}
    assert _faults("switches, kill") == {"kill", "switches"}
    assert _faults("none") == frozenset()
    for wrong in ("", "kill,none", "pause", "kill,,reboot"):
        with pytest.raises(argparse.ArgumentTypeError):
            _faults(wrong)


@pytest.mark.parametrize(
    ("count", "calm_s", "seconds"), [(4, 10.0, 40.0), (4, 30.0, 120.0), (1, 5, 20)]
)
def test_each_service_fails_in_a_slot_of_its_own_after_the_calm_part(count, calm_s, seconds):
    starts, window = _slots(count, calm_s, seconds)
    assert len(starts) == count
    assert 0 < window <= WINDOW_S
    assert starts[0] >= calm_s
    assert starts[-1] + window <= seconds
    # Each ends before the next begins, with a pause between them.
    assert all(a + window < b for a, b in itertools.pairwise(starts))
