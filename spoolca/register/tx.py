"""One transaction's operations: every state change of the register, each audited.

Only `Store.transaction()` makes a Tx; the audit entry for a change is written in the
same transaction as the change (invariant 5).
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from spoolca.errors import InternalError
from spoolca.register.chain import GENESIS, canonical, text_hash
from spoolca.register.events import EVENTS
from spoolca.register.records import (
    AuditRow,
    CertificateRecord,
    CRLRecord,
    RequestRecord,
    format_time,
)

__all__ = ["CERT_COLUMNS", "FLOOR_AT_NEXT_CRL", "RAISE_FLOOR", "Tx", "certificate_row",
           "insert_checkpoint", "request_row", "valid_serial"]

# meta crl_number_floor after a restore: the first CRL made sets it from its own time.
FLOOR_AT_NEXT_CRL = "at the next CRL"
RAISE_FLOOR = ("INSERT INTO meta (key, value) VALUES ('clock_floor', ?) ON CONFLICT (key) "
               "DO UPDATE SET value = MAX(value, excluded.value)")
CERT_COLUMNS = ("serial, issuer, request_sha256, profile, subject, not_before, not_after, der, "
                 "revoked_at, revocation_reason, invalidity_date, superseded_by")


class Tx:
    """The operations allowed inside one transaction; each state change is audited."""

    def __init__(self, conn: sqlite3.Connection, actor: str, now: dt.datetime,
                 clock_note: str | None = None) -> None:
        self._conn = conn
        self._actor = actor
        self._now = format_time(now)
        self._clock_note = clock_note  # the clock was not trusted: said in every entry
        row = conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        self._seq: int = row[0] if row else 0
        self._head: str = row[1] if row else GENESIS

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
        """Append one audit entry to the hash chain, in this transaction. Only a catalogued
        event (register.events): what the auditor's reference documents is all there is."""
        if event not in EVENTS:
            raise InternalError(f"the audit event {event!r} is not in the catalogue")
        self._seq += 1
        if self._clock_note is not None:
            data = {**data, "clock_untrusted": self._clock_note}
        data_text = canonical(data).decode("utf-8")  # stored as hashed: exported as is
        digest = text_hash(self._seq, self._now, event, self._actor, data_text, self._head)
        self._conn.execute(
            "INSERT INTO audit (seq, time, event, actor, data, prev, hash) VALUES (?,?,?,?,?,?,?)",
            (self._seq, self._now, event, self._actor, data_text, self._head, digest),
        )
        self._head = digest

    @property
    def clock_trusted(self) -> bool:
        """Whether this transaction's time counts (anything signed in it must)."""
        return self._clock_note is None

    def raise_clock_floor(self, to: str) -> None:
        """The floor is at least TO (times a catch-up folded in, signed with a trusted
        clock); the transaction's own time raises it at commit when trusted."""
        self._conn.execute(RAISE_FLOOR, (to,))

    def lower_clock_floor(self, to: str) -> None:
        """`spoolca clock confirm --repair`: records a wrong clock dated ahead no longer
        hold the floor above the right time (the entry saying so is the caller's)."""
        self._conn.execute("UPDATE meta SET value = ? WHERE key = 'clock_floor'", (to,))

    def append_entry(self, row: AuditRow) -> None:
        """An entry this appliance wrote and signed, read back from its exported log (a
        catch-up): stored as it is, where it extends this register's chain."""
        if row.seq != self._seq + 1 or row.prev != self._head:
            raise ValueError(f"entry {row.seq} does not extend the register at {self._seq}")
        self._conn.execute(
            "INSERT INTO audit (seq, time, event, actor, data, prev, hash) VALUES (?,?,?,?,?,?,?)",
            tuple(row))
        self._seq, self._head = row.seq, row.hash

    def bump(self, key: str) -> int:
        """Count one more for KEY (a meta counter); the count now."""
        self._conn.execute("INSERT INTO meta (key, value) VALUES (?, '1') ON CONFLICT (key) "
                           "DO UPDATE SET value = CAST(value AS INTEGER) + 1", (key,))
        return int(self._conn.execute("SELECT value FROM meta WHERE key = ?",
                                      (key,)).fetchone()[0])

    def delete_meta(self, key: str) -> None:
        self._conn.execute("DELETE FROM meta WHERE key = ?", (key,))

    def set_meta(self, key: str, value: str) -> None:
        self._conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def add_authority(self, name: str, parent: str | None, cert_der: bytes) -> None:
        self._conn.execute("INSERT INTO authorities (name, parent, cert_der, created_at) "
                           "VALUES (?, ?, ?, ?)", (name, parent, cert_der, self._now))

    def replace_authority(self, name: str, cert_der: bytes) -> None:
        """A renewed CA certificate (same key and subject): what issues from now on."""
        self._conn.execute("UPDATE authorities SET cert_der = ? WHERE name = ?",
                           (cert_der, name))

    def find_request(self, sha256: str) -> RequestRecord | None:
        return request_row(self._conn, sha256)

    def serial_taken(self, serial: str) -> bool:
        return self._conn.execute("SELECT 1 FROM certificates WHERE serial = ?",
                                  (serial,)).fetchone() is not None

    def valid_serial_for_subject(self, issuer: str, subject: str) -> str | None:
        return valid_serial(self._conn, issuer, subject, self._now)

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
            f"INSERT INTO certificates ({CERT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (record.serial, record.issuer, record.request_sha256, record.profile, record.subject,
             record.not_before, record.not_after, record.der, None, None, None, None),
        )

    def add_imported_certificate(self, record: CertificateRecord, crl_entry: bytes | None
                                 ) -> None:
        """A certificate another CA program issued: its revocation (if any) as recorded
        there, with its CRL entry already encoded."""
        self._conn.execute(
            f"INSERT INTO certificates ({CERT_COLUMNS}, crl_entry) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (record.serial, record.issuer, record.request_sha256, record.profile, record.subject,
             record.not_before, record.not_after, record.der, record.revoked_at,
             record.revocation_reason, record.invalidity_date, None, crl_entry))

    def set_request_serial(self, sha256: str, serial: str) -> None:
        """A renewal: the request's one current certificate is now `serial`."""
        self._conn.execute("UPDATE requests SET serial = ?, decided_at = ? WHERE sha256 = ?",
                           (serial, self._now, sha256))

    def certificate(self, serial: str) -> CertificateRecord | None:
        return certificate_row(self._conn, serial)

    def revoke(self, serial: str, reason: str, invalidity: str | None, entry: bytes,
               at: str | None = None) -> None:
        """Record a revocation at this transaction's time (or AT, one published before:
        a catch-up), with its CRL entry's DER."""
        self._conn.execute("UPDATE certificates SET revoked_at = ?, revocation_reason = ?, "
                           "invalidity_date = ?, crl_entry = ? WHERE serial = ?",
                           (at or self._now, reason, invalidity, entry, serial))

    def unrevoke(self, serial: str) -> None:
        """removeFromCRL: a certificate on hold is valid again."""
        self._conn.execute("UPDATE certificates SET revoked_at = NULL, revocation_reason = "
                           "NULL, invalidity_date = NULL, crl_entry = NULL WHERE serial = ?",
                           (serial,))

    def held_before(self, issuer: str, moment: str) -> list[str]:
        """Serials of ISSUER's certificates on hold since before MOMENT."""
        return [row[0] for row in self._conn.execute(
            "SELECT serial FROM certificates WHERE issuer = ? AND revocation_reason = "
            "'certificateHold' AND revoked_at < ?", (issuer, moment))]

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

    def ssh_serial_taken(self, ca: str, serial: int) -> bool:
        return self._conn.execute("SELECT 1 FROM ssh_certificates WHERE ca = ? AND serial = ?",
                                  (ca, serial)).fetchone() is not None

    def add_ssh_certificate(self, ca: str, serial: int, key_id: str, principals: str,
                            profile: str, request_sha256: str, valid_after: str,
                            valid_before: str, certificate: str) -> None:
        self._conn.execute(
            "INSERT INTO ssh_certificates (ca, serial, key_id, principals, profile, "
            "request_sha256, valid_after, valid_before, certificate) VALUES "
            "(?, ?, ?, ?, ?, ?, ?, ?, ?)", (ca, serial, key_id, principals, profile,
                                            request_sha256, valid_after, valid_before,
                                            certificate))

    def revoke_ssh(self, ca: str, serials: list[int]) -> None:
        """Mark these certificates of CA revoked now (the caller checked they are not)."""
        self._conn.executemany("UPDATE ssh_certificates SET revoked_at = ? WHERE ca = ? AND "
                               "serial = ?", [(self.now, ca, s) for s in serials])

    def issued_profiles(self, issuer: str) -> set[str]:
        """The profiles under which ISSUER's certificates were recorded ("cross" for a
        cross-certificate): what a CRL's scope is judged by."""
        return {row[0] for row in self._conn.execute(
            "SELECT DISTINCT profile FROM certificates WHERE issuer = ?", (issuer,))}

    def next_crl_number(self, authority: str, now: dt.datetime) -> int:
        """Strictly increasing per CA, from the register. After a restore (which forgot
        what was published since its backup), never below a floor taken from the time of
        the first CRL made after it, NOW, which the clock guard has passed:
        YYYYMMDDhhmmss x 1000 plus the milliseconds, above any number given one by one
        since the backup, and above the floor of any earlier restore made under a right
        clock (a CRL takes more than a millisecond to make)."""
        row = self._conn.execute("SELECT MAX(number) FROM crls WHERE authority = ?",
                                 (authority,)).fetchone()
        floor = self._conn.execute("SELECT value FROM meta WHERE key = 'crl_number_floor'"
                                   ).fetchone()
        reserved = self._conn.execute("SELECT value FROM meta WHERE key = ?",
                                      (_reserved_key(authority),)).fetchone()
        if floor and floor[0] == FLOOR_AT_NEXT_CRL:
            stamp = int(now.strftime("%Y%m%d%H%M%S")) * 1000 + now.microsecond // 1000
            self.set_meta("crl_number_floor", str(stamp))
            floor = (str(stamp),)
        return max((row[0] or 0) + 1, int(floor[0]) if floor else 0,
                   int(reserved[0]) + 1 if reserved and reserved[0] else 0)

    def reserve_crl_numbers(self, authority: str, now: dt.datetime, count: int) -> int:
        """COUNT consecutive CRL numbers for a pre-signed series (not in the crls table:
        none is the current CRL yet); every later CRL is numbered above them. The first."""
        first = self.next_crl_number(authority, now)
        self.set_meta(_reserved_key(authority), str(first + count - 1))
        return first

    def latest_crl_number(self, authority: str) -> int:
        row = self._conn.execute("SELECT MAX(number) FROM crls WHERE authority = ?",
                                 (authority,)).fetchone()
        return row[0] or 0

    def add_crl(self, record: CRLRecord) -> None:
        self._conn.execute(
            "INSERT INTO crls (authority, number, this_update, next_update, entries, sha256) "
            "VALUES (?, ?, ?, ?, ?, ?)", (record.authority, record.number, record.this_update,
                                          record.next_update, record.entries, record.sha256))

    def add_submission(self, request_sha256: str, file_name: str, output_name: str,
                       profile: str, status: str, findings: list[dict[str, str]],
                       file_sha256: str | None = None, signer: str | None = None, *,
                       claim: str | None = None, serial: str | None = None,
                       again: bool = False) -> None:
        """AGAIN: this file gets an earlier answer again (the same request sent again)."""
        self._conn.execute(
            "INSERT INTO submissions (request_sha256, file_name, output_name, profile, "
            "received_at, status, findings, file_sha256, signer, claim, serial, again) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (request_sha256, file_name, output_name, profile, self._now, str(status),
             json.dumps(findings), file_sha256, signer, claim, serial, int(again)),
        )

    def add_checkpoint(self, seq: int, digest: str, body: str, signature: str) -> None:
        """A checkpoint signed while this transaction's batch was decided: it commits with
        the batch, and a batch whose predecessor is unsigned does not commit at all."""
        insert_checkpoint(self._conn, seq, digest, body, signature)

    def forget_rejection(self, sha256: str) -> None:
        """A rejected request is undecided again (`spoolca reconsider`): its submissions
        and their answers stay, the next submission is decided anew."""
        self._conn.execute("DELETE FROM requests WHERE sha256 = ? AND status = 'rejected'",
                           (sha256,))

    def add_media_file(self, medium: str, file_sha256: str, file_name: str) -> None:
        self._conn.execute("INSERT OR IGNORE INTO media_files VALUES (?, ?, ?, ?)",
                           (medium, file_sha256, file_name, self._now))

    def move_media_files(self, old: str, new: str) -> None:
        """The files medium OLD brought are NEW's (a stick given its secret): OLD has none
        left, so a stick that copies the old name gets none of them."""
        self._conn.execute("UPDATE OR IGNORE media_files SET medium = ? WHERE medium = ?",
                           (new, old))
        self._conn.execute("DELETE FROM media_files WHERE medium = ?", (old,))


