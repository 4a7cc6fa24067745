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
from spoolca.register.generations import base_name, live_names
from spoolca.register.generations import settings as generation_settings
from spoolca.register.returnwindow import covered_until, presigned_key, return_window
from spoolca.register.store import CertificateRecord, CRLRecord, Store, Tx, format_time, parse_time
from spoolca.register.views import crl_status
from spoolca.spool.outgoing import Outgoing, presigned_name
from spoolca.x509.crl import REASONS, CRLLinter, RevokedEntry, Scope, encode_entry, sign_crl
from spoolca.x509.issuer import IssuingCA

__all__ = [
    "check_reason",
    "due_crls",
    "mark_crl_pending",
    "presign_crls",
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


def crl_scope(config: Config, tx: Tx, authority: str) -> Scope | None:
    """What AUTHORITY's CRL covers, from what the register says it certified: only CA
    certificates (a root: its intermediates and cross-certificates are not in the
    register as leaves), or only end-entity certificates; None when it certified both,
    or anything under a profile the configuration no longer names (a wrong scope would
    make relying parties refuse the CRL for a certificate it must cover)."""
    kinds = set()
    for profile in tx.issued_profiles(authority):
        known = config.profiles.get(profile)
        if profile == "cross":
            kinds.add(Scope.CA)
        elif known is None:
            return None
        else:
            kinds.add(Scope.CA if known.usage.ca else Scope.USER)
    if base_name(authority) == "root":
        kinds.add(Scope.CA)  # it certifies its intermediates (kept as generations)
    return kinds.pop() if len(kinds) == 1 else None


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
                 linter: CRLLinter | None, actor: str, *, since: dt.datetime | None = None,
                 until: dt.datetime | None = None) -> list[CRLRecord]:
    """Make, record and publish the named CAs' CRLs: outgoing/crl/NAME.crl and .crl.pem.
    Their thisUpdate is SINCE (NOW backdated by the session, never before the CA's own
    notBefore); their nextUpdate is NOW + interval + overlap, or UNTIL (`spoolca crl
    --extend`: an emergency re-sign, recorded as such), capped by the CA's notAfter.
    A CA's pre-signed series, if any, is void from then on (numbered below this CRL).

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
        next_update = min(until or now + dt.timedelta(days=days),
                          ca.certificate.not_valid_after_utc)
        with store.transaction(actor, now, signing="CRL") as tx:
            if next_update <= now:
                raise ClockError(f"the {name} CA expires at {format_time(next_update)}: a CRL "
                                 "made now would already be expired", now=format_time(now),
                                 action="a CRL")
            number = tx.next_crl_number(name, now)
            entries = _entries(tx, name)
            this_update = max(since or now, ca.certificate.not_valid_before_utc)
            der, record = _signed(ca, entries, number, this_update, next_update, linter,
                                  crl_scope(config, tx, name))
            tx.add_crl(record)
            tx.set_meta(_pending_key(name), "0")
            voided = store.meta(presigned_key(name)) or None
            tx.set_meta(presigned_key(name), "")
            tx.record("crl.published", {"authority": name, "number": number,
                                        "this_update": record.this_update,
                                        "next_update": record.next_update,
                                        "entries": record.entries, "sha256": record.sha256,
                                        "extended": until is not None,
                                        "voids_presigned_until": voided})
        outgoing.crl_files(name, der, pem("X509 CRL", der),
                           functools.partial(_newest, store, record))
        outgoing.void_presigned(name)
        made.append(record)
        _log.info("crl", authority=name, number=number, entries=record.entries,
                  next_update=record.next_update)
    if made:
        _write_schedule(config, store, outgoing, now, actor)
    return made


PRESIGNED_STATEMENT = (
    "NONE OF THESE CRLs CAN CARRY A REVOCATION MADE AFTER {made}. They were signed then, "
    "for a trip that must be skipped: each is to be served from its thisUpdate (the date "
    "in its file name) until the next is due. A certificate revoked after {made} stays "
    "valid to every relying party until a stick brings a newer CRL, which voids the rest "
    "of this series.")


def presign_crls(config: Config, store: Store, authorities: dict[str, IssuingCA],
                 outgoing: Outgoing, now: dt.datetime, names: list[str], count: int,
                 linter: CRLLinter | None, actor: str) -> dict[str, list[CRLRecord]]:
    """A series of COUNT future CRLs per CA: the k-th from NOW + k x interval, valid for
    interval + overlap, numbered consecutively above the current one (reserved, so every
    later CRL is numbered above them all), each with the register's entries as they are
    NOW. Recorded with the statement that none can carry a later revocation; written to
    outgoing/crl-presigned/ with that statement. Not the current CRL: the register's
    latest CRL stays what relying parties hold now."""
    made: dict[str, list[CRLRecord]] = {}
    for name in names:
        ca, schedule = authorities[name], generation_settings(config, name)
        end = ca.certificate.not_valid_after_utc
        starts = [now + dt.timedelta(days=schedule.crl_interval_days * k)
                  for k in range(1, count + 1)]
        starts = [start for start in starts if start < end]
        if not starts:
            continue
        with store.transaction(actor, now, signing="CRL") as tx:
            first = tx.reserve_crl_numbers(name, now, len(starts))
            entries, scope = _entries(tx, name), crl_scope(config, tx, name)
            series, files = [], {}
            for number, start in enumerate(starts, start=first):
                ends = min(start + dt.timedelta(days=schedule.crl_days), end)
                der, record = _signed(ca, entries, number, start, ends, linter, scope)
                series.append(record)
                files[presigned_name(name, record.this_update)] = der
            tx.set_meta(presigned_key(name), series[-1].next_update)
            statement = PRESIGNED_STATEMENT.format(made=format_time(now))
            tx.record("crl.presigned", {
                "authority": name, "numbers": [r.number for r in series],
                "this_updates": [r.this_update for r in series],
                "covered_until": series[-1].next_update, "entries": len(entries),
                "sha256": [r.sha256 for r in series], "statement": statement})
        outgoing.presigned_crls(name, files, _notice(series, statement))
        made[name] = series
        _log.warning("pre-signed CRLs", authority=name, count=len(series),
                     covered_until=series[-1].next_update)
    if made:
        _write_schedule(config, store, outgoing, now, actor)
    return made


def _notice(series: list[CRLRecord], statement: str) -> bytes:
    """outgoing/crl-presigned/README.txt: the statement, and when to serve each file."""
    lines = [statement, "", "Serve each file as its CA's CRL (the URL of its CA's crl_url) "
             "from its thisUpdate on; check it first: spoolca verify-publication.", ""]
    lines += [f"{presigned_name(r.authority, r.this_update)}  #{r.number}  serve from "
              f"{r.this_update}  valid until {r.next_update}" for r in series]
    return ("\n".join(lines) + "\n").encode()


def _signed(ca: IssuingCA, entries: list[bytes], number: int, this_update: dt.datetime,
            next_update: dt.datetime, linter: CRLLinter | None, scope: Scope | None
            ) -> tuple[bytes, CRLRecord]:
    """One CRL signed, and its record (the register's, the audit log's)."""
    der = sign_crl(ca, entries, number=number, this_update=this_update,
                   next_update=next_update, linter=linter, scope=scope)
    return der, CRLRecord(ca.name, number, format_time(this_update), format_time(next_update),
                          len(entries), hashlib.sha256(der).hexdigest())


def _newest(store: Store, record: CRLRecord) -> bool:
    """Whether RECORD is still its CA's newest CRL (another process may publish too)."""
    latest = store.latest_crl(record.authority)
    return latest is None or latest.number <= record.number


def _write_schedule(config: Config, store: Store, outgoing: Outgoing, now: dt.datetime,
                    actor: str) -> None:
    """outgoing/crl/next-update.json: when each CRL ends and the return window; the
    window is recorded in the audit log too, so an auditor sees every promise made."""
    statuses = crl_status(config, store, now)
    window = return_window(config, store, now)
    if not statuses or window is None:
        return
    body: dict[str, object] = {s.authority: {
        "number": s.number, "next_update": s.next_update, "next_crl_from": s.refresh_at,
        "covered_until": covered_until(store, s.authority, s.next_update)} for s in statuses}
    body["return_window"] = window.as_dict(now)
    body["return_by"] = window.closes
    body["note"] = ("bring the stick back within return_window (after next_crl_from of the "
                    "first CA and before return_by), so the next CRL reaches relying "
                    "parties before the current one ends")
    with store.transaction(actor, now) as tx:
        tx.record("crl.return_window", {"from": window.opens, "until": window.closes,
                                        "lapses_at": window.lapses,
                                        "authority": window.authority,
                                        "margin_days": window.margin_days,
                                        "presigned": window.presigned})
    outgoing.crl_schedule((json.dumps(body, indent=2, sort_keys=True) + "\n").encode())
