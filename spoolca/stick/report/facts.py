"""The report's facts, gathered once from the register and the outgoing spool.

Everything here is plain data (report.json is exactly this dictionary), so the page, the
terminal and the tests all read the same facts.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from spoolca.config import Config, KeyStore
from spoolca.register.generations import live_names
from spoolca.register.records import format_time, parse_time
from spoolca.register.returnwindow import (
    ReturnWindow,
    lapse_before,
    next_trip,
    presigned_key,
    return_window,
)
from spoolca.register.store import Store
from spoolca.register.views import crl_status
from spoolca.stick.privatekeys import PRIVATE_KEY

__all__ = ["FORMAT", "Trip", "gather"]

FORMAT = "spoolca-report/1"
_LEAVES_LISTED = 200  # per window: the page stays small; the totals say how many in all


@dataclass(frozen=True, slots=True)
class Trip:
    """The stick this report goes out on: its identity and the results it carries."""

    medium: dict[str, str]
    names: list[str] = field(default_factory=list)


def gather(config: Config, store: Store, now: dt.datetime, trip: Trip | None = None,
           appliance_key: str = "") -> dict[str, Any]:
    """Every fact of the report, as JSON-ready data."""
    crls = _crls(config, store, now)
    authorities = _authorities(config, store, now)
    window, trip_planned = return_window(config, store, now), next_trip(config, store, now)
    facts: dict[str, Any] = {
        "format": FORMAT,
        "made_at": format_time(now),
        "return_by": _return_by(window, now),
        "next_trip": trip_planned,
        "lapse": lapse_before(window, trip_planned),
        "authorities": authorities,
        "crls": crls,
        "expiring": _expiring(config, store, now),
        "ssh": _ssh(config, store, now),
        "totals": _totals(store),
        "audit": _audit(store, appliance_key),
        "custody": _custody(config, store),
        "clock": _clock(store, now),
    }
    if trip is not None:
        facts["trip"] = _trip(config, store, trip, now)
    facts["warnings"] = _warnings(facts)
    return facts


def _clock(store: Store, now: dt.datetime) -> dict[str, Any]:
    """The clock guard's view (register.clock): why nothing would be signed now, if so."""
    problem = store.clock.problem(now, store.clock_floor())
    return {"floor": store.clock_floor(), "trusted": problem is None,
            "problem": problem.sentence("certificate or CRL") if problem else None}


def _custody(config: Config, store: Store) -> dict[str, Any]:
    """Where each CA key is (an encrypted file, or a token and label) and the shares."""
    keys = {name: (f"in the PKCS#11 token {config.pkcs11_token!r} as {a.key_label!r}"
                   if a.key_store == KeyStore.PKCS11 else "an encrypted key file on the appliance")
            for name, a in config.authorities.items()}  # no host path leaves the air gap
    stores = {a.key_store for a in config.authorities.values()}
    return {"key_store": "files" if stores == {"file"} else "pkcs11" if stores == {"pkcs11"}
            else "mixed", "keys": keys, "encrypted_at_rest": True,
            "shares": store.meta("shares")}


def _days(until: str, now: dt.datetime) -> int:
    return (parse_time(until) - now) // dt.timedelta(days=1)


def _authorities(config: Config, store: Store, now: dt.datetime) -> list[dict[str, Any]]:
    found = []
    for name in live_names(store, now):  # an earlier generation too, while its leaves live
        try:
            cert = x509.load_der_x509_certificate(store.authority_der(name))
        except (KeyError, ValueError, LookupError):
            continue
        not_after = format_time(cert.not_valid_after_utc)
        days = _days(not_after, now)
        found.append({"name": name, "subject": cert.subject.rfc4514_string(),
                      "sha256": cert.fingerprint(hashes.SHA256()).hex(":").upper(),
                      "not_after": not_after, "days_left": days,
                      "warning": days <= config.report.ca_warning_days})
    return found


def _crls(config: Config, store: Store, now: dt.datetime) -> list[dict[str, Any]]:
    found = []
    refresh = {s.authority: s.refresh_at for s in crl_status(config, store, now)}
    for name in live_names(store, now):
        latest = store.latest_crl(name)
        if latest is None:
            continue
        days = _days(latest.next_update, now)
        found.append({"authority": name, "number": latest.number,
                      "this_update": latest.this_update, "next_update": latest.next_update,
                      "next_crl_from": refresh.get(name, latest.next_update),
                      "days_left": days, "entries": latest.entries,
                      "presigned_until": store.meta(presigned_key(name)) or None,
                      "warning": days <= config.report.crl_warning_days})
    return found


