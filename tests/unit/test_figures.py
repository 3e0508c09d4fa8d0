"""What a run measured is printed at its end and written down with the commit it ran on."""

import json

from harness import figures


def test_recorded_figures_are_summed_up_with_the_commit_and_written(monkeypatch, tmp_path):
    monkeypatch.setattr(figures, "_FIGURES", [])
    assert figures.summary() == []
    assert figures.write(tmp_path) is None

    figures.record("tests/e2e/test_failover.py::kills", "failover: 5,994 of 6,000", answered=5994)

    head, line = figures.summary()
    assert head == f"figures of this run (commit {figures.commit()}):"
    assert line == "  failover: 5,994 of 6,000  [tests/e2e/test_failover.py::kills]"
    written = json.loads(figures.write(tmp_path).read_text())
    assert written["commit"] == figures.commit() != "unknown"
    assert written["figures"] == [
        {"test": "tests/e2e/test_failover.py::kills", "what": "failover: 5,994 of 6,000",
         "answered": 5994}
    ]  # fmt: skip
