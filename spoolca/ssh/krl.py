"""OpenSSH key revocation lists (PROTOCOL.krl), as `ssh-keygen -k` writes them: for each
CA, the serials and key IDs of the certificates it revoked. sshd reads it with
`RevokedKeys`; `ssh-keygen -Q -f KRL CERT` says whether a certificate is revoked."""

from __future__ import annotations

import datetime as dt
import struct
from collections.abc import Iterable

__all__ = ["encode_krl"]

_MAGIC = b"SSHKRL\n\0"
_FORMAT_VERSION = 1
_SECTION_CERTIFICATES = 1
_CERT_SERIAL_LIST = 0x20
_CERT_KEY_ID = 0x23


def _string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def encode_krl(revoked: Iterable[tuple[bytes, Iterable[int], Iterable[str]]], *,
               version: int, generated: dt.datetime, comment: str = "spoolca") -> bytes:
    """The KRL of REVOKED: (CA key blob, serials, key IDs) per CA; VERSION strictly
    increasing (as a CRL number), GENERATED its date."""
    out = [_MAGIC, struct.pack(">IQQQ", _FORMAT_VERSION, version,
                               int(generated.timestamp()), 0),
           _string(b""), _string(comment.encode())]
    for ca_blob, serials, key_ids in revoked:
        sections = b""
        listed = sorted(set(serials))
        if listed:
            sections += bytes([_CERT_SERIAL_LIST]) + _string(
                b"".join(struct.pack(">Q", s) for s in listed))
        names = sorted(set(key_ids))
        if names:
            sections += bytes([_CERT_KEY_ID]) + _string(
                b"".join(_string(n.encode()) for n in names))
        if sections:
            out.append(bytes([_SECTION_CERTIFICATES]) + _string(
                _string(ca_blob) + _string(b"") + sections))
    return b"".join(out)
