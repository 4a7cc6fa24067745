"""The clock guard's bounds: a floor and a ceiling (invariants 8 and 15).

An air-gapped host has no time source, so the register is the only witness of what time
it is. Its floor is the latest time a transaction recorded while the clock was trusted;
its ceiling is the floor plus `[clock] max_forward_days`, or, within one process that
saw a trusted time, that time plus what its monotonic clock has measured since (a daemon
that ran for three weeks is not "three weeks ahead"). A clock outside the two is wrong:
nothing is signed, and what is recorded meanwhile (a service start, a key unlocked) is
marked and does not move the floor, so one run with a wrong clock cannot lock the CA out
of the right time. Only `spoolca clock confirm` moves the floor past the ceiling (the
operator read a trusted clock) or back below it (a wrong clock dated records ahead), and
each is an audit entry.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass

from spoolca.register.records import format_time, parse_time

__all__ = ["CONFIRM_TOLERANCE", "DEFAULT_MAX_FORWARD_DAYS", "SIGNING_GRACE", "ClockGuard",
           "ClockProblem"]

DEFAULT_MAX_FORWARD_DAYS = 7
CONFIRM_TOLERANCE = dt.timedelta(minutes=10)  # the typed time against the system clock
SIGNING_GRACE = dt.timedelta(minutes=1)  # see ClockGuard.problem


@dataclass(frozen=True, slots=True)
class ClockProblem:
    """Why the clock is not trusted: `behind` the floor or `ahead` of the ceiling."""

    kind: str
    now: str
    floor: str
    ceiling: str
    max_forward_days: int

    def sentence(self, action: str) -> str:
        """One sentence for the operator, naming what was not signed and what to do."""
        if self.kind == "behind":
            return (f"the clock reads {self.now}, earlier than {self.floor}, the latest time "
                    f"the register recorded: set the system clock (if it is right and a wrong "
                    "clock dated records ahead: spoolca clock confirm --time T --repair, T "
                    f"read off a clock you trust); no {action} was signed")
        return (f"the clock reads {self.now}, more than {self.max_forward_days} days after "
                f"{self.floor}, the latest time the register recorded: if it is right (the "
                "appliance was off a while), confirm it once with spoolca clock confirm "
                f"--time T, T read off a clock you trust; no {action} was signed")

    def note(self) -> str:
        """What an audit entry written meanwhile carries: its time does not count."""
        return f"{self.kind}: the clock read {self.now}, the register's floor was {self.floor}"


@dataclass(slots=True)
class ClockGuard:
    """The bounds for one open register; remembers the last trusted time it saw."""

    max_forward_days: int = DEFAULT_MAX_FORWARD_DAYS
    _trusted: tuple[dt.datetime, float] | None = None  # (wall time, CLOCK_BOOTTIME then)

    def ceiling(self, floor: dt.datetime) -> dt.datetime:
        margin = dt.timedelta(days=self.max_forward_days)
        ceiling = floor + margin
        if self._trusted is not None:
            wall, boot = self._trusted
            elapsed = dt.timedelta(seconds=max(0.0, _boottime() - boot))
            ceiling = max(ceiling, wall + elapsed + margin)
        return ceiling

    def problem(self, now: dt.datetime, floor: str | None,
                grace: dt.timedelta = dt.timedelta(0)) -> ClockProblem | None:
        """None if NOW is trusted against FLOOR (none yet: a CA being made). GRACE: how far
        behind the floor still passes (a signing transaction's last-line check: the time
        read at the operation's start may trail what another process, or its own key
        unlock, recorded a second later)."""
        if floor is None:
            return None
        text = format_time(now)
        ceiling = self.ceiling(parse_time(floor))
        if format_time(now + grace) < floor:
            kind = "behind"
        elif now > ceiling:
            kind = "ahead"
        else:
            return None
        return ClockProblem(kind, text, floor, format_time(ceiling), self.max_forward_days)

    def trusted(self, now: dt.datetime) -> None:
        """A transaction at NOW committed with the clock trusted."""
        self._trusted = (now, _boottime())


def _boottime() -> float:
    """Seconds since boot, suspend included: what really elapsed, whatever the wall
    clock was set to meanwhile."""
    return time.clock_gettime(time.CLOCK_BOOTTIME)
