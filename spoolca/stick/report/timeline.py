"""The expiry timeline's geometry: where each end date sits on the report's drawing.

A square-root time scale: the next weeks (CRLs, the return-by date) get room to be read,
and a root that ends in twenty years still fits on the same line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = ["Mark", "Timeline", "layout"]

WIDTH, LEFT, RIGHT = 760, 150, 40
ROWS = ("CRL next update", "CA certificates", "Certificates")
_TICKS = ((7, "1 week"), (30, "1 month"), (90, "3 months"), (365, "1 year"),
          (5 * 365, "5 years"), (10 * 365, "10 years"), (20 * 365, "20 years"))
_LEAVES_DRAWN = 500


@dataclass(frozen=True, slots=True)
class Mark:
    row: int
    x: float
    label: str
    warning: bool


@dataclass(frozen=True, slots=True)
class Timeline:
    width: int
    height: int
    left: int
    rows: tuple[str, ...]
    ticks: list[tuple[float, str]]
    marks: list[Mark]
    return_by_x: float | None


def layout(facts: dict[str, Any]) -> Timeline:
    """Marks for the CRLs, the CA certificates and the leaves that end soonest."""
    items = [(0, c["days_left"], f"{c['authority']} CRL #{c['number']}", c["warning"])
             for c in facts["crls"]]
    items += [(1, a["days_left"], f"{a['name']} CA", a["warning"])
              for a in facts["authorities"]]
    leaves = [(c["days_left"], c["subject"]) for w in facts["expiring"] for c in w["certificates"]]
    leaves += [(r["days_left"], f"{r['name']} (this trip)") for r in
               facts.get("trip", {}).get("requests", []) if r.get("days_left") is not None]
    items += [(2, days, label, False) for days, label in leaves[:_LEAVES_DRAWN]]
    span = max([d for _, d, _, _ in items] + [30])
    scale = (WIDTH - LEFT - RIGHT) / math.sqrt(span)

    def x(days: float) -> float:
        return round(LEFT + scale * math.sqrt(max(days, 0)), 1)

    ticks: list[tuple[float, str]] = [(LEFT, "now")]
    for days, text in _TICKS:  # a label only where it has room beside the last one
        if days <= span and x(days) - ticks[-1][0] >= 60:
            ticks.append((x(days), text))
    marks = [Mark(row, x(days), label, warning) for row, days, label, warning in items]
    back = facts.get("return_by")
    return Timeline(WIDTH, 40 + 36 * len(ROWS), LEFT, ROWS, ticks, marks,
                    x(back["days_left"]) if back else None)
