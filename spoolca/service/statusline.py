"""The daemon's STATUS= line: what `systemctl status spoolca` shows an operator.

Most urgent first: why it refuses to issue, a fault it retries, files it cannot take,
then the counters and when the stick must come back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from spoolca.process.items import PassSummary
from spoolca.register.returnwindow import ReturnWindow
from spoolca.register.views import CRLStatus

__all__ = ["status_line"]


def status_line(counters: PassSummary, crls: Sequence[CRLStatus], window: ReturnWindow | None,
                *, queued: int, waiting: Mapping[Path, str], fault: str, retry_in: int,
                refusal: str) -> str:
    c = counters
    crl_text = ", ".join(f"{s.authority} #{s.number} until {s.next_update}" for s in crls)
    back = f"return stick between {window.opens} and {window.closes}; " if window else ""
    text = (f"{back}{c.issued} issued, {c.rejected} rejected, {c.republished} re-published, "
            f"{c.revoked} revoked, {queued} queued; CRLs: {crl_text or 'none yet'}")
    if waiting:
        text = (f"WAITING: {len(waiting)} file(s) cannot be taken: "
                f"{next(iter(waiting.values()))} | {text}")
    if fault:
        text = f"FAULT: {fault} (retrying in {retry_in} s) | {text}"
    return f"REFUSING TO ISSUE: {refusal} | {text}" if refusal else text
