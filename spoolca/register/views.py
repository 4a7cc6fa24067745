"""Views of the certificate register: `list`, `show`, and OpenSSL's index.txt.

`export-index` writes exactly what `openssl ca` keeps in index.txt (tab-separated:
status, expiry, revocation, serial, "unknown", one-line subject), so existing scripts
and auditors' habits keep working; a test compares it with `openssl ca -valid`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from spoolca.config import Config
from spoolca.register.generations import live_names, settings
from spoolca.register.store import CertificateRecord, Store, format_time, parse_time

if TYPE_CHECKING:  # cryptography only for `show`: `list` and `status` start faster
    from cryptography import x509

__all__ = ["CRLStatus", "crl_status", "index_line", "is_ssh_name", "normalize_serial",
           "parse_ssh_name", "record_as_dict", "select", "show_text", "ssh_name", "ssh_state"]

_STATUS_LETTER = {"valid": "V", "revoked": "R", "expired": "E"}
_OPENSSL_REASON = {"cACompromise": "CACompromise"}  # apps/ca.c crl_reasons spells it so


def ssh_name(ca: str, serial: int) -> str:
    """How result.json, the register's submissions and the commands name an SSH
    certificate (X.509 serials are bare hex): ssh:CA:SERIAL, the serial in decimal as
    ssh-keygen -L prints it."""
    return f"ssh:{ca}:{serial}"


def is_ssh_name(text: str | None) -> bool:
    return bool(text) and str(text).startswith("ssh:")


def parse_ssh_name(text: str) -> tuple[str, str]:
    """(CA, serial or key ID) of ssh:CA:WHICH; ValueError if TEXT is not one."""
    prefix, ca, which = [*text.split(":", 2), "", ""][:3]
    if prefix != "ssh" or ca not in ("user", "host") or not which or len(which) > 256:
        raise ValueError(f"{text[:80]!r}: an SSH certificate is named ssh:user:SERIAL or "
                         "ssh:host:SERIAL (or a key ID in place of the serial)")
    return ca, which


def ssh_state(cert: dict[str, Any], moment: str) -> str:
    """An SSH certificate's status at MOMENT: valid, expired or revoked."""
    return "revoked" if cert["revoked_at"] else \
        "expired" if cert["valid_before"] < moment else "valid"


def normalize_serial(text: str) -> str:
    """Accept `0a:1b`, `0x0A1B` or `A1B`; return the register's form (`0A1B`)."""
    cleaned = text.strip().removeprefix("0x").removeprefix("0X").replace(":", "").upper()
    if not cleaned or any(c not in "0123456789ABCDEF" for c in cleaned):
        raise ValueError(f"{text!r} is not a hexadecimal serial number")
    cleaned = cleaned.lstrip("0") or "0"
    return cleaned if len(cleaned) % 2 == 0 else "0" + cleaned


def _asn1_time(moment: dt.datetime) -> str:
    """RFC 5280 4.1.2.5: UTCTime before 2050, GeneralizedTime from 2050, as OpenSSL prints."""
    return moment.strftime("%y%m%d%H%M%SZ") if moment.year < 2050 \
        else moment.strftime("%Y%m%d%H%M%SZ")


def index_line(record: CertificateRecord, now: dt.datetime, *, updatedb: bool = True) -> str:
    """One index.txt line, byte for byte as `openssl ca` writes it: after `-updatedb`
    (expired entries E), or with `updatedb=False` as it leaves them until then (V)."""
    status = _STATUS_LETTER[record.status(now)]
    if status == "E" and not updatedb:
        status = "V"
    expiry = _asn1_time(parse_time(record.not_after))
    serial = record.serial.partition("@")[0]  # an imported root's 1000@root: see importing
    return (f"{status}\t{expiry}\t{_revocation_field(record)}\t{serial}\tunknown\t"
            f"{record.subject}\n")


