"""M-of-N custody of the unlock secret: SLIP-39 shares (Trezor's shamir-mnemonic).

The secret that unlocks the CA keys (the passphrase) is split into N word lists with
checksums that a person can write on paper; any K of them give it back, fewer give
nothing. The secret-sharing maths is the library's, never ours. A passphrase of any
length fits: it is framed (a length, then the bytes, zero-padded to an even length of at
least 16 bytes, as SLIP-39 wants). The appliance keeps only a verifier (scrypt), so a
drill can prove a set of shares is right without unlocking anything.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

from spoolca.errors import SpoolcaError

__all__ = ["ShareError", "combine", "identifier", "split", "threshold", "verifier", "verify"]

MAX_SHARES = 16


class ShareError(SpoolcaError):
    """Shares that do not give the secret back: which and why, in one sentence."""


def _frame(secret: bytes) -> bytes:
    if not 0 < len(secret) < 65536:
        raise ShareError("the unlock secret must be 1 to 65535 bytes")
    framed = len(secret).to_bytes(2, "big") + secret
    framed += b"\x00" * max(16 - len(framed), len(framed) % 2)
    return framed


def _unframe(framed: bytes) -> bytes:
    length = int.from_bytes(framed[:2], "big")
    if not 0 < length <= len(framed) - 2 or any(framed[2 + length:]):
        raise ShareError("the shares combine to something that is not a spoolca secret")
    return framed[2:2 + length]


def split(secret: bytes, threshold: int, count: int) -> list[str]:
    """COUNT mnemonics, any THRESHOLD of which give SECRET back."""
    if not 1 <= threshold <= count <= MAX_SHARES:
        raise ShareError(f"{threshold}-of-{count}: need 1 <= K <= N <= {MAX_SHARES}")
    import shamir_mnemonic

    groups = shamir_mnemonic.generate_mnemonics(1, [(threshold, count)], _frame(secret))
    return list(groups[0])


def combine(mnemonics: list[str]) -> bytes:
    import shamir_mnemonic

    try:
        return _unframe(shamir_mnemonic.combine_mnemonics(mnemonics))
    except shamir_mnemonic.MnemonicError as exc:
        raise ShareError(f"the shares do not combine: {exc}") from None


def identifier(mnemonic: str) -> int:
    """The share set's random identifier (shares of different sets never mix)."""
    return int(_decoded(mnemonic).identifier)


def threshold(mnemonic: str) -> int:
    """How many shares of this one's set recover the secret."""
    return int(_decoded(mnemonic).member_threshold)


def _decoded(mnemonic: str) -> Any:
    import shamir_mnemonic

    try:
        return shamir_mnemonic.share.Share.from_mnemonic(mnemonic)
    except shamir_mnemonic.MnemonicError as exc:
        raise ShareError(f"not a share: {exc}") from None


def verifier(secret: bytes, salt: bytes | None = None) -> str:
    """`salt$digest`: scrypt of the secret, kept on the appliance to check shares by."""
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(secret, salt=salt, n=2**15, r=8, p=1, maxmem=64 << 20)
    return f"{salt.hex()}${digest.hex()}"


def verify(secret: bytes, stored: str) -> bool:
    salt, _, digest = stored.partition("$")
    return hmac.compare_digest(verifier(secret, bytes.fromhex(salt)), f"{salt}${digest}")
