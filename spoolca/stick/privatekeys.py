"""A private key found on a stick: never taken in, and called out to its owner.

People put the key beside the CSR (or in the same .pem) by mistake. The appliance must
not keep a copy, and the report must say so as a warning: the key has travelled on a
stick and its owner should treat it as exposed.
"""

from __future__ import annotations

__all__ = ["KEY_SUFFIXES", "PRIVATE_KEY", "holds_private_key"]

PRIVATE_KEY = "a private key"  # the start of the skip reason the report looks for
KEY_SUFFIXES = (".key", ".p12", ".pfx", ".p8", ".pk8", ".jks", ".keystore")
REASON = (f"{PRIVATE_KEY}: not taken; it should never leave its owner's machine (treat it "
          "as exposed: make a new key and CSR)")

_MARKERS = (b"PRIVATE KEY-----", b"PRIVATE KEY BLOCK-----")  # PKCS#8, PKCS#1, EC, OpenPGP


def holds_private_key(name: str, data: bytes | None = None) -> bool:
    """NAME (a stick's file name) or DATA (its bytes, when read) is a private key."""
    if name.lower().endswith(KEY_SUFFIXES):
        return True
    return data is not None and any(marker in data for marker in _MARKERS)
