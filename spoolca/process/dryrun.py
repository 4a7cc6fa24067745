"""`spoolca policy check`: the decision on a CSR and every reason, nothing issued.

The whole path runs except the CA key: the certificate that would be issued is signed
by a throwaway key of the same type and linted, so lint findings show up too.
"""

from __future__ import annotations

import datetime as dt

from spoolca.authority.unlock import load_ca_certificates
from spoolca.config import Config, LintMode
from spoolca.errors import CSRError, UsageError
from spoolca.findings import Finding
from spoolca.keys.filekey import lint_twin
from spoolca.register.store import Store
from spoolca.x509.csr import load_request
from spoolca.x509.issuer import IssuingCA, issue_leaf, new_serial
from spoolca.x509.lint import CertificateLinter
from spoolca.x509.policy import evaluate
from spoolca.x509.profiles import CAURLs

__all__ = ["check_request"]


def check_request(config: Config, store: Store, data: bytes, profile_name: str,
                  now: dt.datetime) -> tuple[str, list[Finding]]:
    """("accepted", []) or ("rejected", every finding) for a CSR under a profile."""
    profile = config.profiles.get(profile_name)
    if profile is None:
        raise UsageError(f"no profile {profile_name!r}; configured: "
                         f"{', '.join(config.profiles)}")
    try:
        request = load_request(data)
    except CSRError as exc:
        return "rejected", [Finding(exc.code, str(exc))]
    certificates = load_ca_certificates(store)
    certificate = certificates[profile.issuer]
    decision = evaluate(request, profile, config.policy, certificate,
                        ca_subjects=[c.subject for c in certificates.values()],
                        subject_in_use=store.valid_serial_for_subject_now(profile.issuer, now))
    if not decision.accepted or decision.subject is None:
        return "rejected", list(decision.findings)
    twin = lint_twin(certificate.public_key())  # type: ignore[arg-type]
    ca = IssuingCA(profile.issuer, certificate, twin, CAURLs(), twin)
    signed = issue_leaf(usage=profile.usage, subject=decision.subject,
                        public_key=request.public_key,  # type: ignore[arg-type]
                        names=decision.names, ca=ca,
                        serial=new_serial(lambda _s: False),
                        validity_days=profile.validity_days, now=now,
                        linter=CertificateLinter() if config.lint == LintMode.PKIX else None,
                        constraints=profile.constraints)
    if signed.certificate is None:
        return "rejected", list(signed.findings)
    return "accepted", []
