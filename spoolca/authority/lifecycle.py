"""CA renewal: a new certificate for a CA's same key and subject.

Every certificate the CA issued keeps verifying, with the old certificate or the new
one (same subject, same key, so the same SKI that their AKI names), and its CRLs go on
as before. The guards, as Let's Encrypt's ceremony tool has them: a child never outlives
its parent, and a CA's life is capped.
"""

from __future__ import annotations

import datetime as dt

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from spoolca.errors import SpoolcaError
from spoolca.x509.issuer import IssuingCA, Signed, build_certificate, new_serial, sign_linted
from spoolca.x509.lint import CertificateLinter
from spoolca.x509.profiles import ca_extensions

__all__ = ["MAX_DAYS", "renew_certificate"]

MAX_DAYS = {"root": 25 * 366, "intermediate": 10 * 366}  # the longest life we sign


def renew_certificate(name: str, current: x509.Certificate, parent: IssuingCA,
                      child: x509.Certificate | None, days: int, now: dt.datetime,
                      linter: CertificateLinter | None) -> x509.Certificate:
    """A new certificate for CA NAME (its key and subject as CURRENT), signed by PARENT
    (the root; for the root itself, its own key). CHILD: the intermediate, which the
    renewed root must outlive."""
    if days > MAX_DAYS[name]:
        raise SpoolcaError(f"{days} days is longer than the {name} CA may live "
                           f"({MAX_DAYS[name]} days at most)")
    not_before = now.replace(microsecond=0)
    not_after = not_before + dt.timedelta(days=days)
    self_signed = name == "root"
    if not self_signed and not_after > parent.certificate.not_valid_after_utc:
        raise SpoolcaError(f"the {name} CA would outlive the root it chains to (which ends "
                           f"{parent.certificate.not_valid_after_utc:%Y-%m-%d}): renew the "
                           "root first, or ask for fewer days")
    if child is not None and not_after < child.not_valid_after_utc:
        raise SpoolcaError(f"the root would end before the intermediate under it (which ends "
                           f"{child.not_valid_after_utc:%Y-%m-%d}): ask for more days")
    if not_after <= current.not_valid_after_utc:
        raise SpoolcaError(f"the {name} CA's certificate already lasts until "
                           f"{current.not_valid_after_utc:%Y-%m-%d}: a renewal must end later")
    path_length = current.extensions.get_extension_for_class(x509.BasicConstraints
                                                             ).value.path_length
    builder = build_certificate(
        subject=current.subject, public_key=current.public_key(),  # type: ignore[arg-type]
        issuer=current.subject if self_signed else parent.certificate.subject,
        serial=new_serial(lambda _s: False), not_before=not_before, not_after=not_after,
        extensions=ca_extensions(current.public_key(),  # type: ignore[arg-type]
                                 None if self_signed else parent.certificate, path_length))
    signed: Signed = sign_linted(builder, parent.signer, parent.lint_signer, linter)
    if signed.certificate is None:
        raise SpoolcaError(f"the renewed {name} certificate failed the lint: "
                           + "; ".join(f.message for f in signed.findings))
    return signed.certificate


def summary(cert: x509.Certificate) -> dict[str, str]:
    return {"cert_sha256": cert.fingerprint(hashes.SHA256()).hex(),
            "not_after": cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")}
