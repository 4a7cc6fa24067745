"""Policy on the extensions a request carries: the CA decides them (RFC 5280 4.2).

Usage extensions (keyUsage, extendedKeyUsage, basicConstraints) within what the profile
grants anyway are accepted with a note, since GnuTLS certtool and Java keytool always
send them; more than the profile grants, and every other CA-managed extension, is refused.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.x509.oid import ExtensionOID

from spoolca.config import CertificateType
from spoolca.findings import Finding
from spoolca.x509.csr import Request
from spoolca.x509.profiles import Grant, grant

__all__ = ["check_extensions"]

_CA_MANAGED = {
    ExtensionOID.NAME_CONSTRAINTS: ("csr.extension.name_constraints", "nameConstraints"),
    ExtensionOID.AUTHORITY_INFORMATION_ACCESS: ("csr.extension.authority_info_access",
                                                "authorityInfoAccess"),
    ExtensionOID.CRL_DISTRIBUTION_POINTS: ("csr.extension.crl_distribution_points",
                                           "cRLDistributionPoints"),
}
# Harmless on any request: we compute our own (the seeds' v3_req sends both).
_IGNORED = {ExtensionOID.SUBJECT_KEY_IDENTIFIER, ExtensionOID.SUBJECT_ALTERNATIVE_NAME}
# Non-critical requests the CA does not grant, said in result.json (a note, never a reason).
_LEFT_OUT = {
    ExtensionOID.TLS_FEATURE: "OCSP must-staple (TLS feature status_request), which this "
    "CA cannot honour: it publishes CRLs and runs no OCSP responder, and a must-staple "
    "certificate without OCSP fails where it is enforced",
}
_USAGE_FLAGS = ("digital_signature", "content_commitment", "key_encipherment",
                "data_encipherment", "key_agreement", "key_cert_sign", "crl_sign")


def _usage_names(usage: x509.KeyUsage) -> set[str]:
    names = {flag for flag in _USAGE_FLAGS if getattr(usage, flag)}
    if usage.key_agreement:  # encipher_only/decipher_only exist only with keyAgreement
        names |= {flag for flag in ("encipher_only", "decipher_only") if getattr(usage, flag)}
    return names


def _purpose_name(oid: x509.ObjectIdentifier) -> str:
    return oid._name if oid._name != "Unknown OID" else oid.dotted_string


def _check_requested_usage(ext: x509.Extension[x509.ExtensionType], granted: Grant,
                           kind: str) -> tuple[Finding | None, str | None]:
    """(refusal, note) for keyUsage, extendedKeyUsage or basicConstraints on a request:
    a subset of what the profile grants is noted and overridden; more is refused."""
    value = ext.value
    if isinstance(value, x509.BasicConstraints):
        if value.ca and not granted.ca:
            return Finding("csr.extension.basic_constraints_ca", f"a {kind} request asks to "
                           "be a CA (basicConstraints CA:TRUE); submit it to a CA (subca) "
                           "profile if intended"), None
        return None, f"basicConstraints CA:{str(value.ca).upper()}"
    if isinstance(value, x509.KeyUsage):
        extra = _usage_names(value) - _usage_names(granted.key_usage)
        if extra:
            return Finding("csr.extension.key_usage", f"the request asks for keyUsage "
                           f"{', '.join(sorted(extra))}, which the {kind} profile does not "
                           "grant; remove it from the request"), None
        return None, f"keyUsage {', '.join(sorted(_usage_names(value)))}"
    assert isinstance(value, x509.ExtendedKeyUsage)
    asked = list(value)
    extra_purposes = [oid for oid in asked if oid not in granted.purposes]
    if extra_purposes:
        return Finding("csr.extension.extended_key_usage", f"the request asks for "
                       f"extendedKeyUsage {', '.join(map(_purpose_name, extra_purposes))}, "
                       f"which the {kind} profile does not grant; remove it from the "
                       "request"), None
    return None, f"extendedKeyUsage {', '.join(map(_purpose_name, asked))}"


_USAGE_EXTENSIONS = {ExtensionOID.BASIC_CONSTRAINTS, ExtensionOID.KEY_USAGE,
                     ExtensionOID.EXTENDED_KEY_USAGE}


def check_extensions(request: Request, usage: CertificateType
                     ) -> tuple[list[Finding], list[Finding]]:
    """(refusals, notes) for the extensions a request carries, against what its
    certificate type grants."""
    kind = usage.name
    findings, requested, left_out = [], [], []
    granted: Grant | None = None
    for ext in request.extensions:
        if ext.oid in _USAGE_EXTENSIONS:
            if request.public_key is None:
                continue  # refused as key.type_unsupported; no grant to compare with
            if granted is None:
                granted = grant(usage, request.public_key)  # type: ignore[arg-type]
            refusal, note = _check_requested_usage(ext, granted, kind)
            findings += [refusal] if refusal else []
            requested += [note] if note else []
        elif ext.oid in _CA_MANAGED:
            code, name = _CA_MANAGED[ext.oid]
            findings.append(Finding(code, f"the request asks for {name}; the "
                                    f"{kind} profile decides it, remove it from the request"))
        elif ext.oid not in _IGNORED and ext.critical:
            findings.append(Finding("csr.extension.unsupported_critical",
                                    f"the request marks extension {ext.oid.dotted_string} "
                                    "critical, and spoolca does not issue it"))
        elif ext.oid not in _IGNORED:
            left_out.append(_LEFT_OUT.get(ext.oid, f"extension {ext.oid.dotted_string}"))
    notes = [Finding("note.extensions_overridden", f"the request asked for {'; '.join(requested)}"
                     f"; the certificate carries the {kind} profile's own usage extensions")
             ] if requested else []
    if left_out:
        notes.append(Finding("note.extension_left_out", f"the request asked for "
                             f"{'; '.join(left_out)}: not issued (the certificate carries only "
                             f"the {kind} profile's extensions and the subjectAltName)"))
    return findings, notes
