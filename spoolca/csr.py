"""Loading a submitted request (PEM or DER PKCS#10) and its identity.

A request is identified by the SHA-256 of its DER encoding (invariant 1), so the same
CSR sent as PEM, as DER or twice under different names is one request.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import warnings
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from spoolca.errors import CSRError

__all__ = ["Request", "load_request", "request_sha256"]

_PEM_BLOCK = re.compile(
    rb"-----BEGIN (NEW )?CERTIFICATE REQUEST-----\s*(?P<body>[A-Za-z0-9+/=\s]*?)"
    rb"-----END (NEW )?CERTIFICATE REQUEST-----"
)


@dataclass(frozen=True, slots=True)
class Request:
    """A parsed request: its DER, identity, the cryptography object, and whether its
    self-signature verifies (checked once, at load, where it can run in parallel)."""

    der: bytes
    sha256: str
    csr: x509.CertificateSigningRequest
    signature_valid: bool
    # Parsed once: cryptography builds (and validates) new objects on every access.
    subject: x509.Name
    extensions: x509.Extensions


def request_sha256(data: bytes) -> str:
    """The identity of a submission's bytes: hex SHA-256."""
    return hashlib.sha256(data).hexdigest()


def _der_from(data: bytes) -> bytes:
    if b"-----BEGIN" not in data:
        return data
    blocks = list(_PEM_BLOCK.finditer(data))
    if not blocks:
        raise CSRError("csr.unparseable", "the file holds PEM data but no CERTIFICATE REQUEST "
                       "block")
    if len(blocks) > 1:
        raise CSRError("csr.multiple_requests", f"the file holds {len(blocks)} requests; "
                       "submit one request per file")
    try:
        return base64.b64decode(b"".join(blocks[0].group("body").split()), validate=True)
    except binascii.Error:
        raise CSRError("csr.unparseable", "the PEM block is not valid base64") from None


def load_request(data: bytes) -> Request:
    """Parse a PEM or DER CSR; CSRError (with a finding code) if it is not one.

    Every lazily-parsed field is touched here, so a malformed subject or extension is a
    clean rejection now instead of an exception deep inside policy or issuance.
    """
    der = _der_from(data)
    try:
        with warnings.catch_warnings():
            # cryptography warns about, e.g., a 3-letter countryName; policy reports it
            # as a finding, and a library warning must not reach the daemon's log.
            warnings.simplefilter("ignore")
            csr = x509.load_der_x509_csr(der)
            subject = csr.subject
            extensions = csr.extensions
            csr.public_bytes(serialization.Encoding.DER)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        detail = str(exc).split("\n")[0][:200]
        raise CSRError("csr.unparseable", f"not a valid PKCS#10 request: {detail}") from None
    try:
        valid = csr.is_signature_valid
    except (UnsupportedAlgorithm, ValueError):
        valid = False
    return Request(der=der, sha256=request_sha256(der), csr=csr, signature_valid=valid,
                   subject=subject, extensions=extensions)
