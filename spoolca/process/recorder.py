"""Recording decisions: what each outcome writes to the register, and its result files.

Every function runs inside the batch's transaction; together with the audit entry it
writes, each outcome is committed whole or not at all. What it returns is published
later, through the session's one publication path.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from typing import Concatenate, ParamSpec

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from spoolca.config import Profile
from spoolca.findings import Finding
from spoolca.log import get_logger
from spoolca.process.items import Plan, Prepared
from spoolca.process.session import CASession
from spoolca.register.store import CertificateRecord, Status, SubmissionRecord, Tx, format_time
from spoolca.spool.recovery import recorded_files
from spoolca.spool.results import Outcome, issued_files, rejected_files
from spoolca.x509.issuer import serial_hex

__all__ = ["Plan", "Prepared", "Recorder"]

_log = get_logger("spoolca.process.recorder")
_P = ParamSpec("_P")


def _atomic(method: Callable[Concatenate[Recorder, Tx, _P], Outcome]
            ) -> Callable[Concatenate[Recorder, Tx, _P], Outcome]:
    """One outcome's rows and audit entry are written whole or not at all: each in a
    savepoint of the batch's transaction, so a failure half-way undoes only its own
    writes (the batch's per-request isolation needs no savepoint of its own)."""
    @functools.wraps(method)
    def recording(self: Recorder, tx: Tx, /, *args: _P.args, **kwargs: _P.kwargs) -> Outcome:
        with tx.savepoint():
            return method(self, tx, *args, **kwargs)
    return recording


class Recorder:
    """Writes outcomes for one session: names, register rows, audit entries, files."""

    def __init__(self, session: CASession) -> None:
        self._session = session

    @_atomic
    def issued(self, tx: Tx, plan: Plan, cert: x509.Certificate) -> Outcome:
        """A signed certificate: its row, the request's, the submission's, the audit entry."""
        from spoolca.authority.revocation import mark_crl_pending, record_revocation

        item, profile = plan.item, plan.profile
        assert item.request is not None
        record = CertificateRecord(
            serial=serial_hex(plan.serial), issuer=plan.ca.name, request_sha256=item.identity,
            profile=profile.name, subject=plan.decision.subject_line,
            not_before=format_time(cert.not_valid_before_utc),
            not_after=format_time(cert.not_valid_after_utc),
            der=cert.public_bytes(Encoding.DER), revoked_at=None, revocation_reason=None)
        tx.add_certificate(record)
        notes = [note.as_dict() for note in plan.decision.notes]
        if plan.renews_request:
            tx.set_request_serial(item.identity, record.serial)
        else:
            tx.add_request(item.identity, profile.name, Status.ISSUED, item.request.der, notes,
                           record.serial)
        if plan.supersedes:
            tx.supersede(plan.supersedes, record.serial)
            if profile.revoke_superseded:
                record_revocation(tx, plan.supersedes, "superseded", None)
                mark_crl_pending(tx, plan.ca.name)
        name = self._session.allocate_name(tx, item.file_name, item.identity)
        tx.add_submission(item.identity, item.file_name, name, profile.name,
                          Status.ISSUED, notes, item.file_sha256, plan.signer,
                          claim=item.claim)
        chain = self._session.chains[plan.ca.name]
        files = issued_files(record, chain, name=name, file_name=item.file_name,
                             decided_at=tx.now, notes=notes)
        tx.record("request.issued", {
            "name": name, "file": item.file_name, "request_sha256": item.identity,
            "profile": profile.name, "serial": record.serial, "issuer": plan.ca.name,
            "subject": record.subject, "names": [_general(n) for n in plan.decision.names],
            "not_after": record.not_after,
            "cert_sha256": hashlib.sha256(record.der).hexdigest(),
            "supersedes": plan.supersedes, "signer": plan.signer,
        })
        return Outcome(name, item.file_name, item.identity, profile.name,
                       Status.ISSUED, record.serial, (), files, links={"chain.pem": chain.path})

    @_atomic
    def rejected_request(self, tx: Tx, item: Prepared, profile: Profile,
                         findings: list[Finding], csr_der: bytes | None) -> Outcome:
        """A terminal rejection of this request identity: the same CSR stays rejected."""
        reasons = [f.as_dict() for f in findings]
        tx.add_request(item.identity, profile.name, Status.REJECTED, csr_der, reasons, None)
        return self._rejected(tx, item, profile.name, findings)

    @_atomic
    def rejected_submission(self, tx: Tx, item: Prepared, findings: list[Finding]) -> Outcome:
        """A rejection of this file only (unreadable, wrong folder): nothing to remember."""
        return self._rejected(tx, item, item.profile, findings)

    def internal_error(self, tx: Tx, item: Prepared, exc: BaseException) -> Outcome:
        """A bug met on one request: logged with its traceback, the submission rejected."""
        _log.error("request failed", file=item.file_name,
                   request_sha256=item.identity, exc_info=exc)
        return self.rejected_submission(tx, item, [Finding.internal_error()])

    def _rejected(self, tx: Tx, item: Prepared, profile: str,
                  findings: list[Finding]) -> Outcome:
        name = self._session.allocate_name(tx, item.file_name, item.identity)
        reasons = [f.as_dict() for f in findings]
        tx.add_submission(item.identity, item.file_name, name, profile,
                          Status.REJECTED, reasons, item.file_sha256, claim=item.claim)
        tx.record("request.rejected", {"name": name, "file": item.file_name,
                                       "request_sha256": item.identity, "profile": profile,
                                       "codes": [f.code for f in findings]})
        files = rejected_files(name=name, file_name=item.file_name,
                               request_sha256=item.identity, profile=profile,
                               decided_at=tx.now, reasons=reasons)
        return Outcome(name, item.file_name, item.identity, profile, Status.REJECTED,
                       None, tuple(findings), files)

    @_atomic
    def republished(self, tx: Tx, item: Prepared, earlier: SubmissionRecord) -> Outcome:
        """The same request again: its one result, published again, never re-signed."""
        name = self._session.allocate_name(tx, item.file_name, item.identity)
        tx.add_submission(item.identity, item.file_name, name, earlier.profile,
                          earlier.status, earlier.findings, item.file_sha256,
                          claim=item.claim, serial=earlier.serial, again=True)
        tx.record("request.republished", {"name": name, "file": item.file_name,
                                          "request_sha256": item.identity,
                                          "status": str(earlier.status),
                                          "serial": earlier.serial})
        again = SubmissionRecord(name, item.identity, item.file_name, earlier.profile,
                                 earlier.status, earlier.findings, earlier.decided_at,
                                 earlier.serial, tx.now, again=True)
        files, links = recorded_files(self._session.store, self._session.chains, again)
        findings = () if earlier.status != Status.REJECTED else \
            tuple(Finding(r["code"], r["message"]) for r in earlier.findings)
        return Outcome(name, item.file_name, item.identity, earlier.profile,
                       earlier.status, earlier.serial if earlier.status != Status.REJECTED
                       else None, findings, files, republished=True, links=links)


def _general(name: x509.GeneralName) -> str:
    prefix = {x509.DNSName: "DNS", x509.IPAddress: "IP", x509.RFC822Name: "email"}
    return f"{prefix.get(type(name), type(name).__name__)}:{name.value}"
