"""Custody of the unlock secret, as the register records it: a share set issued (its
verifier, K-of-N, the custodians' names: never a share), the secret combined and
installed, the yearly drill passed. Each is one transaction with its audit entry."""

from __future__ import annotations

import datetime as dt

from spoolca.keys.shares import verifier
from spoolca.register.store import Store

__all__ = ["record_checked", "record_combined", "record_share_set"]


def record_share_set(store: Store, secret: bytes, threshold: int, count: int, set_id: int,
                     custodians: list[str], event: str, now: dt.datetime) -> None:
    """EVENT: shares.issued (split), shares.reissued (reshare) or shares.rotated."""
    with store.transaction("cli", now) as tx:
        tx.set_meta("shares_verifier", verifier(secret))
        tx.set_meta("shares", f"{threshold}-of-{count}, set {set_id}")
        tx.record(event, {"threshold": threshold, "count": count, "set": set_id,
                          "custodians": custodians})


def record_combined(store: Store, installed: str, now: dt.datetime) -> None:
    with store.transaction("cli", now) as tx:
        tx.record("shares.combined", {"installed": installed})


def record_checked(store: Store, now: dt.datetime) -> None:
    with store.transaction("cli", now) as tx:
        tx.record("shares.checked", {"result": "recovered"})
