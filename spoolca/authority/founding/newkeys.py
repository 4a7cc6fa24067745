"""The CA keys a ceremony makes: in memory until written to a key file, or in a token.

Either way the ceremony sees the same thing: a public key, a signer, and what the audit
log says about where the key lives. A file key is written (0400, encrypted) only after
both certificates exist; a token key exists in the token from the start, so init checks
the token (present, PIN accepted, labels free) before it makes anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from spoolca.config import AUTHORITIES
from spoolca.keys.algorithms import PrivateKey, PublicKey, generate_key, write_private_key
from spoolca.keys.filekey import FileKeySigner
from spoolca.keys.signer import Signer
from spoolca.keys.token import TokenKey, TokenPool, TokenSigner, generate_in_token

__all__ = ["KeyPlan", "NewCAKey", "make_ca_keys"]


@dataclass(frozen=True, slots=True)
class KeyPlan:
    """Where init puts each CA key: `token` names the token (None: every key in a file),
    `in_token` the CAs whose key goes into it, `label_prefix` their labels' start."""

    key_type: str
    token: tuple[Path, str] | None = None
    in_token: frozenset[str] = frozenset()
    label_prefix: str = "spoolca"

    def token_key(self, name: str) -> TokenKey | None:
        if self.token is None or name not in self.in_token:
            return None
        return TokenKey(self.token[0], self.token[1], f"{self.label_prefix}-{name}")

    def token_labels(self) -> dict[str, str]:
        return {name: where.label for name in AUTHORITIES
                if (where := self.token_key(name)) is not None}


@dataclass(frozen=True, slots=True)
class NewCAKey:
    """One CA's new key, wherever it lives."""

    public_key: PublicKey
    signer: Signer
    store: dict[str, str]
    file_key: PrivateKey | None = None  # written by `persist`; None for a token key

    def persist(self, path: Path, passphrase: bytes | None) -> None:
        if self.file_key is not None:
            write_private_key(path, self.file_key, passphrase)


def make_ca_keys(plan: KeyPlan, keys_dir: Path, pool: TokenPool,
                 pin: bytes | None) -> Mapping[str, NewCAKey]:
    """Root and intermediate keys as planned (token keys generated in the token)."""
    made = {}
    for name in AUTHORITIES:
        where = plan.token_key(name)
        if where is None:
            key = generate_key(plan.key_type)
            made[name] = NewCAKey(key.public_key(), FileKeySigner(key),
                                  {"key_store": "file",
                                   "path": str(keys_dir / f"{name}.key.pem")}, key)
        else:
            public = generate_in_token(pool, where, plan.key_type, pin)
            made[name] = NewCAKey(public, TokenSigner(pool.session(where, pin), where, public),
                                  where.describe())
    return made
