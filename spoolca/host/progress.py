"""Progress bars for long runs, on a terminal only.

`process` over thousands of requests, or a stick's ingest and export, take long enough
for an operator to wonder. A bar goes to stderr when stderr is a terminal; under
journald, in a pipe or for JSON output there is nothing, so logs stay clean.
"""

from __future__ import annotations

import os
import sys
from types import TracebackType
from typing import Any

__all__ = ["MINIMUM", "Progress"]

MINIMUM = 30  # fewer items than this finish before a bar would be worth reading


class Progress:
    """`with Progress(total, "signing", shown=True) as bar: bar.advance(n)`."""

    def __init__(self, total: int, what: str, *, shown: bool) -> None:
        self._bar: Any = None
        if shown and total >= MINIMUM and interactive():
            from tqdm import tqdm  # only when a bar is drawn

            size = os.get_terminal_size(sys.stderr.fileno())
            # A terminal that reports no size (a bare pty) still gets a bar: with a
            # height of 0, tqdm would hide it as if it were off screen.
            self._bar = tqdm(total=total, desc=what, unit="file", leave=False,
                             file=sys.stderr, ncols=size.columns or 80,
                             nrows=size.lines or 24)

    def advance(self, count: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(count)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.close()


def interactive() -> bool:
    """A person is watching stderr: a terminal, and not journald's stream."""
    return sys.stderr.isatty() and "JOURNAL_STREAM" not in os.environ
