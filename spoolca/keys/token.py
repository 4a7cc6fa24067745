"""CA keys inside a PKCS#11 token: an HSM, a smart card, or SoftHSM2 for rehearsals.

The binding is python-pkcs11 (pyauth): a maintained Cython binding with a Pythonic
session/key API, typed exceptions for each CKR_ code (so a wrong PIN, a locked token and
a pulled device each get their own sentence) and helpers for the DER of EC public keys
and ECDSA signatures. PyKCS11 is a thin SWIG layer over the C API with integer return
codes: more code of ours for the same thing.

Keys are generated in the token, sensitive and never extractable; only the public key
leaves it. Signing hashes in Python and asks the token for a raw signature (CKM_ECDSA
over the digest, or CKM_SHAxxx_RSA_PKCS): SoftHSM2 and several HSMs do not offer
CKM_ECDSA_SHA384. Certificates and CRLs are assembled around the token's signature from
the to-be-signed bytes of the same builder signed by a throwaway twin key: cryptography
encodes the TBS; the token only signs it.

The PIN is the CA's unlock secret (the passphrase, or what the shares recover), read
like the passphrase: never argv or environment.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding

from spoolca.errors import KeyStoreError
from spoolca.keys.algorithms import PublicKey, signature_hash, verify_signature
from spoolca.keys.filekey import lint_twin
from spoolca.notation import der

__all__ = ["TOKEN_KEY_TYPES", "TokenKey", "TokenPool", "TokenSigner", "change_pin",
           "generate_in_token", "token_key_type"]

# Ed25519 is left out: SoftHSM2, YubiHSM 2 and OpenSC disagree on CKM_EDDSA's
# parameters, and many TLS clients refuse Ed25519 chains anyway.
TOKEN_KEY_TYPES = ("ec-p256", "ec-p384", "rsa-3072", "rsa-4096")
_CURVES = {"ec-p256": "secp256r1", "ec-p384": "secp384r1"}


@dataclass(frozen=True, slots=True)
class TokenKey:
    """Where a CA key lives in a token: what the register and the audit log record."""

    module: Path
    token: str
    label: str

    @property
    def uri(self) -> str:
        """RFC 7512 names the key the way p11-kit, OpenSSL and pkcs11-tool users know."""
        return f"pkcs11:token={quote(self.token, safe='')};object={quote(self.label, safe='')}"

    def describe(self) -> dict[str, str]:
        return {"key_store": "pkcs11", "module": str(self.module), "token": self.token,
                "label": self.label, "uri": self.uri}


class TokenPool:
    """The logged-in sessions of this process, one per token: PKCS#11 logs in once per
    application, so a second login to the same token is refused (CKR_USER_ALREADY_LOGGED_IN).
    Closed with the CA session that opened it; closing logs out."""

    def __init__(self) -> None:
        self._sessions: dict[tuple[Path, str, bool], Any] = {}

    def session(self, where: TokenKey, pin: bytes | None, *, rw: bool = False) -> Any:
        """A session of the token (read-write if asked: to make keys, change the PIN); the
        first one logs in, the others share its login."""
        key = (where.module, where.token, rw)
        if key not in self._sessions:
            logged_in = any(k[:2] == key[:2] for k in self._sessions)
            self._sessions[key] = _open(where, None if logged_in else pin, rw=rw,
                                        rescan=not self._sessions)
        return self._sessions[key]

    def close(self) -> None:
        sessions, self._sessions = list(self._sessions.values()), {}
        if not sessions:
            return
        import pkcs11

        for session in sessions:
            with suppress(pkcs11.PKCS11Error):  # a pulled token cannot log out: nothing to do
                session.close()


class TokenSigner:
    """Signs with a private key that never leaves its token."""

    def __init__(self, session: Any, where: TokenKey, public_key: PublicKey) -> None:
        import pkcs11

        self.where = where
        self._public_key = public_key
        self._hash = signature_hash(public_key)
        self._twin = lint_twin(public_key)
        try:
            self._key = session.get_key(object_class=pkcs11.ObjectClass.PRIVATE_KEY,
                                        label=where.label)
        except pkcs11.PKCS11Error as exc:
            raise KeyStoreError(_sentence(exc, where)) from None

    def __repr__(self) -> str:
        return f"TokenSigner({self.where.uri})"

    @property
    def public_key(self) -> PublicKey:
        return self._public_key

    def sign_bytes(self, data: bytes) -> bytes:
        import pkcs11
        from pkcs11.util.ec import encode_ecdsa_signature

        assert self._hash is not None
        try:
            if isinstance(self._public_key, ec.EllipticCurvePublicKey):
                digest = hashlib.new(self._hash.name, data).digest()
                raw = self._key.sign(digest, mechanism=pkcs11.Mechanism.ECDSA)
                return bytes(encode_ecdsa_signature(raw))
            mechanism = getattr(pkcs11.Mechanism, f"{self._hash.name.upper()}_RSA_PKCS")
            return bytes(self._key.sign(data, mechanism=mechanism))
        except pkcs11.PKCS11Error as exc:
            raise KeyStoreError(_sentence(exc, self.where)) from None

    def sign_certificate(self, builder: x509.CertificateBuilder) -> x509.Certificate:
        trial = self._twin.sign_certificate(builder)
        return x509.load_der_x509_certificate(self._around(trial.public_bytes(Encoding.DER)))

    def sign_crl(self, builder: x509.CertificateRevocationListBuilder
                 ) -> x509.CertificateRevocationList:
        trial = self._twin.sign_crl(builder)
        return x509.load_der_x509_crl(self._around(trial.public_bytes(Encoding.DER)))

    def _around(self, template: bytes) -> bytes:
        """The template's TBS and algorithm, with the token's signature (checked)."""
        tbs, algorithm = der.signed_parts(template)
        signature = self.sign_bytes(tbs)
        if not verify_signature(self._public_key, signature, tbs):
            raise KeyStoreError(f"the token key {self.where.uri} made a signature that does "
                                "not verify with its public key; nothing was signed")
        return der.signed(tbs, algorithm, signature)


def token_key_type(public: object) -> str:
    """The KEY_TYPES name of a public key a token can make again (for a new generation)."""
    if isinstance(public, ec.EllipticCurvePublicKey):
        for key_type, curve in _CURVES.items():
            if public.curve.name == curve:
                return key_type
    if isinstance(public, rsa.RSAPublicKey) and f"rsa-{public.key_size}" in TOKEN_KEY_TYPES:
        return f"rsa-{public.key_size}"
    raise KeyStoreError("a key of this type cannot be made in a token")


def generate_in_token(pool: TokenPool, where: TokenKey, key_type: str,
                      pin: bytes | None) -> PublicKey:
    """A new key pair in the token (sensitive, not extractable); its public key.

    Refuses a label already in use: a ceremony never replaces a key."""
    import pkcs11
    from pkcs11 import Attribute, KeyType, ObjectClass

    if key_type not in TOKEN_KEY_TYPES:
        raise KeyStoreError(f"a {key_type} key cannot be made in a token; choose one of "
                            f"{', '.join(TOKEN_KEY_TYPES)}")
    session = pool.session(where, pin, rw=True)
    if list(session.get_objects({Attribute.LABEL: where.label})):
        raise KeyStoreError(f"the token {where.token!r} already holds an object labelled "
                            f"{where.label!r}; init never replaces a key (choose another "
                            "--key-label, or delete it with pkcs11-tool --delete-object)")
    private = {Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False, Attribute.SIGN: True,
               Attribute.PRIVATE: True}
    common: dict[str, Any] = {"store": True, "label": where.label,
                              "id": secrets.token_bytes(8), "private_template": private}
    try:
        if key_type in _CURVES:
            from pkcs11.util.ec import encode_named_curve_parameters

            parameters = session.create_domain_parameters(
                KeyType.EC, {Attribute.EC_PARAMS: encode_named_curve_parameters(
                    _CURVES[key_type])}, local=True)
            parameters.generate_keypair(**common)
        else:
            session.generate_keypair(KeyType.RSA, int(key_type[4:]), **common)
        key = session.get_key(object_class=ObjectClass.PRIVATE_KEY, label=where.label)
        if key[Attribute.EXTRACTABLE] or not key[Attribute.SENSITIVE]:
            raise KeyStoreError(f"the token {where.token!r} made {where.label!r} extractable; "
                                "a CA key must never leave its token")
    except pkcs11.PKCS11Error as exc:
        raise KeyStoreError(_sentence(exc, where)) from None
    return token_public_key(session, where)


def token_public_key(session: Any, where: TokenKey) -> PublicKey:
    """The public half of the key labelled `where.label`, as cryptography's object."""
    import pkcs11
    from pkcs11 import Attribute, KeyType, ObjectClass
    from pkcs11.util.ec import encode_ec_public_key

    try:
        public = session.get_key(object_class=ObjectClass.PUBLIC_KEY, label=where.label)
        if public.key_type == KeyType.EC:
            return serialization.load_der_public_key(  # type: ignore[return-value]
                bytes(encode_ec_public_key(public)))
        if public.key_type == KeyType.RSA:
            return rsa.RSAPublicNumbers(
                int.from_bytes(public[Attribute.PUBLIC_EXPONENT], "big"),
                int.from_bytes(public[Attribute.MODULUS], "big")).public_key()
    except pkcs11.PKCS11Error as exc:
        raise KeyStoreError(_sentence(exc, where)) from None
    raise KeyStoreError(f"the key {where.uri} is of a type spoolca does not sign with")


