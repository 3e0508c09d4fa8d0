"""Fault switches: faults turned on and off while the system runs, read from a flagd flag file.

What holds:
- off by default: with FAULT_FLAGS_FILE empty nothing is read and every switch is off; so is
  a switch whose file is absent, whose flag is not in it, or whose flag is DISABLED;
- a change of the file is seen at once by every process that follows it (`follow()`, which
  reads it at once), without a restart: each hears its folder's changes (inotify) and reads the
  file when its identity (inode, modification time, size) changed, and `python -m
  chassis.switches` writes it beside and renames it; where the folder cannot be watched, each
  looks at the file every `REFRESH_S` (2 s). An idle process looked every 0.1 s before: ten
  wake-ups a second in every instance, for a file that changes when a person flips a switch;
- a malformed file (not JSON, not flagd's format, a switch whose variants are not booleans or
  whose targeting flagd cannot evaluate) keeps the last good state and is logged, once per
  version of the file; nothing of it is ever raised into a consumer (a rule that fails on one
  message's context answers off for it, logged once);
- each process logs a switch turning on (WARNING, with its rule) or off, and shows it in its
  metrics (`chassis.metrics.SwitchMetrics`): `ordermesh_fault_switch_active{switch}` 1 or 0,
  `ordermesh_fault_injections_total{switch}`;
- cost of an evaluation (measured, docs/decisions.md): 0.3-0.6 µs while the switch is off (a
  set lookup), 0.6-0.9 µs while on (the answer kept for that context); flagd's evaluator works
  out an answer once per version of the file and context (11-18 µs).

The file is in flagd's flag definition format, each switch a boolean flag of that name, and is
evaluated by flagd's own evaluator (openfeature-flagd-core), not through OpenFeature's SDK and
flagd provider: that one costs 24 µs per evaluation, and logs a traceback twice a second while
the file is absent (docs/decisions.md). Known limits: answers are kept per context until the
file changes, so a rule on `$flagd.timestamp` is not followed in time; two writers at once
(two `on` commands) may lose one's change (the last rename wins).

The switches (SWITCHES):
- `handler-fails`: a consumer's handler is not run and the delivery fails with InjectedFault,
  the message's own fault (not an infrastructure one): retried with its subscription's backoff,
  then dead-lettered with x-error-class InjectedFault, as a bug would be. The targeting sees
  `service`, `queue` (the subscription's, e.g. notification.events) and `type` (the message's
  full proto name).

From the command line (the file: --file, else FAULT_FLAGS_FILE):

    python -m chassis.switches on handler-fails --queue notification.events \
        --type order.v2.OrderApproved
    python -m chassis.switches off handler-fails
    python -m chassis.switches list

`on` without --service, --queue or --type fails every message; `list` prints one JSON object per
switch (on or off, where).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from openfeature.contrib.tools.flagd.core import FlagdCore
from openfeature.evaluation_context import EvaluationContext

from chassis.logging import get_logger
from chassis.watch import FileNotices, follow

if TYPE_CHECKING:
    from chassis.metrics import SwitchMetrics

__all__ = ["HANDLER_FAILS", "REFRESH_S", "SWITCHES", "InjectedFault", "Switches", "main"]

log = get_logger(__name__)

HANDLER_FAILS = "handler-fails"
SWITCHES: Mapping[str, str] = {
    HANDLER_FAILS: "a consumer's handler fails (InjectedFault): retried, then dead-lettered",
}
# What each switch's targeting may look at (and `on` may restrict).
CONTEXT: Mapping[str, tuple[str, ...]] = {HANDLER_FAILS: ("service", "queue", "type")}
# How often a process looks at the file when its folder cannot be watched, or a change was
# missed (a stat, about 2 µs).
REFRESH_S = 2.0
SCHEMA = "https://flagd.dev/schema/v0/flags.json"


class InjectedFault(Exception):
    """A failure a fault switch caused: the work's own fault (chassis.faults), never one of the
    infrastructure that would be waited out."""


class MalformedFlags(ValueError):
    """The flag file cannot be taken as it is; the message says why."""


@dataclass(frozen=True)
class _State:
    """What one version of the file says."""

    evaluator: FlagdCore | None = None
    # The switches that may answer on (ENABLED, with a true variant in reach).
    on: frozenset[str] = frozenset()
    # Each switch's flag as written.
    flags: Mapping[str, Any] = field(default_factory=dict)


OFF = _State()


def _may_answer_on(flag: Mapping[str, Any]) -> bool:
    if flag.get("state") != "ENABLED":
        return False
    variants = flag.get("variants") or {}
    if flag.get("targeting"):
        return any(value is True for value in variants.values())
    return variants.get(str(flag.get("defaultVariant")).lower()) is True


def parse(text: str) -> _State:
    """One version of the file, or MalformedFlags."""
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise MalformedFlags(f"not JSON: {exc}") from None
    if not isinstance(document, dict) or not isinstance(document.get("flags", {}), dict):
        raise MalformedFlags("not a flagd flag file: no `flags` object")
    evaluator = FlagdCore()
    try:
        # flagd's store takes parts of what it is given: a copy keeps the document whole.
        evaluator.set_flags(copy.deepcopy(document))
    except Exception as exc:  # noqa: BLE001 - flagd's ParseError, or a shape it did not expect
        raise MalformedFlags(f"not flagd's format: {type(exc).__name__}: {exc}") from None
    flags = {k: v for k, v in document.get("flags", {}).items() if k in SWITCHES}
    for switch, flag in flags.items():
        variants = flag.get("variants") if isinstance(flag, dict) else None
        if not isinstance(variants, dict) or not all(
            isinstance(v, bool) for v in variants.values()
        ):
            raise MalformedFlags(f"{switch}: a switch's variants are booleans")
        # A rule flagd cannot evaluate (an unknown operator) fails with any context.
        nothing = EvaluationContext(attributes=dict.fromkeys(CONTEXT[switch], ""))
        try:
            evaluator.resolve_boolean_value(switch, False, nothing)
        except Exception as exc:  # noqa: BLE001 - any error of flagd's evaluation
            raise MalformedFlags(f"{switch}: {type(exc).__name__}: {exc}") from None
    on = frozenset(switch for switch, flag in flags.items() if _may_answer_on(flag))
    return _State(evaluator=evaluator, on=on, flags=flags)


def where(flag: Mapping[str, Any] | None) -> dict[str, Any]:
    """What a switch's flag applies to: the conditions `on` writes, else its targeting."""
    if not flag or not flag.get("targeting"):
        return {}
    targeting = flag["targeting"]
    try:
        [condition, _, _] = targeting["if"]
        conditions = condition.get("and", [condition])
        return {c["=="][0]["var"]: c["=="][1] for c in conditions}
    except (AttributeError, KeyError, TypeError, ValueError, IndexError):
        return {"targeting": targeting}


