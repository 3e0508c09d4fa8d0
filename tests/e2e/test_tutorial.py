"""docs/tutorial.md, run as a reader follows it, in a scratch copy of this checkout
(tests/e2e/scratch.py): every `sh` block's commands in order, and every file block (its first
line `# <path>`) written to that path, from the first command to a shipment read through the
gateway. A block of any other kind fails the test: the tutorial shows nothing that is not run."""

from __future__ import annotations

import re
import shlex

from tests.e2e.scratch import ROOT, run, scratch_copy

TUTORIAL = ROOT / "docs" / "tutorial.md"
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def steps(text: str) -> list[tuple[str, str]]:
    """("run", a command) and ("write", a path) with its text, in the document's order."""
    found: list[tuple[str, str]] = []
    for kind, body in BLOCK.findall(text):
        if kind == "sh":
            found += [("run", line) for line in body.splitlines() if line.strip()]
        elif kind == "python" and body.startswith("# "):
            path, _, content = body.partition("\n")
            found.append(("write", f"{path[2:].strip()}\n{content}"))
        else:
            raise AssertionError(f"a {kind or 'plain'} block the test cannot run: {body[:80]!r}")
    return found


def test_the_tutorial_runs_from_the_first_command_to_a_shipment_through_the_gateway(tmp_path):
    project = scratch_copy(tmp_path / "project")
    done = steps(TUTORIAL.read_text())
    assert [kind for kind, _ in done].count("run") >= 3
    for kind, step in done:
        if kind == "run":
            run(project, *shlex.split(step), timeout=900)
        else:
            path, _, content = step.partition("\n")
            (project / path).parent.mkdir(parents=True, exist_ok=True)
            (project / path).write_text(content)
    # What the reader ends with is a service the project's checks accept.
    run(project, ".venv/bin/ruff", "check", ".")
    run(project, ".venv/bin/ruff", "format", "--check", ".")
    run(project, ".venv/bin/lint-imports")
    run(project, ".venv/bin/mypy", "-p", "services.shipping", timeout=900)
