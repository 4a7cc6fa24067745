"""Catching a register up with what its appliance published (`spoolca catch-up`,
`spoolca restore --catch-up`): a restore never goes back on a revocation.

A register that went back in time (a restored backup, a lost ca.db-wal, an older copy of
ca.db) lacks what the appliance did since; relying parties do not. What it published
says what that was, and nothing in it is trusted unless it verifies against what the
register already holds: the exported audit log by the appliance key's checkpoints (its
entries after the register's head are stored as they are, so the chain stays the one
the auditors hold), each certificate by the signature of one of our CAs, each CRL by its
CA's signature. Folded back in one transaction, with one audit entry that lists it: the
certificates (a CSR sent again gets its answer, not a second certificate), the
rejections, every revocation and hold lifted, and every CRL number published, so the
next CRL is above them all. The CRLs are then remade at once.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding

from spoolca.authority.sshca import fold_ssh_result
from spoolca.authority.unlock import load_generations
from spoolca.config import Config
from spoolca.errors import SpoolcaError
from spoolca.host.untrusted import loads_bounded, read_untrusted
from spoolca.keys.openpgp import ApplianceKey, stop_agent
from spoolca.register.audit import iter_exported, verify_export
from spoolca.register.chain import body_hash, canonical
from spoolca.register.records import (
    AuditRow,
    CertificateRecord,
    CRLRecord,
    format_time,
    parse_time,
)
from spoolca.register.store import Store, Tx
from spoolca.spool.outgoing import Outgoing
from spoolca.spool.tree import RESERVED_NAMES
from spoolca.x509.crl import MAX_CRL_BYTES, REASONS, RevokedEntry, encode_entry, read_crl
from spoolca.x509.issuer import serial_hex

__all__ = ["CaughtUp", "catch_up"]

MAX_RESULT_JSON = 1 << 16
MAX_CERTIFICATE = 1 << 16
LISTED = 5000  # serials listed by name in the audit entry; counted beyond
_REASON_BY_FLAG = {flag: name for name, flag in REASONS.items()}


@dataclass(slots=True)
class CaughtUp:
    """What a catch-up folded back, and what it could not."""

    source: str
    entries: int = 0                     # audit entries stored as exported
    forked_at: int | None = None         # the exported log and the register differ there
    certificates: list[str] = field(default_factory=list)
    not_held: list[str] = field(default_factory=list)  # known from the log alone
    rejections: int = 0
    revocations: list[str] = field(default_factory=list)
    unheld: list[str] = field(default_factory=list)
    crls: dict[str, int] = field(default_factory=dict)  # authority -> newest number known
    not_folded: list[str] = field(default_factory=list)  # what did not verify, or cannot be
    latest_time: str = ""  # the clock floor as the folded entries moved it
    repaired: bool = False   # one of them set it back (`clock confirm --repair`)

    def saw(self, moment: str) -> None:
        self.latest_time = max(self.latest_time, moment)

    def note(self, text: str) -> None:
        if len(self.not_folded) < 50 and text not in self.not_folded:
            self.not_folded.append(text)

    def summary(self) -> dict[str, Any]:
        return {"source": self.source, "audit_entries": self.entries,
                "forked_at": self.forked_at, "certificates": len(self.certificates),
                "certificate_serials": self.certificates[:LISTED],
                "known_from_the_log_only": self.not_held[:LISTED],
                "rejections": self.rejections, "revocations": self.revocations[:LISTED],
                "holds_lifted": self.unheld[:LISTED], "crl_numbers": self.crls,
                "not_folded": self.not_folded}


def catch_up(config: Config, store: Store, source: Path, now: dt.datetime) -> CaughtUp:
    """Fold what SOURCE (a stick's export, or a copy of outgoing/) says the appliance
    published into STORE, in one transaction; the CRLs are marked to be remade."""
    if not source.is_dir():
        raise SpoolcaError(f"{source} is not a folder: name a stick's spoolca-results/ or a "
                           "copy of spool/outgoing/")
    report = CaughtUp(str(source))
    generations = load_generations(store)
    tail = _exported_tail(config, store, source / "audit", report)
    with store.transaction("catch-up", now) as tx:
        for row in tail:
            tx.append_entry(row)
        _checkpoints(tx, source / "audit", store, tail)
        report.entries = len(tail)
        for folder in _result_folders(source):  # the certificates first: then revoked
            _fold_result(tx, store, folder, generations, report)
        for row in tail:
            _fold_entry(tx, row, report)
        for path in sorted((source / "crl").glob("*.crl")):
            _fold_crl(tx, path, generations, report)
        for name in generations:
            tx.set_meta(f"crl_pending:{name}", "1")  # remade at once, with all of it
        if report.repaired:  # the floor as the log left it (register.clock)
            tx.lower_clock_floor(report.latest_time)
        if report.latest_time:
            tx.raise_clock_floor(report.latest_time)
        tx.record("register.caught_up", report.summary())
    if tail:  # the log as signed out again at once (public key only): a restore restored
        _export_signed(config, store)  # from this one's outgoing/ then holds it too
    return report


def _export_signed(config: Config, store: Store) -> None:
    """The signed log, folded entries included, to this appliance's outgoing/audit/;
    what is not signed yet (the catch-up's own entry) waits for the next seal."""
    fingerprint = store.meta("audit_key_fingerprint") or ""
    try:
        with ApplianceKey(config.gnupg_dir, fingerprint, None) as key:
            Outgoing.of(config.spool_dir).audit_log(store, key)
    finally:
        stop_agent(config.gnupg_dir)


# -- the exported log ----------------------------------------------------------------------


def _exported_tail(config: Config, store: Store, folder: Path, report: CaughtUp
                   ) -> list[AuditRow]:
    """The entries of the exported log after the register's head, if the log verifies
    by the appliance key and extends the register; else none (said in the report)."""
    if not folder.is_dir():
        report.note(f"{folder} is missing: no audit log to fold; if the appliance did "
                    "anything after the register's head, this register is behind it")
        return []
    fingerprint = store.meta("audit_key_fingerprint") or ""
    try:
        with ApplianceKey(config.gnupg_dir, fingerprint, None) as key:  # public half only
            public = key.public_key()
    finally:
        stop_agent(config.gnupg_dir)
    found = verify_export(folder, public, fingerprint)
    if found.damages:
        report.note(f"the audit log in {folder} does not verify by the appliance key "
                    f"(entry {found.damages[0].seq}: {found.damages[0].message}): not folded")
        return []
    head, head_hash = store.audit_head()
    if found.entries and found.entries <= head and \
            store.audit_hash(found.entries) != found.head_hash:
        return _two_histories(report, found.entries)  # not a prefix of the register's
    if found.entries < head:  # nothing here can say what came after this register
        report.note(f"the audit log in {folder} ends at entry {found.entries}, before the "
                    f"register's {head}: it is older than what was restored, so nothing "
                    "recorded after that was folded; if the appliance did anything since, "
                    "catch up from a newer copy of its outgoing/ or a stick's export")
        return []
    tail: list[AuditRow] = []
    previous = None
    for line in iter_exported(folder):
        entry = loads_bounded(line, max_bytes=1 << 20, max_depth=32)
        seq = int(entry["seq"])
        if seq == head:
            previous = entry["hash"]
        if seq <= head:
            continue
        if seq == head + 1 and previous != head_hash:
            return _two_histories(report, head)
        if entry["prev"] != previous or body_hash(entry) != entry["hash"]:
            return []  # the files changed since they were verified: nothing from them
        tail.append(AuditRow(seq, str(entry["time"]), str(entry["event"]),
                             str(entry["actor"]), _data_text(entry), str(entry["prev"]),
                             str(entry["hash"])))
        previous = entry["hash"]
    if tail and tail[-1].hash != found.head_hash:
        return []  # the files changed under us: nothing folded from them
    return tail


def _two_histories(report: CaughtUp, seq: int) -> list[AuditRow]:
    """The exported log and the register differ at or before SEQ: nothing of the log is
    folded (said in the report), only what its certificates and CRLs prove."""
    report.forked_at = seq
    report.note(f"the exported log and the register differ at or before entry {seq}: two "
                "histories; the log was not folded, only what its certificates and CRLs "
                "prove")
    return []


def _data_text(entry: dict[str, Any]) -> str:
    return canonical(entry["data"]).decode("utf-8")


def _checkpoints(tx: Tx, folder: Path, store: Store, tail: list[AuditRow]) -> None:
    """The signed checkpoints of the folded entries, so the register exports them as
    they were signed."""
    if not tail:
        return
    hashes = {row.seq: row.hash for row in tail}
    for seq in range(store.latest_checkpoint_seq() + 1, tail[-1].seq + 1):
        body = read_untrusted(folder / f"checkpoint-{seq:010d}.json", 4096).data
        signature = read_untrusted(folder / f"checkpoint-{seq:010d}.json.asc", 65536).data
        if body is None or signature is None:
            continue
        try:
            point = loads_bounded(body, max_bytes=4096, max_depth=2)
        except ValueError:
            continue
        if point.get("seq") == seq and point.get("hash") == hashes.get(seq):
            tx.add_checkpoint(seq, hashes[seq], body.decode(), signature.decode())


def _fold_entry(tx: Tx, row: AuditRow, report: CaughtUp) -> None:
    """The state an imported entry records: revocations, lifted holds, CRL numbers."""
    data = json.loads(row.data)
    if row.event == "clock.repaired":
        report.latest_time, report.repaired = str(data["clock"]), True
    elif "clock_untrusted" not in data:
        report.saw(row.time)
    if row.event == "request.issued" and tx.certificate(str(data["serial"])) is None:
        _not_held(tx, row, data, report)
    elif row.event == "certificate.revoked":
        _revoke(tx, str(data["serial"]), str(data["reason"]), data.get("invalidity_date"),
                row.time, report)
    elif row.event == "certificate.unheld":
        _lift(tx, str(data["serial"]), report)
    elif row.event == "crl.published":
        _crl_number(tx, CRLRecord(data["authority"], int(data["number"]), data["this_update"],
                                  data["next_update"], int(data["entries"]), data["sha256"]),
                    report)
    elif row.event in ("ca.rekeyed", "ca.renewed", "shares.rotated"):
        report.note(f"entry {row.seq} ({row.event}) changed keys or CA certificates after "
                    "this register: restore the backup made after it to have them")


def _not_held(tx: Tx, row: AuditRow, data: dict[str, Any], report: CaughtUp) -> None:
    """An issuance the log records and no result on the source holds: its serial, names
    and dates, so it can be revoked, listed on a CRL, and never signed twice (a CSR sent
    again is answered that it was issued); the certificate itself stays with its owner."""
    serial, request = str(data["serial"]), str(data["request_sha256"])
    profile = str(data.get("profile", ""))
    tx.add_certificate(CertificateRecord(
        serial, str(data.get("issuer", "intermediate")), request, profile,
        str(data.get("subject", "")), row.time, str(data.get("not_after", row.time)), b"",
        None, None))
    if tx.find_request(request) is None:
        tx.add_request(request, profile, "issued", None, [], serial)
        tx.add_submission(request, str(data.get("file", "")), str(data.get("name", serial)),
                          profile, "issued", [], serial=serial)
    report.not_held.append(serial)


# -- results ----------------------------------------------------------------------------------


def _result_folders(source: Path) -> Iterator[Path]:
    """A stick's export holds results/NAME/; a copy of outgoing/ holds NAME/ itself."""
    results = source / "results" if (source / "results").is_dir() else source
    for entry in sorted(os.scandir(results), key=lambda e: e.name):
        if entry.is_dir(follow_symlinks=False) and entry.name not in RESERVED_NAMES \
                and not entry.name.startswith("."):
            yield Path(entry.path)


def _fold_result(tx: Tx, store: Store, folder: Path, generations: dict[str, x509.Certificate],
                 report: CaughtUp) -> None:
    read = read_untrusted(folder / "result.json", MAX_RESULT_JSON)
    try:
        result = loads_bounded(read.data or b"", max_bytes=MAX_RESULT_JSON, max_depth=8)
        status, request = str(result["status"]), str(result["request_sha256"])
    except (ValueError, KeyError, TypeError):
        report.note(f"{folder.name}: no readable result.json")
        return
    if status == "issued" and result.get("ssh_ca"):
        problem = fold_ssh_result(tx, store, folder, result)
        if problem:
            report.note(problem)
    elif status == "issued":
        _fold_certificate(tx, folder, result, generations, report)
    elif status == "rejected" and result.get("profile") != "revoke":
        reasons = [r for r in result.get("reasons", []) if isinstance(r, dict)]
        first = tx.find_request(request) is None
        if first:
            tx.add_request(request, str(result.get("profile", "")), "rejected", None,
                           reasons, None)
            report.rejections += 1
        elif tx.output_owners(folder.name):
            return
        again = not first or any(isinstance(n, dict) and n.get("code") == "note.earlier_answer"
                                 for n in result.get("notes") or [])  # as it was published
        tx.add_submission(request, str(result.get("file", folder.name)), folder.name,
                          str(result.get("profile", "")), "rejected", reasons, again=again)


def _fold_certificate(tx: Tx, folder: Path, result: dict[str, Any],
                      generations: dict[str, x509.Certificate], report: CaughtUp) -> None:
    read = read_untrusted(folder / "cert.crt", MAX_CERTIFICATE)
    try:
        cert = x509.load_der_x509_certificate(read.data or b"")
    except ValueError:
        report.note(f"{folder.name}: no readable cert.crt")
        return
    issuer = _issuer_of(cert, generations)
    if issuer is None:
        report.note(f"{folder.name}: its certificate is not signed by this CA: not folded")
        return
    der = cert.public_bytes(Encoding.DER)
    serial = serial_hex(cert.serial_number)
    request = str(result.get("request_sha256", hashlib.sha256(der).hexdigest()))
    if tx.certificate(serial) is not None:
        if tx.find_request(request) is not None and not tx.output_owners(folder.name):
            # The same request sent again under another name, answered with the held
            # certificate: its answer is published again as the copy holds it.
            tx.add_submission(request, str(result.get("file", folder.name)), folder.name,
                              str(result.get("profile", "")), "issued", [], serial=serial,
                              again=True)
        return
    profile = str(result.get("profile", ""))
    tx.add_certificate(CertificateRecord(
        serial, issuer, request, profile, str(result.get("subject", "")),
        format_time(cert.not_valid_before_utc), format_time(cert.not_valid_after_utc), der,
        None, None))
    if tx.find_request(request) is None:
        tx.add_request(request, profile, "issued", None, [], serial)
        tx.add_submission(request, str(result.get("file", folder.name)), folder.name, profile,
                          "issued", [], serial=serial)
    report.certificates.append(serial)


def _issuer_of(cert: x509.Certificate, generations: dict[str, x509.Certificate]
               ) -> str | None:
    """The name of the CA generation that signed CERT, or None."""
    for name, ca in generations.items():
        if ca.subject != cert.issuer:
            continue
        try:
            cert.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return name
    return None


# -- revocations and CRLs ---------------------------------------------------------------------


def _fold_crl(tx: Tx, path: Path, generations: dict[str, x509.Certificate],
              report: CaughtUp) -> None:
    read = read_untrusted(path, MAX_CRL_BYTES)
    found = read_crl(read.data or b"")
    if isinstance(found, str):
        report.note(f"crl/{path.name}: {found}")
        return
    crl, number = found.crl, found.number
    authority = next((name for name, ca in generations.items()
                      if ca.subject == crl.issuer
                      and crl.is_signature_valid(ca.public_key())), None)  # type: ignore[arg-type]
    if authority is None:
        report.note(f"crl/{path.name}: not signed by this CA: not folded")
        return
    newer = number > tx.latest_crl_number(authority)
    this_update = crl.last_update_utc
    listed = set()
    for entry in crl:
        serial = serial_hex(entry.serial_number)
        listed.add(serial)
        reason = "unspecified"
        invalidity = None
        for extension in entry.extensions:
            if isinstance(extension.value, x509.CRLReason):
                reason = _REASON_BY_FLAG.get(extension.value.reason, "unspecified")
            elif isinstance(extension.value, x509.InvalidityDate):
                invalidity = format_time(extension.value.invalidity_date_utc)
        _revoke(tx, serial, reason, invalidity, format_time(entry.revocation_date_utc), report)
    if newer:  # a hold lifted after this register's last CRL is not on the newer one
        for serial in tx.held_before(authority, format_time(this_update)):
            if serial not in listed:
                _lift(tx, serial, report)
        _crl_number(tx, CRLRecord(authority, number, format_time(this_update),
                                  format_time(crl.next_update_utc or this_update),
                                  len(listed), hashlib.sha256(read.data or b"").hexdigest()),
                    report)


def _revoke(tx: Tx, serial: str, reason: str, invalidity: str | None, at: str,
            report: CaughtUp) -> None:
    record = tx.certificate(serial)
    if record is None:
        report.note(f"serial {serial} was revoked, but its certificate is not in the "
                    "register (its result was not found): it cannot be listed on a CRL")
        return
    if record.revoked_at is not None:
        return
    entry = encode_entry(RevokedEntry(int(serial, 16), parse_time(at), reason,
                                      parse_time(invalidity) if invalidity else None))
    tx.revoke(serial, reason, invalidity, entry, at=at)
    report.revocations.append(serial)


def _lift(tx: Tx, serial: str, report: CaughtUp) -> None:
    record = tx.certificate(serial)
    if record is not None and record.revocation_reason == "certificateHold":
        tx.unrevoke(serial)
        report.unheld.append(serial)


def _crl_number(tx: Tx, record: CRLRecord, report: CaughtUp) -> None:
    if record.number > tx.latest_crl_number(record.authority):
        tx.add_crl(record)
    report.crls[record.authority] = max(report.crls.get(record.authority, 0), record.number)
