"""One pass over the spool: claim, parse, decide, issue, record, publish, archive.

Exactly once (invariant 1): a request's terminal result is committed to the register
before anything is published, and an original leaves work/ only after its result is
on disk. A crash at any instant leaves either the file in work/ (done again: the
register already knows the answer, so the result is re-published, never re-signed) or
a committed result whose outputs are re-published. Batches share one transaction and
one round of syncfs, which is what makes a burst of thousands fast.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding

from spoolca.authority import load_authorities, load_ca_certificates
from spoolca.config import Config, Profile
from spoolca.csr import Request, load_request, request_sha256
from spoolca.dn import oneline
from spoolca.errors import ClockError, CSRError, UsageError
from spoolca.findings import Finding
from spoolca.fsutil import publish_folder, read_untrusted, sync_filesystem
from spoolca.issuer import IssuingCA, issue_leaf, new_serial, serial_hex
from spoolca.keys import generate_like
from spoolca.lint import CertificateLinter
from spoolca.log import get_logger
from spoolca.policy import Decision, evaluate
from spoolca.profiles import CAURLs
from spoolca.signers.filekey import FileKeySigner
from spoolca.spool import REQUEST_SUFFIXES, RESERVED_NAMES, Claimed, Spool, safe_name
from spoolca.store import CertificateRecord, Store, Tx, format_time

__all__ = ["BATCH_SIZE", "Outcome", "PassSummary", "Processor", "utc_now"]

BATCH_SIZE = 500
_log = get_logger("spoolca.pipeline")


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one submitted file."""

    output_name: str
    file_name: str
    request_sha256: str
    profile: str
    status: str
    serial: str | None
    findings: tuple[Finding, ...]
    files: dict[str, bytes]
    republished: bool = False


@dataclass(slots=True)
class PassSummary:
    """Counters of one pass, for the command line and the daemon's STATUS=."""

    issued: int = 0
    rejected: int = 0
    republished: int = 0
    outcomes: list[Outcome] = field(default_factory=list)

    def add(self, outcome: Outcome) -> None:
        self.outcomes.append(outcome)
        if outcome.republished:
            self.republished += 1
        elif outcome.status == "issued":
            self.issued += 1
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


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(Encoding.PEM)


