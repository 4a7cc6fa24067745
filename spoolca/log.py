"""Logging: JSON lines for journald, console rendering on a terminal.

One canonical line per unit of work (a request, a pass). Nothing here ever receives
key material or a passphrase: callers log names, hashes, serials and finding codes.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any, TextIO

import structlog

from spoolca.fsutil import append_private

__all__ = ["configure_logging", "get_logger", "record_traceback"]


def _traceback_file() -> Path:
    return Path(tempfile.gettempdir()) / f"spoolca-tracebacks-{os.geteuid()}.log"


def record_traceback(exc: BaseException) -> str:
    """Keep a traceback where the operator can find it, never on a terminal's stderr.

    Under systemd (JOURNAL_STREAM set) stderr is the journal: the traceback goes into the
    JSON log line. Elsewhere it is appended to a private file in the temp directory.
    Returns where it went, for the one sentence the operator reads."""
    text = "".join(traceback.format_exception(exc))
    if os.environ.get("JOURNAL_STREAM"):
        get_logger("spoolca").error("traceback", exception=text)
        return "the journal"
    path = _traceback_file()
    try:
        append_private(path, text.encode("utf-8", "backslashreplace") + b"\n")
    except OSError:
        return "nowhere (the traceback file could not be written)"
    return str(path)


def _divert_tracebacks(_logger: Any, _method: str, event: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: exc_info becomes a traceback in the journal, or a file."""
    exc = event.pop("exc_info", None)
    if isinstance(exc, BaseException):
        if os.environ.get("JOURNAL_STREAM"):
            event["exception"] = "".join(traceback.format_exception(exc))
        else:
            event["traceback"] = record_traceback(exc)
    return event


def configure_logging(stream: TextIO | None = None, *, level: int = logging.INFO) -> None:
    """JSON when `stream` is not a TTY, human-readable console output when it is."""
    stream = stream or sys.stderr
    renderer: structlog.typing.Processor = (
        structlog.dev.ConsoleRenderer(colors=False) if stream.isatty()
        else structlog.processors.JSONRenderer(sort_keys=True)
    )
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            _divert_tracebacks,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(stream),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    return structlog.get_logger(name)
