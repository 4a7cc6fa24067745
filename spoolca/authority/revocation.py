"""Revoking certificates and keeping every CA's CRL fresh.

A CRL that expires locks every relying party out, the most common failure of hand-run
OpenSSL CAs. So each CA's CRL is remade on every revocation, by `spoolca crl`, at init,
and by the daemon whenever nextUpdate - crl_refresh_days has come, and its number
comes from the register, strictly increasing whatever the clock says.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json

from spoolca.config import Config
from spoolca.errors import (
    AlreadyRevokedError,
    ClockError,
    NotFoundError,
    NotOnHoldError,
    RevocationError,
)
from spoolca.log import get_logger
from spoolca.notation.der import pem
from spoolca.register.generations import live_names
from spoolca.register.generations import settings as generation_settings
from spoolca.register.store import CertificateRecord, CRLRecord, Store, Tx, format_time, parse_time
from spoolca.register.views import crl_status
from spoolca.spool.outgoing import Outgoing
from spoolca.x509.crl import REASONS, CRLLinter, RevokedEntry, encode_entry, sign_crl
from spoolca.x509.issuer import IssuingCA

__all__ = [
    "check_reason",
    "due_crls",
    "mark_crl_pending",
    "publish_crls",
    "record_revocation",
    "revoke_in",
]

_log = get_logger("spoolca.authority.revocation")


def _pending_key(authority: str) -> str:
    return f"crl_pending:{authority}"


def mark_crl_pending(tx: Tx, authority: str) -> None:
    """In the revoking transaction: this CA's CRL must be remade (by us or the daemon)."""
    tx.set_meta(_pending_key(authority), "1")


def record_revocation(tx: Tx, serial: str, reason: str, invalidity: dt.datetime | None
                      ) -> None:
    """In a transaction: the revocation and its CRL entry, encoded now, once."""
    entry = encode_entry(RevokedEntry(int(serial, 16), parse_time(tx.now), reason, invalidity))
    tx.revoke(serial, reason, format_time(invalidity) if invalidity else None, entry)


def check_reason(serial: str, reason: str, invalidity: dt.datetime | None,
                 now: dt.datetime) -> None:
    """A reason by its OpenSSL name, and an invalidity date not in the future."""
    if reason not in REASONS:
        raise RevocationError(f"{reason!r} is not a revocation reason; use one of "
                              f"{', '.join(REASONS)}", serial=serial)
    if invalidity is not None and invalidity > now:
        raise RevocationError("the invalidity date is in the future; give the time the key "
                              "was (or may have been) compromised", serial=serial)


def revoke_in(tx: Tx, serial: str, reason: str, invalidity: dt.datetime | None,
              requested_by: str | None = None) -> CertificateRecord:
    """In the caller's transaction: revoke (or, with removeFromCRL, lift a hold).

    Raises NotFoundError, AlreadyRevokedError or NotOnHoldError; nothing changes then."""
    record = tx.certificate(serial)
    if record is None:
        raise NotFoundError(f"no certificate with serial {serial} in the register",
                            serial=serial)
    on_hold = record.revocation_reason == "certificateHold"
    if reason == "removeFromCRL":
        if not on_hold:
            raise NotOnHoldError(serial)
        tx.unrevoke(serial)
    elif record.revoked_at and not on_hold:
        raise AlreadyRevokedError(serial, record.revocation_reason or "?", record.revoked_at)
    else:
        record_revocation(tx, serial, reason, invalidity)
    mark_crl_pending(tx, record.issuer)
    tx.record("certificate.revoked" if reason != "removeFromCRL" else "certificate.unheld",
              {"serial": serial, "reason": reason, "issuer": record.issuer,
               "subject": record.subject,
               "invalidity_date": format_time(invalidity) if invalidity else None,
               "requested_by": requested_by})
    updated = tx.certificate(serial)
    assert updated is not None
    return updated


