"""Findings as data: a stable dotted code and one sentence, the unit of every rejection.

Codes go into result.json and the audit log and users script against them, so every
code spoolca can emit is listed here, once; `Finding` refuses an unlisted code.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from spoolca.notation.dn import ATTRIBUTES

__all__ = ["CODES", "Finding", "Severity"]

_STATIC_CODES: dict[str, str] = {
    # The submitted file itself.
    "file.not_regular": "the submission is not a regular file (symlink, FIFO, device, directory)",
    "file.too_large": "the file is larger than the request size limit",
    "file.unreadable": "the file could not be read",
    "file.empty": "the file is empty",
    "file.extension_unsupported": "the file name does not end in .csr, .pem, .req or .der",
    "file.unknown_profile": "the file sits in a folder that names no configured profile",
    "file.name_invalid": "the file name is not valid UTF-8 or holds control characters",
    # Parsing the CSR.
    "csr.unparseable": "the file is not a PEM or DER PKCS#10 certificate signing request",
    "csr.multiple_requests": "the PEM file holds more than one request",
    "csr.version_invalid": "the request's version field is not 0 (PKCS#10 v1)",
    "csr.extension_duplicated": "the request carries the same extension twice",
    "csr.signature_invalid": "the request's self-signature does not verify "
    "(no proof of possession)",
    "csr.signature_hash_weak": "the request is signed with MD5, SHA-1 or another weak hash",
    "csr.signature_algorithm_unsupported": "the request's signature algorithm is not supported",
    # Extensions the requester may not decide (RFC 5280 4.2: CA-managed).
    "csr.extension.basic_constraints_ca": "a leaf request asks for basicConstraints CA:TRUE",
    "csr.extension.key_usage": "the request asks for a keyUsage the profile does not grant",
    "csr.extension.extended_key_usage": "the request asks for an extendedKeyUsage the "
    "profile does not grant",
    "csr.extension.name_constraints": "the request asks for nameConstraints",
    "csr.extension.authority_info_access": "the request asks for authorityInfoAccess",
    "csr.extension.crl_distribution_points": "the request asks for cRLDistributionPoints",
    "csr.extension.unsupported_critical": "the request carries a critical extension "
    "spoolca does not understand",
    # The subject public key.
    "key.type_unsupported": "the key type is not RSA, ECDSA P-256/P-384/P-521 or Ed25519, "
    "or its encoding (RSASSA-PSS restriction, explicit curve parameters, compressed point) "
    "could not be certified byte for byte",
    "key.rsa_too_small": "the RSA modulus is shorter than the policy minimum",
    "key.rsa_size_not_multiple_of_8": "the RSA modulus length is not a multiple of 8 bits",
    "key.rsa_exponent": "the RSA public exponent is not 65537",
    "key.rsa_roca": "the RSA modulus has the ROCA fingerprint (CVE-2017-15361)",
    "key.rsa_fermat": "the RSA modulus is factored by Fermat's method (primes too close)",
    "key.ec_curve_unsupported": "the elliptic curve is not P-256, P-384 or P-521",
    # Subject and names.
    "policy.dn.empty": "the request has an empty subject",
    "policy.dn.same_as_ca": "the subject equals the subject of a CA certificate",
    "policy.dn.unknown_attribute": "the subject holds an attribute type spoolca does not know",
    "policy.cn.not_a_hostname": "the commonName of a server request is not a hostname or IP",
    "policy.cn.invalid_email": "the commonName looks like an e-mail address but is not valid",
    "policy.san.too_many": "the request asks for more subjectAltName entries than the policy's "
    "max_san_entries",
    "policy.dn.too_many_attributes": "the request's subject holds more attributes than the "
    "policy's max_subject_attributes",
    "policy.san.missing": "the request names none of the names its profile requires (a "
    "server: a DNS name or IP address; S/MIME: an e-mail address)",
    "key.type_not_in_profile": "the request's key type is not one the profile's key_types "
    "names",
    "policy.san.uri_invalid": "a URI in the request is not an absolute URI",
    "policy.san.dns_invalid": "a DNS name is not a valid hostname",
    "policy.san.dns_not_allowed": "a DNS name is outside the profile's allowed_domains",
    "policy.san.wildcard_not_allowed": "a wildcard name was requested; the profile forbids them",
    "policy.san.ip_not_allowed": "an IP address was requested; the profile forbids them",
    "policy.san.email_invalid": "an e-mail address in the request is not valid",
    "policy.san.type_not_allowed": "the request names a kind of subjectAltName the profile "
    "does not issue",
    "policy.subject.duplicate": "a valid certificate for this subject exists and the "
    "profile sets unique_subject",
    # Issuance.
    "lint.fatal": "pkilint could not lint the certificate; the CA key was not used",
    "lint.error": "pkilint found an error in the certificate; the CA key was not used",
    "lint.warning": "pkilint found a warning in the certificate; the CA key was not used",
    "request.signature_missing": "the profile requires a detached signature and none came",
    "request.signature_invalid": "the request's detached signature does not verify",
    "request.signature_expired": "the request's signature or its signing key has expired",
    "request.signer_unknown": "the request is signed by a key not in the signers' keyring",
    "request.signature_profile_mismatch": "the signer may sign for more than one profile and "
    "the signature does not name this one (gpg --sig-notation profile@spoolca=PROFILE)",
    "request.signer_not_authorized": "the request's signer is not authorized for the profile",
    "revoke.unparseable": "the revocation request is not the documented JSON",
    "revoke.reason_invalid": "the revocation request names no valid reason",
    "revoke.invalidity_in_future": "the revocation request's invalidity date is in the future",
    "revoke.unknown_serial": "the revocation request names a serial not in the register",
    "revoke.already_revoked": "the certificate named is already revoked",
    "ssh.unparseable": "the SSH request's key file is not one OpenSSH public key line",
    "ssh.request_unparseable": "the SSH request file beside the key is not a JSON object",
    "ssh.request_invalid": "the SSH request file has keys or values the format does not allow",
    "ssh.key_type_refused": "the SSH profile does not certify keys of this type",
    "ssh.key_too_small": "the RSA key is smaller than the SSH profile's minimum",
    "ssh.principals_missing": "the SSH request names no principal",
    "ssh.principal_invalid": "a principal is not a user or host name (no patterns)",
    "ssh.principal_refused": "a principal is not among those the SSH profile allows",
    "ssh.validity_too_long": "the validity asked is longer than the SSH profile allows",
    "ssh.extension_refused": "an extension the SSH profile does not give",
    "ssh.option_refused": "a critical option the SSH profile does not let a request set",
    "ssh.option_invalid": "a critical option's value is malformed",
    "request.certificate_revoked": "the request's certificate was revoked; a new CSR with a "
    "new key is needed",
    "request.profile_conflict": "the same CSR was submitted under another profile; "
    "one CSR gets one decision",
    "note.subject_reencoded": "informational, never a reason: the request's subject was "
    "laxly encoded (as node-forge, PKI.js or Latin-1 tools write it) and was re-encoded; "
    "the signature was checked over the bytes as sent",
    "note.extension_left_out": "informational, never a reason: the request asked for a "
    "non-critical extension the CA does not issue (OCSP must-staple, an unknown one); the "
    "certificate was issued without it",
    "note.dn_field_dropped": "informational, never a reason: a subject field of the "
    "request (L=, OU=, emailAddress with email_in_dn = false) is not named by the profile's "
    "dn and was left out of the certificate, as OpenSSL's policy does",
    "note.earlier_answer": "informational, never a reason: this is the answer decided "
    "earlier for the same request, sent again; `spoolca reconsider` decides it afresh",
    "note.extensions_overridden": "informational, never a reason: the request asked for "
    "usage extensions within what the profile grants; the profile's own were issued",
    "result.certificate_not_held": "the request was issued before a restore; this appliance "
    "holds the certificate's serial, names and revocation state, not the certificate "
    "itself (its requester has it)",
    "request.quarantined": "processing this request stopped the service more than once; "
    "it is set aside without being read again (its file is kept in the archive for the "
    "operator): send it again only once it is understood",
    "request.internal_error": "spoolca failed on this request; the log has the error, "
    "and a later resubmission is processed afresh",
    "issue.validity_exhausted": "the issuing CA expires before the certificate could start",
}


def _dn_codes() -> dict[str, str]:
    """Per-attribute codes, e.g. `policy.dn.organizationName_mismatch`."""
    codes = {}
    for field in ATTRIBUTES:
        codes[f"policy.dn.{field}_mismatch"] = f"{field} differs from the issuing CA's"
        codes[f"policy.dn.{field}_missing"] = f"{field} is required but absent"
        codes[f"policy.dn.{field}_too_long"] = f"{field} exceeds its length limit"
        codes[f"policy.dn.{field}_invalid"] = f"{field} has an invalid value"
        codes[f"policy.dn.{field}_repeated"] = f"{field} appears more than once"
    return codes


CODES: dict[str, str] = {**_STATIC_CODES, **_dn_codes()}


class Severity(StrEnum):
    """What a finding does to its request."""

    REFUSAL = "refusal"  # a reason: the request is refused (result.json's `reasons`)
    NOTE = "note"        # informational, never a reason (result.json's `notes`): note.*


@dataclass(frozen=True, slots=True)
class Finding:
    """One reason a request was (or would be) refused: a listed code and one sentence."""

    code: str
    message: str

    def __post_init__(self) -> None:
        if self.code not in CODES:
            raise ValueError(f"finding code {self.code!r} is not listed in spoolca.findings")

    @property
    def severity(self) -> Severity:
        return Severity.NOTE if self.code.startswith("note.") else Severity.REFUSAL

    @classmethod
    def quarantined(cls, file_name: str) -> Finding:
        """The answer to a file that stopped the service too often (process.passes)."""
        return cls("request.quarantined", f"{file_name}: {CODES['request.quarantined']}")

    @classmethod
    def internal_error(cls) -> Finding:
        """The answer to a file spoolca failed on (a bug): the traceback is in the log."""
        return cls("request.internal_error",
                   "spoolca failed on this request; the operator's log has the error")

    def as_dict(self) -> dict[str, str]:
        """The `{code, message}` object of result.json."""
        return {"code": self.code, "message": self.message}
