"""The return window: when the stick must come back so that no CRL lapses.

An offline CA's CRLs reach relying parties only by the stick. Each CA's next CRL is made
from `next_crl_from` (nextUpdate - overlap) on; its current CRL ends at nextUpdate, or,
after a pre-signed series (`spoolca crl --presign`), at the last one's nextUpdate. The
window for the whole appliance is that of the CA whose CRLs end first: it opens when
its next CRL can be made (a trip sooner brings back nothing newer for it) and closes
`[media] return_margin_days` before its CRLs end (time to carry the stick to the web
server and publish). One computation, read by next-update.json, the stick report,
`spoolca status`, the daemon's STATUS= line, the audit log and the lapse checks of
`media export` and `trip close`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from spoolca.config import Config
from spoolca.register.store import Store, format_time, parse_time
from spoolca.register.views import crl_status

__all__ = ["ReturnWindow", "close_trip", "covered_until", "days_between", "lapse_before",
           "next_trip", "presigned_key", "return_window"]


def presigned_key(authority: str) -> str:
    """The register meta key: the nextUpdate of AUTHORITY's last pre-signed CRL."""
    return f"crl_presigned_until:{authority}"


@dataclass(frozen=True, slots=True)
class ReturnWindow:
    """From `opens` to `closes`; `lapses` is when the first CA's CRLs end."""

    opens: str
    closes: str
    lapses: str
    authority: str
    number: int
    margin_days: int
    presigned: bool  # the first CA's coverage ends with a pre-signed CRL

    def as_dict(self, now: dt.datetime) -> dict[str, object]:
        return {"from": self.opens, "until": self.closes, "lapses_at": self.lapses,
                "authority": self.authority, "crl_number": self.number,
                "margin_days": self.margin_days, "presigned": self.presigned,
                "days_left": days_between(now, self.closes),
                "from_days": max(0, days_between(now, self.opens))}


def days_between(now: dt.datetime, moment: str) -> int:
    """Whole days from NOW to MOMENT (negative once past)."""
    return (parse_time(moment) - now).days


def covered_until(store: Store, authority: str, next_update: str) -> str:
    """When AUTHORITY's CRLs end: its current CRL's nextUpdate, or a pre-signed one's."""
    presigned = store.meta(presigned_key(authority))
    return max(next_update, presigned) if presigned else next_update


def return_window(config: Config, store: Store, now: dt.datetime) -> ReturnWindow | None:
    """The window at NOW (the caller's time: the register reads no clock); None before
    any CRL was made."""
    statuses = crl_status(config, store, now)
    if not statuses:
        return None
    ends = {s.authority: covered_until(store, s.authority, s.next_update) for s in statuses}
    first = min(statuses, key=lambda s: (ends[s.authority], s.authority))
    margin = config.report.return_margin_days
    lapses = ends[first.authority]
    return ReturnWindow(opens=max(first.refresh_at, format_time(now)),
                        closes=format_time(parse_time(lapses) - dt.timedelta(days=margin)),
                        lapses=lapses, authority=first.authority, number=first.number,
                        margin_days=margin, presigned=lapses != first.next_update)


def next_trip(config: Config, store: Store, now: dt.datetime) -> str | None:
    """When the next trip is planned: the date `spoolca trip close --next` recorded, if it
    is still ahead, else NOW + `[media] trip_interval_days` when that is set."""
    planned = store.meta("next_trip")
    return planned if planned and planned > format_time(now) else _by_cadence(config, now)


def _by_cadence(config: Config, now: dt.datetime) -> str | None:
    """NOW + `[media] trip_interval_days`, when trips are planned at a cadence."""
    days = config.report.trip_interval_days
    return format_time(now + dt.timedelta(days=days)) if days else None


def lapse_before(window: ReturnWindow | None, trip: str | None) -> str | None:
    """One sentence if the planned trip comes after the window closes, else None."""
    if window is None or trip is None or trip <= window.closes:
        return None
    return (f"the next trip is planned for {trip}, after the return window closes at "
            f"{window.closes}: the {window.authority} CA's CRL #{window.number} lapses at "
            f"{window.lapses} and relying parties that check CRLs then refuse its "
            "certificates; plan the trip sooner, or sign a series ahead (`spoolca crl "
            "--presign N`)")


def close_trip(config: Config, store: Store, now: dt.datetime, planned: str | None, *,
               accept_lapse: bool) -> tuple[ReturnWindow | None, str | None, str | None]:
    """`spoolca trip close`: record the end of a visit and the next one planned (PLANNED,
    else `[media] trip_interval_days` from NOW). (window, trip, lapse sentence): with a
    lapse and not ACCEPT_LAPSE, nothing is recorded; otherwise the audit log says what
    was planned, and that a lapse was accepted if one was. Nothing is unlocked: the next
    signing process seals the entry."""
    window = return_window(config, store, now)
    trip = planned or _by_cadence(config, now)
    lapse = lapse_before(window, trip)
    if lapse is not None and not accept_lapse:
        return window, trip, lapse
    with store.transaction("cli", now) as tx:
        if planned:
            tx.set_meta("next_trip", planned)
        tx.record("trip.closed", {"next_trip": trip, "window_from": window and window.opens,
                                  "window_until": window and window.closes,
                                  "lapses_at": window and window.lapses,
                                  "accepted_lapse": lapse})
    return window, trip, lapse
