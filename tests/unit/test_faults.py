"""Whose fault a failure is (ordermesh.faults): what passes is waited out, the rest is the
work's."""

from __future__ import annotations

import pytest
from ordermesh.broker import NotConfirmed, Refused
from ordermesh.errors import Conflict, FailedPrecondition, Unavailable
from ordermesh.faults import passing_fault
from ordermesh.store import DuplicateKey, StoreUnavailable, VersionConflict


@pytest.mark.parametrize(
    ("error", "fault"),
    [
        (StoreUnavailable("PostgreSQL cannot do it now: read-only"), "infrastructure"),
        (NotConfirmed("no confirm"), "infrastructure"),
        (Unavailable("the user service does not answer"), "infrastructure"),
        (ConnectionResetError(), "infrastructure"),
        (VersionConflict("totals/hot changed since version 3 was read"), "contention"),
        (Refused("too large", certain=True), None),
        (DuplicateKey("totals: another document has the same _id"), None),
        (Conflict("the user is not known yet"), None),
        (FailedPrecondition("not enough stock"), None),
        (RuntimeError("a bug"), None),
    ],
)
def test_what_passes_is_the_infrastructures_or_contentions_and_the_rest_the_works(error, fault):
    assert passing_fault(error) == fault
