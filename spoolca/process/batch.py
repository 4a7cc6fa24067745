"""Batches of CSRs: read, decide, sign, record in one transaction, publish behind.

Exactly once (invariant 1): a request's terminal result is committed to the register
before anything is published, and an original leaves work/ only after its result is on
disk. A crash at any instant leaves either the file in work/ (its claim round not yet
committed: decided now) or a committed result that the session's recovery publishes.

Per-request isolation (invariant 9): whatever one file does to our code becomes that
file's answer; a fault of the machine (BATCH_FAULTS) rolls the whole batch back instead.

Speed: a batch shares one transaction and one round of syncfs, and is published behind
(in a child process) and sealed behind (process.sealing) while the next is decided; in a
pass of several batches, a helper process reads the requests ahead (process.reading). With
lint on, each request is read, planned and handed to the lint workers in turn, so they
start at once, and is signed with the CA key as it is recorded. Slow crypto is split
between two threads, fast crypto is not (process.parallel).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from spoolca.config import LintMode, Profile
from spoolca.errors import KeyStoreError, StoreError
from spoolca.findings import Finding
from spoolca.log import get_logger, held
from spoolca.process.items import Plan, Prepared, Refused
from spoolca.process.parallel import in_halves
from spoolca.process.reading import READ_AHEAD_FROM, ReadAhead, job_of, prepare
from spoolca.process.recorder import Recorder
from spoolca.process.session import CASession
from spoolca.register.store import CertificateRecord, Status, SubmissionRecord, Tx, parse_time
from spoolca.spool.outgoing import PublishJob
from spoolca.spool.results import Outcome
from spoolca.spool.tree import Claimed
from spoolca.x509.csr import request_sha256
from spoolca.x509.issuer import (
    IssuingCA,
    Linting,
    Signed,
    finish_linted,
    leaf_builder,
    new_serial,
    serial_hex,
    start_linted,
)
from spoolca.x509.lint import CertificateLinter, PooledLinter
from spoolca.x509.policy import CASubjects, evaluate

__all__ = ["BATCH_FAULTS", "BATCH_SIZE", "BatchProcessor", "BatchState"]

BATCH_SIZE = 500
# Faults of the machine, not of one request (disk full, I/O error, a locked register, a
# token that stopped answering): a batch that meets one rolls back whole and is retried,
# never answered request by request.
BATCH_FAULTS = (sqlite3.OperationalError, OSError, StoreError, KeyStoreError)
_log = get_logger("spoolca.process.batch")
_In = TypeVar("_In")
_Out = TypeVar("_Out")


@dataclass(frozen=True, slots=True)
class _Again:
    """A second copy of a request planned earlier in the same batch: decided after it."""

    item: Prepared


@dataclass(slots=True)
class BatchState:
    """What this batch has planned but not yet written: serials, subjects, identities."""

    ca_subjects: CASubjects  # no subject may be a CA's own
    serials: set[str] = field(default_factory=set)
    subjects: dict[tuple[str, str], str] = field(default_factory=dict)
    identities: dict[str, str] = field(default_factory=dict)  # request -> profile planned

    @classmethod
    def of(cls, session: CASession) -> BatchState:
        """A new batch's state: nothing planned yet."""
        return cls(CASubjects(c.subject for c in session.ca_certificates.values()))


