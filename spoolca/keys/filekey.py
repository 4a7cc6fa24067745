"""A signer backed by a private key held in memory, unlocked from the key store."""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from spoolca.keys.algorithms import PrivateKey, PublicKey, signature_hash

__all__ = ["FileKeySigner"]


class FileKeySigner:
    """Signs with an in-memory key, always with the hash its type requires."""

    def __init__(self, key: PrivateKey) -> None:
        self._key = key
        self._hash = signature_hash(key)

    def __repr__(self) -> str:  # never print key material, even by accident
        return f"FileKeySigner({type(self._key).__name__})"

    @property
    def public_key(self) -> PublicKey:
        return self._key.public_key()

    def sign_certificate(self, builder: x509.CertificateBuilder) -> x509.Certificate:
        return builder.sign(self._key, self._hash)  # type: ignore[arg-type]

    def sign_crl(self, builder: x509.CertificateRevocationListBuilder
                 ) -> x509.CertificateRevocationList:
        return builder.sign(self._key, self._hash)  # type: ignore[arg-type]

    def sign_bytes(self, data: bytes) -> bytes:
        if isinstance(self._key, ec.EllipticCurvePrivateKey):
            return self._key.sign(data, ec.ECDSA(self._hash))  # type: ignore[arg-type]
        if isinstance(self._key, rsa.RSAPrivateKey):
            return self._key.sign(data, padding.PKCS1v15(), self._hash)  # type: ignore[arg-type]
        return self._key.sign(data)
