"""Pre-issuance linting with pkilint: RFC 5280, and the CA/B Forum's S/MIME or TLS
rules for a certificate whose policy claims them.

Findings of severity WARNING or worse become spoolca findings (`lint.warning`,
`lint.error`, `lint.fatal`) with pkilint's own code in the message; a validator that
crashes is a fatal finding, never a silent pass.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from spoolca.findings import Finding
from spoolca.x509.names import hostname_problem

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from concurrent.futures import Future

__all__ = ["CertificateLinter", "PendingLint", "PooledLinter", "claimed_rulebook",
           "claims_tls_rules", "rulebook_name"]

# pkilint's severities (ValidationFindingSeverity): FATAL 0, ERROR 1, WARNING 2.
_CODES = {0: "lint.fatal", 1: "lint.error", 2: "lint.warning"}


_DOMAIN_SYNTAX = "pkix.invalid_domain_name_syntax"


def _a_wildcard(code: str, message: str | None) -> bool:
    """Whether a finding is pkilint's PKIX domain-name check refusing a wildcard name:
    RFC 5280 leaves wildcards to RFC 6125, so its syntax check refuses `*.example.com`
    outright. The policy issued only a leftmost wildcard over a valid name, in a profile
    that allows them (x509.names); a `*` anywhere else is still refused here."""
    if code != _DOMAIN_SYNTAX or not message:
        return False
    value = message.rpartition(': "')[2].removesuffix('"')
    return value.startswith("*.") and \
        hostname_problem(value[2:], allow_wildcards=False) is None


class _Rulebook:
    """One pkilint validator set and the finding filters its CLI applies with it."""

    def __init__(self, validator: Any, filters: list[Any] | None = None) -> None:
        self.validator, self.filters = validator, filters or []

    def validate(self, root: Any) -> list[Any]:
        from pkilint import finding_filter

        results = self.validator.validate(root)
        if self.filters:
            results, _ = finding_filter.filter_results(self.filters, results)
        return list(results)


def _pkix() -> _Rulebook:
    from pkilint.pkix import certificate, name
    from pkilint.pkix import extension as pkix_extension

    return _Rulebook(certificate.create_pkix_certificate_validator_container(
        certificate.create_decoding_validators(
            name.ATTRIBUTE_TYPE_MAPPINGS, pkix_extension.EXTENSION_MAPPINGS),
        [certificate.create_issuer_validator_container([]),
         certificate.create_validity_validator_container(),
         certificate.create_subject_validator_container([]),
         certificate.create_extensions_validator_container([]),
         certificate.create_spki_validator_container([])]))


def _smime(level: Any, generation: Any) -> _Rulebook:
    from pkilint.cabf import smime
    from pkilint.pkix import certificate

    return _Rulebook(certificate.create_pkix_certificate_validator_container(
        smime.create_decoding_validators(),
        smime.create_subscriber_validators(level, generation)))


def _serverauth(kind: Any) -> _Rulebook:
    from pkilint.cabf import serverauth
    from pkilint.pkix import certificate

    return _Rulebook(certificate.create_pkix_certificate_validator_container(
        serverauth.create_decoding_validators(), serverauth.create_validators(kind)),
        serverauth.create_serverauth_finding_filters(kind))


_CABF_SERVERAUTH = ("2.23.140.1.1", "2.23.140.1.2.1", "2.23.140.1.2.2", "2.23.140.1.2.3")
_CABF_SMIME_ARC = "2.23.140.1.5."


def claims_tls_rules(policy_oids: Iterable[str]) -> bool:
    """Whether certificates asserting POLICY_OIDS claim the CA/B Forum's TLS Baseline
    Requirements (and are linted by them: claimed_rulebook)."""
    return bool(set(policy_oids) & set(_CABF_SERVERAUTH))


def claimed_rulebook(document: Any) -> tuple[Any, ...]:
    """The rules a certificate claims to follow, by its policy OIDs: a CA/B Forum
    reserved S/MIME OID (2.23.140.1.5.L.G, a leaf) names the S/MIME BRs at its validation
    level and generation, a TLS one (2.23.140.1.1, 2.23.140.1.2.x) the TLS BRs for its
    certificate type; anything else, RFC 5280. A profile picks its linter by the policy it
    asserts, so a certificate is never linted by rules it does not claim, and never
    escapes those it does. pkilint's CA/B packages are imported only for a certificate
    that claims them (they cost each lint worker a second of start-up)."""
    policies = {str(oid) for oid in document.policy_oids}
    if not document.is_ca and any(oid.startswith(_CABF_SMIME_ARC) for oid in policies):
        from pkilint.cabf import smime

        claim = smime.determine_validation_level_and_generation(document)
        if claim is not None:
            return ("cabf-smime", *claim)
    if claims_tls_rules(policies):
        from pkilint.cabf import serverauth

        return ("cabf-serverauth", serverauth.determine_certificate_type(document))
    return ("pkix",)


def rulebook_name(claim: tuple[Any, ...]) -> str:
    """A claim as the operator reads it: `pkix`, `cabf-smime MAILBOX-STRICT`, ..."""
    details = "-".join(str(part) for part in claim[1:])
    if claim[0] == "cabf-serverauth":
        details = claim[1].to_option_str
    return f"{claim[0]} {details}".strip()


class CertificateLinter:
    """pkilint's validators for the rules a certificate claims (claimed_rulebook), each
    set built once, when first needed, and reused."""

    def __init__(self) -> None:
        # Imported here: pkilint takes 0.1 s to import, wasted when lint = "off".
        from pkilint import loader

        self._loader = loader.RFC5280CertificateDocumentLoader()
        self._rulebooks: dict[tuple[Any, ...], _Rulebook] = {}

    def _rulebook(self, claim: tuple[Any, ...]) -> _Rulebook:
        if claim not in self._rulebooks:
            makers: dict[str, Callable[..., _Rulebook]] = {
                "pkix": _pkix, "cabf-smime": _smime, "cabf-serverauth": _serverauth}
            self._rulebooks[claim] = makers[claim[0]](*claim[1:])
        return self._rulebooks[claim]

    def rulebook(self, der: bytes) -> str:
        """The name of the rules a DER certificate claims (rulebook_name), as lint() picks
        them: for `policy check-profiles` to say which were applied."""
        return rulebook_name(claimed_rulebook(self._loader.load_der_document(der,
                                                                            "certificate")))

    def lint(self, der: bytes) -> list[Finding]:
        """Every WARNING-or-worse finding pkilint raises on a DER certificate."""
        try:
            document = self._loader.load_der_document(der, "certificate")
            results = self._rulebook(claimed_rulebook(document)).validate(document.root)
        except Exception as exc:  # a crashing linter must fail closed, whatever it raised
            return [Finding("lint.fatal", f"pkilint failed on the certificate: {exc}")]
        findings = []
        for result in results:
            for description in result.finding_descriptions:
                code = _CODES.get(int(description.finding.severity))
                if code and not _a_wildcard(description.finding.code, description.message):
                    detail = f": {description.message}" if description.message else ""
                    findings.append(Finding(code, f"pkilint {description.finding.code} at "
                                            f"{result.node.path}{detail}"))
        return findings

    def submit(self, der: bytes) -> PendingLint:
        """The same as lint(), done now: one core has nothing to overlap it with."""
        return PendingLint(findings=self.lint(der))


class PendingLint:
    """A lint started and not yet waited for: its findings, when they are in."""

    def __init__(self, *, findings: list[Finding] | None = None,
                 chunk: _Chunk | None = None, index: int = 0) -> None:
        self._findings, self._chunk, self._index = findings, chunk, index

    def result(self) -> list[Finding]:
        """Wait for the findings (sending the chunk they wait in, if it is not sent yet)."""
        if self._findings is None:
            assert self._chunk is not None
            self._findings = self._chunk.results()[self._index]
        return self._findings


class _Chunk:
    """Certificates linted by one worker task: one round trip for several, since each task
    and each answer costs the parent's pickling and a wake-up of its pool thread."""

    def __init__(self, linter: PooledLinter) -> None:
        self._linter = linter
        self.ders: list[bytes] = []
        self._future: Future[list[list[Finding]]] | None = None
        self._results: list[list[Finding]] | None = None

    def send(self) -> None:
        if self._future is None and self._results is None:
            self._future, self._results = self._linter.send(self.ders)

    def results(self) -> list[list[Finding]]:
        """Every certificate's findings; a worker that died is replaced by linting here."""
        from concurrent.futures.process import BrokenProcessPool

        self._linter.flush(self)
        if self._results is None:
            assert self._future is not None
            try:
                self._results = self._future.result()
            except BrokenProcessPool:
                self._results = [self._linter.lint_here(der) for der in self.ders]
        return self._results


