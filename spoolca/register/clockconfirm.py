"""The operator vouching for the clock (`spoolca clock confirm`), recorded.

The clock guard (register.clock) refuses a clock ahead of its ceiling or behind its
floor. When the clock is right after all, the operator says so, with the time read off a
clock they trust; what they said is an audit entry written with the clock trusted, so it
moves the floor to now (ahead), or first sets the floor back (behind: `--repair`).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from spoolca.register.store import Store, format_time

__all__ = ["record_confirmed", "record_repaired"]


def record_confirmed(store: Store, moment: dt.datetime, said: dict[str, Any]) -> None:
    """The clock is ahead of the ceiling and right: the floor moves to MOMENT."""
    with store.transaction("cli", moment, trust_clock=True) as tx:
        tx.record("clock.confirmed", said)


def record_repaired(store: Store, moment: dt.datetime, said: dict[str, Any]) -> None:
    """The clock is behind the floor and right: the floor is set back to MOMENT."""
    with store.transaction("cli", moment, trust_clock=True) as tx:
        tx.lower_clock_floor(format_time(moment))
        tx.record("clock.repaired", said)
