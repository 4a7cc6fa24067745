"""OpenSSL's CA database, index.txt: read for `import-openssl`/`import-easyrsa`.

One line per certificate, six tab-separated fields (apps/lib/apps.c, `openssl ca`):
status (V valid, R revoked, E expired), expiry (UTCTime, or GeneralizedTime from 2050),
revocation (empty, or `date[,reason]`, where the reason may be `keyTime,TIME`,
`CAkeyTime,TIME` or `holdInstruction,OID`), serial (upper-case hex), the file name (always
`unknown`), and the subject in OpenSSL's one-line form. Parsed strictly and in linear
time: a line that is not six fields, a time that is not a time, a serial that is not hex
is an error naming its line number.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

__all__ = ["IndexEntry", "IndexFileError", "parse_index", "parse_time"]

# OpenSSL's own reason names (apps/ca.c crl_reasons), as the index writes them.
_REASONS = {"unspecified", "keyCompromise", "CACompromise", "affiliationChanged",
            "superseded", "cessationOfOperation", "certificateHold", "removeFromCRL"}
# The names spoolca's register uses (RFC 5280's, as `openssl ca -crl_reason` takes them).
_SPOOLCA_REASON = {"CACompromise": "cACompromise"}
_SERIAL = re.compile(r"[0-9A-F]+")
_UTC = re.compile(r"[0-9]{12}Z")
_GENERALIZED = re.compile(r"[0-9]{14}Z")


class IndexFileError(ValueError):
    """index.txt cannot be read: the message names the line."""


@dataclass(frozen=True, slots=True)
class IndexEntry:
    """One line of index.txt."""

    line_number: int
    status: str                # V, R or E
    expiry: dt.datetime
    serial: str                # as written: upper-case hex, whole octets
    subject: str               # OpenSSL's one-line form, verbatim
    revoked_at: dt.datetime | None = None
    reason: str | None = None  # RFC 5280 name; None: revoked with no reason given
    invalidity: dt.datetime | None = None  # keyTime / CAkeyTime


def parse_time(text: str) -> dt.datetime:
    """UTCTime (YYMMDDHHMMSSZ, 1950-2049) or GeneralizedTime (YYYYMMDDHHMMSSZ), in UTC."""
    if _UTC.fullmatch(text):
        year = int(text[:2])
        moment = dt.datetime.strptime(f"{1900 + year if year >= 50 else 2000 + year}"
                                      f"{text[2:12]}", "%Y%m%d%H%M%S")
    elif _GENERALIZED.fullmatch(text):
        moment = dt.datetime.strptime(text[:14], "%Y%m%d%H%M%S")
    else:
        raise ValueError(f"{text!r} is not an ASN.1 time")
    return moment.replace(tzinfo=dt.UTC)


def parse_index(data: bytes) -> list[IndexEntry]:
    """Every line of an index.txt; IndexFileError at the first that is not one."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise IndexFileError(f"index.txt is not UTF-8 text (byte {exc.start})") from None
    if text and not text.endswith("\n"):
        raise IndexFileError("index.txt does not end with a newline: was it cut short?")
    return [_entry(number, line) for number, line in enumerate(text.splitlines(), 1)]


def _entry(number: int, line: str) -> IndexEntry:
    fields = line.split("\t")
    where = f"index.txt line {number}"
    if len(fields) != 6:
        raise IndexFileError(f"{where}: {len(fields)} tab-separated fields, not 6")
    status, expiry, revocation, serial, _file, subject = fields
    if status not in ("V", "R", "E"):
        raise IndexFileError(f"{where}: status {status!r} is not V, R or E")
    if not _SERIAL.fullmatch(serial):
        raise IndexFileError(f"{where}: serial {serial!r} is not upper-case hexadecimal")
    if not subject.startswith("/"):
        raise IndexFileError(f"{where}: the subject {subject[:60]!r} is not OpenSSL's /A=B form")
    try:
        expires = parse_time(expiry)
        revoked_at, reason, invalidity = _revocation(revocation) if revocation else \
            (None, None, None)
    except ValueError as exc:
        raise IndexFileError(f"{where}: {exc}") from None
    if (status == "R") != (revoked_at is not None):
        raise IndexFileError(f"{where}: status {status} with revocation field {revocation!r}")
    return IndexEntry(number, status, expires, serial, subject, revoked_at, reason,
                      invalidity)


def _revocation(field: str) -> tuple[dt.datetime, str | None, dt.datetime | None]:
    """`date`, `date,reason`, `date,keyTime,TIME`, `date,CAkeyTime,TIME`,
    `date,holdInstruction,OID`."""
    parts = field.split(",")
    revoked_at = parse_time(parts[0])
    if len(parts) == 1:
        return revoked_at, None, None
    kind = parts[1]
    if len(parts) == 3 and kind in ("keyTime", "CAkeyTime"):
        reason = "keyCompromise" if kind == "keyTime" else "cACompromise"
        return revoked_at, reason, parse_time(parts[2])
    if len(parts) == 3 and kind == "holdInstruction":
        return revoked_at, "certificateHold", None
    if len(parts) == 2 and kind in _REASONS:
        return revoked_at, _SPOOLCA_REASON.get(kind, kind), None
    raise ValueError(f"revocation {field!r} is not one OpenSSL writes")
