"""Log lines are JSON objects with journald-friendly flat keys, from structlog and stdlib loggers alike."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from agent.health.logging import bind_context, configure_logging, get_logger


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    out = io.StringIO()
    yield out
    structlog.contextvars.clear_contextvars()
    structlog.reset_defaults()
    root = logging.getLogger()
    for handler in [h for h in root.handlers if h.get_name() == "edge-inspect"]:
        root.removeHandler(handler)  # leave no handler pointing at this buffer


def lines(stream: io.StringIO) -> list[str]:
    return [line for line in stream.getvalue().splitlines() if line]


def test_structlog_lines_are_json_with_the_context_fields(stream: io.StringIO) -> None:
    configure_logging("info", stream=stream, journal_prefix=False)
    get_logger("agent.publish").info("published", camera="cam0", seq=42, msg_id="a1b2")
    (record,) = [json.loads(line) for line in lines(stream)]
    assert record["msg"] == "published"
    assert (record["camera"], record["seq"], record["msg_id"]) == ("cam0", 42, "a1b2")
    assert record["level"] == "info" and record["logger"] == "agent.publish"
    assert record["ts"].endswith("Z")


def test_stdlib_loggers_are_rendered_the_same_way(stream: io.StringIO) -> None:
    configure_logging("info", stream=stream, journal_prefix=False)
    logging.getLogger("paho.mqtt.client").warning("connection lost")
    (record,) = [json.loads(line) for line in lines(stream)]
    assert (record["msg"], record["level"], record["logger"]) == ("connection lost", "warning", "paho.mqtt.client")


def test_level_filters_and_bound_context_is_added(stream: io.StringIO) -> None:
    configure_logging("warning", stream=stream, journal_prefix=False)
    bind_context(device="line1-box1")
    log = get_logger("agent")
    log.info("hidden")
    log.error("shown", camera="cam1")
    (record,) = [json.loads(line) for line in lines(stream)]
    assert record["msg"] == "shown" and record["device"] == "line1-box1"


def test_exceptions_become_a_string_field(stream: io.StringIO) -> None:
    configure_logging("info", stream=stream, journal_prefix=False)
    try:
        raise ValueError("bad frame")
    except ValueError:
        get_logger("agent").exception("failed", camera="cam0")
    (record,) = [json.loads(line) for line in lines(stream)]
    assert "ValueError: bad frame" in record["exception"]


def test_journal_prefix_carries_the_syslog_priority(stream: io.StringIO) -> None:
    configure_logging("info", stream=stream, journal_prefix=True)
    log = get_logger("agent")
    log.info("a")
    log.error("b")
    first, second = lines(stream)
    assert first.startswith("<6>{") and second.startswith("<3>{")
    assert json.loads(second[3:])["msg"] == "b"


def test_journal_prefix_is_off_when_stdout_is_not_the_journal(stream: io.StringIO,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOURNAL_STREAM", "8:12345")
    configure_logging("info", stream=stream)
    get_logger("agent").info("plain")
    assert lines(stream)[0].startswith("{")


def test_unknown_level_is_named() -> None:
    with pytest.raises(ValueError, match="'loud'"):
        configure_logging("loud")
