"""Policy on the request's key and signature: proof of possession, key types and sizes,
known-weak keys, and an encoding the certificate can carry byte for byte (invariant 11).

Pure functions over a parsed Request; each problem is one finding.
"""

from __future__ import annotations

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from spoolca.config import Policy
from spoolca.findings import Finding
from spoolca.x509.csr import Request
from spoolca.x509.weakkeys import fermat_factor, has_roca_fingerprint

__all__ = ["check_key", "check_key_type", "check_signature", "key_family"]

_STRONG_HASHES = (hashes.SHA256, hashes.SHA384, hashes.SHA512, hashes.SHA3_256,
                  hashes.SHA3_384, hashes.SHA3_512)
_CURVE_NAMES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
# id-RSASSA-PSS (RFC 4055 3.1) as an SPKI algorithm: a key restricted to PSS signatures.
_RSASSA_PSS_OID = bytes.fromhex("06092a864886f70d01010a")


def check_signature(request: Request) -> list[Finding]:
    csr = request.csr
    findings = []
    try:
        algorithm = csr.signature_hash_algorithm
    except UnsupportedAlgorithm:
        return [Finding("csr.signature_algorithm_unsupported",
                        f"the request is signed with an unsupported algorithm "
                        f"({csr.signature_algorithm_oid.dotted_string})")]
    if algorithm is not None and not isinstance(algorithm, _STRONG_HASHES):
        findings.append(Finding("csr.signature_hash_weak",
                                f"the request is signed with {algorithm.name.upper()}; "
                                "sign it with SHA-256 or stronger (openssl req -sha256)"))
    if not request.signature_valid and request.public_key is not None:
        # (a key we cannot load cannot check a signature: key.type_unsupported says why)
        findings.append(Finding("csr.signature_invalid", "the request's signature does not "
                                "verify with its own public key: it was altered or is corrupt"))
    return findings


def _check_rsa(key: rsa.RSAPublicKey, policy: Policy) -> list[Finding]:
    numbers = key.public_numbers()
    findings = []
    if key.key_size < policy.rsa_min_bits:
        findings.append(Finding("key.rsa_too_small", f"the RSA key has {key.key_size} bits; "
                                f"at least {policy.rsa_min_bits} are required"))
    if key.key_size % 8:
        findings.append(Finding("key.rsa_size_not_multiple_of_8",
                                f"the RSA modulus has {key.key_size} bits, not a multiple of 8"))
    if numbers.e != 65537:
        findings.append(Finding("key.rsa_exponent",
                                f"the RSA public exponent is {numbers.e}; it must be 65537"))
    if has_roca_fingerprint(numbers.n):
        findings.append(Finding("key.rsa_roca", "the RSA key was made by a generator with the "
                                "ROCA flaw (CVE-2017-15361); make a new key on a fixed device"))
    if fermat_factor(numbers.n) is not None:
        findings.append(Finding("key.rsa_fermat", "the RSA key's primes are so close that "
                                "Fermat's method factors it; make a new key"))
    return findings


def _check_encoding(request: Request, key: object) -> Finding | None:
    """Invariant 11: the certificate must carry the key byte for byte as it was sent.

    cryptography re-encodes a key: an RSASSA-PSS-restricted key would lose its
    restriction (issued as plain rsaEncryption), an explicit-parameters or compressed EC
    key would change form. Those keys are refused rather than silently altered.
    """
    assert isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey
                      | ed25519.Ed25519PublicKey)
    if key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo) == request.spki:
        return None
    if _RSASSA_PSS_OID in request.spki[:32]:
        return Finding("key.type_unsupported", "the RSA key is restricted to RSASSA-PSS "
                       "(id-RSASSA-PSS); spoolca certifies keys exactly as sent and does not "
                       "issue PSS-restricted keys: make a plain RSA key (rsaEncryption)")
    return Finding("key.type_unsupported", "the key is encoded with explicit curve parameters "
                   "or a compressed point, which spoolca cannot certify exactly as sent; "
                   "use a named curve and an uncompressed point")


def check_key(request: Request, policy: Policy) -> list[Finding]:
    key = request.public_key
    if key is None:
        return [Finding("key.type_unsupported", "the request's public key type is not supported")]
    findings: list[Finding] = []
    if isinstance(key, rsa.RSAPublicKey):
        findings = _check_rsa(key, policy)
    elif isinstance(key, ec.EllipticCurvePublicKey):
        curve = _CURVE_NAMES.get(key.curve.name, key.curve.name)
        if curve not in policy.ec_curves:
            allowed = ", ".join(sorted(policy.ec_curves))
            return [Finding("key.ec_curve_unsupported",
                            f"the EC key uses curve {curve}; allowed: {allowed}")]
    elif not (isinstance(key, ed25519.Ed25519PublicKey) and policy.allow_ed25519):
        kind = type(key).__name__.removesuffix("PublicKey").lstrip("_")
        return [Finding("key.type_unsupported",
                        f"the key type {kind} is not accepted; use RSA, ECDSA or Ed25519")]
    encoding = _check_encoding(request, key)
    return [*findings, encoding] if encoding else findings


_EC_FAMILIES = {"secp256r1": "ec-p256", "secp384r1": "ec-p384", "secp521r1": "ec-p521"}


def key_family(key: object) -> str:
    """The name a profile's key_types uses for a key (config.certtypes.KEY_FAMILIES)."""
    if isinstance(key, rsa.RSAPublicKey):
        return "rsa"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return _EC_FAMILIES.get(key.curve.name, f"ec-{key.curve.name}")
    return "ed25519" if isinstance(key, ed25519.Ed25519PublicKey) else "other"


def check_key_type(request: Request, key_types: tuple[str, ...], profile: str) -> list[Finding]:
    """A profile that names its key types (a device line with one curve) takes only those."""
    family = key_family(request.public_key)
    if not key_types or request.public_key is None or family in key_types:
        return []
    return [Finding("key.type_not_in_profile", f"the request's key is {family}; the {profile} "
                    f"profile takes {', '.join(key_types)}")]
