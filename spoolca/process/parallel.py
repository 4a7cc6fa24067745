"""Splitting a stage of a batch between two threads, only where that pays.

A second thread pays only when an item spends long stretches in crypto that releases the
GIL (an RSA signature, a P-384 request's check). For short ones (a P-256 signature or
request check, 0.1-0.2 ms) handing the GIL back and forth costs more than the second core
gives: 2,000 P-256 requests took 2.69-2.78 s split and 2.37-2.43 s on one thread. So the
first items are timed, and the rest are split only if they are slow.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from typing import TypeVar

__all__ = ["SPLIT_ABOVE_SECONDS", "in_halves"]

# Per item, the median time above which the rest of a stage is split between two threads.
SPLIT_ABOVE_SECONDS = 0.0004
_PROBE = 8
_In = TypeVar("_In")
_Out = TypeVar("_Out")


def in_halves(workers: Executor, function: Callable[[_In], _Out], items: Sequence[_In]
              ) -> list[_Out]:
    """`function` over items, in order: on this thread, or half of them on WORKERS."""
    done, times = [], []
    for item in items[:_PROBE]:
        started = time.perf_counter()
        done.append(function(item))
        times.append(time.perf_counter() - started)
    rest = items[_PROBE:]
    # The median: a first call that warms a cache, or one odd item, must not decide.
    if len(rest) < 2 * _PROBE or sorted(times)[len(times) // 2] < SPLIT_ABOVE_SECONDS:
        return done + [function(item) for item in rest]
    middle = len(rest) // 2
    first = workers.submit(lambda: [function(i) for i in rest[:middle]])
    second = [function(item) for item in rest[middle:]]
    return done + first.result() + second
