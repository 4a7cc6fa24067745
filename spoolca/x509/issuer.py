"""Build, lint, sign: the only path from a decision to a certificate.

Pre-issuance linting as Let's Encrypt does it: the certificate is first signed with a
throwaway key of the CA key's type and linted; only a clean result is signed with the
CA key, and the two to-be-signed encodings must be byte-identical, so what was linted
is exactly what was issued. No I/O; time is passed in.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from spoolca.config import CertificateType
from spoolca.config.constraints import SubCAConstraints
from spoolca.errors import InternalError
from spoolca.findings import Finding
from spoolca.keys.algorithms import PublicKey
from spoolca.keys.signer import Signer
from spoolca.x509.lint import CertificateLinter, PendingLint, PooledLinter
from spoolca.x509.profiles import CAURLs, Extension, leaf_extensions

__all__ = [
    "IssuingCA",
    "Linting",
    "Signed",
    "build_certificate",
    "finish_linted",
    "issue_leaf",
    "leaf_builder",
    "new_serial",
    "serial_hex",
    "sign_linted",
    "start_linted",
]


@dataclass(frozen=True, slots=True)
class IssuingCA:
    """A CA able to sign: its certificate, its signer, and a throwaway twin for linting."""

    name: str
    certificate: x509.Certificate
    signer: Signer
    urls: CAURLs
    lint_signer: Signer


@dataclass(frozen=True, slots=True)
class Signed:
    """A certificate signed by the CA key, or the findings that stopped it."""

    certificate: x509.Certificate | None
    findings: tuple[Finding, ...] = ()


def new_serial(taken: Callable[[int], bool]) -> int:
    """A positive 127-bit serial from the OS CSPRNG, unused in the register.

    127 bits keep the DER INTEGER positive in at most 16 octets (RFC 5280 4.1.2.2 allows
    20) and carry far more than the CA/B Forum's 64 bits of entropy.
    """
    while True:
        serial = secrets.randbits(127)
        if serial > 0 and not taken(serial):
            return serial


def serial_hex(serial: int) -> str:
    """The serial as OpenSSL's index.txt writes it: upper-case hex, whole octets."""
    text = f"{serial:X}"
    return text if len(text) % 2 == 0 else "0" + text


def build_certificate(*, subject: x509.Name, public_key: PublicKey, issuer: x509.Name,
                      serial: int, not_before: dt.datetime, not_after: dt.datetime,
                      extensions: Sequence[Extension]) -> x509.CertificateBuilder:
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )
    for value, critical in extensions:
        builder = builder.add_extension(value, critical=critical)
    return builder


@dataclass(frozen=True, slots=True)
class Linting:
    """A certificate on its way: its TBS signed by the throwaway twin and handed to the
    linter, the CA key not used yet."""

    builder: x509.CertificateBuilder
    signer: Signer
    trial: x509.Certificate | None = None  # None: lint is off
    pending: PendingLint | None = None


def start_linted(builder: x509.CertificateBuilder, signer: Signer, lint_signer: Signer,
                 linter: CertificateLinter | PooledLinter | None) -> Linting:
    """Sign the TBS with the throwaway twin and start linting it (in a worker process where
    there is one), so that many certificates can be linted at once."""
    if linter is None:
        return Linting(builder, signer)
    trial = lint_signer.sign_certificate(builder)
    return Linting(builder, signer, trial, linter.submit(trial.public_bytes(Encoding.DER)))


def finish_linted(linting: Linting) -> Signed:
    """Sign with the real key only after the same TBS, signed by the twin, linted clean."""
    if linting.trial is None or linting.pending is None:
        return Signed(linting.signer.sign_certificate(linting.builder))
    findings = linting.pending.result()
    if findings:
        return Signed(None, tuple(findings))
    certificate = linting.signer.sign_certificate(linting.builder)
    if certificate.tbs_certificate_bytes != linting.trial.tbs_certificate_bytes:
        raise InternalError("the signed certificate differs from the linted one")
    return Signed(certificate)


def sign_linted(builder: x509.CertificateBuilder, signer: Signer, lint_signer: Signer,
                linter: CertificateLinter | PooledLinter | None) -> Signed:
    """Sign with the real key only after the same TBS signed by a throwaway key lints clean."""
    return finish_linted(start_linted(builder, signer, lint_signer, linter))


def leaf_builder(*, usage: CertificateType, subject: x509.Name, public_key: PublicKey,
                 names: Sequence[x509.GeneralName], ca: IssuingCA, serial: int,
                 validity_days: int, now: dt.datetime,
                 constraints: SubCAConstraints | None = None
                 ) -> x509.CertificateBuilder | Signed:
    """A certificate of a type, ready to sign; its life is capped by the CA's own
    notAfter (a Signed with the finding when nothing is left of it). Both ends count
    (RFC 5280 4.1.2.5), so VALIDITY_DAYS ends one second before the same time of day:
    825 days is 825 x 86400 seconds, as the CA/B Forum's linters count it. NOW may be
    backdated (`[clock] backdate_minutes`); never before the CA's own notBefore."""
    not_before = max(now.replace(microsecond=0), ca.certificate.not_valid_before_utc)
    not_after = min(not_before + dt.timedelta(days=validity_days, seconds=-1),
                    ca.certificate.not_valid_after_utc)
    if not_after <= not_before:
        return Signed(None, (Finding("issue.validity_exhausted",
                                     f"the issuing CA {ca.name} expires at "
                                     f"{ca.certificate.not_valid_after_utc:%Y-%m-%d %H:%M}Z"),))
    return build_certificate(
        subject=subject, public_key=public_key, issuer=ca.certificate.subject, serial=serial,
        not_before=not_before, not_after=not_after,
        extensions=leaf_extensions(usage, public_key, names, ca.certificate, ca.urls,
                                   constraints),
    )


def issue_leaf(*, usage: CertificateType, subject: x509.Name, public_key: PublicKey,
               names: Sequence[x509.GeneralName], ca: IssuingCA, serial: int,
               validity_days: int, now: dt.datetime,
               linter: CertificateLinter | PooledLinter | None,
               constraints: SubCAConstraints | None = None) -> Signed:
    """Issue a certificate of a type, linted first."""
    built = leaf_builder(usage=usage, subject=subject, public_key=public_key, names=names,
                         ca=ca, serial=serial, validity_days=validity_days, now=now,
                         constraints=constraints)
    if isinstance(built, Signed):
        return built
    return sign_linted(built, ca.signer, ca.lint_signer, linter)
