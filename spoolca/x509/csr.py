"""Loading a submitted request (PEM or DER PKCS#10) and its identity.

A request is identified by the SHA-256 of its DER encoding (invariant 1), so the same
CSR sent as PEM, as DER or twice under different names is one request.

The bytes are untrusted (invariant 9): the PEM armour is found with `bytes.find`, never
a backtracking regular expression, so a hostile file costs time linear in its size, and
whatever the parser raises becomes a `CSRError` with a finding code, never an exception
that escapes to the batch.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import warnings
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, padding, rsa

from spoolca.errors import CSRError
from spoolca.notation import der as der_codec
from spoolca.x509.laxcsr import explain, repair

__all__ = ["Request", "checked_request", "load_request", "request_sha256"]

_BEGIN = (b"-----BEGIN CERTIFICATE REQUEST-----", b"-----BEGIN NEW CERTIFICATE REQUEST-----")
_END = (b"-----END CERTIFICATE REQUEST-----", b"-----END NEW CERTIFICATE REQUEST-----")
_BASE64 = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")
_PEM_SPACE = frozenset(b" \t\r\n")


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
    # The SubjectPublicKeyInfo exactly as the requester encoded it (invariant 11).
    spki: bytes
    # The key, parsed once; None if cryptography cannot load its type (policy refuses it).
    public_key: object | None
    # A lax subject encoding made DER-correct (x509.laxcsr): what was re-encoded.
    repairs: tuple[str, ...] = ()


def request_sha256(data: bytes) -> str:
    """The identity of a submission's bytes: hex SHA-256."""
    return hashlib.sha256(data).hexdigest()


def _find_marker(data: bytes, markers: tuple[bytes, ...], start: int) -> tuple[int, int]:
    """(position, length) of the first of `markers` at or after `start`, or (-1, 0)."""
    found = [(data.find(m, start), len(m)) for m in markers]
    found = [(at, size) for at, size in found if at >= 0]
    return min(found) if found else (-1, 0)


def _pem_bodies(data: bytes) -> list[bytes]:
    """The base64 body of every CERTIFICATE REQUEST block, in one linear scan."""
    bodies: list[bytes] = []
    offset = 0
    while True:
        begin, size = _find_marker(data, _BEGIN, offset)
        if begin < 0:
            return bodies
        end, end_size = _find_marker(data, _END, begin + size)
        if end < 0:
            return bodies
        bodies.append(data[begin + size:end])
        offset = end + end_size


def _der_from(data: bytes) -> bytes:
    if b"-----BEGIN" not in data:
        return data
    bodies = _pem_bodies(data)
    if not bodies:
        raise CSRError("csr.unparseable", "the file holds PEM data but no CERTIFICATE REQUEST "
                       "block")
    if len(bodies) > 1:
        raise CSRError("csr.multiple_requests", f"the file holds {len(bodies)} requests; "
                       "submit one request per file")
    body = bodies[0]
    if not set(body) <= _BASE64 | _PEM_SPACE:
        raise CSRError("csr.unparseable", "the PEM block holds characters that are not base64")
    try:
        return base64.b64decode(b"".join(body.split()), validate=True)
    except binascii.Error:
        raise CSRError("csr.unparseable", "the PEM block is not valid base64") from None


def _requested_spki(der: bytes) -> bytes:
    """The subjectPKInfo element of CertificationRequestInfo (RFC 2986 4.1), as sent."""
    outer = der_codec.content(der)
    _tag, start, end = der_codec.read_tlvs(outer)[0]
    info = der_codec.content(outer[start:end])
    _tag, start, end = der_codec.read_tlvs(info)[2]
    return info[start:end]


