"""Unit tests: no I/O, no processes, no sockets; pure functions and objects only."""

import io
import logging

import pytest
from ordermesh import logging as chassis_logging


@pytest.fixture
def output():
    """The JSON log lines written while the test runs (the root logger's handlers restored)."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    stream = io.StringIO()
    chassis_logging.configure(service="test", instance="test-1", level="INFO", stream=stream)
    yield stream
    root.handlers[:], level = saved
    root.setLevel(level)
