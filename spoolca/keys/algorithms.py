"""CA key types, the signature hash each one gets, and keys encrypted at rest.

The signature hash is chosen here, not left to the library: cryptography will sign with
a P-256 key and SHA-384 if asked, which the CA/Browser Forum rules forbid, so the hash
always follows the key (P-256 -> SHA-256, P-384 -> SHA-384, P-521 -> SHA-512, RSA ->
SHA-256, Ed25519 -> none).
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from spoolca.errors import KeyStoreError
from spoolca.host.fsutil import write_new
from spoolca.keys import DEFAULT_KEY_TYPE, KEY_TYPES
from spoolca.keys.keywrap import encrypt_pkcs8_pem

__all__ = [
    "DEFAULT_KEY_TYPE",
    "KEY_TYPES",
    "PrivateKey",
    "PublicKey",
    "describe_key",
    "generate_key",
    "generate_like",
    "load_private_key",
    "read_passphrase",
    "serialize_private_key",
    "signature_hash",
    "spki",
    "verify_signature",
    "write_private_key",
]

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey


_CURVE_HASH: dict[str, type[hashes.HashAlgorithm]] = {
    "secp256r1": hashes.SHA256,
    "secp384r1": hashes.SHA384,
    "secp521r1": hashes.SHA512,
}


def generate_key(key_type: str) -> PrivateKey:
    """A new private key of one of KEY_TYPES."""
    if key_type == "ec-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "ec-p384":
        return ec.generate_private_key(ec.SECP384R1())
    if key_type in ("rsa-3072", "rsa-4096"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(key_type[4:]))
    if key_type == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(f"unknown key type {key_type!r}; choose one of {', '.join(KEY_TYPES)}")


def generate_like(key: PrivateKey | PublicKey) -> PrivateKey:
    """A new key of the same type and size: the throwaway twin that signs for the linter."""
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return ec.generate_private_key(key.curve)
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return rsa.generate_private_key(public_exponent=65537, key_size=key.key_size)
    return ed25519.Ed25519PrivateKey.generate()


def signature_hash(key: PrivateKey | PublicKey) -> hashes.HashAlgorithm | None:
    """The hash a CA key of this type must sign with (None for Ed25519)."""
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return _CURVE_HASH[key.curve.name]()
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return hashes.SHA256()
    if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return None
    raise ValueError(f"unsupported CA key type {type(key).__name__}")


def verify_signature(key: PublicKey, signature: bytes, data: bytes) -> bool:
    """Whether `signature` over `data` verifies with `key`, with the hash its type uses."""
    algorithm = signature_hash(key)
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(signature, data, ec.ECDSA(algorithm))  # type: ignore[arg-type]
        elif isinstance(key, rsa.RSAPublicKey):
            key.verify(signature, data, padding.PKCS1v15(), algorithm)  # type: ignore[arg-type]
        else:
            key.verify(signature, data)
    except InvalidSignature:
        return False
    return True


def spki(key: PrivateKey | CertificatePublicKeyTypes) -> bytes:
    """The public key's SubjectPublicKeyInfo DER: how two keys are compared, and hashed."""
    public = key.public_key() if isinstance(
        key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) else key
    return public.public_bytes(serialization.Encoding.DER,
                               serialization.PublicFormat.SubjectPublicKeyInfo)


def describe_key(key: PrivateKey | PublicKey) -> str:
    """A short name for logs and `show`: `EC P-256`, `RSA 3072`, `Ed25519`."""
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return f"EC {key.curve.name.replace('secp', 'P-').replace('r1', '')}"
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return f"RSA {key.key_size}"
    if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return "Ed25519"
    return type(key).__name__


def serialize_private_key(key: PrivateKey, passphrase: bytes | None) -> bytes:
    """PKCS#8 PEM, encrypted (PBES2: PBKDF2-SHA256 600,000 rounds, AES-256-CBC) unless
    passphrase is None."""
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    if passphrase is not None:
        return encrypt_pkcs8_pem(der, passphrase)
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def write_private_key(path: Path, key: PrivateKey, passphrase: bytes | None) -> None:
    """Write a CA key once, mode 0400 (read-only even to its owner), never overwriting."""
    write_new(path, serialize_private_key(key, passphrase), mode=0o400)


def load_private_key(path: Path, passphrase: bytes | None) -> PrivateKey:
    """Read and unlock a CA key; every failure is one sentence naming the file."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyStoreError(f"failed to read the CA key {path}: {exc.strerror}") from None
    encrypted = b"ENCRYPTED" in data.split(b"\n", 1)[0]
    if encrypted and passphrase is None:
        raise KeyStoreError(
            f"the CA key {path} is encrypted but no passphrase was found: provide the systemd "
            "credential or set [passphrase] file in the configuration"
        )
    try:
        key = serialization.load_pem_private_key(data, passphrase if encrypted else None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        reason = "wrong passphrase or damaged file" if encrypted else "not a PEM private key"
        raise KeyStoreError(f"failed to unlock the CA key {path}: {reason}") from None
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
                      | ed25519.Ed25519PrivateKey):
        raise KeyStoreError(f"the CA key {path} is of an unsupported type")
    return key


def read_passphrase(credential: str, passphrase_file: Path | None) -> bytes | None:
    """The CA key passphrase from a systemd credential, else the configured file.

    Never from argv or the environment (invariant 6): `$CREDENTIALS_DIRECTORY` only says
    where systemd put the credential file, it holds no secret. One trailing newline is
    dropped, as `echo secret > file` adds one.
    """
    sources: list[Path] = []
    credentials_dir = os.environ.get("CREDENTIALS_DIRECTORY")
    if credentials_dir and credential:
        sources.append(Path(credentials_dir) / credential)
    if passphrase_file is not None:
        sources.append(passphrase_file)
    from spoolca.host.privileges import helper

    root = helper()
    if root is not None and credential and not credentials_dir:
        # Run by root as the state directory's owner: the unit's credential, decrypted
        # by root's helper now that a key needs it (spoolca.host.privileges).
        data = root.call("credential", credential.encode())
        if data:
            return data[:-1] if data.endswith(b"\n") else data
    for source in sources:
        try:
            data = source.read_bytes()
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise KeyStoreError(f"failed to read the passphrase {source}: {exc.strerror}") from None
        data = data[:-1] if data.endswith(b"\n") else data
        if not data:
            raise KeyStoreError(f"the passphrase file {source} is empty")
        return data
    return None