_WORKER_LINTER: CertificateLinter | None = None


def _start_worker(parent: int) -> None:
    global _WORKER_LINTER  # one linter per worker process
    import signal
    import threading

    # Ctrl-C reaches the whole process group: the parent decides when workers stop (and
    # a worker interrupted in its queue would print a traceback on the terminal).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The parent's pid as the parent saw it: one that died before this worker got here
    # must not leave it watching init for ever.
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    _WORKER_LINTER = CertificateLinter()


def _exit_with_parent(parent: int) -> None:
    """A worker never outlives its parent: a SIGKILLed daemon's workers would otherwise
    wait forever on a queue whose other end they hold themselves."""
    import time

    while os.getppid() == parent:
        time.sleep(1)
    os._exit(0)


def _lint_in_worker(ders: list[bytes]) -> list[list[Finding]]:
    assert _WORKER_LINTER is not None
    return [_WORKER_LINTER.lint(der) for der in ders]


class PooledLinter:
    """The same lint, in worker processes: pkilint is pure Python, so threads share one
    GIL and only processes put both cores to work. The workers are spawned, not forked:
    they never hold a key, only the DER of certificates signed by a throwaway one. A
    broken pool (a worker killed) falls back to linting here."""

    CHUNK = 8  # certificates per worker task

    def __init__(self, workers: int) -> None:
        import multiprocessing
        import threading
        from concurrent.futures import ProcessPoolExecutor

        self._pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(
            "spawn"), initializer=_start_worker, initargs=(os.getpid(),))
        self._here: CertificateLinter | None = None
        self._lock = threading.Lock()  # submit() may be called from two threads
        self._filling: _Chunk | None = None

    def lint(self, der: bytes) -> list[Finding]:
        return self.submit(der).result()

    def submit(self, der: bytes) -> PendingLint:
        """Lint in a worker while the caller goes on: a batch keeps every worker busy.
        Certificates go out CHUNK at a time; waiting for one sends its chunk at once."""
        with self._lock:
            chunk = self._filling = self._filling or _Chunk(self)
            chunk.ders.append(der)
            if len(chunk.ders) >= self.CHUNK:
                self._filling = None
                chunk.send()
            return PendingLint(chunk=chunk, index=len(chunk.ders) - 1)

    def flush(self, chunk: _Chunk) -> None:
        """Send CHUNK now, however full: someone waits for it."""
        with self._lock:
            if self._filling is chunk:
                self._filling = None
            chunk.send()

    def send(self, ders: list[bytes]
             ) -> tuple[Future[list[list[Finding]]] | None, list[list[Finding]] | None]:
        """One task for the workers: its future, or the findings made here if the pool is
        broken (a worker was killed)."""
        from concurrent.futures.process import BrokenProcessPool

        try:
            return self._pool.submit(_lint_in_worker, ders), None
        except BrokenProcessPool:
            return None, [self.lint_here(der) for der in ders]

    def lint_here(self, der: bytes) -> list[Finding]:
        self._here = self._here or CertificateLinter()
        return self._here.lint(der)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