def change_pin(where: TokenKey, old: bytes, new: bytes) -> None:
    """The token's user PIN becomes `new` (C_SetPIN in a session logged in with `old`)."""
    import pkcs11

    with _session(where, old, rw=True) as session:
        try:
            session.set_pin(_text(old, where), _text(new, where))
        except pkcs11.PKCS11Error as exc:
            raise KeyStoreError(_sentence(exc, where)) from None


@contextmanager
def _session(where: TokenKey, pin: bytes | None, *, rw: bool) -> Iterator[Any]:
    pool = TokenPool()
    try:
        yield pool.session(where, pin, rw=rw)
    finally:
        pool.close()


def _open(where: TokenKey, pin: bytes | None, *, rw: bool, rescan: bool = False) -> Any:
    """A logged-in session. With `rescan` (no session of this process is open), a token not
    found is looked for again after re-initialising the module: a module loaded before the
    token was plugged in (SoftHSM2, some HSMs) lists only what it found at load time."""
    import pkcs11

    try:
        library = pkcs11.lib(str(where.module))
    except (pkcs11.PKCS11Error, OSError, RuntimeError) as exc:
        raise KeyStoreError(f"failed to load the PKCS#11 module {where.module}: "
                            f"{_detail(exc)}") from None
    try:
        try:
            token = library.get_token(token_label=where.token)
        except (pkcs11.NoSuchToken, pkcs11.TokenNotPresent):
            if not rescan:
                raise
            library.reinitialize()
            token = library.get_token(token_label=where.token)
        return token.open(rw=rw, user_pin=_text(pin, where))
    except pkcs11.PKCS11Error as exc:
        raise KeyStoreError(_sentence(exc, where)) from None