def _return_by(window: ReturnWindow | None, now: dt.datetime) -> dict[str, Any] | None:
    """The return window (register.returnwindow), with what breaks if it is missed."""
    if window is None:
        return None
    covered = "its last pre-signed CRL" if window.presigned else f"its CRL #{window.number}"
    return {**window.as_dict(now), "at": window.closes,
            "what_breaks": f"the {window.authority} CA's CRLs end at {window.lapses} "
                           f"({covered}): clients that check CRLs then reject every "
                           "certificate it issued, or no longer learn of revocations, until "
                           "a newer CRL reaches them. The window closes "
                           f"{window.margin_days} day(s) before, to leave time to publish "
                           "the CRLs the stick carries."}


def _ssh(config: Config, store: Store, now: dt.datetime) -> dict[str, Any] | None:
    """The SSH CAs' certificates: counts, and those ending within the longest expiry
    window (None when SSH is off)."""
    if config.ssh is None:
        return None
    moment = format_time(now)
    window = max(config.report.expiry_warning_days)
    ending = store.ssh_ending_between(moment, format_time(now + dt.timedelta(days=window)),
                                      _LEAVES_LISTED)
    return {"counts": {ca: store.ssh_counts(ca, moment) for ca in ("user", "host")},
            "within_days": window,
            "ending": [{**c, "principals": json.loads(c["principals"]),
                        "days_left": _days(c["valid_before"], now),
                        "renew": f"a new request with the same key in {c['profile']}/"}
                       for c in ending]}


def _expiring(config: Config, store: Store, now: dt.datetime) -> list[dict[str, Any]]:
    """Each window's certificates (from the end of the previous window), by index: the
    report stays cheap on a register of a million certificates."""
    windows, start = [], format_time(now)
    for days in config.report.expiry_warning_days:
        end = format_time(now + dt.timedelta(days=days))
        chosen, count = store.ending_between(start, end, _LEAVES_LISTED)
        windows.append({"within_days": days, "count": count, "certificates": [
            {"serial": r.serial, "subject": r.subject, "profile": r.profile,
             "not_after": r.not_after, "days_left": _days(r.not_after, now),
             "renew": f"spoolca renew {r.serial}"} for r in chosen]})
        start = end
    return windows


_COUNTED = {"issued": "request.issued", "rejected": "request.rejected",
            "revoked": "certificate.revoked", "republished": "request.republished"}


def _totals(store: Store) -> dict[str, Any]:
    overall = store.event_counts()
    previous = store.latest_events("media.exported", 1)
    since_seq = previous[0].seq if previous else 0
    recent = store.event_counts(since_seq) if previous else overall
    return {"overall": {k: overall.get(e, 0) for k, e in _COUNTED.items()},
            "since_previous_trip": {k: recent.get(e, 0) for k, e in _COUNTED.items()},
            "previous_trip_at": previous[0].time if previous else None}


def _audit(store: Store, appliance_key: str) -> dict[str, Any]:
    seq, digest = store.audit_head()
    return {"seq": seq, "hash": digest, "appliance_key": appliance_key, "verify": [
        "gpg --import audit/appliance-key.asc   # compare its fingerprint with the "
        "ceremony record",
        "gpg --verify SHA256SUMS.asc SHA256SUMS && sha256sum -c SHA256SUMS",
        f"spoolca audit verify --dir audit --fingerprint {appliance_key or 'FINGERPRINT'}"]}


def _trip(config: Config, store: Store, trip: Trip, now: dt.datetime) -> dict[str, Any]:
    """The rows of this trip, each with the requester's own file name on the stick, and
    counts made from those rows (so the two can never disagree)."""
    outgoing = config.spool_dir / "outgoing"
    brought = _brought(store, trip.medium)
    before = _sent_before(store, trip.medium)
    files = store.files_of_outputs(trip.names)
    requests = [_outcome(outgoing / name, name, next(
        (brought[d] for d in sorted(files.get(name, ())) if d in brought), None))
        for name in trip.names]
    for request in requests:
        if request.get("not_after"):
            request["days_left"] = _days(request["not_after"], now)
        request["resent"] = request["name"] in before
    skipped, skipped_total = _skipped(store, trip.medium)
    keys = [s for s in skipped if s["reason"].startswith(PRIVATE_KEY)]
    shown = {k: v for k, v in trip.medium.items() if k != "path"}  # a host path stays home
    return {"medium": shown, "requests": requests, "skipped": skipped,
            "skipped_total": skipped_total, "private_keys": [s["file"] for s in keys],
            "counts": _counts(requests, skipped_total)}


