"""Batches over the spool: claim, parse, decide, sign, record, publish, archive.

Exactly once (invariant 1): a request's terminal result is committed to the register
before anything is published, and an original leaves work/ only after its result is on
disk. A crash at any instant leaves either the file in work/ (done again: the register
already knows the answer, so the result is re-published, never re-signed) or a committed
result whose outputs are re-published.

Speed: a batch shares one transaction and one round of syncfs. Both cores work: CSR
parsing and signature checks, and certificate signing, run in a thread pool (the crypto
releases the GIL), and a batch is published on a background thread while the next one
is decided.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from spoolca.authority.revocation import (
    due_crls,
    mark_crl_pending,
    publish_crls,
    record_revocation,
)
from spoolca.authority.unlock import load_audit_key, load_authorities, load_ca_certificates
from spoolca.config import Config, Profile
from spoolca.errors import ClockError, CSRError, NotFoundError, SpoolcaError, StoreError
from spoolca.findings import Finding
from spoolca.fsutil import publish_folder, read_untrusted, sync_filesystem
from spoolca.log import get_logger
from spoolca.openpgp import ApplianceKey, AuditSignatureError
from spoolca.process.authorization import SignerCheck
from spoolca.process.revocations import process_revocations
from spoolca.register.audit import checkpoint, export
from spoolca.register.store import CertificateRecord, CRLRecord, Store, Tx, format_time, parse_time
from spoolca.spool.publisher import Publisher, PublishJob
from spoolca.spool.recovery import recorded_files, republish_missing
from spoolca.spool.results import (
    ChainFiles,
    Outcome,
    issued_files,
    publish_ca_files,
    rejected_files,
)
from spoolca.spool.tree import REQUEST_SUFFIXES, RESERVED_NAMES, Claimed, Spool, safe_name
from spoolca.x509.crl import CRLLinter
from spoolca.x509.csr import Request, load_request, request_sha256
from spoolca.x509.issuer import IssuingCA, Signed, issue_leaf, new_serial, serial_hex
from spoolca.x509.lint import CertificateLinter
from spoolca.x509.policy import Decision, evaluate

__all__ = ["BATCH_FAULTS", "BATCH_SIZE", "PassSummary", "Processor", "utc_now"]

BATCH_SIZE = 500
# Faults of the machine, not of one request (disk full, I/O error, a locked register): a
# batch that meets one rolls back whole and is retried, never answered request by request.
BATCH_FAULTS = (sqlite3.OperationalError, OSError, StoreError)
_log = get_logger("spoolca.process.batch")
_In = TypeVar("_In")
_Out = TypeVar("_Out")


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(slots=True)
class PassSummary:
    """Counters of one pass, for the command line and the daemon's STATUS=."""

    issued: int = 0
    rejected: int = 0
    republished: int = 0
    revoked: int = 0
    outcomes: list[Outcome] = field(default_factory=list)

    def add(self, outcome: Outcome) -> None:
        self.outcomes.append(outcome)
        if outcome.republished:
            self.republished += 1
        elif outcome.status == "issued":
            self.issued += 1
        elif outcome.status == "revoked":
            self.revoked += 1
        else:
            self.rejected += 1


@dataclass(frozen=True, slots=True)
class _Prepared:
    """A claimed file after reading and parsing, before any decision."""

    claimed: Claimed
    identity: str
    request: Request | None
    problem: Finding | None
    submission_only: bool  # a file-level problem: recorded per submission, not per request
    file_sha256: str | None = None  # the file's own bytes: links the result to its medium
    data: bytes | None = None       # those bytes, for checking a detached signature
    signature: bytes | None = None  # NAME.asc, if one came beside it


@dataclass(frozen=True, slots=True)
class _Plan:
    """An accepted request waiting for its signature."""

    item: _Prepared
    profile: Profile
    decision: Decision
    ca: IssuingCA
    serial: int
    supersedes: str | None = None  # the certificate this one renews
    renews_request: bool = False   # the same CSR again: the request row gets the new serial
    signer: str | None = None      # the authorized signer's fingerprint, if required


