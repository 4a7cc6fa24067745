"""The register: one SQLite database that owns the schema and every transaction.

WAL with synchronous=FULL: a committed transaction survives power loss. Every state
change happens inside `Store.transaction()`, and the audit entry for it is written in
that same transaction (invariant 5), so the register and its log can never disagree.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spoolca.errors import StoreError
from spoolca.register.chain import GENESIS, entry_hash

__all__ = [
    "CRLRecord",
    "CertificateRecord",
    "RequestRecord",
    "Store",
    "Tx",
    "format_time",
    "parse_time",
]

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE authorities (
    name TEXT PRIMARY KEY,
    parent TEXT,
    cert_der BLOB NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE requests (
    sha256 TEXT PRIMARY KEY,
    profile TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('issued', 'rejected')),
    decided_at TEXT NOT NULL,
    csr_der BLOB,
    findings TEXT NOT NULL DEFAULT '[]',
    serial TEXT
);
CREATE TABLE certificates (
    serial TEXT PRIMARY KEY,
    issuer TEXT NOT NULL REFERENCES authorities(name),
    request_sha256 TEXT NOT NULL,
    profile TEXT NOT NULL,
    subject TEXT NOT NULL,
    not_before TEXT NOT NULL,
    not_after TEXT NOT NULL,
    der BLOB NOT NULL,
    revoked_at TEXT,
    revocation_reason TEXT,
    invalidity_date TEXT,
    superseded_by TEXT,
    crl_entry BLOB  -- its CRL entry's DER, encoded once at revocation
);
-- A CRL is read straight from this covering index; the second finds what to encode.
CREATE INDEX certificates_crl ON certificates (issuer, crl_entry) WHERE revoked_at IS NOT NULL;
CREATE INDEX certificates_unencoded ON certificates (issuer)
    WHERE revoked_at IS NOT NULL AND crl_entry IS NULL;
CREATE INDEX certificates_subject ON certificates (subject);
CREATE INDEX certificates_not_before ON certificates (not_before);
CREATE TABLE submissions (
    id INTEGER PRIMARY KEY,
    request_sha256 TEXT NOT NULL,
    file_name TEXT NOT NULL,
    output_name TEXT NOT NULL,
    profile TEXT NOT NULL,
    received_at TEXT NOT NULL,
    status TEXT NOT NULL,
    findings TEXT NOT NULL DEFAULT '[]',
    file_sha256 TEXT,  -- the submitted file's bytes, to find the stick it came from
    signer TEXT        -- the authorized signer's fingerprint, where one was required
);
CREATE INDEX submissions_output ON submissions (output_name);
CREATE INDEX submissions_file ON submissions (file_sha256);
CREATE TABLE media_files (
    medium TEXT NOT NULL,       -- UUID, else label, else mount path
    file_sha256 TEXT NOT NULL,
    file_name TEXT NOT NULL,
    ingested_at TEXT NOT NULL,
    PRIMARY KEY (medium, file_sha256)
);
CREATE TABLE crls (
    authority TEXT NOT NULL REFERENCES authorities(name),
    number INTEGER NOT NULL,
    this_update TEXT NOT NULL,
    next_update TEXT NOT NULL,
    entries INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    PRIMARY KEY (authority, number)
);
CREATE TABLE checkpoints (
    seq INTEGER PRIMARY KEY,
    hash TEXT NOT NULL,
    body TEXT NOT NULL,       -- the canonical {seq, hash, time} that was signed
    signature TEXT NOT NULL   -- detached, ASCII-armored OpenPGP signature
);
CREATE TABLE audit (
    seq INTEGER PRIMARY KEY,
    time TEXT NOT NULL,
    event TEXT NOT NULL,
    actor TEXT NOT NULL,
    data TEXT NOT NULL,
    prev TEXT NOT NULL,
    hash TEXT NOT NULL
);
"""


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


_CERT_COLUMNS = ("serial, issuer, request_sha256, profile, subject, not_before, not_after, der, "
                 "revoked_at, revocation_reason, invalidity_date, superseded_by")


