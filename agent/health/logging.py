"""Structured logs: one JSON object per line on stdout, which journald stores and `journalctl -o cat` shows as is.

Keys are flat and lowercase so they can be filtered on (`camera`, `seq`, `msg_id`, `frame_id`, ...); every line has
`ts` (RFC 3339, UTC), `level`, `logger` and `msg`. Standard-library loggers (paho-mqtt, urllib3, ...) go through the
same renderer, so the stream stays uniformly JSON. When stdout *is* the journal (systemd sets `$JOURNAL_STREAM` to
its device:inode), each line gets a `<N>` syslog priority prefix, which journald strips and turns into PRIORITY=,
so `journalctl -p warning` works.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, TextIO

import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR,
           "critical": logging.CRITICAL}
# syslog priorities journald understands in a "<N>" line prefix
_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}
_HANDLER_NAME = "edge-inspect"


class _JournalFormatter(structlog.stdlib.ProcessorFormatter):
    """Prefixes each rendered line with its syslog priority for journald."""

    def format(self, record: logging.LogRecord) -> str:
        priority = _PRIORITY.get(record.levelno, 6 if record.levelno < logging.WARNING else 3)
        return f"<{priority}>{super().format(record)}"


def configure_logging(level: str = "info", json: bool = True, stream: TextIO | None = None,
                      journal_prefix: bool | None = None) -> None:
    """Send structlog and standard-library logging to `stream` (stdout) as JSON (or readable text for a terminal).

    `journal_prefix=None` adds the `<N>` priority prefix only when `stream` is connected to the journal.
    Calling it again replaces the previous setup (e.g. after a SIGHUP changed `log_level`).
    """
    numeric = _LEVELS.get(level.lower())
    if numeric is None:
        raise ValueError(f"log level {level!r}: must be one of {sorted(_LEVELS)}")
    stream = stream if stream is not None else sys.stdout
    shared = _shared_processors()
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    prefix = _is_journal(stream) if journal_prefix is None else journal_prefix
    formatter_class = _JournalFormatter if prefix and json else structlog.stdlib.ProcessorFormatter
    formatter = formatter_class(foreign_pre_chain=shared, processors=_render_processors(json))
    _install_handler(stream, formatter, numeric)


def _shared_processors() -> list[Any]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
        structlog.processors.StackInfoRenderer(),
    ]


def _render_processors(json: bool) -> list[Any]:
    strip = structlog.stdlib.ProcessorFormatter.remove_processors_meta
    if not json:
        return [strip, structlog.dev.ConsoleRenderer(colors=False)]
    return [strip, structlog.processors.format_exc_info, structlog.processors.EventRenamer("msg"),
            structlog.processors.JSONRenderer(default=str)]


def _install_handler(stream: TextIO, formatter: logging.Formatter, level: int) -> None:
    root = logging.getLogger()
    for handler in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(handler)
    handler = logging.StreamHandler(stream)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(formatter)
    root.addHandler(handler)
    root.setLevel(level)


def _is_journal(stream: TextIO) -> bool:
    """Whether `stream` is the journal socket systemd named in `$JOURNAL_STREAM` ("device:inode")."""
    expected = os.environ.get("JOURNAL_STREAM", "")
    device, _, inode = expected.partition(":")
    try:
        stat = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return device.isdigit() and inode.isdigit() and (stat.st_dev, stat.st_ino) == (int(device), int(inode))


def get_logger(name: str) -> Any:
    """A structlog logger; bind per-call context as keywords: `log.info("published", camera=..., seq=...)`."""
    return structlog.get_logger(name)


def bind_context(**fields: Any) -> None:
    """Add fields to every line logged from this thread/task from now on (e.g. `device`)."""
    structlog.contextvars.bind_contextvars(**fields)
