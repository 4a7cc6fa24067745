"""The throwaway key that signs what pkilint sees must make byte for byte the TBS the CA
key makes, or what was linted is not what is issued. It is a cheaper key than the CA's
(a P-256 key for any EC CA, RSA-2048 for any RSA CA): the TBS names the signature
algorithm, not the key, so the hash must be the CA's."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from spoolca.keys.filekey import FileKeySigner, lint_twin
from tests.pki import make_key, subject

NOW = dt.datetime(2026, 11, 23, tzinfo=dt.UTC)


def _builder() -> x509.CertificateBuilder:
    leaf = make_key("ec-p256")
    return (x509.CertificateBuilder().subject_name(subject("t.sample.com"))
            .issuer_name(subject("Twin CA")).public_key(leaf.public_key())
            .serial_number(77).not_valid_before(NOW)
            .not_valid_after(NOW + dt.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("t.sample.com")]), False))


@pytest.mark.parametrize("kind", ["ec-p256", "ec-p384", "rsa-3072", "ed25519"])
def test_the_twin_makes_the_cas_tbs(kind: str) -> None:
    ca_key = rsa.generate_private_key(65537, 3072) if kind == "rsa-3072" else make_key(kind)
    builder = _builder()
    signed = FileKeySigner(ca_key).sign_certificate(builder)
    trial = lint_twin(ca_key.public_key()).sign_certificate(builder)
    assert trial.tbs_certificate_bytes == signed.tbs_certificate_bytes
    assert trial.signature_algorithm_oid == signed.signature_algorithm_oid


def test_a_cheap_key_with_its_own_hash_would_not() -> None:
    """The counter-case: a P-256 key signing with its own SHA-256 names another algorithm
    than a P-384 CA's SHA-384, and the TBS differs (issuance would refuse it)."""
    ca_key = make_key("ec-p384")
    builder = _builder()
    signed = FileKeySigner(ca_key).sign_certificate(builder)
    naive = FileKeySigner(ec.generate_private_key(ec.SECP256R1())).sign_certificate(builder)
    assert naive.tbs_certificate_bytes != signed.tbs_certificate_bytes
