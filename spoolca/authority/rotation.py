"""A new unlock secret: every key at rest re-protected under it, the old one void.

Key files are re-encrypted, the audit key's passphrase changed, and a token's user PIN
changed (C_SetPIN), since the PIN is the unlock secret for keys in a token.

Run again after an interruption, it finishes the job: a key file that already opens with
the new secret is left as it is, and so is the audit key. The caller keeps the new
secret safe on disk before calling (an interrupted rotation must never lose it).
"""

from __future__ import annotations

from spoolca.authority.unlock import token_key
from spoolca.config import Config
from spoolca.errors import KeyStoreError, SpoolcaError
from spoolca.host.fsutil import atomic_write
from spoolca.host.memory import no_core_dumps
from spoolca.keys.algorithms import load_private_key, serialize_private_key
from spoolca.keys.openpgp import ApplianceKey
from spoolca.keys.token import TokenKey, TokenPool, change_pin
from spoolca.register.generations import settings as generation_settings
from spoolca.register.store import Store

__all__ = ["rotate_unlock_secret"]


def rotate_unlock_secret(config: Config, store: Store, old: bytes, new: bytes) -> int:
    """Re-encrypt the CA key files and change the audit key's passphrase; returns how
    many were changed now (0: an earlier run had done it all)."""
    no_core_dumps()  # before any secret is read
    prepared, tokens = {}, {}
    for name in store.authority_names():  # every generation's key, older ones too
        if (where := token_key(config, name)) is not None:
            tokens[(where.module, where.token)] = where
            continue
        path = generation_settings(config, name).key
        try:
            key = load_private_key(path, old)
        except KeyStoreError:
            load_private_key(path, new)  # rotated by an interrupted run; else neither opens it
            continue
        prepared[path] = serialize_private_key(key, new)
    fingerprint = store.meta("audit_key_fingerprint")
    if not fingerprint:
        raise KeyStoreError("the register names no audit signing key")
    changed = _audit_key(config, fingerprint, old, new)
    changed += sum(_token_pin(where, old, new) for where in tokens.values())
    for path, pem in prepared.items():  # the audit key first: it is the one gpg may refuse
        atomic_write(path, pem, 0o400)
    return len(prepared) + changed


def _audit_key(config: Config, fingerprint: str, old: bytes, new: bytes) -> int:
    try:
        with ApplianceKey(config.gnupg_dir, fingerprint, old) as key:
            key.change_passphrase(new).close()
        return 1
    except SpoolcaError:
        probe = ApplianceKey(config.gnupg_dir, fingerprint, new)
        try:
            probe.sign(b"spoolca: does the new secret open the audit key?")
        finally:
            probe.close()
        return 0


def _token_pin(where: TokenKey, old: bytes, new: bytes) -> int:
    """The token's user PIN: changed, or found already changed by an interrupted run."""
    try:
        change_pin(where, old, new)
        return 1
    except KeyStoreError:
        check = TokenPool()
        try:
            check.session(where, new)  # neither PIN opens it: that error is the answer
        finally:
            check.close()
        return 0