def _counts(requests: list[dict[str, Any]], skipped_total: int) -> dict[str, int]:
    """Every row counted once, by kind and outcome; `left_on_stick` for files not taken."""
    counts = {"requests": len(requests), "issued": 0, "rejected": 0, "revoked": 0,
              "revocations_refused": 0, "new": 0, "resent": 0,
              "left_on_stick": skipped_total}
    for row in requests:
        revocation = row["kind"] == "revocation request"
        if row["status"] == "issued":
            counts["issued"] += 1
        elif row["status"] == "revoked":
            counts["revoked"] += 1
        elif revocation:
            counts["revocations_refused"] += 1
        else:
            counts["rejected"] += 1
        counts["resent" if row["resent"] else "new"] += 1
    return counts


def _outcome(folder: Path, name: str, file: str | None) -> dict[str, Any]:
    try:
        body = json.loads((folder / "result.json").read_text())
    except (OSError, ValueError):
        return {"name": name, "status": "unknown", "kind": "request", "file": None}
    revocation = body.get("profile") == "revoke"
    return {"name": name, "status": body.get("status", "unknown"),
            "kind": "revocation request" if revocation else "certificate request",
            "file": file,
            "decided_at": body.get("decided_at"),
            "profile": None if revocation else body.get("profile"),
            "serial": body.get("serial"), "not_after": body.get("not_after"),
            "reasons": [{"code": r.get("code"), "message": r.get("message")}
                        for r in body.get("reasons", [])]}


def _same_stick(seen: dict[str, str], medium: dict[str, str]) -> bool:
    """An audit entry's stick is this one: by its secret, else its UUID, else its path."""
    key = medium.get("key", "")
    if seen.get("stick") and key.startswith("stick:"):
        return key == f"stick:{seen['stick']}"
    if medium.get("uuid"):
        return seen.get("uuid") == medium.get("uuid")
    return seen.get("path") == medium.get("path")


def _brought(store: Store, medium: dict[str, str]) -> dict[str, str]:
    """Each request this stick brought, by its SHA-256: the file name as its owner wrote
    it on the stick (SERVER/WEB01.CSR), not the name it was answered under."""
    names: dict[str, str] = {}
    for row in reversed(store.latest_events("media.ingested", 200)):
        data = json.loads(row.data)
        if _same_stick(data.get("medium", {}), medium):
            names.update({str(f["sha256"]): str(f["file"]) for f in data.get("files", [])})
    return names


def _sent_before(store: Store, medium: dict[str, str]) -> set[str]:
    """Result names an earlier export already carried to this stick: re-sent, not new."""
    sent: set[str] = set()
    for row in store.latest_events("media.exported", 200):
        data = json.loads(row.data)
        if _same_stick(data.get("medium", {}), medium):
            sent.update(data.get("results", []))
    return sent


def _skipped(store: Store, medium: dict[str, str]) -> tuple[list[dict[str, str]], int]:
    """What the latest ingest of this same stick left on it, and why."""
    for row in store.latest_events("media.ingested"):
        data = json.loads(row.data)
        if _same_stick(data.get("medium", {}), medium):
            return list(data.get("skipped", [])), int(data.get("skipped_total", 0))
    return [], 0


def _warnings(facts: dict[str, Any]) -> list[str]:
    warnings = [f"signing is refused: {facts['clock']['problem']}"] \
        if facts["clock"]["problem"] else []
    warnings += [facts["lapse"]] if facts["lapse"] else []
    warnings += [f"the {c['authority']} CA's CRLs are pre-signed until {c['presigned_until']}: "
                 "none of them can carry a revocation made after they were signed; bring a "
                 "stick back as soon as a certificate must be revoked"
                 for c in facts["crls"] if c.get("presigned_until")]
    warnings += [f"a private key was found on the stick ({name}): it was not taken; its "
                 "owner must delete it from the stick and treat the key as exposed (make "
                 "a new key and CSR)" for name in facts.get("trip", {}).get("private_keys", [])]
    warnings += [f"the {c['authority']} CA's CRL ends in {c['days_left']} day(s) "
                f"({c['next_update']}): the stick must come back before then"
                for c in facts["crls"] if c["warning"]]
    warnings += [f"the {a['name']} CA certificate ends in {a['days_left']} day(s) "
                 f"({a['not_after']}): plan its renewal" for a in facts["authorities"]
                 if a["warning"]]
    first = facts["expiring"][0] if facts["expiring"] else None
    if first and first["count"]:
        warnings.append(f"{first['count']} certificate(s) end within {first['within_days']} "
                        "days: renew them (spoolca renew SERIAL, or a new CSR)")
    return warnings
