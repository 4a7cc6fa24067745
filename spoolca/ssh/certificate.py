"""An OpenSSH certificate, made with the cryptography library's SSHCertificateBuilder.

A key in a PKCS#11 token cannot be handed to the builder: the certificate is built and
signed by a throwaway twin key of the same curve, and its to-be-signed part (everything
before the signature key) is taken with the CA's own key in place of the twin's and
signed by the token (PROTOCOL.certkeys; RFC 5656 3.1.2 for the ECDSA signature), then
parsed and verified before it is used: the same pattern as X.509 in a token.
"""

from __future__ import annotations

import base64
import datetime as dt
import struct
from typing import Protocol

from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import (
    SSHCertificate,
    SSHCertificateBuilder,
    SSHCertificateType,
    SSHCertPrivateKeyTypes,
    load_ssh_public_identity,
)

from spoolca.errors import KeyStoreError
from spoolca.ssh.policy import SSHDecision
from spoolca.ssh.request import SSHRequest, key_blob

__all__ = ["ExternalSigner", "sign_ssh_certificate"]

_ECDSA_NAMES = {"secp256r1": b"ecdsa-sha2-nistp256", "secp384r1": b"ecdsa-sha2-nistp384"}


class ExternalSigner(Protocol):
    """A key that signs where it lives (keys.token.TokenSigner): EC only here."""

    @property
    def public_key(self) -> object: ...

    def sign_bytes(self, data: bytes) -> bytes: ...


def sign_ssh_certificate(request: SSHRequest, decision: SSHDecision, cert_type: str,
                         ca_key: SSHCertPrivateKeyTypes | ExternalSigner, serial: int,
                         since: dt.datetime,
                         ca_end: dt.datetime | None = None) -> SSHCertificate:
    """The certificate DECISION describes, valid from SINCE for its days (both ends
    count, as for X.509: one second less), never past CA_END."""
    start = int(since.timestamp())
    end = start + decision.validity_days * 86400 - 1
    if ca_end is not None:
        end = min(end, int(ca_end.timestamp()))
    builder = (SSHCertificateBuilder()
               .public_key(request.public_key)
               .serial(serial)
               .type(SSHCertificateType.USER if cert_type == "user"
                     else SSHCertificateType.HOST)
               .key_id(decision.key_id.encode())
               .valid_principals([p.encode() for p in decision.principals])
               .valid_after(start)
               .valid_before(end))
    for name, value in decision.critical_options:  # the library frames the value
        builder = builder.add_critical_option(name.encode(), value.encode())
    for name in decision.extensions:
        builder = builder.add_extension(name.encode(), b"")
    if hasattr(ca_key, "sign_bytes"):  # a key that stays in its token
        return _signed_around(builder, ca_key)
    return builder.sign(ca_key)


def _string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def _mpint(value: int) -> bytes:
    raw = value.to_bytes((value.bit_length() + 8) // 8, "big") if value else b""
    return _string(raw)


def _signed_around(builder: SSHCertificateBuilder, signer: ExternalSigner) -> SSHCertificate:
    public = signer.public_key
    if not isinstance(public, ec.EllipticCurvePublicKey) or \
            public.curve.name not in _ECDSA_NAMES:
        raise KeyStoreError("an SSH CA key in a token must be ECDSA P-256 or P-384")
    twin = ec.generate_private_key(public.curve)
    kind, encoded = builder.sign(twin).public_bytes().split()[:2]
    blob = base64.b64decode(encoded)
    marker = _string(key_blob(twin.public_key()))
    at = blob.rfind(marker)
    if at <= 0:
        raise KeyStoreError("unexpected SSH certificate layout from the library")
    tbs = blob[:at] + _string(key_blob(public))
    r, s = decode_dss_signature(signer.sign_bytes(tbs))
    signature = _string(_ECDSA_NAMES[public.curve.name]) + _string(_mpint(r) + _mpint(s))
    made = load_ssh_public_identity(kind + b" " + base64.b64encode(tbs + _string(signature)))
    if not isinstance(made, SSHCertificate):
        raise KeyStoreError("the token-signed SSH certificate did not parse")
    try:
        made.verify_cert_signature()  # fail closed: the token's signature, checked
    except Exception:
        raise KeyStoreError("the token made an SSH signature that does not verify; nothing "
                            "was signed") from None
    return made

