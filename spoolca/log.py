"""Logging: JSON lines for journald, console rendering on a terminal.

One canonical line per unit of work (a request, a pass). Nothing here ever receives
key material or a passphrase: callers log names, hashes, serials and finding codes.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
import threading
import traceback
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO, cast

from spoolca.host.fsutil import append_private

if TYPE_CHECKING:
    import structlog

__all__ = ["configure_logging", "get_logger", "held", "record_traceback"]


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


def _divert_tracebacks(_logger: Any, _method: str, event: MutableMapping[str, Any]
                       ) -> MutableMapping[str, Any]:
    """structlog processor: exc_info becomes a traceback in the journal, or a file."""
    exc = event.pop("exc_info", None)
    if isinstance(exc, BaseException):
        if os.environ.get("JOURNAL_STREAM"):
            event["exception"] = "".join(traceback.format_exception(exc))
        else:
            event["traceback"] = record_traceback(exc)
    return event


_settings: dict[str, Any] = {"stream": None, "level": logging.INFO, "applied": False,
                             "generation": 0, "held": None}


def configure_logging(stream: TextIO | None = None, *, level: int = logging.INFO) -> None:
    """JSON when `stream` is not a TTY, human-readable console output when it is.

    Applied on the first log line, not here: importing structlog costs a read-only
    command such as `list` a third of its start-up, and most of them never log."""
    _settings.update(stream=stream, level=level, applied=False)


def _apply() -> None:
    import structlog

    stream = _settings["stream"] or sys.stderr
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
        wrapper_class=structlog.make_filtering_bound_logger(_settings["level"]),
        logger_factory=lambda *_args: _LineWriter(stream),
        cache_logger_on_first_use=False,
    )
    _settings["applied"] = True
    _settings["generation"] += 1  # every logger made before is made again


_WRITE_LOCK = threading.Lock()  # a line, or a batch's lines, never cut by another thread's


class _LineWriter:
    """structlog's output: each line written and flushed at once, or, while `held`,
    kept and written together when the hold ends (one write for a batch's 500 request
    lines instead of 500)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def msg(self, message: str) -> None:
        held = _settings["held"]
        if held is not None and held[0] == threading.get_ident():
            held[1].append(message)
            return
        with _WRITE_LOCK:
            self._stream.write(message + "\n")
            self._stream.flush()

    log = debug = info = warn = warning = err = error = critical = exception = fatal = msg


@contextlib.contextmanager
def held() -> Iterator[None]:
    """Log lines of this thread's block written together when it ends (or fails); other
    threads' lines are written at once. For lines that come in a burst, such as a
    batch's outcomes; never around a wait."""
    if _settings["held"] is not None:  # nested, or another thread's: written at once
        yield
        return
    lines: list[str] = []
    _settings["held"] = (threading.get_ident(), lines)
    try:
        yield
    finally:
        _settings["held"] = None
        if lines:
            stream = _settings["stream"] or sys.stderr
            with _WRITE_LOCK:
                stream.write("\n".join(lines) + "\n")
                stream.flush()


class _LazyLogger:
    """A structlog logger made on its first use, with the settings current then, and kept
    until they change (making one per line was a third of what a log line cost)."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._made: tuple[int, Any] | None = None

    def __getattr__(self, attribute: str) -> Any:
        if not _settings["applied"]:
            _apply()
        if self._made is None or self._made[0] != _settings["generation"]:
            import structlog

            self._made = (_settings["generation"], structlog.get_logger(self._name).bind())
        return getattr(self._made[1], attribute)


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    return cast("structlog.typing.FilteringBoundLogger", _LazyLogger(name))