def _revocation_field(record: CertificateRecord) -> str:
    """`date[,reason]` as apps/ca.c make_revocation_str writes it: a compromise with a
    time is `keyTime,TIME` or `CAkeyTime,TIME`; no reason given, the date alone."""
    if not record.revoked_at:
        return ""
    field = parse_time(record.revoked_at).strftime("%y%m%d%H%M%SZ")
    reason = record.revocation_reason
    if reason in ("keyCompromise", "cACompromise") and record.invalidity_date:
        kind = "keyTime" if reason == "keyCompromise" else "CAkeyTime"
        return f"{field},{kind},{parse_time(record.invalidity_date):%Y%m%d%H%M%SZ}"
    return f"{field},{_OPENSSL_REASON.get(reason, reason)}" if reason else field


def select(records: list[CertificateRecord], now: dt.datetime, *, status: str | None = None,
           expiring_days: int | None = None) -> list[CertificateRecord]:
    """Filter the register: by status, and/or valid certificates expiring within N days."""
    chosen = [r for r in records if status is None or r.status(now) == status]
    if expiring_days is not None:
        horizon = format_time(now + dt.timedelta(days=expiring_days))
        chosen = [r for r in chosen if r.status(now) == "valid" and r.not_after <= horizon]
    return chosen


def record_as_dict(record: CertificateRecord, now: dt.datetime) -> dict[str, Any]:
    return {
        "serial": record.serial,
        "status": record.status(now),
        "subject": record.subject,
        "issuer": record.issuer,
        "profile": record.profile,
        "not_before": record.not_before,
        "not_after": record.not_after,
        "request_sha256": record.request_sha256,
        "revoked_at": record.revoked_at,
        "revocation_reason": record.revocation_reason,
        "invalidity_date": record.invalidity_date,
        "superseded_by": record.superseded_by,
    }


def _names(cert: x509.Certificate) -> list[str]:
    from cryptography import x509

    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return [f"{type(n).__name__.removesuffix('Name')}:{n.value}" for n in san]


def show_text(record: CertificateRecord, now: dt.datetime) -> str:
    """One certificate for a person: what it is, for whom, until when, and its state."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    from spoolca.keys.algorithms import describe_key

    if not record.der:  # a catch-up knew it from the audit log alone
        return "\n".join([
            f"Serial:          {record.serial}", f"Status:          {record.status(now)}",
            f"Subject:         {record.subject}", f"Issued by:       {record.issuer} CA",
            f"Valid:           {record.not_before} to {record.not_after}",
            f"Revoked:         {record.revoked_at or 'no'}",
            "Certificate:     not held here (caught up from the audit log after a "
            "restore; its requester has it)"])
    cert = x509.load_der_x509_certificate(record.der)
    lines = [
        f"Serial:          {record.serial}",
        f"Status:          {record.status(now)}",
        f"Subject:         {record.subject}",
        f"Names:           {', '.join(_names(cert)) or '-'}",
        f"Issued by:       {record.issuer} CA ({cert.issuer.rfc4514_string()})",
        f"Profile:         {record.profile}",
        f"Valid:           {record.not_before} to {record.not_after}",
        f"Key:             {describe_key(cert.public_key())}",  # type: ignore[arg-type]
        f"SHA-256:         {cert.fingerprint(hashes.SHA256()).hex()}",
        f"Request SHA-256: {record.request_sha256}",
    ]
    if record.revoked_at:
        reason = f" ({record.revocation_reason})" if record.revocation_reason else ""
        lines.append(f"Revoked:         {record.revoked_at}{reason}")
        if record.invalidity_date:
            lines.append(f"Invalid since:   {record.invalidity_date}")
    if record.superseded_by:
        lines.append(f"Superseded by:   {record.superseded_by} (renewed)")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True, slots=True)
class CRLStatus:
    """When a CA's CRL ends and when the next one is due, for STATUS= and `list`."""

    authority: str
    number: int
    next_update: str
    refresh_at: str


def crl_status(config: Config, store: Store, now: dt.datetime) -> list[CRLStatus]:
    """Each live CA's latest CRL at NOW (the caller's time: the register reads no clock)."""
    statuses = []
    for name in live_names(store, now):
        latest = store.latest_crl(name)
        if latest is not None:
            refresh = parse_time(latest.next_update) - dt.timedelta(
                days=settings(config, name).crl_refresh_days)
            statuses.append(CRLStatus(name, latest.number, latest.next_update,
                                      format_time(refresh)))
    return statuses