def _text(pin: bytes | None, where: TokenKey) -> str | None:
    """The binding takes the PIN as text (it encodes it as UTF-8 itself)."""
    try:
        return None if pin is None else pin.decode("utf-8")
    except UnicodeDecodeError:
        raise KeyStoreError(f"the unlock secret is not UTF-8 text, so it cannot be the PIN "
                            f"of the token {where.token!r}") from None


def _sentence(exc: Exception, where: TokenKey) -> str:
    """One sentence for a token's refusal, naming what to do about it."""
    import pkcs11.exceptions as e

    token = f"the token {where.token!r} ({where.module})"
    known: dict[type[Exception], str] = {
        e.NoSuchToken: f"{token} is not present: is the HSM plugged in and the token "
                       "initialised?",
        e.TokenNotPresent: f"{token} is not present: is the HSM plugged in?",
        e.DeviceRemoved: f"{token} was removed while in use",
        e.PinIncorrect: f"{token} refused the PIN (the CA's unlock secret)",
        e.PinLocked: f"{token} is locked after too many wrong PINs; its security officer "
                     "must unlock it",
        e.PinExpired: f"{token} says its PIN has expired; set a new one with shares rotate",
        e.UserPinNotInitialized: f"{token} has no user PIN set; initialise it first",
        e.NoSuchKey: f"{token} holds no private key labelled {where.label!r}",
        e.MultipleObjectsReturned: f"{token} holds more than one key labelled "
                                   f"{where.label!r}; labels must be unique",
        e.TokenWriteProtected: f"{token} is write-protected",
    }
    for kind, text in known.items():
        if isinstance(exc, kind):
            return text
    return f"{token} failed: {_detail(exc)}"


def _detail(exc: Exception) -> str:
    return str(exc) or type(exc).__name__