def due_crls(config: Config, store: Store, now: dt.datetime) -> list[str]:
    """CAs whose CRL is missing, behind a revocation, or within its refresh margin."""
    due = []
    for name in live_names(store, now):  # an older generation too, while its leaves live
        latest = store.latest_crl(name)
        if latest is None or store.meta(_pending_key(name)) == "1":
            due.append(name)
            continue
        margin = dt.timedelta(days=generation_settings(config, name).crl_refresh_days)
        if now >= parse_time(latest.next_update) - margin:
            due.append(name)
    return due


def _entry(serial: str, revoked_at: str, reason: str, invalidity: str | None) -> RevokedEntry:
    return RevokedEntry(int(serial, 16), parse_time(revoked_at), reason,
                        parse_time(invalidity) if invalidity else None)


def _entries(tx: Tx, authority: str) -> list[bytes]:
    """The stored CRL entries, encoding any that a migration left without one."""
    for row in tx.unencoded_revocations(authority):
        tx.set_crl_entry(row[0], encode_entry(_entry(*row)))
    return tx.crl_entries(authority)


def publish_crls(config: Config, store: Store, authorities: dict[str, IssuingCA],
                 outgoing: Outgoing, now: dt.datetime, names: list[str],
                 linter: CRLLinter | None, actor: str) -> list[CRLRecord]:
    """Make, record and publish the named CAs' CRLs: outgoing/crl/NAME.crl and .crl.pem.

    Numbered and recorded in one transaction; written after the commit, under a lock,
    and only if no newer CRL was recorded meanwhile (another process may publish too).
    """
    made = []
    for name in names:
        ca = authorities[name]
        if not ca.certificate.not_valid_before_utc <= now <= ca.certificate.not_valid_after_utc:
            raise ClockError(f"the clock reads {format_time(now)}, outside the {name} CA's "
                             "validity: no CRL was made", now=format_time(now), action="a CRL")
        days = generation_settings(config, name).crl_days
        next_update = min(now + dt.timedelta(days=days), ca.certificate.not_valid_after_utc)
        with store.transaction(actor, now, signing="CRL") as tx:
            if next_update <= now:
                raise ClockError(f"the {name} CA expires at {format_time(next_update)}: a CRL "
                                 "made now would already be expired", now=format_time(now),
                                 action="a CRL")
            number = tx.next_crl_number(name, now)
            entries = _entries(tx, name)
            der = sign_crl(ca, entries, number=number, this_update=now,
                           next_update=next_update, linter=linter)
            record = CRLRecord(name, number, format_time(now), format_time(next_update),
                               len(entries), hashlib.sha256(der).hexdigest())
            tx.add_crl(record)
            tx.set_meta(_pending_key(name), "0")
            tx.record("crl.published", {"authority": name, "number": number,
                                        "this_update": record.this_update,
                                        "next_update": record.next_update,
                                        "entries": record.entries, "sha256": record.sha256})
        outgoing.crl_files(name, der, pem("X509 CRL", der),
                           functools.partial(_newest, store, record))
        made.append(record)
        _log.info("crl", authority=name, number=number, entries=record.entries,
                  next_update=record.next_update)
    if made:
        _write_schedule(config, store, outgoing, now)
    return made


def _newest(store: Store, record: CRLRecord) -> bool:
    """Whether RECORD is still its CA's newest CRL (another process may publish too)."""
    latest = store.latest_crl(record.authority)
    return latest is None or latest.number <= record.number


def _write_schedule(config: Config, store: Store, outgoing: Outgoing,
                    now: dt.datetime) -> None:
    """outgoing/crl/next-update.json: when each CRL ends, and when the stick must return."""
    statuses = crl_status(config, store, now)
    if not statuses:
        return
    body: dict[str, object] = {s.authority: {"number": s.number, "next_update": s.next_update,
                          "next_crl_from": s.refresh_at} for s in statuses}
    body["return_by"] = min(s.next_update for s in statuses)
    body["note"] = ("bring the stick back after next_crl_from and before return_by, so the "
                    "next CRL reaches relying parties before the current one ends")
    outgoing.crl_schedule((json.dumps(body, indent=2, sort_keys=True) + "\n").encode())
