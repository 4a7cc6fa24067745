"""Signers: the only objects that touch a CA private key.

A signer signs certificate and CRL builders with the hash the key type requires
(`spoolca.keys.algorithms.signature_hash`). The file-key signer is the default; a PKCS#11 (HSM)
signer would implement the same two methods.
"""

from __future__ import annotations

from typing import Protocol

from cryptography import x509

from spoolca.keys.algorithms import PublicKey

__all__ = ["Signer"]


class Signer(Protocol):
    """Signs builders with one CA key; never exposes the key itself."""

    @property
    def public_key(self) -> PublicKey: ...

    def sign_certificate(self, builder: x509.CertificateBuilder) -> x509.Certificate: ...

    def sign_crl(self, builder: x509.CertificateRevocationListBuilder
                 ) -> x509.CertificateRevocationList: ...

    def sign_bytes(self, data: bytes) -> bytes:
        """The signature over `data`, as X.509 carries it (DER ECDSA-Sig-Value, RSA
        PKCS#1 v1.5, or raw Ed25519), with the hash the key type requires."""
        ...
