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
from pathlib import Path
from typing import Any

from spoolca.errors import StoreError
from spoolca.register.chain import GENESIS
from spoolca.register.records import (
    AuditRow,
    CertificateRecord,
    CheckpointRow,
    CRLRecord,
    RequestRecord,
    Status,
    SubmissionRecord,
    format_time,
    parse_time,
)
from spoolca.register.tx import (
    CERT_COLUMNS,
    Tx,
    certificate_row,
    insert_checkpoint,
    request_row,
    valid_serial,
)

__all__ = [
    "CRLRecord",
    "CertificateRecord",
    "RequestRecord",
    "Status",
    "Store",
    "SubmissionRecord",
    "Tx",
    "format_time",
    "parse_time",
]

SCHEMA_VERSION = 3

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
CREATE INDEX certificates_revoked_at ON certificates (revoked_at) WHERE revoked_at IS NOT NULL;
-- What ends soon (`list --expiring`, the stick report) without reading the register.
CREATE INDEX certificates_valid_not_after ON certificates (not_after) WHERE revoked_at IS NULL;
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
    signer TEXT,       -- the authorized signer's fingerprint, where one was required
    claim TEXT,        -- the work/CLAIM/ round it was decided in: recovery finishes, not redoes
    serial TEXT        -- the certificate a revocation request named
);
CREATE INDEX submissions_claim ON submissions (claim) WHERE claim IS NOT NULL;
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
CREATE INDEX crls_this_update ON crls (this_update);
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
# From schema 1 (the first release): claim ids and the serial a revocation request named.
_MIGRATIONS = {
    1: """
ALTER TABLE submissions ADD COLUMN claim TEXT;
ALTER TABLE submissions ADD COLUMN serial TEXT;
CREATE INDEX submissions_claim ON submissions (claim) WHERE claim IS NOT NULL;
CREATE INDEX certificates_revoked_at ON certificates (revoked_at) WHERE revoked_at IS NOT NULL;
CREATE INDEX crls_this_update ON crls (this_update);
UPDATE meta SET value = '2' WHERE key = 'schema_version';
""",
    # From schema 2: what ends soon, found by index (a register of a million certificates).
    2: """
CREATE INDEX certificates_valid_not_after ON certificates (not_after) WHERE revoked_at IS NULL;
UPDATE meta SET value = '3' WHERE key = 'schema_version';
""",
}


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
            # Each request is a savepoint (one request's failure undoes only its rows), and
            # SQLite copies every page a savepoint changes to a statement journal: in a
            # temporary file by default, some 30 write() calls per issued certificate.
            self._conn.execute("PRAGMA temp_store = MEMORY")
            # A register of 100,000 certificates has 30 MiB of indexes, and each issue
            # touches a random page of several: SQLite's default 2 MiB cache missed.
            self._conn.execute("PRAGMA cache_size = -65536")  # KiB: 64 MiB at most
            if create:
                self._conn.executescript(_SCHEMA)
                self._conn.execute("INSERT INTO meta VALUES ('schema_version', ?)",
                                   (str(SCHEMA_VERSION),))
            version = self._migrate()
        except sqlite3.Error as exc:
            raise StoreError(f"failed to open the register {path}: {exc}") from None
        if version != SCHEMA_VERSION:
            raise StoreError(f"the register {path} has schema {version}, expected "
                             f"{SCHEMA_VERSION}")

    def _migrate(self) -> int | None:
        """Bring an older register up to this schema, one step per transaction."""
        while True:
            row = self._conn.execute(
                "SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            version = int(row[0]) if row else None
            if version not in _MIGRATIONS:
                return version
            self._conn.executescript(f"BEGIN IMMEDIATE;{_MIGRATIONS[version]}COMMIT;")

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
        return request_row(self._conn, sha256)

    def certificate(self, serial: str) -> CertificateRecord | None:
        return certificate_row(self._conn, serial)

    def authority_names(self) -> list[str]:
        """Every CA the register knows: root, intermediate, and any later generations."""
        return [row[0] for row in self._conn.execute("SELECT name FROM authorities "
                                                     "ORDER BY rowid")]

    def last_not_after(self, issuer: str) -> str | None:
        """When the last certificate this CA issued ends (its CRL is needed until then)."""
        return self._conn.execute("SELECT MAX(not_after) FROM certificates WHERE issuer = ?",
                                  (issuer,)).fetchone()[0]

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
        return list(self.certificate_summaries(with_der=True))

    def certificate_summaries(self, *, with_der: bool = False) -> Iterator[CertificateRecord]:
        """The register in the order it was recorded (issuance, or an imported index.txt's
        own order, so export-index gives its lines back as they were), one row at a time;
        without each certificate's DER unless asked (`list` and `export-index` of a
        million certificates read 60 MB of text instead of a gigabyte of certificates)."""
        columns = CERT_COLUMNS if with_der else CERT_COLUMNS.replace(" der,", " X'' AS der,")
        rows = self._conn.execute(f"SELECT {columns} FROM certificates "
                                  "ORDER BY rowid")
        return (CertificateRecord(*row) for row in rows)

    def ending_between(self, start: str, end: str, limit: int | None = None
                       ) -> tuple[list[CertificateRecord], int]:
        """Unrevoked certificates whose notAfter is in (start, end], soonest first (at
        most LIMIT of them), and how many there are: read by index, not by scanning."""
        where = "FROM certificates WHERE revoked_at IS NULL AND not_after > ? AND not_after <= ?"
        count = self._conn.execute(f"SELECT COUNT(*) {where}", (start, end)).fetchone()[0]
        rows = self._conn.execute(f"SELECT {CERT_COLUMNS} {where} ORDER BY not_after LIMIT ?",
                                  (start, end, -1 if limit is None else limit))
        return [CertificateRecord(*row) for row in rows], count

    def valid_serial_for_subject_now(self, issuer: str, now: dt.datetime
                                     ) -> Callable[[str], str | None]:
        """A read-only unique_subject lookup, for dry runs outside a transaction."""
        return lambda subject: valid_serial(self._conn, issuer, subject, format_time(now))

    def clock_floor(self) -> str | None:
        """The latest time the register has recorded (invariant 8): any issuance's
        notBefore, CRL thisUpdate, revocation or audit entry. Each is an index lookup."""
        row = self._conn.execute(
            "SELECT MAX(t) FROM (SELECT MAX(not_before) AS t FROM certificates "
            "UNION ALL SELECT MAX(this_update) FROM crls "
            "UNION ALL SELECT MAX(revoked_at) FROM certificates WHERE revoked_at IS NOT NULL "
            "UNION ALL SELECT time FROM (SELECT time FROM audit ORDER BY seq DESC LIMIT 1))"
        ).fetchone()
        return row[0] if row else None

    def submissions_for(self, request_sha256: str) -> list[tuple[str, str]]:
        """(output_name, file_name) of every submission of one request."""
        rows = self._conn.execute("SELECT output_name, file_name FROM submissions "
                                  "WHERE request_sha256 = ? ORDER BY id", (request_sha256,))
        return [(row[0], row[1]) for row in rows]

    def latest_submissions(self) -> dict[str, SubmissionRecord]:
        """Per output name, its latest submission: what recovery re-publishes from."""
        rows = self._conn.execute(_SUBMISSION_SELECT + " ORDER BY s.id")
        return {row[0]: _submission(row) for row in rows}

    def decided_in_claim(self, claim: str) -> dict[tuple[str, str], str]:
        """(profile, file name) -> output name of every submission a claim round committed:
        after a crash, these files in work/CLAIM/ are finished (archived), not redone."""
        rows = self._conn.execute("SELECT profile, file_name, output_name FROM submissions "
                                  "WHERE claim = ?", (claim,))
        return {(row[0], row[1]): row[2] for row in rows}

    def earlier_answer(self, file_sha256: str, profile: str) -> SubmissionRecord | None:
        """The first recorded answer to a file with these bytes under this profile."""
        row = self._conn.execute(_SUBMISSION_SELECT + " WHERE s.file_sha256 = ? AND "
                                 "s.profile = ? ORDER BY s.id LIMIT 1",
                                 (file_sha256, profile)).fetchone()
        return _submission(row) if row else None

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

    def audit_entries(self, after: int = 0) -> Iterator[AuditRow]:
        rows = self._conn.execute(
            "SELECT seq, time, event, actor, data, prev, hash FROM audit WHERE seq > ? "
            "ORDER BY seq", (after,))
        return map(AuditRow._make, rows)

    def snapshot(self, target: Path) -> None:
        """A consistent copy of the register into a new file while others may write
        (SQLite's online backup API): what `spoolca backup` archives."""
        destination = sqlite3.connect(target)
        try:
            self._conn.backup(destination)
        finally:
            destination.close()

    def integrity_problems(self) -> list[str]:
        """SQLite's own check of every page and index; empty when the file is sound."""
        rows = self._conn.execute("PRAGMA integrity_check").fetchall()
        return [] if rows == [("ok",)] else [str(row[0]) for row in rows]

    def latest_events(self, event: str, limit: int = 20) -> list[AuditRow]:
        """The newest entries of one kind, newest first (read back from the log's end)."""
        rows = self._conn.execute(
            "SELECT seq, time, event, actor, data, prev, hash FROM audit WHERE event = ? "
            "ORDER BY seq DESC LIMIT ?", (event, limit))
        return [AuditRow._make(row) for row in rows]

    def event_counts(self, after: int = 0) -> dict[str, int]:
        """How many entries of each kind the log holds after seq AFTER (for the report)."""
        rows = self._conn.execute(
            "SELECT event, COUNT(*) FROM audit WHERE seq > ? GROUP BY event", (after,))
        return dict(rows.fetchall())

    def audit_head(self) -> tuple[int, str]:
        row = self._conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1"
                                 ).fetchone()
        return (row[0], row[1]) if row else (0, GENESIS)

    def latest_checkpoint_seq(self) -> int:
        row = self._conn.execute("SELECT MAX(seq) FROM checkpoints").fetchone()
        return row[0] or 0

    def add_checkpoint(self, seq: int, digest: str, body: str, signature: str) -> None:
        """Checkpoints sign the chain; they are not entries of it (that would never end)."""
        insert_checkpoint(self._conn, seq, digest, body, signature)

    def checkpoints(self, after: int = 0) -> list[CheckpointRow]:
        rows = self._conn.execute("SELECT seq, body, signature FROM checkpoints WHERE seq > ? "
                                  "ORDER BY seq", (after,))
        return [CheckpointRow._make(row) for row in rows]


_SUBMISSION_SELECT = (
    "SELECT s.output_name, s.request_sha256, s.file_name, s.profile, s.status, s.findings, "
    "COALESCE(r.decided_at, s.received_at), COALESCE(r.serial, s.serial) FROM submissions s "
    "LEFT JOIN requests r ON r.sha256 = s.request_sha256")


def _submission(row: tuple[Any, ...]) -> SubmissionRecord:
    return SubmissionRecord(row[0], row[1], row[2], row[3], Status(row[4]), json.loads(row[5]),
                            row[6], row[7])
