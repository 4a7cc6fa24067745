"""A signer backed by a private key held in memory, unlocked from the key store."""

from __future__ import annotations

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from spoolca.keys.algorithms import PrivateKey, PublicKey, generate_like, signature_hash

__all__ = ["FileKeySigner", "lint_twin"]


class FileKeySigner:
    """Signs with an in-memory key, always with the hash its type requires."""

    def __init__(self, key: PrivateKey, hash_like: PrivateKey | PublicKey | None = None) -> None:
        """HASH_LIKE: sign with the hash this other key's type requires (a lint twin)."""
        self._key = key
        self._hash = signature_hash(hash_like or key)

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


def lint_twin(ca_key: PublicKey) -> FileKeySigner:
    """A throwaway signer whose certificates have byte for byte the TBS the CA key's would:
    the same signature algorithm (which the TBS names), from the cheapest key that makes it.
    An EC CA's twin is a P-256 key signing with the CA's hash (ecdsa-with-SHA384 names the
    hash, not the curve), an RSA CA's a 2048-bit key: pre-issuance lint signs every
    certificate twice, and a P-384 or RSA-4096 signature costs several P-256 ones."""
    if isinstance(ca_key, ec.EllipticCurvePublicKey):
        return FileKeySigner(ec.generate_private_key(ec.SECP256R1()), hash_like=ca_key)
    if isinstance(ca_key, rsa.RSAPublicKey):
        return FileKeySigner(rsa.generate_private_key(65537, 2048), hash_like=ca_key)
    return FileKeySigner(generate_like(ca_key))
