"""Log lines held for a burst (a batch's outcomes): written together, never lost, and
never holding back another thread's line."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator

import pytest

from spoolca.log import configure_logging, get_logger, held


class CountingStream(io.StringIO):
    """A stream that counts the writes it gets."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)

    def isatty(self) -> bool:
        return False

    def events(self) -> list[str]:
        return [json.loads(line)["event"] for line in self.getvalue().splitlines()]


@pytest.fixture
def stream() -> Iterator[CountingStream]:
    stream = CountingStream()
    configure_logging(stream)
    yield stream
    configure_logging(None)


def test_held_lines_are_written_together_when_the_hold_ends(stream: CountingStream):
    log = get_logger("test")
    with held():
        for number in range(3):
            log.info(f"line {number}")
        assert stream.getvalue() == ""
    assert stream.events() == ["line 0", "line 1", "line 2"]
    assert stream.writes == 1
    log.info("after")  # not held: written at once
    assert stream.events()[-1] == "after"


def test_lines_held_by_a_block_that_fails_are_still_written(stream: CountingStream):
    log = get_logger("test")
    with pytest.raises(RuntimeError), held():
        log.info("before the failure")
        raise RuntimeError("boom")
    assert stream.events() == ["before the failure"]


def test_another_threads_line_is_not_held(stream: CountingStream):
    """Counter-case: a hold is its thread's; a warning from another thread meanwhile is
    written at once."""
    log = get_logger("test")
    with held():
        log.info("held")
        other = threading.Thread(target=lambda: log.warning("from another thread"))
        other.start()
        other.join()
        assert stream.events() == ["from another thread"]
    assert stream.events() == ["from another thread", "held"]