class BatchProcessor:
    """Decides and records batches of claimed CSRs for one session."""

    def __init__(self, session: CASession) -> None:
        self.session = session
        self.config = session.config
        self.record = Recorder(session)
        self._linter: CertificateLinter | PooledLinter | None = None
        self._ahead: ReadAhead | None = None

    def _signers_elsewhere(self, name: str) -> frozenset[str]:
        """Who may sign requests for a profile other than NAME (they must say which)."""
        return frozenset(f.upper() for other in self.config.profiles.values()
                         if other.name != name and other.require_signature
                         for f in other.authorized_signers)

    def issuers_for(self, profiles: Iterable[str]) -> set[str]:
        """The CAs these profiles sign with: only their keys are unlocked."""
        known = self.config.profiles
        return {known[name].issuer for name in profiles if name in known}

    def linter(self) -> CertificateLinter | PooledLinter | None:
        """Built when certificates are first issued (`spoolca crl` needs none): in worker
        processes on a machine with more than one core."""
        if self._linter is None and self.config.lint == LintMode.PKIX:
            cores = os.cpu_count() or 1
            if cores > 1:
                self._linter = PooledLinter(cores)
                self.session.on_close(self._linter.close)
            else:
                self._linter = CertificateLinter()
        return self._linter

    def process_batch(self, batch: Sequence[Claimed]) -> list[Outcome]:
        """Decide and record a batch in one transaction; its publication starts behind."""
        if not batch:
            return []
        session = self.session
        issuers = self.issuers_for(c.profile for c in batch)
        cleared = session.preflight("issuance", issuers, current=True)  # once per batch
        authorities, now = cleared.authorities, cleared.now
        self.linter()
        started = time.perf_counter()
        state = BatchState.of(session)
        with session.store.transaction(session.actor, now, signing="issuance") as tx:
            planned, signing = self._decide(tx, batch, authorities, state, now)
            outcomes, took = [], []
            for plan in planned:
                session.heartbeat()
                outcomes.append(self._complete(tx, plan, signing, authorities, state, now))
                took.append(time.perf_counter() - started)
            session.finish_seal(tx)  # the previous batch's checkpoint, or a rollback
        with held():  # logged once committed: a batch rolled back logs nothing it did not do
            for outcome, seconds in zip(outcomes, took, strict=True):
                _log_outcome(outcome, seconds)
        session.publish([
            PublishJob(o.output_name, o.files, o.links, claimed.path, claimed.file_name,
                       claimed.signature)
            for claimed, o in zip(batch, outcomes, strict=True)])
        session.seal_behind()
        return outcomes

    def _in_halves(self, function: Callable[[_In], _Out], items: Sequence[_In]) -> list[_Out]:
        return in_halves(self.session.workers, function, items)

    # -- stage 1: reading ------------------------------------------------------------------

    def _prepare_safely(self, claimed: Claimed) -> Prepared:
        """Invariant 9: whatever reading one file raises is that file's answer."""
        try:
            return self._prepare(claimed)
        except Exception as exc:
            _log.error("request unreadable", file=claimed.file_name, exc_info=exc)
            return Prepared(claimed, request_sha256(claimed.file_name.encode()), None,
                            Finding.internal_error(), submission_only=True)

    def _prepare(self, claimed: Claimed) -> Prepared:
        self.session.heartbeat()
        return prepare(claimed, self.config.max_request_bytes, self._ahead,
                       self.session.quarantined)

    @contextlib.contextmanager
    def reading_ahead(self, claimed: Sequence[Claimed]) -> Iterator[None]:
        """A pass of many requests: a helper process reads them ahead (process.reading)."""
        limit = self.config.max_request_bytes
        jobs = [job_of(c, limit) for c in claimed if c.name_problem is None]
        if len(jobs) < READ_AHEAD_FROM:
            yield
            return
        self._ahead = ReadAhead(jobs)
        try:
            yield
        finally:
            ahead, self._ahead = self._ahead, None
            ahead.close()

    # -- stage 2: deciding (in the transaction) -------------------------------------------

    def _guarded(self, tx: Tx, item: Prepared,
                 step: Callable[[], Outcome | Plan | _Again]) -> Outcome | Plan | _Again:
        """Invariant 9: whatever one file does to our code, the batch goes on. Only the
        Recorder writes, each outcome in its own savepoint: a failure leaves nothing of
        this request behind but the internal error recorded here."""
        try:
            return step()
        except BATCH_FAULTS:
            raise  # not about this request: the whole batch rolls back and is retried
        except Exception as exc:
            return self.record.internal_error(tx, item, exc)

    def _plan(self, tx: Tx, item: Prepared, authorities: dict[str, IssuingCA],
              state: BatchState, now: dt.datetime) -> Outcome | Plan | _Again:
        profile = self.config.profiles.get(item.profile)
        if item.submission_only or profile is None:
            findings = [item.problem] if item.problem else []
            if profile is None:
                findings.append(Finding("file.unknown_profile", f"the folder "
                                        f"{item.profile!r} names no profile; use one of "
                                        f"{', '.join(self.config.profiles)}"))
            return self.record.rejected_submission(tx, item, findings)
        signer = None
        if profile.require_signature:
            signer, refusal = self.session.signers().check(
                item.data or b"", item.signature, profile.authorized_signers, profile.name,
                self._signers_elsewhere(profile.name))
            if refusal is not None:  # per submission: the same CSR, signed, may come again
                return self.record.rejected_submission(tx, item, [refusal])
        earlier_profile = state.identities.get(item.identity)
        if earlier_profile is not None:
            return _Again(item) if earlier_profile == profile.name else \
                self.record.rejected_submission(tx, item, [_profile_conflict(earlier_profile)])
        existing = tx.find_request(item.identity)
        if existing is not None and existing.profile != profile.name:
            return self.record.rejected_submission(tx, item, [_profile_conflict(existing.profile)])
        supersedes = None
        if existing is not None:
            renewable = self._renewable(tx, existing.status, existing.serial, now)
            if renewable is None:
                return self.record.republished(tx, item, SubmissionRecord(
                    "", item.identity, item.file_name, existing.profile,
                    Status(existing.status), existing.findings, existing.decided_at,
                    existing.serial))
            if isinstance(renewable, Refused):
                return self.record.rejected_submission(tx, item, renewable.reasons)
            supersedes = renewable
        if item.request is None:
            assert item.problem is not None
            return self.record.rejected_request(tx, item, profile, [item.problem], None)
        planned = self.plan_issue(tx, item, profile, authorities[profile.issuer], state, now,
                                  supersedes=supersedes, renews_request=existing is not None)
        if isinstance(planned, Plan):
            return dataclasses.replace(planned, signer=signer)
        if existing is not None:  # a renewal refused: the request keeps its certificate
            return self.record.rejected_submission(tx, item, planned.reasons)
        return self.record.rejected_request(tx, item, profile, planned.reasons,
                                            item.request.der)

    def in_renewal_window(self, record: CertificateRecord, now: dt.datetime) -> bool:
        profile = self.config.profiles.get(record.profile)
        days = profile.renew_before_days if profile else 30
        return now >= parse_time(record.not_after) - dt.timedelta(days=days)

    def _renewable(self, tx: Tx, status: str, serial: str | None, now: dt.datetime
                   ) -> str | Refused | None:
        """For a request seen before: None to re-publish its result, the serial to renew
        (its certificate is in the renewal window or expired), or why it cannot be."""
        if status != Status.ISSUED or serial is None:
            return None
        record = tx.certificate(serial)
        assert record is not None
        if record.superseded_by:
            return None  # renewed already: the request's current certificate is re-published
        if record.revoked_at:
            return Refused.because(Finding(
                "request.certificate_revoked", f"this request's certificate {serial} was "
                f"revoked ({record.revocation_reason}); send a new CSR with a new key"))
        return serial if self.in_renewal_window(record, now) else None

    def plan_issue(self, tx: Tx, item: Prepared, profile: Profile, ca: IssuingCA,
                   state: BatchState, now: dt.datetime, *, supersedes: str | None,
                   renews_request: bool) -> Plan | Refused:
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
            if record is not None and self.in_renewal_window(record, now):
                renewing.append(serial)  # a new CSR for the subject: a renewal
                return None
            return serial

        decision = evaluate(item.request, profile, self.config.policy, ca.certificate,
                            ca_subjects=state.ca_subjects,
                            subject_in_use=subject_in_use)
        if not decision.accepted:
            return Refused(decision.findings)
        serial = new_serial(lambda value: serial_hex(value) in state.serials
                            or tx.serial_taken(serial_hex(value)))
        state.serials.add(serial_hex(serial))
        state.subjects[(ca.name, decision.subject_line)] = serial_hex(serial)
        state.identities[item.identity] = profile.name
        return Plan(item, profile, decision, ca, serial, supersedes=renewing[0] if renewing
                    else None, renews_request=renews_request)

    # -- stage 3: signing (lint in worker processes) ----------------------------------------

    def sign(self, plan: Plan, now: dt.datetime) -> Signed | Exception:
        """One plan, signed (a renewal's): start_signing then finish_signing."""
        return self.finish_signing(self.start_signing(plan, now))

    def _decide(self, tx: Tx, batch: Sequence[Claimed], authorities: dict[str, IssuingCA],
                state: BatchState, now: dt.datetime
                ) -> tuple[list[Outcome | Plan | _Again], dict[int, Linting | Signed | Exception]]:
        """Read, plan, start signing. With lint on, request by request: the lint workers get
        the first certificates within milliseconds, not once the whole batch is read and
        planned, and each is signed with the CA key as it is recorded (finish_signing),
        the workers linting the next ones meanwhile. With lint off, stage by stage, so
        slow crypto can be split between threads (_in_halves)."""
        def plan(item: Prepared) -> Outcome | Plan | _Again:
            return self._guarded(tx, item, lambda: self._plan(tx, item, authorities, state, now))

        if self._linter is None:
            planned = [plan(item) for item in self._in_halves(self._prepare_safely, batch)]
            to_sign = [p for p in planned if isinstance(p, Plan)]
            return planned, dict(zip(map(id, to_sign), self._in_halves(
                lambda p: self.sign(p, now), to_sign), strict=True))
        planned, signing = [], {}
        for claimed in batch:
            decided = plan(self._prepare_safely(claimed))
            planned.append(decided)
            if isinstance(decided, Plan):
                signing[id(decided)] = self.start_signing(decided, now)
        return planned, signing

    def start_signing(self, plan: Plan, now: dt.datetime) -> Linting | Signed | Exception:
        assert plan.item.request is not None and plan.decision.subject is not None
        try:
            built = leaf_builder(usage=plan.profile.usage, subject=plan.decision.subject,
                                 public_key=plan.item.request.public_key,  # type: ignore[arg-type]
                                 names=plan.decision.names, ca=plan.ca, serial=plan.serial,
                                 validity_days=plan.profile.validity_days,
                                 now=self.session.backdated(now),
                                 constraints=plan.profile.constraints)
            if isinstance(built, Signed):
                return built
            return start_linted(built, plan.ca.signer, plan.ca.lint_signer, self._linter)
        except Exception as exc:  # reported by _complete, in the transaction
            return exc

    @staticmethod
    def finish_signing(started: Linting | Signed | Exception) -> Signed | Exception:
        if not isinstance(started, Linting):
            return started
        try:
            return finish_linted(started)
        except Exception as exc:  # reported by _complete, in the transaction
            return exc

    # -- stage 4: recording (in the transaction) ------------------------------------------

    def _complete(self, tx: Tx, planned: Outcome | Plan | _Again,
                  signing: dict[int, Linting | Signed | Exception],
                  authorities: dict[str, IssuingCA], state: BatchState,
                  now: dt.datetime) -> Outcome:
        if isinstance(planned, Outcome):
            return planned
        if isinstance(planned, _Again):
            state.identities.pop(planned.item.identity, None)
            again = self._guarded(tx, planned.item, lambda: self._plan(
                tx, planned.item, authorities, state, now))
            assert isinstance(again, Outcome), "the earlier copy is recorded by now"
            return again
        signed = self.finish_signing(signing[id(planned)])
        if isinstance(signed, BATCH_FAULTS):
            raise signed  # the signer failed, not the request: the batch is retried whole
        if isinstance(signed, Exception):
            return self.record.internal_error(tx, planned.item, signed)
        result = self._guarded(tx, planned.item, lambda: self.record_signed(tx, planned, signed))
        assert isinstance(result, Outcome)
        return result

    def record_signed(self, tx: Tx, plan: Plan, signed: Signed) -> Outcome:
        item = plan.item
        assert item.request is not None
        if signed.certificate is None:
            _log.warning("lint refused a certificate", request_sha256=item.identity,
                         findings=[f.message for f in signed.findings])
            if plan.renews_request:  # the request keeps the certificate it has
                return self.record.rejected_submission(tx, item, list(signed.findings))
            return self.record.rejected_request(tx, item, plan.profile,
                                                list(signed.findings), item.request.der)
        return self.record.issued(tx, plan, signed.certificate)


def _profile_conflict(earlier: str) -> Finding:
    return Finding("request.profile_conflict", f"this CSR was already submitted under the "
                   f"{earlier} profile, and one CSR gets one decision; make a new CSR (a new "
                   "key) for this profile")


def _log_outcome(outcome: Outcome, seconds: float) -> None:
    _log.info("request", name=outcome.output_name, file=outcome.file_name,
              request_sha256=outcome.request_sha256, profile=outcome.profile,
              outcome="republished" if outcome.republished else str(outcome.status),
              serial=outcome.serial, codes=[f.code for f in outcome.findings],
              duration_ms=round(seconds * 1000, 2))
