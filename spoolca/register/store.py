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

from spoolca.config import Config
from spoolca.errors import ClockError, RegisterBehindError, StoreError
from spoolca.register.auditreads import AuditReads
from spoolca.register.clock import DEFAULT_MAX_FORWARD_DAYS, SIGNING_GRACE, ClockGuard
from spoolca.register.damage import damaged
from spoolca.register.records import (
    CertificateRecord,
    CRLRecord,
    RequestRecord,
    Status,
    SubmissionRecord,
    format_time,
    parse_time,
)
from spoolca.register.schema import MIGRATIONS, SCHEMA, SCHEMA_VERSION
from spoolca.register.tx import (
    CERT_COLUMNS,
    RAISE_FLOOR,
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

class Store(AuditReads):
    """The open register. One connection, used from one thread at a time."""

    def __init__(self, path: Path, *, create: bool = False,
                 max_forward_days: int = DEFAULT_MAX_FORWARD_DAYS,
                 exported_log: Path | None = None) -> None:
        self.clock = ClockGuard(max_forward_days)
        # Where this register's signed log is exported: checked before the first write
        # (register.rollback). None: a copy (backup, drill) or a catch-up, not checked.
        self._exported_log = exported_log
        if not create and not path.exists():
            raise StoreError(f"no register at {path}: run `spoolca init` first, or fix "
                             "[paths] database in the configuration")
        try:
            self._conn = sqlite3.connect(path, isolation_level=None, timeout=30)
        except sqlite3.Error as exc:
            raise damaged(exc, path) or StoreError(f"failed to open the register {path}: "
                                                   f"{exc}") from None
        try:
            self._opened(path, create)
        except BaseException:
            # A register that cannot be used is closed at once, not by the garbage
            # collector: its -shm stays mapped until then (a half-made CA's file system
            # could not be unmounted after a refused command run in one process).
            self._conn.close()
            raise

    def _opened(self, path: Path, create: bool) -> None:
        """Set up the connection; StoreError if this register cannot be used."""
        try:
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
                self._conn.executescript(SCHEMA)
                self._conn.execute("INSERT INTO meta VALUES ('schema_version', ?)",
                                   (str(SCHEMA_VERSION),))
            version = self._migrate()
        except sqlite3.Error as exc:
            raise damaged(exc, path) or StoreError(f"failed to open the register {path}: "
                                                   f"{exc}") from None
        if version != SCHEMA_VERSION:
            raise StoreError(f"the register {path} has schema {version}, expected "
                             f"{SCHEMA_VERSION}")

    @classmethod
    def of(cls, config: Config, *, create: bool = False, check_history: bool = True
           ) -> Store:
        """The register a configuration names, with its clock bounds, checked against
        the log it exported before its first write (unless CHECK_HISTORY is False: a
        catch-up, which is what repairs it)."""
        exported = config.spool_dir / "outgoing" / "audit" if check_history else None
        return cls(config.database, create=create,
                   max_forward_days=config.clock_max_forward_days, exported_log=exported)

    def check_history(self) -> None:
        """RegisterBehindError if the register ends before, or differs from, the newest
        checkpoint it exported (invariant 14). Checked once: a register this process
        holds open does not lose what it committed."""
        if self._exported_log is None:
            return
        from spoolca.register.rollback import behind_export, behind_sentence

        problem = behind_export(self, self._exported_log)
        if problem is not None:
            raise RegisterBehindError(behind_sentence(problem))
        self._exported_log = None

    def _migrate(self) -> int | None:
        """Bring an older register up to this schema, one step per transaction."""
        while True:
            row = self._conn.execute(
                "SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            version = int(row[0]) if row else None
            if version not in MIGRATIONS:
                return version
            self._conn.executescript(f"BEGIN IMMEDIATE;{MIGRATIONS[version]}COMMIT;")

    def close(self) -> None:
        self._conn.close()

    def probe_write(self, now: dt.datetime) -> None:
        """A write that must commit (StoreError if it cannot): has a fault cleared?"""
        with self.transaction("serve", now) as tx:
            tx.set_meta("last_write_probe", format_time(now))

    def checkpoint_wal(self) -> None:
        """Copy what the write-ahead log holds into ca.db itself (and sync it), so that
        committed history does not live in ca.db-wal alone: a copy of ca.db without it,
        or a WAL lost in a crash, then loses nothing. Passive: never waits for readers."""
        try:
            self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.OperationalError as exc:
            raise StoreError(f"failed to checkpoint the register's write-ahead log: {exc}"
                             ) from None

    @contextmanager
    def transaction(self, actor: str, now: dt.datetime, *, signing: str | None = None,
                    trust_clock: bool = False) -> Iterator[Tx]:
        """BEGIN IMMEDIATE ... COMMIT: all of it is durable, or none of it happened.

        A transaction whose time the clock guard trusts raises the floor to it; one whose
        time it does not marks its audit entries so and moves nothing, and if it records
        something SIGNING (a CRL, an issuance), ClockError: the last line behind the
        session's strict check (this one lets a time read at an operation's start trail
        what was recorded since by up to SIGNING_GRACE). TRUST_CLOCK: the operator
        vouched for the time (`clock confirm`)."""
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise StoreError(f"the register is busy: {exc}") from None
        try:
            self.check_history()
            problem = None if trust_clock else \
                self.clock.problem(now, self.clock_floor(), SIGNING_GRACE)
            if problem is not None and signing is not None:
                raise ClockError(problem.sentence(signing), floor=problem.floor,
                                 now=problem.now, action=signing)
            yield Tx(self._conn, actor, now, problem.note() if problem else None)
            if problem is None:
                self._conn.execute(RAISE_FLOOR, (format_time(now),))
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
        if problem is None:
            self.clock.trusted(now)

    def meta(self, key: str) -> str | None:
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def meta_keys(self, prefix: str) -> dict[str, str]:
        """Every meta entry whose key starts with PREFIX (a handful, never a table)."""
        rows = self._conn.execute("SELECT key, value FROM meta WHERE key >= ? AND key < ?",
                                  (prefix, prefix + "\uffff"))
        return dict(rows.fetchall())

    def authority_der(self, name: str) -> bytes:
        row = self._conn.execute("SELECT cert_der FROM authorities WHERE name = ?",
                                 (name,)).fetchone()
        if row is None:
            raise StoreError(f"the register has no {name} CA: was `spoolca init` completed?")
        return bytes(row[0])

    def request(self, sha256: str) -> RequestRecord | None:
        return request_row(self._conn, sha256)

    def certificate(self, serial: str) -> CertificateRecord | None:
        return certificate_row(self._conn, serial)

    def ssh_certificates(self, ca: str, *, serial: int | None = None,
                         key_id: str | None = None) -> list[dict[str, Any]]:
        """CA's SSH certificates with this serial or key ID (every one if neither)."""
        sql = ("SELECT ca, serial, key_id, principals, profile, request_sha256, valid_after, "
               "valid_before, certificate, revoked_at FROM ssh_certificates WHERE ca = ?")
        args: list[Any] = [ca]
        if serial is not None:
            sql, args = sql + " AND serial = ?", [*args, serial]
        if key_id is not None:
            sql, args = sql + " AND key_id = ?", [*args, key_id]
        names = ("ca", "serial", "key_id", "principals", "profile", "request_sha256",
                 "valid_after", "valid_before", "certificate", "revoked_at")
        return [dict(zip(names, row, strict=True))
                for row in self._conn.execute(sql + " ORDER BY valid_after", args)]

    def ssh_counts(self, ca: str, now: str) -> dict[str, int]:
        """How many of CA's SSH certificates are valid, expired and revoked at NOW."""
        row = self._conn.execute(
            "SELECT SUM(revoked_at IS NULL AND valid_before >= ?), "
            "SUM(revoked_at IS NULL AND valid_before < ?), SUM(revoked_at IS NOT NULL) "
            "FROM ssh_certificates WHERE ca = ?", (now, now, ca)).fetchone()
        return {"valid": row[0] or 0, "expired": row[1] or 0, "revoked": row[2] or 0}

    def ssh_ending_between(self, start: str, end: str, limit: int) -> list[dict[str, Any]]:
        """Unrevoked SSH certificates ending in (START, END], soonest first, at most LIMIT."""
        names = ("ca", "serial", "key_id", "principals", "profile", "valid_before")
        return [dict(zip(names, row, strict=True)) for row in self._conn.execute(
            "SELECT ca, serial, key_id, principals, profile, valid_before FROM "
            "ssh_certificates WHERE revoked_at IS NULL AND valid_before > ? AND "
            "valid_before <= ? ORDER BY valid_before LIMIT ?", (start, end, limit))]

    def ssh_revoked(self, ca: str) -> list[int]:
        """The serials of CA's revoked SSH certificates (what its KRL lists)."""
        return [row[0] for row in self._conn.execute(
            "SELECT serial FROM ssh_certificates WHERE ca = ? AND revoked_at IS NOT NULL "
            "ORDER BY serial", (ca,))]

    def authority_names(self) -> list[str]:
        """Every CA the register knows: root, intermediate, and any later generations."""
        return [row[0] for row in self._conn.execute("SELECT name FROM authorities "
                                                     "ORDER BY rowid")]

    def last_not_after(self, issuer: str) -> str | None:
        """When the last certificate this CA issued ends (its CRL is needed until then)."""
        latest: str | None = self._conn.execute(
            "SELECT MAX(not_after) FROM certificates WHERE issuer = ?", (issuer,)).fetchone()[0]
        return latest

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
        """The latest time a transaction recorded with the clock trusted (invariant 8):
        every issuance, CRL, revocation and audit entry made since, unless `spoolca clock
        confirm --repair` set it back. None before the CA's first transaction."""
        return self.meta("clock_floor")

    def dated_after(self, moment: str) -> dict[str, Any]:
        """What a clock that ran ahead left dated after MOMENT: certificates (notBefore),
        CRLs (thisUpdate), revocations and trusted audit entries, counted, with the first
        serials; what `spoolca clock confirm --repair` records before it lowers the floor."""
        serials = [row[0] for row in self._conn.execute(
            "SELECT serial FROM certificates WHERE not_before > ? ORDER BY not_before LIMIT 20",
            (moment,))]

        def count(sql: str) -> int:
            return int(self._conn.execute(sql, (moment,)).fetchone()[0])

        return {
            "certificates": count("SELECT COUNT(*) FROM certificates WHERE not_before > ?"),
            "certificate_serials": serials,
            "crls": [f"{row[0]} #{row[1]}" for row in self._conn.execute(
                "SELECT authority, number FROM crls WHERE this_update > ? ORDER BY number",
                (moment,))],
            "revocations": count("SELECT COUNT(*) FROM certificates WHERE revoked_at > ?"),
            "audit_entries": count("SELECT COUNT(*) FROM audit WHERE time > ?"),
        }

    def submissions_for(self, request_sha256: str) -> list[tuple[str, str]]:
        """(output_name, file_name) of every submission of one request."""
        rows = self._conn.execute("SELECT output_name, file_name FROM submissions "
                                  "WHERE request_sha256 = ? ORDER BY id", (request_sha256,))
        return [(row[0], row[1]) for row in rows]

    def latest_submissions(self, after: int = 0) -> dict[str, SubmissionRecord]:
        """Per output name, its latest submission (of those numbered above AFTER): what
        recovery re-publishes from."""
        rows = self._conn.execute(_SUBMISSION_SELECT + " WHERE s.id > ? ORDER BY s.id",
                                  (after,))
        return {row[0]: _submission(row) for row in rows}

    def last_submission_id(self) -> int:
        """The number of the latest submission recorded (0: none)."""
        return self._conn.execute("SELECT MAX(id) FROM submissions").fetchone()[0] or 0

    def published_through(self) -> int:
        """Every submission numbered up to this was published and synced (a mark the
        session keeps): recovery compares the files of those after it with the register,
        not only that their folder exists."""
        return int(self.meta("published_through") or 0)

    def decided_in_claim(self, claim: str) -> dict[tuple[str, str], str]:
        """(profile, file name) -> output name of every submission a claim round committed:
        after a crash, these files in work/CLAIM/ are finished (archived), not redone."""
        rows = self._conn.execute("SELECT profile, file_name, output_name FROM submissions "
                                  "WHERE claim = ?", (claim,))
        return {(row[0], row[1]): row[2] for row in rows}

    def submission(self, which: str) -> SubmissionRecord | None:
        """The latest submission published as WHICH, or of the request whose SHA-256 it is."""
        row = self._conn.execute(_SUBMISSION_SELECT + " WHERE s.output_name = ? OR "
                                 "s.request_sha256 = ? ORDER BY s.id DESC LIMIT 1",
                                 (which, which.lower())).fetchone()
        return _submission(row) if row else None

    def earlier_answer(self, file_sha256: str, profile: str) -> SubmissionRecord | None:
        """The first recorded answer to a file with these bytes under this profile."""
        row = self._conn.execute(_SUBMISSION_SELECT + " WHERE s.file_sha256 = ? AND "
                                 "s.profile = ? ORDER BY s.id LIMIT 1",
                                 (file_sha256, profile)).fetchone()
        return _submission(row) if row else None

    def earlier_request_answer(self, request_sha256: str, profile: str
                               ) -> SubmissionRecord | None:
        """The first recorded answer to a request with this identity under this profile
        (a revocation request: the SHA-256 of its canonical text)."""
        row = self._conn.execute(_SUBMISSION_SELECT + " WHERE s.request_sha256 = ? AND "
                                 "s.profile = ? ORDER BY s.id LIMIT 1",
                                 (request_sha256, profile)).fetchone()
        return _submission(row) if row else None

    def answered(self, file_sha256s: list[str]) -> int:
        """How many of these files (by their bytes) already have a recorded result."""
        marks = ",".join("?" * len(file_sha256s)) or "''"
        row = self._conn.execute(
            f"SELECT COUNT(DISTINCT file_sha256) FROM submissions WHERE file_sha256 IN ({marks})",
            file_sha256s).fetchone()
        return row[0] or 0

    def outputs_of_files(self, file_sha256s: list[str]) -> dict[str, set[str]]:
        """The outgoing/ names that answer each of these files (by their bytes)."""
        found: dict[str, set[str]] = {}
        for start in range(0, len(file_sha256s), 500):  # SQLite's bound on parameters
            chunk = file_sha256s[start:start + 500]
            rows = self._conn.execute(
                f"SELECT file_sha256, output_name FROM submissions WHERE file_sha256 IN "
                f"({','.join('?' * len(chunk))})", chunk).fetchall()
            for sha, name in rows:
                found.setdefault(sha, set()).add(name)
        return found

    def files_of_outputs(self, names: list[str]) -> dict[str, set[str]]:
        """The SHA-256 of the submitted files each outgoing/ name answers (a result
        re-published for the same CSR sent again answers more than one)."""
        found: dict[str, set[str]] = {}
        for start in range(0, len(names), 500):  # SQLite's bound on parameters
            chunk = names[start:start + 500]
            rows = self._conn.execute(
                f"SELECT output_name, file_sha256 FROM submissions WHERE output_name IN "
                f"({','.join('?' * len(chunk))})", chunk)
            for name, digest in rows:
                found.setdefault(name, set()).add(digest)
        return found

    def outputs_from_medium(self, medium: str) -> list[str]:
        """outgoing/ names of the results for the files a medium brought, in order."""
        rows = self._conn.execute(
            "SELECT DISTINCT s.output_name FROM submissions s JOIN media_files m "
            "ON m.file_sha256 = s.file_sha256 WHERE m.medium = ? ORDER BY s.output_name",
            (medium,))
        return [row[0] for row in rows]

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

    def add_checkpoint(self, seq: int, digest: str, body: str, signature: str) -> None:
        """Checkpoints sign the chain; they are not entries of it (that would never end)."""
        self.check_history()
        insert_checkpoint(self._conn, seq, digest, body, signature)



# A submission's answer is its request's decision (an earlier answer published again has
# its date), unless the request was decided again since (`spoolca reconsider`): then it
# keeps its own.
_SUBMISSION_SELECT = (
    "SELECT s.output_name, s.request_sha256, s.file_name, s.profile, s.status, s.findings, "
    "CASE WHEN r.status = s.status THEN r.decided_at ELSE s.received_at END, "
    "COALESCE(r.serial, s.serial), s.received_at, s.again FROM submissions s "
    "LEFT JOIN requests r ON r.sha256 = s.request_sha256")


def _submission(row: tuple[Any, ...]) -> SubmissionRecord:
    return SubmissionRecord(row[0], row[1], row[2], row[3], Status(row[4]), json.loads(row[5]),
                            row[6], row[7], row[8], bool(row[9]))