class Tx:
    """The operations allowed inside one transaction; each state change is audited."""

    def __init__(self, conn: sqlite3.Connection, actor: str, now: dt.datetime) -> None:
        self._conn = conn
        self._actor = actor
        self._now = format_time(now)
        row = conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        self._seq, self._head = (row[0], row[1]) if row else (0, GENESIS)

    @property
    def now(self) -> str:
        """The transaction's time, as recorded in every row and audit entry it writes."""
        return self._now

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """A nested unit: on error, undo just this part (one request) and re-raise."""
        self._conn.execute("SAVEPOINT item")
        seq, head = self._seq, self._head
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK TO item")
            self._conn.execute("RELEASE item")
            self._seq, self._head = seq, head
            raise
        self._conn.execute("RELEASE item")

    def record(self, event: str, data: dict[str, Any]) -> None:
        """Append one audit entry to the hash chain, in this transaction."""
        self._seq += 1
        digest = entry_hash(self._seq, self._now, event, self._actor, data, self._head)
        self._conn.execute(
            "INSERT INTO audit (seq, time, event, actor, data, prev, hash) VALUES (?,?,?,?,?,?,?)",
            (self._seq, self._now, event, self._actor,
             json.dumps(data, sort_keys=True, ensure_ascii=False), self._head, digest),
        )
        self._head = digest

    def set_meta(self, key: str, value: str) -> None:
        self._conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def add_authority(self, name: str, parent: str | None, cert_der: bytes) -> None:
        self._conn.execute("INSERT INTO authorities (name, parent, cert_der, created_at) "
                           "VALUES (?, ?, ?, ?)", (name, parent, cert_der, self._now))

    def find_request(self, sha256: str) -> RequestRecord | None:
        return _request_row(self._conn, sha256)

    def serial_taken(self, serial: str) -> bool:
        return self._conn.execute("SELECT 1 FROM certificates WHERE serial = ?",
                                  (serial,)).fetchone() is not None

    def valid_serial_for_subject(self, issuer: str, subject: str) -> str | None:
        return _valid_serial(self._conn, issuer, subject, self._now)

    def output_owners(self, output_name: str) -> set[str]:
        rows = self._conn.execute("SELECT DISTINCT request_sha256 FROM submissions "
                                  "WHERE output_name = ?", (output_name,))
        return {row[0] for row in rows}

    def add_request(self, sha256: str, profile: str, status: str, csr_der: bytes | None,
                    findings: list[dict[str, str]], serial: str | None) -> None:
        self._conn.execute(
            "INSERT INTO requests (sha256, profile, status, decided_at, csr_der, findings, serial)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (sha256, profile, status, self._now, csr_der, json.dumps(findings), serial),
        )

    def add_certificate(self, record: CertificateRecord) -> None:
        self._conn.execute(
            f"INSERT INTO certificates ({_CERT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (record.serial, record.issuer, record.request_sha256, record.profile, record.subject,
             record.not_before, record.not_after, record.der, None, None, None, None),
        )

    def set_request_serial(self, sha256: str, serial: str) -> None:
        """A renewal: the request's one current certificate is now `serial`."""
        self._conn.execute("UPDATE requests SET serial = ?, decided_at = ? WHERE sha256 = ?",
                           (serial, self._now, sha256))

    def certificate(self, serial: str) -> CertificateRecord | None:
        return _certificate_row(self._conn, serial)

    def revoke(self, serial: str, reason: str, invalidity: str | None, entry: bytes) -> None:
        """Record a revocation at this transaction's time, with its CRL entry's DER."""
        self._conn.execute("UPDATE certificates SET revoked_at = ?, revocation_reason = ?, "
                           "invalidity_date = ?, crl_entry = ? WHERE serial = ?",
                           (self._now, reason, invalidity, entry, serial))

    def unrevoke(self, serial: str) -> None:
        """removeFromCRL: a certificate on hold is valid again."""
        self._conn.execute("UPDATE certificates SET revoked_at = NULL, revocation_reason = "
                           "NULL, invalidity_date = NULL, crl_entry = NULL WHERE serial = ?",
                           (serial,))

    def set_crl_entry(self, serial: str, entry: bytes) -> None:
        self._conn.execute("UPDATE certificates SET crl_entry = ? WHERE serial = ?",
                           (entry, serial))

    def supersede(self, serial: str, by: str) -> None:
        self._conn.execute("UPDATE certificates SET superseded_by = ? WHERE serial = ?",
                           (by, serial))

    def unencoded_revocations(self, issuer: str) -> list[tuple[str, str, str, str | None]]:
        """Revocations recorded without their CRL entry's DER (a migration): to encode."""
        return self._conn.execute(
            "SELECT serial, revoked_at, revocation_reason, invalidity_date FROM certificates "
            "WHERE issuer = ? AND revoked_at IS NOT NULL AND crl_entry IS NULL",
            (issuer,)).fetchall()

    def crl_entries(self, issuer: str) -> list[bytes]:
        """The stored CRL entries of every revoked certificate of one issuer."""
        return [row[0] for row in self._conn.execute(
            "SELECT crl_entry FROM certificates WHERE issuer = ? AND revoked_at IS NOT NULL",
            (issuer,))]

    def next_crl_number(self, authority: str) -> int:
        """Strictly increasing per CA, from the register: never from the clock."""
        row = self._conn.execute("SELECT MAX(number) FROM crls WHERE authority = ?",
                                 (authority,)).fetchone()
        return (row[0] or 0) + 1

    def add_crl(self, record: CRLRecord) -> None:
        self._conn.execute(
            "INSERT INTO crls (authority, number, this_update, next_update, entries, sha256) "
            "VALUES (?, ?, ?, ?, ?, ?)", (record.authority, record.number, record.this_update,
                                          record.next_update, record.entries, record.sha256))

    def add_submission(self, request_sha256: str, file_name: str, output_name: str,
                       profile: str, status: str, findings: list[dict[str, str]],
                       file_sha256: str | None = None, signer: str | None = None) -> None:
        self._conn.execute(
            "INSERT INTO submissions (request_sha256, file_name, output_name, profile, "
            "received_at, status, findings, file_sha256, signer) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (request_sha256, file_name, output_name, profile, self._now, status,
             json.dumps(findings), file_sha256, signer),
        )

    def add_media_file(self, medium: str, file_sha256: str, file_name: str) -> None:
        self._conn.execute("INSERT OR IGNORE INTO media_files VALUES (?, ?, ?, ?)",
                           (medium, file_sha256, file_name, self._now))


