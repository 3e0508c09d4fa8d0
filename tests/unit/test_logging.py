"""Every log line is one JSON object with service, instance and the current correlation id."""

import io
import json
import logging

import pytest
from ordermesh import logging as chassis_logging
from ordermesh.correlation import correlation_id


@pytest.fixture
def output():
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    stream = io.StringIO()
    chassis_logging.configure(service="order", instance="order-1", level="INFO", stream=stream)
    yield stream
    root.handlers[:], level = saved
    root.setLevel(level)


def last_line(output: io.StringIO) -> dict:
    return json.loads(output.getvalue().strip().splitlines()[-1])


def test_a_log_line_carries_service_instance_and_correlation_id(output):
    token = correlation_id.set("c-42")
    try:
        chassis_logging.get_logger("test").info("order placed", order_id="o-1")
    finally:
        correlation_id.reset(token)

    line = last_line(output)
    assert line["event"] == "order placed"
    assert line["order_id"] == "o-1"
    assert line["service"] == "order"
    assert line["instance"] == "order-1"
    assert line["correlation_id"] == "c-42"
    assert line["level"] == "info"


def test_standard_library_loggers_get_the_same_shape(output):
    logging.getLogger("aio_pika").warning("connection lost")

    line = last_line(output)
    assert line["event"] == "connection lost"
    assert line["service"] == "order"
    assert "correlation_id" not in line


def test_lines_below_the_level_are_dropped(output):
    chassis_logging.get_logger("test").debug("noise")

    assert output.getvalue() == ""
