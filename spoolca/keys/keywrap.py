"""PKCS#8 encryption with a work factor fit for a CA key at rest.

cryptography's BestAvailableEncryption writes PBES2 with only 2,048 PBKDF2 rounds
(OpenSSL's default); PKCS#12 allows more rounds for the key bag but keeps a 2,048-round
MAC over the same passphrase, which an attacker would brute-force instead. So the
EncryptedPrivateKeyInfo (RFC 5958, PBES2 of RFC 8018) is written here: PBKDF2-HMAC-
SHA256 with 600,000 rounds (OWASP 2023) and AES-256-CBC. `openssl pkey` and
cryptography read it unchanged; unlocking costs about 0.1 s once per start.
"""

from __future__ import annotations

import os

from cryptography.hazmat.primitives import hashes, padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

from spoolca.notation.der import integer, octets, pem, sequence

__all__ = ["PBKDF2_ROUNDS", "encrypt_pkcs8_pem"]

PBKDF2_ROUNDS = 600_000

# DER encodings of the object identifiers (tag 06, length, value).
_OID_PBES2 = bytes.fromhex("06092a864886f70d01050d")        # 1.2.840.113549.1.5.13
_OID_PBKDF2 = bytes.fromhex("06092a864886f70d01050c")       # 1.2.840.113549.1.5.12
_OID_HMAC_SHA256 = bytes.fromhex("06082a864886f70d0209")    # 1.2.840.113549.2.9
_OID_AES256_CBC = bytes.fromhex("060960864801650304012a")   # 2.16.840.1.101.3.4.1.42
_NULL = b"\x05\x00"


def encrypt_pkcs8_pem(private_key_info_der: bytes, passphrase: bytes,
                      rounds: int = PBKDF2_ROUNDS) -> bytes:
    """An `ENCRYPTED PRIVATE KEY` PEM for an unencrypted PKCS#8 DER."""
    salt, iv = os.urandom(16), os.urandom(16)
    key = PBKDF2HMAC(hashes.SHA256(), 32, salt, rounds).derive(passphrase)
    padder = padding.PKCS7(128).padder()
    padded = padder.update(private_key_info_der) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    ciphertext = encryptor.update(padded) + encryptor.finalize()
    kdf = sequence(_OID_PBKDF2, sequence(octets(salt), integer(rounds),
                                           sequence(_OID_HMAC_SHA256, _NULL)))
    scheme = sequence(_OID_AES256_CBC, octets(iv))
    algorithm = sequence(_OID_PBES2, sequence(kdf, scheme))
    der = sequence(algorithm, octets(ciphertext))
    return pem("ENCRYPTED PRIVATE KEY", der)
