"""The fault switches' flag file as an operator changes it (ordermesh.switches says what each
switch does): `turn_on`, `turn_off` and `states`, used by the command line
(`python -m ordermesh.switches on|off|list`, on the file of --file, else FAULT_FLAGS_FILE) and by
the console's page of faults. It writes flagd's format (a boolean flag per switch, its
conditions as targeting, its settings as metadata), checks what it would write as every process
will read it (a setting out of its range, or a condition the switch does not look at, is refused
and nothing written), changes the file under a lock beside it (two operators at once do not
lose each other's change) and replaces it by a rename, so that a reader sees the old or the
new, whole."""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ordermesh.switches import (
    CONTEXT,
    GATEWAY_ABORTS,
    RPC_ERRORS,
    SCHEMA,
    SETTINGS,
    STATUSES,
    SWITCHES,
    MalformedFlags,
    listing,
    parse,
)

__all__ = ["FileMalformed", "SwitchRefused", "main", "states", "turn_off", "turn_on", "write"]


class SwitchRefused(ValueError):
    """What was asked of a switch cannot be written (unknown switch, a condition it does not
    look at, a setting missing or out of range): nothing was written."""


class FileMalformed(SwitchRefused):
    """The flag file is not one the processes would read: nothing is built on it."""


def _flag(
    switch: str, conditions: Mapping[str, str], settings: Mapping[str, Any]
) -> dict[str, Any]:
    """A switch's flag: on where every condition holds (everywhere without one), with its
    settings as the flag's metadata."""
    flag: dict[str, Any] = {"state": "ENABLED", "variants": {"on": True, "off": False}}
    if settings:
        flag["metadata"] = dict(settings)
    if not conditions:
        return {**flag, "defaultVariant": "on"}
    tests = [{"==": [{"var": key}, value]} for key, value in conditions.items()]
    test = tests[0] if len(tests) == 1 else {"and": tests}
    return {**flag, "defaultVariant": "off", "targeting": {"if": [test, "on", "off"]}}


def _read(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {"$schema": SCHEMA, "flags": {}}
    try:
        parse(text)  # refuses to build on a malformed file
    except MalformedFlags as exc:
        raise FileMalformed(f"{path}: malformed ({exc}); fix or remove it first") from None
    document: dict[str, Any] = json.loads(text)
    document.setdefault("flags", {})
    return document


def write(path: Path, document: Mapping[str, Any]) -> None:
    """Writes the flag file beside and renames it: a reader sees the old or the new, whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    beside = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with beside.open("w", encoding="utf-8") as file:
        json.dump(document, file, indent=2)
        file.write("\n")
        file.flush()
        os.fsync(file.fileno())
    os.replace(beside, path)


@contextlib.contextmanager
def _changing(path: Path) -> Iterator[dict[str, Any]]:
    """The file's document, to change in place, written back when the block ends without an
    error; one changer at a time (an exclusive lock on a file beside it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.with_name(f".{path.name}.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        document = _read(path)
        yield document
        write(path, document)


def states(path: Path) -> list[dict[str, Any]]:
    """Each switch: on or off, where, its settings and what it does (ordermesh.switches'
    listing); FileMalformed for a file the processes would not read."""
    return listing(parse(json.dumps(_read(path))))


def turn_on(
    path: Path, switch: str, conditions: Mapping[str, str], settings: Mapping[str, Any]
) -> str:
    """Turns `switch` on where every one of `conditions` holds (service, method, queue, type,
    as the switch looks at them; everywhere without one), with `settings` (the ones it takes:
    ordermesh.switches.SETTINGS), replacing its earlier rule; says what it did."""
    if switch not in SWITCHES:
        raise SwitchRefused(f"no switch {switch!r} (there are {', '.join(SWITCHES)})")
    conditions = {k: v for k, v in conditions.items() if v}
    foreign = sorted(set(conditions) - set(CONTEXT[switch]))
    if foreign:
        raise SwitchRefused(f"{switch} does not look at {', '.join(foreign)}")
    missing = [name for name in SETTINGS[switch] if settings.get(name) is None]
    if missing:
        raise SwitchRefused(f"{switch} needs {', '.join(missing)}")
    settings = {name: settings[name] for name in SETTINGS[switch]}
    with _changing(path) as document:
        document["flags"][switch] = _flag(switch, conditions, settings)
        try:
            parse(json.dumps(document))
        except MalformedFlags as exc:  # a setting out of its range
            raise SwitchRefused(str(exc)) from None
    named = ", ".join(f"{k}={v}" for k, v in conditions.items()) or "everything"
    shown = "".join(f", {k} {v}" for k, v in settings.items())
    return f"{switch} on for {named}{shown}"


def turn_off(path: Path, switch: str) -> str:
    """Turns `switch` off (its flag kept, DISABLED); says what it did."""
    if switch not in SWITCHES:
        raise SwitchRefused(f"no switch {switch!r} (there are {', '.join(SWITCHES)})")
    with _changing(path) as document:
        flag = document["flags"].get(switch)
        if flag is None:
            return f"{switch} off (it was not on)"
        flag["state"] = "DISABLED"
    return f"{switch} off"


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m ordermesh.switches", description="Turns fault switches on and off."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    on = commands.add_parser("on", help="turn a switch on (for what the options name)")
    off = commands.add_parser("off", help="turn a switch off")
    listed = commands.add_parser("list", help="each switch, on or off, and where")
    for command in (on, off):
        command.add_argument("switch", choices=sorted(SWITCHES))
    for option in ("service", "queue", "type", "method"):
        on.add_argument(f"--{option}", default="", help=f"only for this {option}")
    on.add_argument("--latency-ms", type=int, help="the latency switches: how late (ms)")
    on.add_argument(
        "--percent", type=float, default=100.0, help="the share of calls it applies to (100)"
    )
    on.add_argument(
        "--http-status",
        type=int,
        default=503,
        help=f"{GATEWAY_ABORTS}: the HTTP status answered (503)",
    )
    on.add_argument(
        "--status",
        default="UNAVAILABLE",
        choices=STATUSES,
        metavar="STATUS",
        help=f"{RPC_ERRORS}: the gRPC status answered (UNAVAILABLE)",
    )
    for command in (on, off, listed):
        command.add_argument(
            "--file",
            default=os.environ.get("FAULT_FLAGS_FILE", ""),
            help="the flag file (default: FAULT_FLAGS_FILE)",
        )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    if not args.file:
        print("no flag file: give --file or set FAULT_FLAGS_FILE", file=sys.stderr)
        return 2
    path = Path(args.file)
    try:
        if args.command == "list":
            for entry in states(path):
                print(json.dumps(entry))
            return 0
        if args.command == "on":
            conditions = {k: getattr(args, k) for k in ("service", "queue", "type", "method")}
            given = {
                "latency_ms": args.latency_ms,
                "percent": args.percent,
                "status": args.status,
                "http_status": args.http_status,
            }
            said = turn_on(path, args.switch, conditions, given)
        else:
            said = turn_off(path, args.switch)
    except SwitchRefused as exc:
        print(str(exc), file=sys.stderr)
        return 1 if isinstance(exc, FileMalformed) else 2
    print(f"{said} in {path}; every process following it sees it at once")
    return 0