def proof_of_possession(csr: x509.CertificateSigningRequest, key: object | None = None,
                        signed: bytes | None = None) -> bool:
    """True if the request's signature verifies with its own public key (KEY, if the
    caller has loaded it already: loading an EC point costs 5 us).

    Checked with the key itself, whatever the hash: cryptography's `is_signature_valid`
    refuses SHA-1, which would report a valid signature as invalid. How strong the hash
    is gets judged apart (policy: csr.signature_hash_weak). SIGNED: the bytes the
    requester signed, where the request was re-encoded (x509.laxcsr).
    """
    try:
        key = key if key is not None else csr.public_key()
        data, signature = signed or csr.tbs_certrequest_bytes, csr.signature
        digest = csr.signature_hash_algorithm
        if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
            key.verify(signature, data)
        elif isinstance(key, rsa.RSAPublicKey):
            scheme = csr.signature_algorithm_parameters
            if not isinstance(scheme, padding.PSS | padding.PKCS1v15):
                return False
            if digest is None:
                return False
            key.verify(signature, data, scheme, digest)
        elif isinstance(key, ec.EllipticCurvePublicKey) and digest is not None:
            key.verify(signature, data, ec.ECDSA(digest))
        elif isinstance(key, dsa.DSAPublicKey) and digest is not None:  # refused for its
            key.verify(signature, data, digest)                        # type, truly signed
        else:
            return False
    except (InvalidSignature, UnsupportedAlgorithm, ValueError, TypeError):
        return False
    return True


def _parse(der: bytes) -> tuple[x509.CertificateSigningRequest, x509.Name, x509.Extensions]:
    """Parse and touch every lazily-parsed field, mapping each failure to a finding."""
    with warnings.catch_warnings():
        # cryptography warns about, e.g., a 3-letter countryName; policy reports it
        # as a finding, and a library warning must not reach the daemon's log.
        warnings.simplefilter("ignore")
        try:
            csr = x509.load_der_x509_csr(der)
        except x509.InvalidVersion as exc:
            raise CSRError("csr.version_invalid", f"the request's version is {exc.parsed_version}"
                           "; PKCS#10 (RFC 2986) allows only 0 (v1)") from None
        subject = csr.subject
        try:
            extensions = csr.extensions
        except x509.DuplicateExtension as exc:
            raise CSRError("csr.extension_duplicated", f"the request carries extension "
                           f"{exc.oid.dotted_string} more than once (RFC 5280 4.2)") from None
        except x509.UnsupportedGeneralNameType as exc:
            raise CSRError("policy.san.type_not_allowed", f"the request names a kind of "
                           f"subjectAltName spoolca never issues ({exc})") from None
        csr.public_bytes(serialization.Encoding.DER)
    return csr, subject, extensions


def load_request(data: bytes) -> Request:
    """Parse a PEM or DER CSR; CSRError (with a finding code) if it is not one.

    Every lazily-parsed field is touched here, so a malformed subject or extension is a
    clean rejection now instead of an exception deep inside policy or issuance. Any
    exception the parser raises is a rejection: the list of what a library may raise on
    hostile bytes is not ours to keep complete.
    """
    return _request(_der_from(data), None)


def checked_request(der: bytes, signature_valid: bool) -> Request:
    """A request that `load_request` took already, in the reader (spoolca.process.reading),
    from its DER and its proof of possession's verdict: parsed again, not verified again."""
    return _request(der, signature_valid)


def _request(der: bytes, signature_valid: bool | None) -> Request:
    repaired = None
    try:
        try:
            csr, subject, extensions = _parse(der)
        except CSRError:
            raise
        except Exception:
            repaired = repair(der)  # only a lax subject encoding? (OpenSSL takes those)
            if repaired is None:
                raise
            csr, subject, extensions = _parse(repaired.der)
        spki = _requested_spki(der)
    except CSRError:
        raise
    except Exception as exc:
        raise CSRError("csr.unparseable", explain(str(exc).split("\n")[0][:400], der)) from None
    try:
        public_key: object | None = csr.public_key()
    except Exception:  # an unknown or malformed key: key.type_unsupported, not a crash
        public_key = None
    if signature_valid is None:
        signature_valid = public_key is not None and proof_of_possession(
            csr, public_key, repaired.signed if repaired else None)
    return Request(der=der, sha256=request_sha256(der), csr=csr,
                   signature_valid=signature_valid and public_key is not None,
                   subject=subject, extensions=extensions, spki=spki, public_key=public_key,
                   repairs=repaired.changes if repaired else ())