def insert_checkpoint(conn: sqlite3.Connection, seq: int, digest: str, body: str,
                      signature: str) -> None:
    conn.execute("INSERT OR IGNORE INTO checkpoints (seq, hash, body, signature) "
                 "VALUES (?, ?, ?, ?)", (seq, digest, body, signature))


def valid_serial(conn: sqlite3.Connection, issuer: str, subject: str, now: str) -> str | None:
    """A valid (unrevoked, unexpired) certificate's serial for this subject, if any."""
    row = conn.execute(
        "SELECT serial FROM certificates WHERE subject = ? AND issuer = ? "
        "AND revoked_at IS NULL AND not_after > ? LIMIT 1", (subject, issuer, now),
    ).fetchone()
    return row[0] if row else None


def certificate_row(conn: sqlite3.Connection, serial: str) -> CertificateRecord | None:
    row = conn.execute(f"SELECT {CERT_COLUMNS} FROM certificates WHERE serial = ?",
                       (serial.upper(),)).fetchone()
    return CertificateRecord(*row) if row else None


def request_row(conn: sqlite3.Connection, sha256: str) -> RequestRecord | None:
    row = conn.execute("SELECT sha256, profile, status, decided_at, findings, serial "
                       "FROM requests WHERE sha256 = ?", (sha256,)).fetchone()
    if row is None:
        return None
    return RequestRecord(row[0], row[1], row[2], row[3], json.loads(row[4]), row[5])




def _reserved_key(authority: str) -> str:
    """Meta: the highest CRL number a pre-signed series of AUTHORITY took."""
    return f"crl_number_reserved:{authority}"
