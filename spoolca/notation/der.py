"""The few DER (X.690) pieces spoolca writes itself, and a reader for one level of TLVs.

cryptography does all X.509 work, but a few places need bytes it does not expose: the
PBES2 key wrapping (keywrap), CRL entries encoded once, at revocation, so that a CRL of
100,000 entries is assembled from stored bytes instead of rebuilt, and a signature made
by another signer than the library's (a token's) around the to-be-signed bytes the
library encoded (signed_parts, signed). And PEM armour around DER already in hand (a
result's certificate, a 5 MB CRL), which the library would encode again.
"""

from __future__ import annotations

import base64
import datetime as dt

__all__ = ["content", "integer", "octets", "pem", "read_tlvs", "sequence", "signed",
           "signed_parts", "time", "tlv"]


def tlv(tag: int, content: bytes) -> bytes:
    length = len(content)
    if length < 0x80:
        return bytes([tag, length]) + content
    size = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + content


def sequence(*parts: bytes) -> bytes:
    return tlv(0x30, b"".join(parts))


def integer(value: int) -> bytes:
    """A non-negative INTEGER, minimal length, a leading zero where the top bit is set."""
    return tlv(0x02, value.to_bytes(value.bit_length() // 8 + 1, "big"))


def octets(value: bytes) -> bytes:
    return tlv(0x04, value)


def time(moment: dt.datetime) -> bytes:
    """RFC 5280 4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050; UTC, seconds."""
    moment = moment.astimezone(dt.UTC)
    if moment.year < 2050:
        return tlv(0x17, moment.strftime("%y%m%d%H%M%SZ").encode())
    return tlv(0x18, moment.strftime("%Y%m%d%H%M%SZ").encode())


def read_tlvs(data: bytes) -> list[tuple[int, int, int]]:
    """(tag, start, end) of each element directly inside `data` (the content octets)."""
    elements, offset = [], 0
    while offset < len(data):
        tag, first = data[offset], data[offset + 1]
        header = 2
        if first < 0x80:
            length = first
        else:
            size = first & 0x7F
            length = int.from_bytes(data[offset + 2:offset + 2 + size], "big")
            header += size
        end = offset + header + length
        if end > len(data):
            raise ValueError("truncated DER")
        elements.append((tag, offset, end))
        offset = end
    return elements


def content(data: bytes) -> bytes:
    """The content octets of one TLV."""
    _tag, start, end = read_tlvs(data)[0]
    header = 2 if data[1] < 0x80 else 2 + (data[1] & 0x7F)
    return data[start + header:end]


def signed_parts(data: bytes) -> tuple[bytes, bytes]:
    """(to-be-signed, signatureAlgorithm) of a SIGNED{} structure: a certificate, a CRL or a
    CSR as a library encoded it, so that another signer can sign the same bytes."""
    body = content(data)
    tbs, algorithm, _signature = read_tlvs(body)
    return body[tbs[1]:tbs[2]], body[algorithm[1]:algorithm[2]]


def signed(tbs: bytes, algorithm: bytes, signature: bytes) -> bytes:
    """SEQUENCE { tbs, signatureAlgorithm, BIT STRING signature }."""
    return sequence(tbs + algorithm + tlv(0x03, b"\x00" + signature))


def pem(label: str, data: bytes) -> bytes:
    """DER armoured as RFC 7468 PEM (64-column base64), as cryptography and OpenSSL write
    it: from the bytes already in hand, without the library encoding the object again."""
    body = base64.b64encode(data)
    lines = b"\n".join(body[i:i + 64] for i in range(0, len(body), 64))
    return (b"-----BEGIN " + label.encode() + b"-----\n" + lines
            + b"\n-----END " + label.encode() + b"-----\n")
