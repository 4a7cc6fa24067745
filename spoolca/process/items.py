"""The values that pass between the stages of a pass: what reading found (ReadJob,
FileRead), a claimed file made ready for a decision (Prepared), an accepted request
waiting for its signature (Plan), what the pre-flight cleared (Cleared), and a pass's
counters (PassSummary).

Plain data in one place, importing nothing that runs: the read-ahead helper process
needs them without the session, the recorder or cryptography's X.509 machinery.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

from spoolca.errors import InternalError
from spoolca.register.records import Status

if TYPE_CHECKING:
    from spoolca.config import Profile
    from spoolca.findings import Finding
    from spoolca.spool.results import Outcome
    from spoolca.spool.tree import Claimed
    from spoolca.x509.csr import Request
    from spoolca.x509.issuer import IssuingCA
    from spoolca.x509.policy import Decision

__all__ = ["Cleared", "FileRead", "PassSummary", "Plan", "Prepared", "ReadJob", "Refused"]


class ReadJob(NamedTuple):
    """One claimed file to read; PARSE is false for a name that is not a request's. Paths
    as text: a pathlib path pickles ten times slower, and 100,000 of them cross."""

    path: str
    signature: str | None
    limit: int
    parse: bool


@dataclass(frozen=True, slots=True)
class FileRead:
    """What reading one claimed file found; plain data, to cross from the helper."""

    data: bytes | None              # None: not read (problem says why)
    problem: str | None = None      # a file.* finding code
    detail: str = ""
    signature: bytes | None = None  # the detached signature's bytes, if one came
    der: bytes | None = None        # the request's DER, once it parsed
    refusal: tuple[str, str] | None = None  # a request that did not: (code, message)
    signature_valid: bool = False


@dataclass(frozen=True, slots=True)
class Prepared:
    """A claimed file after reading and parsing, before any decision."""

    claimed: Claimed | None  # None for a renewal: the request comes from the register
    identity: str
    request: Request | None
    problem: Finding | None
    submission_only: bool  # a file-level problem: recorded per submission, not per request
    file_sha256: str | None = None  # the file's own bytes: links the result to its medium
    data: bytes | None = None       # those bytes, for checking a detached signature
    signature: bytes | None = None  # NAME.asc, if one came beside it
    renewal_name: str = ""          # a renewal's file name (its request's last submission)

    @property
    def file_name(self) -> str:
        return self.claimed.file_name if self.claimed else self.renewal_name

    @property
    def claim(self) -> str | None:
        return self.claimed.claim if self.claimed else None

    @property
    def profile(self) -> str:
        assert self.claimed is not None
        return self.claimed.profile


@dataclass(frozen=True, slots=True)
class Plan:
    """An accepted request waiting for its signature."""

    item: Prepared
    profile: Profile
    decision: Decision
    ca: IssuingCA
    serial: int
    supersedes: str | None = None  # the certificate this one renews
    renews_request: bool = False   # the same CSR again: the request row gets the new serial
    signer: str | None = None      # the authorized signer's fingerprint, if required


@dataclass(slots=True)
class PassSummary:
    """Counters of one pass, for the command line and the daemon's STATUS=."""

    issued: int = 0
    rejected: int = 0
    republished: int = 0
    revoked: int = 0
    outcomes: list[Outcome] = field(default_factory=list)

    def add(self, outcome: Outcome) -> None:
        """Count it and keep it (a pass reports each outcome)."""
        self.outcomes.append(outcome)
        self.count(outcome)

    def fields(self, **more: int) -> dict[str, int]:
        """The counters as log fields (and MORE)."""
        return {"issued": self.issued, "rejected": self.rejected,
                "republished": self.republished, "revoked": self.revoked, **more}

    def count(self, outcome: Outcome) -> None:
        """Count it only (the daemon runs for months: it keeps no list)."""
        if outcome.republished:
            self.republished += 1
        elif outcome.status == Status.ISSUED:
            self.issued += 1
        elif outcome.status == Status.REVOKED:
            self.revoked += 1
        else:
            self.rejected += 1


@dataclass(frozen=True, slots=True)
class Cleared:
    """What one signing operation may use once the pre-flight passed: its time, and its
    CAs with their keys unlocked."""

    now: dt.datetime
    authorities: dict[str, IssuingCA]


@dataclass(frozen=True, slots=True)
class Refused:
    """A request that will not be signed, with every reason (in place of a bare list of
    findings beside a Plan, or a Finding beside a serial)."""

    findings: tuple[Finding, ...]

    def __post_init__(self) -> None:
        if not self.findings:
            raise InternalError("a refusal without a reason")

    @classmethod
    def because(cls, *findings: Finding) -> Refused:
        return cls(tuple(findings))

    @property
    def reasons(self) -> list[Finding]:
        return list(self.findings)
