"""`make logs` picks one request's lines, a service's, a level and worse, and a time window, and
shows them escaped: nothing in a line is obeyed by the terminal."""

import json
import unicodedata
from datetime import UTC, datetime

import pytest

from tools.logs import Filter, render, since


def line(**fields):
    return {"timestamp": "2026-12-01T10:00:00.000000Z", "service": "order", "level": "info",
            "event": "rpc handled", **fields}  # fmt: skip


def test_an_id_is_a_correlation_id_or_a_trace_id():
    wanted = Filter(id="abc")

    assert wanted.admits(line(correlation_id="abc"))
    assert wanted.admits(line(trace_id="abc"))
    assert not wanted.admits(line(correlation_id="abd", trace_id="xyz"))
    assert not wanted.admits(line())


def test_a_level_admits_itself_and_worse_and_a_service_only_its_own():
    wanted = Filter(level="warning", service="order")

    assert wanted.admits(line(level="warning"))
    assert wanted.admits(line(level="error"))
    assert not wanted.admits(line(level="info"))
    assert not wanted.admits(line(level="error", service="inventory"))


def test_since_is_a_duration_ago_or_a_time():
    now = datetime(2026, 12, 1, 10, 30, tzinfo=UTC)

    assert since("10m", now=now) == "2026-12-01T10:20:00.000000Z"
    assert since("2h", now=now) == "2026-12-01T08:30:00.000000Z"
    assert since("2026-12-01T09:00:00") == "2026-12-01T09:00:00.000000Z"
    assert Filter(since=since("45m", now=now)).admits(line())
    assert not Filter(since=since("10m", now=now)).admits(line())
    with pytest.raises(ValueError, match="SINCE='yesterday'"):
        since("yesterday")


# What a client can put in a value that a line then quotes: an ANSI escape that recolours or
# clears the screen, a carriage return that overwrites the line, a newline that forges a line,
# the bell, C1's one-byte CSI, a right-to-left override, a line separator, a lone surrogate.
HOSTILE = "\x1b[2J\x1b[31mok\rlevel=error\nfake line\x07\x9b1m\u202etxt\u2028\ud800"


@pytest.mark.parametrize(
    "record",
    [
        line(reason=HOSTILE),
        line(name=HOSTILE.replace(" ", "")),  # a value without a space was printed as it was
        line(event=HOSTILE),
        line(service=HOSTILE, instance=HOSTILE, level=HOSTILE),
        line(**{HOSTILE: "key"}),
        line(items=[HOSTILE]),
    ],
)
def test_control_characters_from_a_line_are_shown_escaped_not_obeyed(record):
    shown = render(record)

    obeyed = [c for c in shown if unicodedata.category(c) in {"Cc", "Cf", "Zl", "Zp", "Cs"}]
    assert obeyed == []
    assert "\\u001b[31m" in shown
    assert "\\r" in shown
    assert "\\n" in shown
    assert "\\u202e" in shown
    shown.encode()  # a lone surrogate would fail to be written


def test_escapes_in_a_quoted_value_read_back_as_json():
    shown = render(line(reason=HOSTILE))

    assert json.loads(shown.split("reason=", 1)[1]) == HOSTILE


def test_ordinary_values_stay_as_they_are():
    shown = render(line(user="zoë", sku="sku-1", note="two words", n=3, ok=True))

    assert shown.endswith('user=zoë sku=sku-1 note="two words" n=3 ok=true')
