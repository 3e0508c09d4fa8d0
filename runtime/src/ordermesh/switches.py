"""Fault switches: faults turned on and off while the system runs, read from a flagd flag file.

What holds:
- off by default: with FAULT_FLAGS_FILE empty nothing is read and every switch is off; so is
  a switch whose file is absent, whose flag is not in it, or whose flag is DISABLED;
- a change of the file is seen at once by every process that follows it (`follow()`, which
  reads it at once), without a restart: each hears its folder's changes (inotify) and reads the
  file when its identity (inode, modification time, size) changed, and `python -m
  ordermesh.switches` writes it beside and renames it; where the folder cannot be watched, each
  looks at the file every `REFRESH_S` (2 s). An idle process looked every 0.1 s before: ten
  wake-ups a second in every instance, for a file that changes when a person flips a switch;
- a malformed file (not JSON, not flagd's format, a switch whose variants are not booleans or
  whose targeting flagd cannot evaluate) keeps the last good state and is logged, once per
  version of the file; nothing of it is ever raised into a consumer (a rule that fails on one
  message's context answers off for it, logged once);
- each process logs a switch turning on (WARNING, with its rule) or off, and shows it in its
  metrics (`ordermesh.metrics.SwitchMetrics`): `ordermesh_fault_switch_active{switch}` 1 or 0,
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
- `rpc-latency`: a service answers its RPCs late, by the flag's `latency_ms` (its metadata),
  after their caller's access and the request's bounds were checked (ordermesh.grpc).
- `rpc-errors`: a service answers the share `percent` of its RPCs with the status `status` (a
  gRPC status name, e.g. UNAVAILABLE), without running their handler.
  The targeting of both sees `service` and `method` (the RPC's name, e.g. PlaceOrder); health
  checks, reflection and the operator APIs (ops.v1, through which a switch is turned off) are
  never slowed or failed.
- `gateway-latency` and `gateway-aborts`: the gateway delays by `latency_ms`, or answers with
  `http_status` unrouted, the share `percent` of the calls it routes to `service` (and
  `method`). Envoy's fault filter does it (ordermesh.gateway.envoy.faults): the gateway's agent
  follows the same file and rewrites the filters' configuration, so their targeting is the
  conditions `on` writes (service, method), not any rule flagd could evaluate (one it cannot
  translate turns the switch off at the gateway, logged).

A switch's settings (`latency_ms`; `percent` and `status`) are its flag's metadata, flagd's
place for what a flag says beyond its variants: one rule per switch, as `on` writes it (turning
it on again replaces the rule and its settings).

From the command line (the file: --file, else FAULT_FLAGS_FILE):

    python -m ordermesh.switches on handler-fails --queue notification.events \
        --type order.v2.OrderApproved
    python -m ordermesh.switches on rpc-latency --service order --method PlaceOrder \
        --latency-ms 300
    python -m ordermesh.switches on rpc-errors --service inventory --percent 50 \
        --status UNAVAILABLE
    python -m ordermesh.switches on gateway-aborts --service order --method PlaceOrder \
        --http-status 503 --percent 20
    python -m ordermesh.switches off handler-fails
    python -m ordermesh.switches list

`on` without a condition applies the switch to everything it can apply to; a condition the
switch does not look at (`--queue` for an RPC switch) is refused. `list` prints one JSON object
per switch (on or off, where, its settings).
"""

from __future__ import annotations

import copy
import json
import os
import random
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import grpc
from openfeature.contrib.tools.flagd.core import FlagdCore
from openfeature.evaluation_context import EvaluationContext

from ordermesh.logging import get_logger
from ordermesh.watch import FileNotices, follow

if TYPE_CHECKING:
    from ordermesh.metrics import SwitchMetrics

__all__ = [
    "CONTEXT",
    "GATEWAY_ABORTS",
    "GATEWAY_LATENCY",
    "HANDLER_FAILS",
    "REFRESH_S",
    "RPC_ERRORS",
    "RPC_LATENCY",
    "SCHEMA",
    "SETTINGS",
    "STATUSES",
    "SWITCHES",
    "InjectedFault",
    "MalformedFlags",
    "RpcFault",
    "Switches",
    "listing",
    "parse",
]

log = get_logger(__name__)

