"""Key custody: key algorithms, encrypted key files, signers.

The key type names live here, apart from the cryptography that implements them, so the
command line can offer them without importing it.
"""

__all__ = ["DEFAULT_KEY_TYPE", "KEY_TYPES"]

KEY_TYPES = ("ec-p256", "ec-p384", "rsa-3072", "rsa-4096", "ed25519")
# P-384 for CA keys: the NSA CNSA suite's curve, used by modern public roots (ISRG
# Root X2), accepted by every TLS stack, with a hash (SHA-384) that outlives 375-day
# leaves by decades. Ed25519 is smaller and faster but many TLS clients still refuse
# Ed25519 chains, so it is an option, not the default.
DEFAULT_KEY_TYPE = "ec-p384"
