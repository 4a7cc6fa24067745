"""PKCS#10 requests assembled byte by byte, for what no well-behaved tool will make.

cryptography's builder refuses a second basicConstraints, a version of 1 or an
x400Address; hostile requesters do not ask it. These requests are still signed
properly with a real key, so only the one defect under test is wrong with them.
"""

from __future__ import annotations

from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from spoolca.notation.der import octets, sequence, tlv

_EXTENSION_REQUEST = "1.2.840.113549.1.9.14"
_ECDSA_SHA256 = "1.2.840.10045.4.3.2"


def oid(dotted: str) -> bytes:
    parts = [int(p) for p in dotted.split(".")]
    body = bytes([parts[0] * 40 + parts[1]])
    for value in parts[2:]:
        chunk = [value & 0x7F]
        value >>= 7
        while value:
            chunk.append(0x80 | (value & 0x7F))
            value >>= 7
        body += bytes(reversed(chunk))
    return tlv(0x06, body)


def extension(dotted: str, value: bytes, critical: bool = False) -> bytes:
    """One Extension (RFC 5280 4.1): OID, optional critical, the value's DER wrapped."""
    return sequence(oid(dotted), tlv(0x01, b"\xff") if critical else b"", octets(value))


def raw_csr(*, name: x509.Name | bytes, key: ec.EllipticCurvePrivateKey | None = None,
            extensions: Sequence[bytes] = (), version: int = 0) -> tuple[object, bytes]:
    """A DER CSR with exactly these extensions (raw DER), signed with an ECDSA key; NAME
    as raw DER bytes where its encoding itself is under test."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    spki = key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    attributes = b""
    if extensions:
        attribute = sequence(oid(_EXTENSION_REQUEST),
                             tlv(0x31, sequence(*extensions)))
        attributes = attribute
    name_der = name if isinstance(name, bytes) else name.public_bytes()
    info = sequence(tlv(0x02, bytes([version])), name_der, spki,
                    tlv(0xA0, attributes))
    signature = key.sign(info, ec.ECDSA(hashes.SHA256()))
    return key, sequence(info, sequence(oid(_ECDSA_SHA256)), tlv(0x03, b"\x00" + signature))


def name_of(*pairs: tuple[str, int, bytes]) -> bytes:
    """A subject, one RDN per (OID, string tag, value bytes), encoded as given."""
    return sequence(*(tlv(0x31, sequence(oid(dotted), tlv(tag, value)))
                      for dotted, tag, value in pairs))


def x400_san() -> bytes:
    """A subjectAltName holding an x400Address ([3]), which cryptography cannot represent."""
    return sequence(tlv(0xA3, sequence()))