HANDLER_FAILS = "handler-fails"
RPC_LATENCY = "rpc-latency"
RPC_ERRORS = "rpc-errors"
GATEWAY_LATENCY = "gateway-latency"
GATEWAY_ABORTS = "gateway-aborts"
SWITCHES: Mapping[str, str] = {
    HANDLER_FAILS: "a consumer's handler fails (InjectedFault): retried, then dead-lettered",
    RPC_LATENCY: "a service's RPCs answer late, by latency_ms",
    RPC_ERRORS: "a service answers percent of its RPCs with status, unhandled",
    GATEWAY_LATENCY: "the gateway delays percent of a service's calls by latency_ms",
    GATEWAY_ABORTS: "the gateway answers percent of a service's calls with http_status",
}
# What each switch's targeting may look at (and `on` may restrict).
CONTEXT: Mapping[str, tuple[str, ...]] = {
    HANDLER_FAILS: ("service", "queue", "type"),
    RPC_LATENCY: ("service", "method"),
    RPC_ERRORS: ("service", "method"),
    GATEWAY_LATENCY: ("service", "method"),
    GATEWAY_ABORTS: ("service", "method"),
}
# The statuses an RPC may be failed with: any but OK.
STATUSES = tuple(code.name for code in grpc.StatusCode if code is not grpc.StatusCode.OK)