def _valid_serial(conn: sqlite3.Connection, issuer: str, subject: str, now: str) -> str | None:
    """A valid (unrevoked, unexpired) certificate's serial for this subject, if any."""
    row = conn.execute(
        "SELECT serial FROM certificates WHERE subject = ? AND issuer = ? "
        "AND revoked_at IS NULL AND not_after > ? LIMIT 1", (subject, issuer, now),
    ).fetchone()
    return row[0] if row else None


def _certificate_row(conn: sqlite3.Connection, serial: str) -> CertificateRecord | None:
    row = conn.execute(f"SELECT {_CERT_COLUMNS} FROM certificates WHERE serial = ?",
                       (serial.upper(),)).fetchone()
    return CertificateRecord(*row) if row else None


def _request_row(conn: sqlite3.Connection, sha256: str) -> RequestRecord | None:
    row = conn.execute("SELECT sha256, profile, status, decided_at, findings, serial "
                       "FROM requests WHERE sha256 = ?", (sha256,)).fetchone()
    if row is None:
        return None
    return RequestRecord(row[0], row[1], row[2], row[3], json.loads(row[4]), row[5])


class Store:
    """The open register. One connection, used from one thread at a time."""

    def __init__(self, path: Path, *, create: bool = False) -> None:
        if not create and not path.exists():
            raise StoreError(f"no register at {path}: run `spoolca init` first, or fix "
                             "[paths] database in the configuration")
        try:
            self._conn = sqlite3.connect(path, isolation_level=None, timeout=30)
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = FULL")
            self._conn.execute("PRAGMA foreign_keys = ON")
            if create:
                self._conn.executescript(_SCHEMA)
                self._conn.execute("INSERT INTO meta VALUES ('schema_version', ?)",
                                   (str(SCHEMA_VERSION),))
            version = self._conn.execute(
                "SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        except sqlite3.Error as exc:
            raise StoreError(f"failed to open the register {path}: {exc}") from None
        if version is None or int(version[0]) != SCHEMA_VERSION:
            raise StoreError(f"the register {path} has schema {version}, expected "
                             f"{SCHEMA_VERSION}")

    def close(self) -> None:
        self._conn.close()

    @contextmanager
    def transaction(self, actor: str, now: dt.datetime) -> Iterator[Tx]:
        """BEGIN IMMEDIATE ... COMMIT: all of it is durable, or none of it happened."""
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise StoreError(f"the register is busy: {exc}") from None
        try:
            yield Tx(self._conn, actor, now)
            self._conn.execute("COMMIT")
        except BaseException as exc:
            with contextlib.suppress(sqlite3.Error):  # a failed COMMIT may have rolled back
                self._conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.OperationalError):
                # Disk full, I/O error, locked: not about any one request. Nothing of the
                # transaction happened; the caller retries it once the fault clears.
                raise StoreError(f"failed to write to the register: {exc}; nothing of this "
                                 "change was recorded, it is retried") from None
            raise

    def meta(self, key: str) -> str | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def authority_der(self, name: str) -> bytes:
        row = self._conn.execute("SELECT cert_der FROM authorities WHERE name = ?",
                                 (name,)).fetchone()
        if row is None:
            raise StoreError(f"the register has no {name} CA: was `spoolca init` completed?")
        return row[0]

    def request(self, sha256: str) -> RequestRecord | None:
        return _request_row(self._conn, sha256)

    def certificate(self, serial: str) -> CertificateRecord | None:
        return _certificate_row(self._conn, serial)

    def latest_crl(self, authority: str) -> CRLRecord | None:
        row = self._conn.execute(
            "SELECT authority, number, this_update, next_update, entries, sha256 FROM crls "
            "WHERE authority = ? ORDER BY number DESC LIMIT 1", (authority,)).fetchone()
        return CRLRecord(*row) if row else None

    def request_der(self, sha256: str) -> bytes | None:
        row = self._conn.execute("SELECT csr_der FROM requests WHERE sha256 = ?",
                                 (sha256,)).fetchone()
        return row[0] if row else None

    def certificates(self) -> list[CertificateRecord]:
        """The whole register in issuance order (openssl's index.txt order)."""
        rows = self._conn.execute(f"SELECT {_CERT_COLUMNS} FROM certificates "
                                  "ORDER BY not_before, rowid")
        return [CertificateRecord(*row) for row in rows]

    def valid_serial_for_subject_now(self, issuer: str, now: dt.datetime
                                     ) -> Callable[[str], str | None]:
        """A read-only unique_subject lookup, for dry runs outside a transaction."""
        return lambda subject: _valid_serial(self._conn, issuer, subject, format_time(now))

    def latest_issuance(self) -> str | None:
        """The latest notBefore recorded, for the clock guard (invariant 8)."""
        row = self._conn.execute("SELECT MAX(not_before) FROM certificates").fetchone()
        return row[0] if row else None

    def submissions_for(self, request_sha256: str) -> list[tuple[str, str]]:
        """(output_name, file_name) of every submission of one request."""
        rows = self._conn.execute("SELECT output_name, file_name FROM submissions "
                                  "WHERE request_sha256 = ? ORDER BY id", (request_sha256,))
        return [(row[0], row[1]) for row in rows]

    def latest_submissions(self) -> dict[str, tuple[str, str, str, str, list[dict[str, str]],
                                                     str]]:
        """Per output name, its latest submission: (request_sha256, file_name, profile,
        status, findings, decided_at). What recovery re-publishes from."""
        rows = self._conn.execute(
            "SELECT s.output_name, s.request_sha256, s.file_name, s.profile, s.status, "
            "s.findings, COALESCE(r.decided_at, s.received_at) FROM submissions s "
            "LEFT JOIN requests r ON r.sha256 = s.request_sha256 ORDER BY s.id")
        return {row[0]: (row[1], row[2], row[3], row[4], json.loads(row[5]), row[6])
                for row in rows}

    def answered(self, file_sha256s: list[str]) -> int:
        """How many of these files (by their bytes) already have a recorded result."""
        marks = ",".join("?" * len(file_sha256s)) or "''"
        row = self._conn.execute(
            f"SELECT COUNT(DISTINCT file_sha256) FROM submissions WHERE file_sha256 IN ({marks})",
            file_sha256s).fetchone()
        return row[0] or 0

    def outputs_from_medium(self, medium: str) -> list[str]:
        """outgoing/ names of the results for the files a medium brought, in order."""
        rows = self._conn.execute(
            "SELECT DISTINCT s.output_name FROM submissions s JOIN media_files m "
            "ON m.file_sha256 = s.file_sha256 WHERE m.medium = ? ORDER BY s.output_name",
            (medium,))
        return [row[0] for row in rows]

    def audit_entries(self, after: int = 0
                      ) -> Iterator[tuple[int, str, str, str, str, str, str]]:
        yield from self._conn.execute(
            "SELECT seq, time, event, actor, data, prev, hash FROM audit WHERE seq > ? "
            "ORDER BY seq", (after,))

    def audit_head(self) -> tuple[int, str]:
        row = self._conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1"
                                 ).fetchone()
        return (row[0], row[1]) if row else (0, GENESIS)

    def latest_checkpoint_seq(self) -> int:
        row = self._conn.execute("SELECT MAX(seq) FROM checkpoints").fetchone()
        return row[0] or 0

    def add_checkpoint(self, seq: int, digest: str, body: str, signature: str) -> None:
        """Checkpoints sign the chain; they are not entries of it (that would never end)."""
        self._conn.execute("INSERT OR IGNORE INTO checkpoints (seq, hash, body, signature) "
                           "VALUES (?, ?, ?, ?)", (seq, digest, body, signature))

    def checkpoints(self, after: int = 0) -> list[tuple[int, str, str]]:
        return self._conn.execute("SELECT seq, body, signature FROM checkpoints WHERE seq > ? "
                                  "ORDER BY seq", (after,)).fetchall()
