"""The register's records: frozen rows, the statuses a result can have, and its time format.

The store returns these, never bare tuples, so a caller names what it reads.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass
from typing import NamedTuple

__all__ = [
    "AuditRow",
    "CRLRecord",
    "CertificateRecord",
    "CheckpointRow",
    "RequestRecord",
    "Status",
    "SubmissionRecord",
    "format_time",
    "parse_time",
]


class Status(enum.StrEnum):
    """What became of a submission; the values are what result.json and the register say."""

    ISSUED = "issued"
    REJECTED = "rejected"
    REVOKED = "revoked"  # a revocation request that was carried out
    PENDING = "pending"


def format_time(moment: dt.datetime) -> str:
    """UTC, second precision, sortable as text: 2026-11-23T12:00:00Z."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> dt.datetime:
    """The inverse of format_time (fromisoformat: 30 times faster than strptime, which
    matters for a CRL of 100,000 entries)."""
    return dt.datetime.fromisoformat(text)


@dataclass(frozen=True, slots=True)
class CertificateRecord:
    """One row of the certificate register."""

    serial: str
    issuer: str
    request_sha256: str
    profile: str
    subject: str
    not_before: str
    not_after: str
    der: bytes
    revoked_at: str | None
    revocation_reason: str | None
    invalidity_date: str | None = None
    superseded_by: str | None = None

    def status(self, now: dt.datetime) -> str:
        """valid, revoked or expired, as `list --status` names them."""
        if self.revoked_at:
            return "revoked"
        return "expired" if self.not_after <= format_time(now) else "valid"


@dataclass(frozen=True, slots=True)
class CRLRecord:
    """The latest CRL of one CA, as the register remembers it."""

    authority: str
    number: int
    this_update: str
    next_update: str
    entries: int
    sha256: str


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """The terminal result of one request identity (CSR DER SHA-256)."""

    sha256: str
    profile: str
    status: str
    decided_at: str
    findings: list[dict[str, str]]
    serial: str | None




@dataclass(frozen=True, slots=True)
class SubmissionRecord:
    """One submitted file and the result published for it (what recovery rebuilds)."""

    output_name: str
    request_sha256: str
    file_name: str
    profile: str
    status: Status
    findings: list[dict[str, str]]
    decided_at: str
    serial: str | None  # the certificate issued, or the one a revocation request named
    received_at: str = ""  # when this file came: later than decided_at for an earlier answer
    again: bool = False  # an earlier answer published again (its own submission, not a decision)


class AuditRow(NamedTuple):
    """One audit entry as stored (a tuple too: a million are read in a verify run)."""

    seq: int
    time: str
    event: str
    actor: str
    data: str  # canonical JSON
    prev: str
    hash: str


class CheckpointRow(NamedTuple):
    """A signed checkpoint: the canonical body that was signed, and its signature."""

    seq: int
    body: str
    signature: str
