"""Unlocking the CAs: certificates from the register, keys from the key store.

A key is checked against its certificate before use, so a swapped key file is an error
at unlock time rather than a batch of certificates that do not verify.
"""

from __future__ import annotations

from collections.abc import Iterable

from cryptography import x509

from spoolca.config import AUTHORITIES, Config, KeyStore
from spoolca.errors import KeyStoreError
from spoolca.host.memory import no_core_dumps
from spoolca.keys.algorithms import load_private_key, read_passphrase, spki
from spoolca.keys.filekey import FileKeySigner, lint_twin
from spoolca.keys.openpgp import ApplianceKey
from spoolca.keys.signer import Signer
from spoolca.keys.token import TokenKey, TokenPool, TokenSigner, token_public_key
from spoolca.register.generations import base_name, current_name, generation
from spoolca.register.generations import settings as generation_settings
from spoolca.register.store import Store
from spoolca.x509.issuer import IssuingCA
from spoolca.x509.profiles import CAURLs

__all__ = ["check_unlock_secret", "key_store", "load_audit_key", "load_authorities",
           "load_ca_certificates", "load_generations", "token_key"]



def load_ca_certificates(store: Store) -> dict[str, x509.Certificate]:
    """The current root and intermediate certificates (after a rekey, the new generation)."""
    return {name: x509.load_der_x509_certificate(store.authority_der(current_name(store, name)))
            for name in ("root", "intermediate")}


def load_generations(store: Store) -> dict[str, x509.Certificate]:
    """Every CA certificate the register holds, by its generation's name."""
    return {name: x509.load_der_x509_certificate(store.authority_der(name))
            for name in store.authority_names()}


def load_authorities(config: Config, store: Store, names: Iterable[str],
                     tokens: TokenPool) -> dict[str, IssuingCA]:
    """Unlock the named CAs' keys (one passphrase read) and pair them with certificates.

    A token key is opened in a session of `tokens`, which the caller closes (logs out)."""
    no_core_dumps()  # before any secret is read
    passphrase = read_passphrase(config.passphrase_credential, config.passphrase_file)
    authorities = {}
    for name in sorted(set(names)):  # generation names (intermediate-g2) or base names
        settings = generation_settings(config, name)
        certificate = x509.load_der_x509_certificate(store.authority_der(name))
        where = token_key(config, name)
        if where is None:
            signer: Signer = FileKeySigner(load_private_key(settings.key, passphrase))
        else:
            session = tokens.session(where, passphrase)
            signer = TokenSigner(session, where, token_public_key(session, where))
        if spki(signer.public_key) != spki(certificate.public_key()):
            raise KeyStoreError(f"the key {where.uri if where else settings.key} does not "
                                f"belong to the {name} CA certificate in the register")
        authorities[name] = IssuingCA(
            name=name,
            certificate=certificate,
            signer=signer,
            urls=CAURLs(settings.crl_url, settings.issuer_url),
            lint_signer=lint_twin(certificate.public_key()),  # type: ignore[arg-type]
        )
    return authorities


def token_key(config: Config, name: str) -> TokenKey | None:
    """Where the CA's key (NAME: a generation's name) is in a token, or None for a key file.
    A later generation's key is in the same token, labelled LABEL-gN."""
    settings = config.authorities.get(base_name(name))
    if settings is None or settings.key_store != KeyStore.PKCS11 or \
            config.pkcs11_module is None:
        return None
    number = generation(name)
    label = settings.key_label if number == 1 else f"{settings.key_label}-g{number}"
    return TokenKey(config.pkcs11_module, config.pkcs11_token, label)


def key_store(config: Config, name: str) -> dict[str, str]:
    """What the audit log records of where a CA's key is."""
    where = token_key(config, name)
    if where is None:
        return {"key_store": "file", "path": str(generation_settings(config, name).key)}
    return where.describe()


def check_unlock_secret(config: Config, secret: bytes) -> None:
    """KeyStoreError unless `secret` opens every CA key (a file decrypts, a token logs in)."""
    tokens = TokenPool()
    try:
        for name in AUTHORITIES:
            where = token_key(config, name)
            if where is None:
                load_private_key(config.authorities[name].key, secret)
            else:
                tokens.session(where, secret)
    finally:
        tokens.close()


def load_audit_key(config: Config, store: Store) -> ApplianceKey:
    """The appliance's OpenPGP key, protected by the same passphrase as the CA keys."""
    fingerprint = store.meta("audit_key_fingerprint")
    if not fingerprint:
        raise KeyStoreError("the register names no audit signing key: was init completed?")
    no_core_dumps()  # before any secret is read
    passphrase = read_passphrase(config.passphrase_credential, config.passphrase_file)
    return ApplianceKey(config.gnupg_dir, fingerprint, passphrase)