class Switches:
    """The fault switches of one process, read from the flag file at `path` ("": none, every
    switch off). `follow()` keeps them up to date; `is_on` and `inject` answer in memory."""

    def __init__(
        self, path: str = "", *, metrics: SwitchMetrics | None = None, refresh_s: float = REFRESH_S
    ):
        self.path = path
        self._metrics = metrics
        self._refresh_s = refresh_s
        self._state = OFF
        # The answer for each (switch, context) under the current state.
        self._answers: dict[tuple[Any, ...], bool] = {}
        # The file's identity when last read: (inode, mtime, size), () when absent.
        self._seen: tuple[int, ...] | None = None
        if metrics is not None:
            for switch in SWITCHES:
                metrics.active.labels(switch).set(0)

    def is_on(self, switch: str, **context: str) -> bool:
        """Whether `switch` is on for the work that `context` describes (always the same keys
        for one switch, in the same order: its CONTEXT)."""
        return switch in self._state.on and self._answer(switch, context)

    def inject(self, switch: str, **context: str) -> None:
        """Raises InjectedFault (counted) if `switch` is on for `context` (as in `is_on`)."""
        if switch in self._state.on and self._answer(switch, context):
            if self._metrics is not None:
                self._metrics.injected.labels(switch).inc()
            named = ", ".join(f"{k}={v}" for k, v in context.items())
            raise InjectedFault(f"fault switch {switch} is on ({named})")

    def _answer(self, switch: str, context: dict[str, str]) -> bool:
        key = (switch, *context.values())
        answer = self._answers.get(key)
        if answer is None:
            answer = self._answers[key] = self._evaluate(switch, context)
        return answer

    def _evaluate(self, switch: str, context: dict[str, str]) -> bool:
        state = self._state
        if state.evaluator is None:  # no file read yet: every switch is off
            return False
        try:
            details = state.evaluator.resolve_boolean_value(
                switch, False, EvaluationContext(attributes=dict(context))
            )
        except Exception as exc:  # noqa: BLE001 - a rule must never fail the work it guards
            log.error(
                "fault switch rule cannot be evaluated here; the switch is off for it",
                switch=switch,
                context=context,
                error=f"{type(exc).__name__}: {exc}",
            )
            return False
        return details.value is True

    def refresh(self) -> None:
        """Reads the file again if it changed since it was last read."""
        if not self.path:
            return
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            if self._seen != ():
                self._seen = ()
                self.load(None)
            return
        except OSError as exc:  # e.g. a folder on the way that may not be read
            self._unreadable(exc, (-1, exc.errno or 0))
            return
        identity = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if identity == self._seen:
            return
        try:
            text = Path(self.path).read_text(encoding="utf-8")
        except FileNotFoundError:
            return  # renamed away between the two calls: the next round sees what replaced it
        except (OSError, UnicodeDecodeError) as exc:
            self._unreadable(exc, identity)
            return
        self._seen = identity
        self.load(text)

    def _unreadable(self, error: Exception, identity: tuple[int, ...]) -> None:
        """Logs once per version of the file (or error) that cannot be read; the last good
        state stays."""
        if identity != self._seen:
            self._seen = identity
            log.error(
                "fault switch file cannot be read; the switches keep their last good state",
                file=self.path,
                error=f"{type(error).__name__}: {error}",
            )

    def load(self, text: str | None) -> None:
        """Takes a version of the file (None: there is none, every switch off); a malformed one
        is logged and the last good state kept."""
        if text is None:
            state = OFF
        else:
            try:
                state = parse(text)
            except MalformedFlags as exc:
                log.error(
                    "fault switch file malformed; the switches keep their last good state",
                    file=self.path,
                    error=str(exc),
                )
                return
        before, self._state = self._state, state
        self._answers = {}
        for switch in SWITCHES:
            was, now = switch in before.on, switch in state.on
            rule = state.flags.get(switch)
            if now and (not was or rule != before.flags.get(switch)):
                log.warning(
                    "fault switch on" if not was else "fault switch changed",
                    switch=switch,
                    where=where(rule) or "everything",
                    file=self.path,
                )
            elif was and not now:
                log.info("fault switch off", switch=switch, file=self.path)
            if self._metrics is not None:
                self._metrics.active.labels(switch).set(float(now))

    async def follow(self) -> None:
        """Reads the file at once, then again whenever it changes, until cancelled (returns at
        once when there is no file to follow)."""
        if not self.path:
            return

        async def refresh() -> None:
            self.refresh()

        await follow(
            refresh,
            refresh_s=self._refresh_s,
            notices=FileNotices(self.path),
            name="fault switches",
            failed="fault switches not read; trying again",
            lost="fault switch file's folder not watched; reading it every refresh",
            file=self.path,
        )

    def listed(self) -> list[dict[str, Any]]:
        """Each switch: on or off, and where."""
        return _listed(self._state)


