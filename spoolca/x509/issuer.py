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

from spoolca.constraints import SubCAConstraints
from spoolca.errors import SpoolcaError
from spoolca.findings import Finding
from spoolca.keys.algorithms import PublicKey
from spoolca.keys.signer import Signer
from spoolca.x509.lint import CertificateLinter
from spoolca.x509.profiles import CAURLs, Extension, leaf_extensions

__all__ = [
    "IssuingCA",
    "Signed",
    "build_certificate",
    "issue_leaf",
    "new_serial",
    "serial_hex",
    "sign_linted",
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


def sign_linted(builder: x509.CertificateBuilder, signer: Signer, lint_signer: Signer,
                linter: CertificateLinter | None) -> Signed:
    """Sign with the real key only after the same TBS signed by a throwaway key lints clean."""
    if linter is None:
        return Signed(signer.sign_certificate(builder))
    trial = lint_signer.sign_certificate(builder)
    findings = linter.lint(trial.public_bytes(Encoding.DER))
    if findings:
        return Signed(None, tuple(findings))
    certificate = signer.sign_certificate(builder)
    if certificate.tbs_certificate_bytes != trial.tbs_certificate_bytes:
        raise SpoolcaError("internal error: the signed certificate differs from the linted one")
    return Signed(certificate)


def issue_leaf(*, kind: str, subject: x509.Name, public_key: PublicKey,
               names: Sequence[x509.GeneralName], ca: IssuingCA, serial: int,
               validity_days: int, now: dt.datetime,
               linter: CertificateLinter | None,
               constraints: SubCAConstraints | None = None) -> Signed:
    """Issue a certificate of a profile kind; its life is capped by the CA's own notAfter."""
    not_before = now.replace(microsecond=0)
    not_after = min(not_before + dt.timedelta(days=validity_days),
                    ca.certificate.not_valid_after_utc)
    if not_after <= not_before:
        return Signed(None, (Finding("issue.validity_exhausted",
                                     f"the issuing CA {ca.name} expires at "
                                     f"{ca.certificate.not_valid_after_utc:%Y-%m-%d %H:%M}Z"),))
    builder = build_certificate(
        subject=subject, public_key=public_key, issuer=ca.certificate.subject, serial=serial,
        not_before=not_before, not_after=not_after,
        extensions=leaf_extensions(kind, public_key, names, ca.certificate, ca.urls,
                                   constraints),
    )
    return sign_linted(builder, ca.signer, ca.lint_signer, linter)