@dataclass(frozen=True, slots=True)
class _Again:
    """A second copy of a request planned earlier in the same batch: decided after it."""

    item: _Prepared


@dataclass(slots=True)
class _BatchState:
    """What this batch has planned but not yet written: serials, subjects, identities."""

    serials: set[str] = field(default_factory=set)
    subjects: dict[tuple[str, str], str] = field(default_factory=dict)
    identities: dict[str, str] = field(default_factory=dict)  # request -> profile planned


class Processor:
    """Runs passes over one spool with one register; keys are unlocked on first need."""

    def __init__(self, config: Config, store: Store, *,
                 clock: Callable[[], dt.datetime] = utc_now, actor: str = "process") -> None:
        self._config = config
        self._store = store
        self._clock = clock
        self._actor = actor
        self.spool = Spool(config.spool_dir)
        self._ca_certificates = load_ca_certificates(store)
        self._ca_subjects = tuple(c.subject for c in self._ca_certificates.values())
        self._chains = self._chain_files()
        self._ca_files_published = False
        self._authorities: dict[str, IssuingCA] | None = None
        self._linter: CertificateLinter | None = None
        self._crl_linter_ready: Future[CRLLinter] | None = None
        self._audit_key: ApplianceKey | None = None
        self._signer_check: SignerCheck | None = None
        self._seal_failure: str | None = None
        self._head_before_unlock = 0
        self._workers = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spoolca-crypto")
        self._publisher = Publisher(self.spool.outgoing, self.spool.archive)

    def _chain_files(self) -> dict[str, ChainFiles]:
        root = self._ca_certificates["root"]
        folder = self.spool.outgoing / "ca"
        return {name: ChainFiles.above(cert, root, folder)
                for name, cert in self._ca_certificates.items()}

    def ensure_ca_files(self) -> None:
        """outgoing/ca/ as init wrote it (restored if removed): the chains are linked to it.

        Done before the first publication, not at start: a read-only or full spool is a
        fault to retry, not a reason for the service not to start."""
        if self._ca_files_published:
            return
        chains = self._chains.values()
        if any(not c.path.is_file() or c.path.read_bytes() != c.chain for c in chains):
            try:
                publish_ca_files(self.spool.outgoing / "ca", self._ca_certificates["root"],
                                 self._ca_certificates["intermediate"])
            except OSError as exc:
                raise SpoolcaError(f"failed to write the CA certificates to "
                                   f"{self.spool.outgoing / 'ca'}: {exc.strerror or exc}; "
                                   "retrying") from None
        self._ca_files_published = True

    def recover(self) -> int:
        """After a crash: results the register holds but outgoing/ lacks, published again."""
        self.ensure_ca_files()
        try:
            return republish_missing(self._store, self._chains, self.spool.outgoing)
        except OSError as exc:
            raise SpoolcaError(f"failed to publish recovered results to "
                               f"{self.spool.outgoing}: {exc.strerror or exc}; "
                               "retrying") from None

    @property
    def config(self) -> Config:
        return self._config

    @property
    def clock(self) -> Callable[[], dt.datetime]:
        return self._clock

    @property
    def chains(self) -> dict[str, ChainFiles]:
        return self._chains

    def close(self) -> None:
        """Wait for the last publication and stop the helper threads."""
        try:
            self.flush()
        finally:
            self._workers.shutdown()
            self._publisher.close()
            if self._signer_check is not None:
                self._signer_check.close()

    def __enter__(self) -> Processor:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- clock and keys ---------------------------------------------------------------

    def check_clock(self, now: dt.datetime) -> None:
        """Invariant 8: refuse to issue on a clock that went back or left the CAs' lives."""
        latest = self._store.latest_issuance()
        if latest and format_time(now) < latest:
            raise ClockError(f"the clock reads {format_time(now)}, earlier than the latest "
                             f"issuance at {latest}: set the system clock; nothing was issued")
        for name in sorted({p.issuer for p in self._config.profiles.values()}):
            cert = self._ca_certificates[name]
            if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
                raise ClockError(
                    f"the clock reads {format_time(now)}, outside the {name} CA's validity "
                    f"({format_time(cert.not_valid_before_utc)} to "
                    f"{format_time(cert.not_valid_after_utc)}): nothing was issued")

    @property
    def store(self) -> Store:
        return self._store

    @property
    def audit_key(self) -> ApplianceKey:
        self.unlock()
        assert self._audit_key is not None
        return self._audit_key

    def unlock(self) -> dict[str, IssuingCA]:
        """Unlock the CA keys (once); record it, and the configuration if it changed."""
        if self._authorities is None:
            # What this process did not write itself must be signed before it issues.
            self._head_before_unlock = self._store.audit_head()[0]
            # Both CAs, whatever the profiles use: the root signs its own CRL.
            self._authorities = load_authorities(self._config, self._store,
                                                 ("root", "intermediate"))
            self._audit_key = load_audit_key(self._config, self._store)
            if self._config.lint == "pkix":  # built behind: importing pkilint takes 0.1 s
                self._crl_linter_ready = self._workers.submit(CRLLinter)
            with self._store.transaction(self._actor, self._clock()) as tx:
                if self._store.meta("config_sha256") != self._config.sha256:
                    tx.record("config.loaded", {"path": str(self._config.path),
                                                "sha256": self._config.sha256})
                    tx.set_meta("config_sha256", self._config.sha256)
                tx.record("key.unlocked", {"authorities": sorted(self._authorities)})
        return self._authorities

    # -- the audit trail ------------------------------------------------------------------

    def seal(self) -> int | None:
        """Sign a checkpoint of the audit head and export the log to outgoing/audit/.

        Fail closed: while a checkpoint cannot be signed, no batch is processed.
        """
        self.unlock()
        assert self._audit_key is not None
        try:
            sealed = checkpoint(self._store, self._audit_key, self._clock())
        except AuditSignatureError as exc:
            self._seal_failure = str(exc)
            raise
        self._seal_failure = None
        try:
            export(self._store, self.spool.outgoing / "audit", self._audit_key)
        except OSError as exc:  # signed in the register; the export catches up next time
            raise SpoolcaError(f"failed to export the audit log to "
                               f"{self.spool.outgoing / 'audit'}: {exc.strerror or exc}; "
                               "retrying") from None
        return sealed

    def require_audit_trail(self) -> None:
        """Before issuing: everything recorded so far must be signed (fail closed).

        After a restart the last failure is not remembered, but its unsigned entries are:
        a head past the last checkpoint (written before this process unlocked the keys) is
        signed first, and nothing is issued if it cannot be."""
        if self._seal_failure is not None or \
                self._head_before_unlock > self._store.latest_checkpoint_seq():
            self.seal()

    # -- CRLs ---------------------------------------------------------------------------

    def refresh_crls(self, names: Sequence[str] | None = None) -> list[CRLRecord]:
        """Make and publish the named CAs' CRLs, or those that are due."""
        authorities = self.unlock()
        now = self._clock()
        chosen = list(names) if names is not None else due_crls(self._config, self._store, now)
        if not chosen:
            return []
        linter = self._crl_linter_ready.result() if self._crl_linter_ready else None
        made = publish_crls(self._config, self._store, authorities, self.spool.outgoing, now,
                            chosen, linter, self._actor)
        self.seal()
        return made

    # -- renewal on request ---------------------------------------------------------------

    def renew(self, serial: str) -> Outcome:
        """`spoolca renew SERIAL`: re-sign the stored request under today's rules.

        The operator's deliberate act, so it is allowed at any time; the old certificate
        is recorded as superseded (and revoked if the profile says so). The new one is
        published where the request's result was.
        """
        authorities = self.unlock()
        self.ensure_ca_files()
        self._certificate_linter()
        now = self._clock()
        self.check_clock(now)
        record = self._store.certificate(serial)
        if record is None:
            raise NotFoundError(f"no certificate with serial {serial} in the register")
        if record.revoked_at or record.superseded_by:
            state = f"revoked ({record.revocation_reason})" if record.revoked_at \
                else f"already renewed by {record.superseded_by}"
            raise SpoolcaError(f"certificate {serial} is {state}: nothing to renew")
        der = self._store.request_der(record.request_sha256)
        profile = self._config.profiles.get(record.profile)
        if der is None or profile is None:
            raise SpoolcaError(f"certificate {serial} cannot be renewed: its request or its "
                               f"profile {record.profile!r} is no longer known")
        output_name, file_name = self._store.submissions_for(record.request_sha256)[-1]
        item = _Prepared(Claimed(Path(output_name), profile.name, file_name),
                         record.request_sha256, load_request(der), None, False)
        with self._store.transaction(self._actor, now) as tx:
            planned = self._plan_issue(tx, item, profile, authorities[profile.issuer],
                                       _BatchState(), supersedes=serial, renews_request=True)
            if not isinstance(planned, _Plan):
                codes = ", ".join(f"{f.code} ({f.message})" for f in planned)
                raise SpoolcaError(f"certificate {serial} was not renewed: {codes}")
            signed = self._sign(planned)
            if isinstance(signed, Exception):
                raise signed
            outcome = self._record(tx, planned, signed)
        if outcome.status == "issued":
            publish_folder(self.spool.outgoing / outcome.output_name, outcome.files,
                           links=outcome.links)
            sync_filesystem([self.spool.outgoing])
        self.seal()
        return outcome

    # -- a pass -----------------------------------------------------------------------

    def run_pass(self) -> PassSummary:
        """Process everything in work/ (left by a crash) and incoming/, then return."""
        summary = PassSummary()
        self.check_clock(self._clock())
        self.ensure_ca_files()
        claimed = self.spool.pending_work() + self.spool.claim_incoming(
            self._config.default_profile)
        for start in range(0, len(claimed), BATCH_SIZE):
            for outcome in self.process_batch(claimed[start:start + BATCH_SIZE]):
                summary.add(outcome)
        self.flush()
        for outcome in process_revocations(self):
            summary.add(outcome)
        return summary

    def signers(self) -> SignerCheck:
        """The signers' keyring, imported once into a temporary gnupg home."""
        if self._signer_check is None:
            assert self._config.signers_keyring is not None  # config ensures it
            self._signer_check = SignerCheck(self._config.signers_keyring)
        return self._signer_check

    def _certificate_linter(self) -> None:
        """Built when certificates are first issued (`spoolca crl` needs none)."""
        if self._linter is None and self._config.lint == "pkix":
            self._linter = CertificateLinter()

    def process_batch(self, batch: Sequence[Claimed]) -> list[Outcome]:
        """Decide and record a batch in one transaction; its publication starts behind."""
        if not batch:
            return []
        authorities = self.unlock()
        self.require_audit_trail()
        self.ensure_ca_files()
        self._certificate_linter()
        now = self._clock()
        self.check_clock(now)
        started = time.perf_counter()
        prepared = self._in_halves(self._prepare_safely, batch)
        state = _BatchState()
        with self._store.transaction(self._actor, now) as tx:
            planned = [self._guarded(tx, item, lambda i=item: self._plan(tx, i, authorities,
                                                                          state))
                       for item in prepared]
            to_sign = [p for p in planned if isinstance(p, _Plan)]
            signatures = dict(zip(map(id, to_sign), self._in_halves(self._sign, to_sign),
                                  strict=True))
            outcomes = []
            for plan in planned:
                outcome = self._complete(tx, plan, signatures, authorities, state)
                outcomes.append(outcome)
                self._log(outcome, time.perf_counter() - started)
        self._publisher.submit([
            PublishJob(o.output_name, o.files, o.links, item.claimed.path, item.claimed.file_name,
                       item.claimed.signature)
            for item, o in zip(prepared, outcomes, strict=True)])
        self.seal()
        return outcomes

    def _in_halves(self, function: Callable[[_In], _Out], items: Sequence[_In]) -> list[_Out]:
        """Run `function` over items on both cores: two big tasks, not one per item.

        The crypto inside releases the GIL; per-item tasks would cost more in hand-offs
        than they save.
        """
        if len(items) < 8:
            return [function(item) for item in items]
        middle = len(items) // 2
        first = self._workers.submit(lambda: [function(item) for item in items[:middle]])
        second = [function(item) for item in items[middle:]]
        return first.result() + second

    def flush(self) -> None:
        """Wait until every decided batch is published, synced and archived."""
        self._publisher.wait()

    def _log(self, outcome: Outcome, seconds: float) -> None:
        _log.info("request", name=outcome.output_name, file=outcome.file_name,
                  request_sha256=outcome.request_sha256, profile=outcome.profile,
                  outcome="republished" if outcome.republished else outcome.status,
                  serial=outcome.serial, codes=[f.code for f in outcome.findings],
                  duration_ms=round(seconds * 1000, 2))

    # -- stage 1: reading (in the pool) ---------------------------------------------------

    def _prepare_safely(self, claimed: Claimed) -> _Prepared:
        """Invariant 9: whatever reading one file raises is that file's answer."""
        try:
            return self._prepare(claimed)
        except Exception as exc:
            _log.error("request unreadable", file=claimed.file_name, exc_info=exc)
            return _Prepared(claimed, request_sha256(claimed.file_name.encode()), None,
                             Finding("request.internal_error", "spoolca failed on this "
                                     "request; the operator's log has the error"),
                             submission_only=True)

    def _prepare(self, claimed: Claimed) -> _Prepared:
        if claimed.name_problem is not None:
            return _Prepared(claimed, request_sha256(os.fsencode(claimed.path.name)), None,
                             Finding("file.name_invalid", f"{claimed.file_name}: "
                                     f"{claimed.name_problem}"), submission_only=True)
        read = read_untrusted(claimed.path, self._config.max_request_bytes)
        file_sha256 = request_sha256(read.data or b"")
        if read.problem is not None:
            what = read.problem.split(".")[-1].replace("_", " ")
            return _Prepared(claimed, file_sha256, None,
                             Finding(read.problem, f"{claimed.file_name}: {what} "
                                     f"({read.detail})"), submission_only=True,
                             file_sha256=file_sha256)
        assert read.data is not None
        if not claimed.file_name.lower().endswith(REQUEST_SUFFIXES):
            return _Prepared(claimed, file_sha256, None, Finding(
                "file.extension_unsupported", f"{claimed.file_name}: name a request "
                "*.csr, *.pem, *.req or *.der"), submission_only=True, file_sha256=file_sha256)
        signature = read_untrusted(claimed.signature, self._config.max_request_bytes).data \
            if claimed.signature is not None else None
        try:
            request = load_request(read.data)
        except CSRError as exc:
            return _Prepared(claimed, file_sha256, None,
                             Finding(exc.code, f"{claimed.file_name}: {exc}"),
                             submission_only=False, file_sha256=file_sha256, data=read.data,
                             signature=signature)
        return _Prepared(claimed, request.sha256, request, None, submission_only=False,
                         file_sha256=file_sha256, data=read.data, signature=signature)

    # -- stage 2: deciding (in the transaction) -------------------------------------------

    def _guarded(self, tx: Tx, item: _Prepared,
                 step: Callable[[], Outcome | _Plan | _Again]) -> Outcome | _Plan | _Again:
        """Invariant 7: whatever one file does to our code, the batch goes on."""
        try:
            with tx.savepoint():
                return step()
        except BATCH_FAULTS:
            raise  # not about this request: the whole batch rolls back and is retried
        except Exception as exc:
            return self._internal_error(tx, item, exc)

    def _internal_error(self, tx: Tx, item: _Prepared, exc: Exception) -> Outcome:
        """A bug met on one request: logged with its traceback, the request rejected."""
        _log.error("request failed", file=item.claimed.file_name, request_sha256=item.identity,
                   exc_info=exc)
        finding = Finding("request.internal_error",
                          "spoolca failed on this request; the operator's log has the error")
        return self._reject_submission(tx, item, [finding])

    def _plan(self, tx: Tx, item: _Prepared, authorities: dict[str, IssuingCA],
              state: _BatchState) -> Outcome | _Plan | _Again:
        profile = self._config.profiles.get(item.claimed.profile)
        if item.submission_only or profile is None:
            findings = [item.problem] if item.problem else []
            if profile is None:
                findings.append(Finding("file.unknown_profile", f"the folder "
                                        f"{item.claimed.profile!r} names no profile; use one of "
                                        f"{', '.join(self._config.profiles)}"))
            return self._reject_submission(tx, item, findings)
        signer = None
        if profile.require_signature:
            signer, refusal = self.signers().check(item.data or b"", item.signature,
                                                    profile.authorized_signers)
            if refusal is not None:  # per submission: the same CSR, signed, may come again
                return self._reject_submission(tx, item, [refusal])
        earlier_profile = state.identities.get(item.identity)
        if earlier_profile is not None and earlier_profile != profile.name:
            return self._reject_submission(tx, item, [_profile_conflict(earlier_profile)])
        if earlier_profile is not None:
            return _Again(item)
        existing = tx.find_request(item.identity)
        if existing is not None and existing.profile != profile.name:
            return self._reject_submission(tx, item, [_profile_conflict(existing.profile)])
        supersedes = None
        if existing is not None:
            renewable = self._renewable(tx, existing.status, existing.serial)
            if renewable is None:
                return self._republish(tx, item, existing.status, existing.profile,
                                       existing.serial, existing.findings, existing.decided_at)
            if isinstance(renewable, Finding):
                return self._reject_submission(tx, item, [renewable])
            supersedes = renewable
        if item.request is None:
            assert item.problem is not None
            return self._reject_request(tx, item, profile, [item.problem], None)
        planned = self._plan_issue(tx, item, profile, authorities[profile.issuer], state,
                                   supersedes=supersedes, renews_request=existing is not None)
        if isinstance(planned, _Plan):
            return dataclasses.replace(planned, signer=signer)
        if existing is not None:  # a renewal refused: the request keeps its certificate
            return self._reject_submission(tx, item, planned)
        return self._reject_request(tx, item, profile, planned, item.request.der)

    def _in_renewal_window(self, record: CertificateRecord) -> bool:
        profile = self._config.profiles.get(record.profile)
        days = profile.renew_before_days if profile else 30
        return self._clock() >= parse_time(record.not_after) - dt.timedelta(days=days)

    def _renewable(self, tx: Tx, status: str, serial: str | None) -> str | Finding | None:
        """For a request seen before: None to re-publish its result, the serial to renew
        (its certificate is in the renewal window or expired), or why it cannot be."""
        if status != "issued" or serial is None:
            return None
        record = tx.certificate(serial)
        assert record is not None
        if record.superseded_by:
            return None  # renewed already: the request's current certificate is re-published
        if record.revoked_at:
            return Finding("request.certificate_revoked", f"this request's certificate "
                           f"{serial} was revoked ({record.revocation_reason}); send a new "
                           "CSR with a new key")
        return serial if self._in_renewal_window(record) else None

    def _plan_issue(self, tx: Tx, item: _Prepared, profile: Profile, ca: IssuingCA,
                    state: _BatchState, *, supersedes: str | None,
                    renews_request: bool) -> _Plan | list[Finding]:
        """Policy, then a serial: the plan to sign, or the findings that refuse it."""
        assert item.request is not None
        renewing = [supersedes] if supersedes else []

        def subject_in_use(subject: str) -> str | None:
            planned = state.subjects.get((ca.name, subject))
            if planned:
                return planned
            serial = tx.valid_serial_for_subject(ca.name, subject)
            if serial is None or serial in renewing:
                return None
            record = tx.certificate(serial)
            if record is not None and self._in_renewal_window(record):
                renewing.append(serial)  # a new CSR for the subject: a renewal
                return None
            return serial

        decision = evaluate(item.request, profile, self._config.policy, ca.certificate,
                            ca_subjects=self._ca_subjects, subject_in_use=subject_in_use)
        if not decision.accepted:
            return list(decision.findings)
        serial = new_serial(lambda value: serial_hex(value) in state.serials
                            or tx.serial_taken(serial_hex(value)))
        state.serials.add(serial_hex(serial))
        state.subjects[(ca.name, decision.subject_line)] = serial_hex(serial)
        state.identities[item.identity] = profile.name
        return _Plan(item, profile, decision, ca, serial, supersedes=renewing[0] if renewing
                     else None, renews_request=renews_request)

    # -- stage 3: signing (in the pool) ---------------------------------------------------

    def _sign(self, plan: _Plan) -> Signed | Exception:
        assert plan.item.request is not None and plan.decision.subject is not None
        try:
            return issue_leaf(kind=plan.profile.kind, subject=plan.decision.subject,
                              public_key=plan.item.request.public_key,  # type: ignore[arg-type]
                              names=plan.decision.names, ca=plan.ca, serial=plan.serial,
                              validity_days=plan.profile.validity_days, now=self._clock(),
                              linter=self._linter)
        except Exception as exc:  # reported by _complete, in the transaction
            return exc

    # -- stage 4: recording (in the transaction) ------------------------------------------

    def _complete(self, tx: Tx, planned: Outcome | _Plan | _Again,
                  signatures: dict[int, Signed | Exception],
                  authorities: dict[str, IssuingCA], state: _BatchState) -> Outcome:
        if isinstance(planned, Outcome):
            return planned
        if isinstance(planned, _Again):
            state.identities.pop(planned.item.identity, None)
            again = self._guarded(tx, planned.item, lambda: self._plan(
                tx, planned.item, authorities, state))
            assert isinstance(again, Outcome), "the earlier copy is recorded by now"
            return again
        signed = signatures[id(planned)]
        if isinstance(signed, Exception):
            return self._internal_error(tx, planned.item, signed)
        result = self._guarded(tx, planned.item, lambda: self._record(tx, planned, signed))
        assert isinstance(result, Outcome)
        return result

    def _record(self, tx: Tx, plan: _Plan, signed: Signed) -> Outcome:
        item, profile = plan.item, plan.profile
        assert item.request is not None
        if signed.certificate is None:
            _log.warning("lint refused a certificate", request_sha256=item.identity,
                         findings=[f.message for f in signed.findings])
            if plan.renews_request:  # the request keeps the certificate it has
                return self._reject_submission(tx, item, list(signed.findings))
            return self._reject_request(tx, item, profile, list(signed.findings),
                                        item.request.der)
        cert = signed.certificate
        record = CertificateRecord(
            serial=serial_hex(plan.serial), issuer=plan.ca.name, request_sha256=item.identity,
            profile=profile.name, subject=plan.decision.subject_line,
            not_before=format_time(cert.not_valid_before_utc),
            not_after=format_time(cert.not_valid_after_utc),
            der=cert.public_bytes(Encoding.DER), revoked_at=None, revocation_reason=None,
        )
        tx.add_certificate(record)
        notes = [note.as_dict() for note in plan.decision.notes]
        if plan.renews_request:
            tx.set_request_serial(item.identity, record.serial)
        else:
            tx.add_request(item.identity, profile.name, "issued", item.request.der, notes,
                           record.serial)
        if plan.supersedes:
            tx.supersede(plan.supersedes, record.serial)
            if profile.revoke_superseded:
                record_revocation(tx, plan.supersedes, "superseded", None)
                mark_crl_pending(tx, plan.ca.name)
        name = self.allocate_name(tx, item.claimed.file_name, item.identity)
        tx.add_submission(item.identity, item.claimed.file_name, name, profile.name, "issued",
                          notes, item.file_sha256, plan.signer)
        chain = self._chains[plan.ca.name]
        files = issued_files(cert, record, chain, name=name, file_name=item.claimed.file_name,
                             decided_at=tx.now, notes=notes)
        tx.record("request.issued", {
            "name": name, "file": item.claimed.file_name, "request_sha256": item.identity,
            "profile": profile.name, "serial": record.serial, "issuer": plan.ca.name,
            "subject": record.subject, "names": [_general(n) for n in plan.decision.names],
            "not_after": record.not_after,
            "cert_sha256": hashlib.sha256(files["cert.crt"]).hexdigest(),
            "supersedes": plan.supersedes,
            "signer": plan.signer,
        })
        return Outcome(name, item.claimed.file_name, item.identity, profile.name, "issued",
                       record.serial, (), files, links={"chain.pem": chain.path})

    # -- rejections and re-publication ----------------------------------------------------

    def allocate_name(self, tx: Tx, file_name: str, identity: str) -> str:
        """outgoing/NAME for this submission: never a name that holds another request."""
        base = safe_name(file_name)
        candidate, counter = base, 1
        while candidate in RESERVED_NAMES or (tx.output_owners(candidate) - {identity}):
            counter += 1
            candidate = f"{base}-{counter}"
        return candidate

    def _reject_request(self, tx: Tx, item: _Prepared, profile: Profile,
                        findings: list[Finding], csr_der: bytes | None) -> Outcome:
        """A terminal rejection of this request identity: the same CSR stays rejected."""
        reasons = [f.as_dict() for f in findings]
        tx.add_request(item.identity, profile.name, "rejected", csr_der, reasons, None)
        return self._rejected(tx, item, profile.name, findings)

    def _reject_submission(self, tx: Tx, item: _Prepared, findings: list[Finding]) -> Outcome:
        """A rejection of this file only (unreadable, wrong folder): nothing to remember."""
        return self._rejected(tx, item, item.claimed.profile, findings)

    def _rejected(self, tx: Tx, item: _Prepared, profile: str,
                  findings: list[Finding]) -> Outcome:
        name = self.allocate_name(tx, item.claimed.file_name, item.identity)
        reasons = [f.as_dict() for f in findings]
        tx.add_submission(item.identity, item.claimed.file_name, name, profile, "rejected",
                          reasons, item.file_sha256)
        tx.record("request.rejected", {"name": name, "file": item.claimed.file_name,
                                       "request_sha256": item.identity, "profile": profile,
                                       "codes": [f.code for f in findings]})
        files = rejected_files(name=name, file_name=item.claimed.file_name,
                               request_sha256=item.identity, profile=profile,
                               decided_at=tx.now, reasons=reasons)
        return Outcome(name, item.claimed.file_name, item.identity, profile, "rejected", None,
                       tuple(findings), files)

    def _republish(self, tx: Tx, item: _Prepared, status: str, profile: str,
                   serial: str | None, reasons: list[dict[str, str]], decided_at: str) -> Outcome:
        """The same request again: its one result, published again, never re-signed."""
        name = self.allocate_name(tx, item.claimed.file_name, item.identity)
        tx.add_submission(item.identity, item.claimed.file_name, name, profile, status, reasons,
                          item.file_sha256)
        tx.record("request.republished", {"name": name, "file": item.claimed.file_name,
                                          "request_sha256": item.identity, "status": status,
                                          "serial": serial})
        findings = () if status == "issued" else \
            tuple(Finding(r["code"], r["message"]) for r in reasons)
        files, links = recorded_files(self._store, self._chains, name=name,
                                      file_name=item.claimed.file_name, identity=item.identity,
                                      profile=profile, status=status, serial=serial,
                                      reasons=reasons, decided_at=decided_at)
        return Outcome(name, item.claimed.file_name, item.identity, profile, status,
                       serial if status == "issued" else None, findings, files,
                       republished=True, links=links)


def _profile_conflict(earlier: str) -> Finding:
    return Finding("request.profile_conflict", f"this CSR was already submitted under the "
                   f"{earlier} profile, and one CSR gets one decision; make a new CSR (a new "
                   "key) for this profile")


def _general(name: x509.GeneralName) -> str:
    prefix = {x509.DNSName: "DNS", x509.IPAddress: "IP", x509.RFC822Name: "email"}
    return f"{prefix.get(type(name), type(name).__name__)}:{name.value}"