def _listed(state: _State) -> list[dict[str, Any]]:
    return [
        {
            "switch": switch,
            "on": switch in state.on,
            "where": where(state.flags.get(switch)) if switch in state.on else {},
            "does": does,
        }
        for switch, does in SWITCHES.items()
    ]


def _flag(switch: str, conditions: Mapping[str, str]) -> dict[str, Any]:
    """A switch's flag: on where every condition holds (everywhere without one)."""
    flag: dict[str, Any] = {"state": "ENABLED", "variants": {"on": True, "off": False}}
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
    parse(text)  # refuses to build on a malformed file
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


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m chassis.switches", description="Turns fault switches on and off."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    on = commands.add_parser("on", help="turn a switch on (for what the options name)")
    off = commands.add_parser("off", help="turn a switch off")
    listed = commands.add_parser("list", help="each switch, on or off, and where")
    for command in (on, off):
        command.add_argument("switch", choices=sorted(SWITCHES))
    for option in ("service", "queue", "type"):
        on.add_argument(f"--{option}", default="", help=f"only for this {option}")
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
        document = _read(path)
    except MalformedFlags as exc:
        print(f"{path}: malformed ({exc}); fix or remove it first", file=sys.stderr)
        return 1
    if args.command == "list":
        for entry in _listed(parse(json.dumps(document))):
            print(json.dumps(entry))
        return 0
    flags = document["flags"]
    if args.command == "on":
        conditions = {k: getattr(args, k) for k in CONTEXT[args.switch] if getattr(args, k)}
        flags[args.switch] = _flag(args.switch, conditions)
        named = ", ".join(f"{k}={v}" for k, v in conditions.items()) or "everything"
        said = f"{args.switch} on for {named}"
    elif args.switch in flags:
        flags[args.switch]["state"] = "DISABLED"
        said = f"{args.switch} off"
    else:
        said = f"{args.switch} off (it was not on)"
    write(path, document)
    print(f"{said} in {path}; every process following it sees it at once")
    return 0


if __name__ == "__main__":
    sys.exit(main())