def _latency_ms(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 60_000:
        raise ValueError("latency_ms is a whole number of milliseconds from 1 to 60000")
    return value


def _percent(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 100:
        raise ValueError("percent is a number above 0 and at most 100")
    return float(value)


def _http_status(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 400 <= value <= 599:
        raise ValueError("http_status is an HTTP error status, from 400 to 599")
    return value


def _status(value: Any) -> str:
    if value not in STATUSES:
        raise ValueError(f"status is a gRPC status name other than OK ({', '.join(STATUSES)})")
    return str(value)


# The settings each switch's flag carries in its metadata, with their checks.
SETTINGS: Mapping[str, Mapping[str, Any]] = {
    HANDLER_FAILS: {},
    RPC_LATENCY: {"latency_ms": _latency_ms},
    RPC_ERRORS: {"percent": _percent, "status": _status},
    GATEWAY_LATENCY: {"latency_ms": _latency_ms, "percent": _percent},
    GATEWAY_ABORTS: {"percent": _percent, "http_status": _http_status},
}
# How often a process looks at the file when its folder cannot be watched, or a change was
# missed (a stat, about 2 µs).
REFRESH_S = 2.0
SCHEMA = "https://flagd.dev/schema/v0/flags.json"


class InjectedFault(Exception):
    """A failure a fault switch caused: the work's own fault (ordermesh.faults), never one of the
    infrastructure that would be waited out."""


class MalformedFlags(ValueError):
    """The flag file cannot be taken as it is; the message says why."""


@dataclass(frozen=True)
class RpcFault:
    """What the RPC switches do to one call: answer it `delay_s` late, and with `status`
    (unhandled) if one is set."""

    delay_s: float = 0.0
    status: grpc.StatusCode | None = None


@dataclass(frozen=True)
class _State:
    """What one version of the file says."""

    evaluator: FlagdCore | None = None
    # The switches that may answer on (ENABLED, with a true variant in reach).
    on: frozenset[str] = frozenset()
    # Each switch's flag as written.
    flags: Mapping[str, Any] = field(default_factory=dict)
    # Each switch's settings, checked (SETTINGS).
    settings: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


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
    settings = {}
    for switch, flag in flags.items():
        variants = flag.get("variants") if isinstance(flag, dict) else None
        if not isinstance(variants, dict) or not all(
            isinstance(v, bool) for v in variants.values()
        ):
            raise MalformedFlags(f"{switch}: a switch's variants are booleans")
        settings[switch] = _settings(switch, flag.get("metadata") or {})
        # A rule flagd cannot evaluate (an unknown operator) fails with any context.
        nothing = EvaluationContext(attributes=dict.fromkeys(CONTEXT[switch], ""))
        try:
            evaluator.resolve_boolean_value(switch, False, nothing)
        except Exception as exc:  # noqa: BLE001 - any error of flagd's evaluation
            raise MalformedFlags(f"{switch}: {type(exc).__name__}: {exc}") from None
    on = frozenset(switch for switch, flag in flags.items() if _may_answer_on(flag))
    return _State(evaluator=evaluator, on=on, flags=flags, settings=settings)


def _settings(switch: str, metadata: Any) -> dict[str, Any]:
    """A switch's settings from its flag's metadata, each checked; MalformedFlags if one is
    missing or wrong."""
    if not isinstance(metadata, dict):
        raise MalformedFlags(f"{switch}: its metadata is an object")
    checked = {}
    for name, check in SETTINGS[switch].items():
        if name not in metadata:
            raise MalformedFlags(f"{switch}: its metadata names no {name}")
        try:
            checked[name] = check(metadata[name])
        except ValueError as exc:
            raise MalformedFlags(f"{switch}: {exc}") from None
    return checked


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
        self,
        path: str = "",
        *,
        metrics: SwitchMetrics | None = None,
        refresh_s: float = REFRESH_S,
        on_change: Callable[[Switches], None] | None = None,
    ):
        """`on_change`: called with these switches after each new version of the file was
        taken (the gateway's agent rewrites its fault filters then)."""
        self.path = path
        self._metrics = metrics
        self._refresh_s = refresh_s
        self._on_change = on_change
        self._state = OFF
        # The answer for each (switch, context) under the current state.
        self._answers: dict[tuple[Any, ...], bool] = {}
        # The file's identity when last read: (inode, mtime, size), () when absent.
        self._seen: tuple[int, ...] | None = None
        if metrics is not None:
            for switch in SWITCHES:
                metrics.active.labels(switch).set(0)

    def rule(self, switch: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """Where `switch` is on (the conditions `on` writes; {"targeting": ...} for a rule of
        another shape) and its settings; None while it is off."""
        state = self._state
        if switch not in state.on:
            return None
        return where(state.flags.get(switch)), dict(state.settings.get(switch, {}))

    def is_on(self, switch: str, **context: str) -> bool:
        """Whether `switch` is on for the work that `context` describes (always the same keys
        for one switch, in the same order: its CONTEXT)."""
        return switch in self._state.on and self._answer(switch, context)

    def inject(self, switch: str, **context: str) -> None:
        """Raises InjectedFault (counted) if `switch` is on for `context` (as in `is_on`)."""
        if switch in self._state.on and self._answer(switch, context):
            self._count(switch)
            named = ", ".join(f"{k}={v}" for k, v in context.items())
            raise InjectedFault(f"fault switch {switch} is on ({named})")

    def rpc_fault(self, service: str, method: str) -> RpcFault | None:
        """What the RPC switches do to a call of `method` (its name, e.g. PlaceOrder) in
        `service`: None while neither is on for it (the cost of a set lookup), each fault
        counted when it applies."""
        state = self._state
        if RPC_LATENCY not in state.on and RPC_ERRORS not in state.on:
            return None
        delay_s = 0.0
        if self.is_on(RPC_LATENCY, service=service, method=method):
            delay_s = state.settings[RPC_LATENCY]["latency_ms"] / 1000
            self._count(RPC_LATENCY)
        status = None
        if self.is_on(RPC_ERRORS, service=service, method=method):
            errors = state.settings[RPC_ERRORS]
            if random.random() * 100 < errors["percent"]:  # nosec B311 - a share, not a secret
                status = grpc.StatusCode[errors["status"]]
                self._count(RPC_ERRORS)
        return RpcFault(delay_s, status) if delay_s or status is not None else None

    def _count(self, switch: str) -> None:
        if self._metrics is not None:
            self._metrics.injected.labels(switch).inc()

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
                    **({"settings": state.settings[switch]} if state.settings.get(switch) else {}),
                    file=self.path,
                )
            elif was and not now:
                log.info("fault switch off", switch=switch, file=self.path)
            if self._metrics is not None:
                self._metrics.active.labels(switch).set(float(now))
        if self._on_change is not None:
            self._on_change(self)

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
        return listing(self._state)


def listing(state: _State) -> list[dict[str, Any]]:
    return [
        {
            "switch": switch,
            "on": switch in state.on,
            "where": where(state.flags.get(switch)) if switch in state.on else {},
            "settings": dict(state.settings.get(switch, {})) if switch in state.on else {},
            "does": does,
        }
        for switch, does in SWITCHES.items()
    ]


if __name__ == "__main__":  # `python -m ordermesh.switches`: the command line (ordermesh.flag_file)
    from ordermesh.flag_file import main

    sys.exit(main())