def _result_json(**fields: object) -> bytes:
    body = {key: value for key, value in fields.items() if value is not None}
    return (json.dumps(body, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


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
        self._ca_subjects = frozenset(oneline(c.subject) for c in self._ca_certificates.values())
        self._authorities: dict[str, IssuingCA] | None = None
        self._linter: CertificateLinter | None = None

    # -- clock and keys ---------------------------------------------------------------

    def check_clock(self, now: dt.datetime) -> None:
        """Invariant 8: refuse to issue on a clock that went back or left the CAs' lives."""
        latest = self._store.latest_issuance()
        if latest and format_time(now) < latest:
            raise ClockError(f"the clock reads {format_time(now)}, earlier than the latest "
                             f"issuance at {latest}: set the system clock; nothing was issued")
        used = {p.issuer for p in self._config.profiles.values()}
        for name in sorted(used):
            cert = self._ca_certificates[name]
            if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
                raise ClockError(
                    f"the clock reads {format_time(now)}, outside the {name} CA's validity "
                    f"({format_time(cert.not_valid_before_utc)} to "
                    f"{format_time(cert.not_valid_after_utc)}): nothing was issued")

    def _unlock(self) -> dict[str, IssuingCA]:
        if self._authorities is None:
            used = {p.issuer for p in self._config.profiles.values()}
            self._authorities = load_authorities(self._config, self._store, used)
            if self._config.lint == "pkix":
                self._linter = CertificateLinter()
            with self._store.transaction(self._actor, self._clock()) as tx:
                if self._store.meta("config_sha256") != self._config.sha256:
                    tx.record("config.loaded", {"path": str(self._config.path),
                                                "sha256": self._config.sha256})
                    tx.set_meta("config_sha256", self._config.sha256)
                tx.record("key.unlocked", {"authorities": sorted(self._authorities)})
        return self._authorities

    # -- a dry run --------------------------------------------------------------------

    def dry_run(self, data: bytes, profile_name: str) -> tuple[str, list[Finding]]:
        """`policy check`: the decision and every finding, lint included; nothing issued.

        The linted certificate is signed by a throwaway key, so no CA key is unlocked.
        """
        profile = self._config.profiles.get(profile_name)
        if profile is None:
            raise UsageError(f"no profile {profile_name!r}; configured: "
                             f"{', '.join(self._config.profiles)}")
        try:
            request = load_request(data)
        except CSRError as exc:
            return "rejected", [Finding(exc.code, str(exc))]
        certificate = self._ca_certificates[profile.issuer]
        decision = evaluate(request, profile, self._config.policy, certificate,
                            ca_subjects=self._ca_subjects,
                            subject_in_use=self._store.valid_serial_for_subject_now(
                                profile.issuer, self._clock()))
        if not decision.accepted or decision.subject is None:
            return "rejected", list(decision.findings)
        twin = FileKeySigner(generate_like(certificate.public_key()))  # type: ignore[arg-type]
        ca = IssuingCA(profile.issuer, certificate, twin, CAURLs(), twin)
        signed = issue_leaf(kind=profile.kind, subject=decision.subject,
                            public_key=request.csr.public_key(), names=decision.names, ca=ca,
                            serial=new_serial(lambda _s: False),
                            validity_days=profile.validity_days, now=self._clock(),
                            linter=CertificateLinter() if self._config.lint == "pkix" else None)
        if signed.certificate is None:
            return "rejected", list(signed.findings)
        return "accepted", []

    # -- a pass -----------------------------------------------------------------------

    def run_pass(self) -> PassSummary:
        """Process everything in work/ (left by a crash) and incoming/, then return."""
        summary = PassSummary()
        now = self._clock()
        self.check_clock(now)
        claimed = self.spool.pending_work() + self.spool.claim_incoming(
            self._config.default_profile)
        if claimed:
            self._unlock()
        for start in range(0, len(claimed), BATCH_SIZE):
            for outcome in self.process_batch(claimed[start:start + BATCH_SIZE]):
                summary.add(outcome)
        return summary

    def process_batch(self, batch: Sequence[Claimed]) -> list[Outcome]:
        """One transaction, one publish round, one archive round, two syncfs."""
        authorities = self._unlock()
        now = self._clock()
        self.check_clock(now)
        prepared = [self._prepare(item) for item in batch]
        outcomes: list[Outcome] = []
        with self._store.transaction(self._actor, now) as tx:
            for item in prepared:
                started = time.perf_counter()
                outcome = self._decide_safely(tx, item, authorities, now)
                outcomes.append(outcome)
                self._log(outcome, time.perf_counter() - started)
        for outcome in outcomes:
            publish_folder(self.spool.outgoing / outcome.output_name, outcome.files)
        sync_filesystem([self.spool.outgoing])
        for item, outcome in zip(prepared, outcomes, strict=True):
            self.spool.archive_claimed(item.claimed, outcome.output_name)
        sync_filesystem([self.spool.archive])
        return outcomes

    def _log(self, outcome: Outcome, seconds: float) -> None:
        _log.info("request", name=outcome.output_name, file=outcome.file_name,
                  request_sha256=outcome.request_sha256, profile=outcome.profile,
                  outcome="republished" if outcome.republished else outcome.status,
                  serial=outcome.serial, codes=[f.code for f in outcome.findings],
                  duration_ms=round(seconds * 1000, 2))

    # -- reading ------------------------------------------------------------------------

    def _prepare(self, claimed: Claimed) -> _Prepared:
        read = read_untrusted(claimed.path, self._config.max_request_bytes)
        if read.problem is not None:
            message = f"{claimed.file_name}: {read.problem.split('.')[-1].replace('_', ' ')} " \
                      f"({read.detail})"
            return _Prepared(claimed, request_sha256(read.data or b""), None,
                             Finding(read.problem, message), submission_only=True)
        assert read.data is not None
        if not claimed.file_name.lower().endswith(REQUEST_SUFFIXES):
            return _Prepared(claimed, request_sha256(read.data), None, Finding(
                "file.extension_unsupported", f"{claimed.file_name}: name a request "
                f"*.csr, *.pem, *.req or *.der"), submission_only=True)
        try:
            request = load_request(read.data)
        except CSRError as exc:
            return _Prepared(claimed, request_sha256(read.data), None,
                             Finding(exc.code, f"{claimed.file_name}: {exc}"),
                             submission_only=False)
        return _Prepared(claimed, request.sha256, request, None, submission_only=False)

    # -- deciding -----------------------------------------------------------------------

    def _decide_safely(self, tx: Tx, item: _Prepared, authorities: dict[str, IssuingCA],
                       now: dt.datetime) -> Outcome:
        """Invariant 7: whatever one file does to our code, the batch goes on."""
        try:
            with tx.savepoint():
                return self._decide(tx, item, authorities, now)
        except Exception:
            _log.exception("request failed", file=item.claimed.file_name,
                           request_sha256=item.identity)
            finding = Finding("request.internal_error",
                              "spoolca failed on this request; the operator's log has the error")
            return self._reject_submission(tx, item, [finding])

    def _allocate_name(self, tx: Tx, file_name: str, identity: str) -> str:
        """outgoing/NAME for this submission: never a name that holds another request."""
        base = safe_name(file_name)
        candidate, counter = base, 1
        while candidate in RESERVED_NAMES or (tx.output_owners(candidate) - {identity}):
            counter += 1
            candidate = f"{base}-{counter}"
        return candidate

    def _decide(self, tx: Tx, item: _Prepared, authorities: dict[str, IssuingCA],
                now: dt.datetime) -> Outcome:
        profile = self._config.profiles.get(item.claimed.profile)
        if item.submission_only or profile is None:
            findings = [item.problem] if item.problem else []
            if profile is None:
                findings.append(Finding("file.unknown_profile", f"the folder "
                                        f"{item.claimed.profile!r} names no profile; use one of "
                                        f"{', '.join(self._config.profiles)}"))
            return self._reject_submission(tx, item, findings)
        existing = tx.find_request(item.identity)
        if existing is not None:
            return self._republish(tx, item, existing.status, existing.profile,
                                   existing.serial, existing.findings, existing.decided_at)
        if item.request is None:
            assert item.problem is not None
            return self._reject_request(tx, item, profile, [item.problem], None)
        ca = authorities[profile.issuer]
        decision = evaluate(
            item.request, profile, self._config.policy, ca.certificate,
            ca_subjects=self._ca_subjects,
            subject_in_use=lambda subject: tx.valid_serial_for_subject(ca.name, subject),
        )
        if not decision.accepted:
            return self._reject_request(tx, item, profile, list(decision.findings),
                                        item.request.der)
        return self._issue(tx, item, profile, decision, ca, now)

    def _issue(self, tx: Tx, item: _Prepared, profile: Profile, decision: Decision,
               ca: IssuingCA, now: dt.datetime) -> Outcome:
        assert item.request is not None and decision.subject is not None
        serial = new_serial(lambda value: tx.serial_taken(serial_hex(value)))
        signed = issue_leaf(kind=profile.kind, subject=decision.subject,
                            public_key=item.request.csr.public_key(), names=decision.names,
                            ca=ca, serial=serial, validity_days=profile.validity_days,
                            now=now, linter=self._linter)
        if signed.certificate is None:
            _log.warning("lint refused a certificate", request_sha256=item.identity,
                         codes=[f.message for f in signed.findings])
            return self._reject_request(tx, item, profile, list(signed.findings),
                                        item.request.der)
        cert = signed.certificate
        record = CertificateRecord(
            serial=serial_hex(serial), issuer=ca.name, request_sha256=item.identity,
            profile=profile.name, subject=decision.subject_line,
            not_before=format_time(cert.not_valid_before_utc),
            not_after=format_time(cert.not_valid_after_utc),
            der=cert.public_bytes(Encoding.DER), revoked_at=None, revocation_reason=None,
        )
        tx.add_certificate(record)
        tx.add_request(item.identity, profile.name, "issued", item.request.der, [], record.serial)
        name = self._allocate_name(tx, item.claimed.file_name, item.identity)
        tx.add_submission(item.identity, item.claimed.file_name, name, profile.name, "issued", [])
        tx.record("request.issued", {
            "name": name, "file": item.claimed.file_name, "request_sha256": item.identity,
            "profile": profile.name, "serial": record.serial, "issuer": ca.name,
            "subject": record.subject, "names": [_general(n) for n in decision.names],
            "not_after": record.not_after, "cert_sha256": cert.fingerprint(hashes.SHA256()).hex(),
        })
        files = self._issued_files(cert, ca.name, name, item, profile.name, record, tx.now)
        return Outcome(name, item.claimed.file_name, item.identity, profile.name, "issued",
                       record.serial, (), files)

    def _reject_request(self, tx: Tx, item: _Prepared, profile: Profile,
                        findings: list[Finding], csr_der: bytes | None) -> Outcome:
        """A terminal rejection of this request identity: the same CSR stays rejected."""
        reasons = [f.as_dict() for f in findings]
        tx.add_request(item.identity, profile.name, "rejected", csr_der, reasons, None)
        return self._rejected(tx, item, profile.name, findings, tx.now)

    def _reject_submission(self, tx: Tx, item: _Prepared, findings: list[Finding]) -> Outcome:
        """A rejection of this file only (unreadable, wrong folder): nothing to remember."""
        return self._rejected(tx, item, item.claimed.profile, findings, tx.now)

    def _rejected(self, tx: Tx, item: _Prepared, profile: str, findings: list[Finding],
                  decided_at: str) -> Outcome:
        name = self._allocate_name(tx, item.claimed.file_name, item.identity)
        reasons = [f.as_dict() for f in findings]
        tx.add_submission(item.identity, item.claimed.file_name, name, profile, "rejected",
                          reasons)
        tx.record("request.rejected", {"name": name, "file": item.claimed.file_name,
                                       "request_sha256": item.identity, "profile": profile,
                                       "codes": [f.code for f in findings]})
        body = _result_json(status="rejected", name=name, file=item.claimed.file_name,
                            request_sha256=item.identity, profile=profile,
                            decided_at=decided_at, reasons=reasons)
        return Outcome(name, item.claimed.file_name, item.identity, profile, "rejected", None,
                       tuple(findings), {"result.json": body})

    def _republish(self, tx: Tx, item: _Prepared, status: str, profile: str,
                   serial: str | None, reasons: list[dict[str, str]], decided_at: str) -> Outcome:
        """The same request again: its one result, published again, never re-signed."""
        name = self._allocate_name(tx, item.claimed.file_name, item.identity)
        tx.add_submission(item.identity, item.claimed.file_name, name, profile, status, reasons)
        tx.record("request.republished", {"name": name, "file": item.claimed.file_name,
                                          "request_sha256": item.identity, "status": status,
                                          "serial": serial})
        findings = tuple(Finding(r["code"], r["message"]) for r in reasons)
        if status == "rejected" or serial is None:
            body = _result_json(status="rejected", name=name, file=item.claimed.file_name,
                                request_sha256=item.identity, profile=profile,
                                decided_at=decided_at, reasons=reasons)
            return Outcome(name, item.claimed.file_name, item.identity, profile, status, None,
                           findings, {"result.json": body}, republished=True)
        record = self._store.certificate(serial)
        assert record is not None
        cert = x509.load_der_x509_certificate(tx.certificate_der(serial))
        files = self._issued_files(cert, record.issuer, name, item, profile, record, decided_at)
        return Outcome(name, item.claimed.file_name, item.identity, profile, status, serial,
                       (), files, republished=True)

    def _issued_files(self, cert: x509.Certificate, issuer: str, name: str, item: _Prepared,
                      profile: str, record: CertificateRecord, decided_at: str
                      ) -> dict[str, bytes]:
        chain = list(self._chain_above(issuer))
        cert_pem = _pem(cert)
        body = _result_json(
            status="issued", name=name, file=item.claimed.file_name,
            request_sha256=item.identity, profile=profile, decided_at=decided_at,
            serial=record.serial, subject=record.subject, issuer=issuer,
            not_before=record.not_before, not_after=record.not_after,
            cert_sha256=cert.fingerprint(hashes.SHA256()).hex(),
        )
        return {
            "cert.pem": cert_pem,
            "cert.crt": cert.public_bytes(Encoding.DER),
            # Every CA above the certificate, root included: `openssl verify -CAfile`.
            "chain.pem": b"".join(_pem(c) for c in chain),
            # What a TLS server sends: the certificate and its intermediates, no root.
            "fullchain.pem": cert_pem + b"".join(_pem(c) for c in chain[:-1]),
            "result.json": body,
        }

    def _chain_above(self, issuer: str) -> Iterator[x509.Certificate]:
        yield self._ca_certificates[issuer]
        if issuer != "root":
            yield self._ca_certificates["root"]


def _general(name: x509.GeneralName) -> str:
    prefix = {x509.DNSName: "DNS", x509.IPAddress: "IP", x509.RFC822Name: "email"}
    return f"{prefix.get(type(name), type(name).__name__)}:{name.value}"
