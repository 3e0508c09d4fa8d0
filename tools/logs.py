"""`make logs`: the JSON log lines of every process `make up` runs, gathered in time order.

Every process of the system writes its JSON lines to its own file under the run directory
(.build/run: `services/<service>/<instance>.log`, `gateway/`, `sinks/`, the files of an instance
restarted after a crash included); this reads them all as one stream, ordered by time:

    make logs ID=<correlation id or trace id>   one request's lines, from every service
    make logs SERVICE=order LEVEL=warning       what the order service warned of, or worse
    make logs SINCE=10m FOLLOW=0                the last ten minutes, then exit

It follows new lines (new files too: an instance started since) like `tail -f` unless
FOLLOW=0. The files are read by `ordermesh.logfiles`, as the operator console reads them: lines
that are not JSON (a broker's own log) are not read. Lines quote values clients chose: what a
terminal would obey (escape sequences, carriage returns, newlines, bidirectional overrides) is
shown escaped (`render`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import sys
import time
import unicodedata
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO

from ordermesh.logfiles import LEVELS, Filter, Reader

from harness.running import RUN_DIR

__all__ = ["main"]

# Fields every line has, shown first; the rest follow as key=value.
HEAD = ("timestamp", "service", "instance", "level", "event")


def since(value: str, *, now: datetime | None = None) -> str:
    """SINCE as the ISO time the lines carry: `30s`, `10m`, `2h`, `1d` ago, or an ISO time."""
    if not value:
        return ""
    found = re.fullmatch(r"(\d+)([smhd])", value)
    if found is None:
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(
                f"SINCE={value!r} is neither a duration (30s, 10m, 2h) nor a time"
            ) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
    else:
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[found[2]]
        moment = (now or datetime.now(UTC)) - timedelta(**{unit: int(found[1])})
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def render(record: dict[str, Any]) -> str:
    """One line for a terminal. Lines quote what clients chose (a name, a reason, a header), so
    every character a terminal would obey rather than show is written as an escape."""
    time_ = visible(str(record.get("timestamp", ""))[11:23])
    who = visible(f"{record.get('service', '?')}/{record.get('instance', '?')}")
    level = visible(str(record.get("level", "")).upper())
    rest = " ".join(
        f"{visible(str(key))}={_value(value)}" for key, value in record.items() if key not in HEAD
    )
    return f"{time_} {who:<28} {level:<7} {visible(str(record.get('event', '')))}  {rest}".rstrip()


def _value(value: object) -> str:
    """A field's value: a plain word as it is, anything else as JSON (quoted, escaped)."""
    if isinstance(value, str) and not _UNPLAIN.search(value) and visible(value) == value:
        return value
    return visible(json.dumps(value, ensure_ascii=False))


# What makes a value be quoted: a space (a value would seem to end there), a quote, a backslash
# (so that an escape in a quoted value is always one that `visible` or JSON wrote).
_UNPLAIN = re.compile(r'[\s"\\]')
_PRINTABLE_ASCII = re.compile(r"[\x20-\x7e]*")
# Characters a terminal obeys or that change what the line seems to say: controls (C0, DEL, C1:
# escape sequences, a carriage return that overwrites the line, a newline that forges one),
# format characters (bidirectional overrides, zero-width ones), line and paragraph separators,
# and lone surrogates (which JSON lines can carry, and which no terminal encoding can write).
_OBEYED = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def visible(text: str) -> str:
    """The text with each character of _OBEYED written as a JSON escape (`\\u001b`, `\\n`)."""
    if _PRINTABLE_ASCII.fullmatch(text):  # nearly every line: nothing to look up
        return text
    return "".join(_escape(c) if unicodedata.category(c) in _OBEYED else c for c in text)


def _escape(char: str) -> str:
    if char in _SHORT:
        return _SHORT[char]
    code = ord(char)
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    code -= 0x10000  # beyond the BMP: the UTF-16 pair JSON writes
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def show(reader: Reader, wanted: Filter, out: TextIO, *, follow: bool, poll_s: float = 0.5) -> int:
    """Prints what is there (and, following, what comes); returns how many lines it printed."""
    printed = 0
    while True:
        for record in reader.new_records():
            if wanted.admits(record):
                out.write(render(record) + "\n")
                printed += 1
        out.flush()
        if not follow:
            return printed
        time.sleep(poll_s)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="The system's log lines, in time order.")
    parser.add_argument("--id", default="", help="a correlation id or a trace id")
    parser.add_argument("--service", default="")
    parser.add_argument("--level", default="", choices=["", *LEVELS])
    parser.add_argument("--since", default="", help="30s, 10m, 2h, 1d, or an ISO time")
    parser.add_argument("--follow", default="1", choices=["0", "1"])
    parser.add_argument("--root", type=Path, default=RUN_DIR)
    args = parser.parse_args(argv)
    if not args.root.exists():
        print(f"no logs at {args.root}: is `make up` running?", file=sys.stderr)
        return 1
    try:
        wanted = Filter(args.id, args.service, args.level.lower(), since(args.since))
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    with contextlib.suppress(KeyboardInterrupt):  # how a follower is ended
        show(Reader(args.root), wanted, sys.stdout, follow=args.follow == "1")
    return 0


if __name__ == "__main__":
    sys.exit(main())
