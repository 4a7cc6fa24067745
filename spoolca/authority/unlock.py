"""Unlocking the CAs: certificates from the register, keys from the key store.

A key is checked against its certificate before use, so a swapped key file is an error
at unlock time rather than a batch of certificates that do not verify.
"""

from __future__ import annotations

from collections.abc import Iterable

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from spoolca.config import Config
from spoolca.errors import KeyStoreError
from spoolca.keys.algorithms import generate_like, load_private_key, read_passphrase
from spoolca.keys.filekey import FileKeySigner
from spoolca.memory import no_core_dumps
from spoolca.openpgp import ApplianceKey
from spoolca.register.store import Store
from spoolca.x509.issuer import IssuingCA
from spoolca.x509.profiles import CAURLs

__all__ = ["load_audit_key", "load_authorities", "load_ca_certificates"]

_SPKI = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def load_ca_certificates(store: Store) -> dict[str, x509.Certificate]:
    """Root and intermediate certificates, as recorded at init."""
    return {name: x509.load_der_x509_certificate(store.authority_der(name))
            for name in ("root", "intermediate")}


def load_authorities(config: Config, store: Store, names: Iterable[str]) -> dict[str, IssuingCA]:
    """Unlock the named CAs' keys (one passphrase read) and pair them with certificates."""
    no_core_dumps()  # before any secret is read
    certificates = load_ca_certificates(store)
    passphrase = read_passphrase(config.passphrase_credential, config.passphrase_file)
    authorities = {}
    for name in sorted(set(names)):
        settings = config.authorities[name]
        key = load_private_key(settings.key, passphrase)
        certificate = certificates[name]
        if key.public_key().public_bytes(*_SPKI) != certificate.public_key().public_bytes(*_SPKI):
            raise KeyStoreError(f"the key {settings.key} does not belong to the {name} CA "
                                "certificate in the register")
        authorities[name] = IssuingCA(
            name=name,
            certificate=certificate,
            signer=FileKeySigner(key),
            urls=CAURLs(settings.crl_url, settings.issuer_url),
            lint_signer=FileKeySigner(generate_like(key)),
        )
    return authorities


def load_audit_key(config: Config, store: Store) -> ApplianceKey:
    """The appliance's OpenPGP key, protected by the same passphrase as the CA keys."""
    fingerprint = store.meta("audit_key_fingerprint")
    if not fingerprint:
        raise KeyStoreError("the register names no audit signing key: was init completed?")
    no_core_dumps()  # before any secret is read
    passphrase = read_passphrase(config.passphrase_credential, config.passphrase_file)
    return ApplianceKey(config.gnupg_dir, fingerprint, passphrase)
