"""Policy: a request and a profile in, a decision with every finding out.

Pure functions, no I/O: the register is consulted through the `subject_in_use`
callback and time does not enter at all, so every rule is testable as a plain call.
Every violation is reported, not the first one, so a requester fixes a CSR once.
"""

from __future__ import annotations

import functools
import ipaddress
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import ExtensionOID, NameOID

from spoolca.config import Policy, Profile
from spoolca.dn import ATTRIBUTES, attribute_name, comparable, oneline
from spoolca.findings import Finding
from spoolca.x509.csr import Request
from spoolca.x509.names import domain_allowed, hostname_problem, is_email, parse_ip
from spoolca.x509.profiles import Grant, grant
from spoolca.x509.weakkeys import fermat_factor, has_roca_fingerprint

__all__ = ["Decision", "evaluate"]

_STRONG_HASHES = (hashes.SHA256, hashes.SHA384, hashes.SHA512, hashes.SHA3_256,
                  hashes.SHA3_384, hashes.SHA3_512)
_CURVE_NAMES = {"secp256r1": "P-256", "secp384r1": "P-384", "secp521r1": "P-521"}
_REPEATABLE = {"organizationalUnitName", "domainComponent", "streetAddress"}
# RFC 5280 4.2: extensions only the CA decides; on a request each is refused, except
# keyUsage, extendedKeyUsage and basicConstraints that ask for no more than the profile
# grants anyway (GnuTLS certtool and Java keytool always send them).
_CA_MANAGED = {
    ExtensionOID.NAME_CONSTRAINTS: ("csr.extension.name_constraints", "nameConstraints"),
    ExtensionOID.AUTHORITY_INFORMATION_ACCESS: ("csr.extension.authority_info_access",
                                                "authorityInfoAccess"),
    ExtensionOID.CRL_DISTRIBUTION_POINTS: ("csr.extension.crl_distribution_points",
                                           "cRLDistributionPoints"),
}
# Harmless on any request: we compute our own (the seeds' v3_req sends both).
_IGNORED = {ExtensionOID.SUBJECT_KEY_IDENTIFIER, ExtensionOID.SUBJECT_ALTERNATIVE_NAME}
_USAGE_FLAGS = ("digital_signature", "content_commitment", "key_encipherment",
                "data_encipherment", "key_agreement", "key_cert_sign", "crl_sign")
# id-RSASSA-PSS (RFC 4055 3.1) as an SPKI algorithm: a key restricted to PSS signatures.
_RSASSA_PSS_OID = bytes.fromhex("06092a864886f70d01010a")
# Printable means no control, format (bidirectional overrides, zero-width), surrogate,
# private-use or unassigned character, and no line or paragraph separator.
_UNPRINTABLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})

GeneralName = x509.DNSName | x509.IPAddress | x509.RFC822Name


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome for one request: accepted when there is no finding."""

    findings: tuple[Finding, ...]
    subject: x509.Name | None = None
    subject_line: str = ""
    names: tuple[GeneralName, ...] = field(default=())
    notes: tuple[Finding, ...] = ()  # informational: what was requested and overridden

    @property
    def accepted(self) -> bool:
        return not self.findings


def _check_signature(request: Request) -> list[Finding]:
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
    if not request.signature_valid:
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


def _check_key(request: Request, policy: Policy) -> list[Finding]:
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


def _usage_names(usage: x509.KeyUsage) -> set[str]:
    names = {flag for flag in _USAGE_FLAGS if getattr(usage, flag)}
    if usage.key_agreement:  # encipher_only/decipher_only exist only with keyAgreement
        names |= {flag for flag in ("encipher_only", "decipher_only") if getattr(usage, flag)}
    return names


def _purpose_name(oid: x509.ObjectIdentifier) -> str:
    return oid._name if oid._name != "Unknown OID" else oid.dotted_string


def _check_requested_usage(ext: x509.Extension[x509.ExtensionType], granted: Grant,
                           kind: str) -> tuple[Finding | None, str | None]:
    """(refusal, note) for keyUsage, extendedKeyUsage or basicConstraints on a request:
    a subset of what the profile grants is noted and overridden; more is refused."""
    value = ext.value
    if isinstance(value, x509.BasicConstraints):
        if value.ca and not granted.ca:
            return Finding("csr.extension.basic_constraints_ca", f"a {kind} request asks to "
                           "be a CA (basicConstraints CA:TRUE); submit it to the subca profile "
                           "if intended"), None
        return None, f"basicConstraints CA:{str(value.ca).upper()}"
    if isinstance(value, x509.KeyUsage):
        extra = _usage_names(value) - _usage_names(granted.key_usage)
        if extra:
            return Finding("csr.extension.key_usage", f"the request asks for keyUsage "
                           f"{', '.join(sorted(extra))}, which the {kind} profile does not "
                           "grant; remove it from the request"), None
        return None, f"keyUsage {', '.join(sorted(_usage_names(value)))}"
    assert isinstance(value, x509.ExtendedKeyUsage)
    asked = list(value)
    extra_purposes = [oid for oid in asked if oid not in granted.purposes]
    if extra_purposes:
        return Finding("csr.extension.extended_key_usage", f"the request asks for "
                       f"extendedKeyUsage {', '.join(map(_purpose_name, extra_purposes))}, "
                       f"which the {kind} profile does not grant; remove it from the "
                       "request"), None
    return None, f"extendedKeyUsage {', '.join(map(_purpose_name, asked))}"


_USAGE_EXTENSIONS = {ExtensionOID.BASIC_CONSTRAINTS, ExtensionOID.KEY_USAGE,
                     ExtensionOID.EXTENDED_KEY_USAGE}


def _check_extensions(request: Request, kind: str) -> tuple[list[Finding], list[Finding]]:
    """(refusals, notes) for the extensions a request carries."""
    findings, requested = [], []
    granted: Grant | None = None
    for ext in request.extensions:
        if ext.oid in _USAGE_EXTENSIONS:
            if request.public_key is None:
                continue  # refused as key.type_unsupported; no grant to compare with
            if granted is None:
                granted = grant(kind, request.public_key)  # type: ignore[arg-type]
            refusal, note = _check_requested_usage(ext, granted, kind)
            findings += [refusal] if refusal else []
            requested += [note] if note else []
        elif ext.oid in _CA_MANAGED:
            code, name = _CA_MANAGED[ext.oid]
            findings.append(Finding(code, f"the request asks for {name}; the "
                                    f"{kind} profile decides it, remove it from the request"))
        elif ext.oid not in _IGNORED and ext.critical:
            findings.append(Finding("csr.extension.unsupported_critical",
                                    f"the request marks extension {ext.oid.dotted_string} "
                                    "critical, and spoolca does not issue it"))
    notes = [Finding("note.extensions_overridden", f"the request asked for {'; '.join(requested)}"
                     f"; the certificate carries the {kind} profile's own usage extensions")
             ] if requested else []
    return findings, notes


def _attributes(name: x509.Name) -> list[x509.NameAttribute]:
    return [attr for rdn in name.rdns for attr in rdn]


@functools.lru_cache(maxsize=256)
def _grouped(name: x509.Name) -> dict[str, list[str]]:
    """Values per attribute long name, in order, computed once per name (CA names repeat)."""
    grouped: dict[str, list[str]] = {}
    for rdn in name.rdns:
        for attr in rdn:
            grouped.setdefault(attribute_name(attr.oid), []).append(str(attr.value))
    return grouped


def _values(name: x509.Name, field_name: str) -> list[str]:
    return _grouped(name).get(field_name, [])


def unprintable(text: str) -> str | None:
    """The first character of `text` that is not printable, or None."""
    return next((c for c in text if unicodedata.category(c) in _UNPRINTABLE_CATEGORIES), None)


def _check_value(field_name: str, value: str, policy: Policy) -> Finding | None:
    bad = unprintable(value)
    if bad is not None:
        return Finding(f"policy.dn.{field_name}_invalid", f"{field_name} holds the "
                       f"non-printable character U+{ord(bad):04X}; control characters, NUL "
                       "and bidirectional overrides are refused")
    if field_name == "countryName":
        if len(value) != 2 or not (value.isascii() and value.isalpha()):
            return Finding("policy.dn.countryName_invalid",
                           f"countryName {value!r} must be a two-letter ISO 3166 code")
        return None
    limit = policy.max_length.get(field_name)
    if limit is not None and len(value) > limit:
        return Finding(f"policy.dn.{field_name}_too_long",
                       f"{field_name} has {len(value)} characters; the limit is {limit}")
    if field_name == "emailAddress" and not is_email(value):
        return Finding("policy.dn.emailAddress_invalid",
                       f"emailAddress {value!r} is not a valid e-mail address")
    if not value.strip():
        return Finding(f"policy.dn.{field_name}_invalid", f"{field_name} is empty")
    return None


def _check_rule(field_name: str, rule: str, values: list[str], ca_values: list[str]
                ) -> list[Finding]:
    findings = []
    if len(values) > 1 and field_name not in _REPEATABLE:
        findings.append(Finding(f"policy.dn.{field_name}_repeated",
                                f"{field_name} appears {len(values)} times; give it once"))
    required = rule == "supplied" or (rule == "match" and ca_values)
    if required and not values:
        findings.append(Finding(f"policy.dn.{field_name}_missing",
                                f"{field_name} is required and the request has none"))
    elif rule == "match" and values != ca_values:
        ca_text = ", ".join(repr(v) for v in ca_values) or "none"
        findings.append(Finding(f"policy.dn.{field_name}_mismatch",
                                f"{field_name} {values[0]!r} must be the same as the issuing "
                                f"CA's ({ca_text}), as the policy says match"))
    return findings


def _issued_subject(subject: x509.Name, dn: tuple[tuple[str, str], ...], policy: Policy,
                    preserve: bool) -> x509.Name:
    """The subject to sign: policy order, unnamed fields dropped, unless preserve_dn."""
    keep_email = policy.email_in_dn
    if preserve:
        rdns = []
        for rdn in subject.rdns:
            attrs = [a for a in rdn if keep_email or a.oid != NameOID.EMAIL_ADDRESS]
            if attrs:
                rdns.append(x509.RelativeDistinguishedName(attrs))
        return x509.Name(rdns)
    attributes = []
    for field_name, _rule in dn:
        if field_name == "emailAddress" and not keep_email:
            continue
        oid = ATTRIBUTES[field_name][1]
        attributes.extend(x509.NameAttribute(oid, value) for value in _values(subject, field_name))
    return x509.Name(attributes)


def _check_subject(subject: x509.Name, ca_subject: x509.Name, profile: Profile,
                   policy: Policy) -> tuple[list[Finding], x509.Name | None]:
    findings: list[Finding] = []
    attributes = _attributes(subject)
    if not attributes:
        return [Finding("policy.dn.empty", "the request's subject is empty")], None
    known_oids = {oid for _short, oid in ATTRIBUTES.values()}
    for attr in attributes:
        if attr.oid not in known_oids and profile.preserve_dn:
            findings.append(Finding("policy.dn.unknown_attribute",
                                    f"subject attribute {attr.oid.dotted_string} is not known"))
        elif attr.oid in known_oids and isinstance(attr.value, str):
            problem = _check_value(attribute_name(attr.oid), attr.value, policy)
            if problem:
                findings.append(problem)
    for field_name, rule in profile.dn:
        findings += _check_rule(field_name, rule, _values(subject, field_name),
                                _values(ca_subject, field_name))
    if findings:
        return findings, None
    return [], _issued_subject(subject, profile.dn, policy, profile.preserve_dn)


def _requested_names(extensions: x509.Extensions) -> list[x509.GeneralName]:
    try:
        return list(extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
    except x509.ExtensionNotFound:
        return []


def _check_dns(names: Iterable[str], profile: Profile) -> list[Finding]:
    findings = []
    for name in names:
        code = hostname_problem(name, allow_wildcards=profile.allow_wildcards)
        if code == "policy.san.wildcard_not_allowed":
            findings.append(Finding(code, f"{name!r} is a wildcard; the {profile.name} profile "
                                    "sets allow_wildcards = false"))
        elif code:
            findings.append(Finding(code, f"{name!r} is not a valid DNS hostname (letters, "
                                    "digits and hyphens, at least two labels)"))
        elif not domain_allowed(name, profile.allowed_domains):
            findings.append(Finding("policy.san.dns_not_allowed",
                                    f"{name!r} is not under the {profile.name} profile's "
                                    f"allowed_domains ({', '.join(profile.allowed_domains)})"))
    return findings


def _dedupe(items: list[str]) -> list[str]:
    seen: set[str] = set()
    return [i for i in items if not (i.lower() in seen or seen.add(i.lower()))]


def _check_names(request: Request, subject: x509.Name, profile: Profile
                 ) -> tuple[list[Finding], tuple[GeneralName, ...]]:
    """subjectAltName: the only extension taken from the CSR, after its names pass."""
    findings: list[Finding] = []
    dns: list[str] = []
    ips: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    emails: list[str] = []
    for general in _requested_names(request.extensions):
        if isinstance(general, x509.DNSName) and profile.kind != "subca":
            dns.append(general.value)
        elif isinstance(general, x509.IPAddress) and profile.kind != "subca" and isinstance(
                general.value, ipaddress.IPv4Address | ipaddress.IPv6Address):
            ips.append(general.value)
        elif isinstance(general, x509.RFC822Name) and profile.kind == "client":
            emails.append(general.value)
        else:
            findings.append(Finding("policy.san.type_not_allowed",
                                    f"the {profile.name} profile does not issue "
                                    f"{type(general).__name__} subjectAltNames ({general.value})"))
    for cn in _values(subject, "commonName"):
        if profile.kind == "server":
            ip = parse_ip(cn)
            if ip is not None:
                ips.insert(0, ip)
            elif hostname_problem(cn, allow_wildcards=True) is not None:
                findings.append(Finding("policy.cn.not_a_hostname", f"commonName {cn!r} of a "
                                        "server request must be its hostname or IP address"))
            else:
                dns.insert(0, cn)  # CA/B 7.1.4.3: the CN must also be a SAN
        elif profile.kind == "client" and "@" in cn:
            if is_email(cn):
                emails.insert(0, cn)
            else:
                findings.append(Finding("policy.cn.invalid_email",
                                        f"commonName {cn!r} is not a valid e-mail address"))
    emails += _values(request.subject, "emailAddress") if profile.kind == "client" else []
    dns, emails = _dedupe(dns), _dedupe(emails)
    findings += _check_dns(dns, profile)
    for ip in ips if not profile.allow_ip else []:
        findings.append(Finding("policy.san.ip_not_allowed", f"IP address {ip} was requested; "
                                f"the {profile.name} profile sets allow_ip = false"))
    findings += [Finding("policy.san.email_invalid", f"{e!r} is not a valid e-mail address")
                 for e in emails if not is_email(e)]
    if profile.kind == "server" and not dns and not ips:
        findings.append(Finding("policy.san.missing", "a server request must name at least one "
                                "DNS name or IP address (commonName or subjectAltName)"))
    if findings:  # refused names (a U-label, say) cannot even be built as GeneralNames
        return findings, ()
    names: list[GeneralName] = [x509.DNSName(d) for d in dns]
    names += [x509.IPAddress(ip) for ip in dict.fromkeys(ips)]
    names += [x509.RFC822Name(e) for e in emails]
    return findings, tuple(names)


def evaluate(request: Request, profile: Profile, policy: Policy, issuer: x509.Certificate, *,
             ca_subjects: Iterable[x509.Name] = (),
             subject_in_use: Callable[[str], str | None] = lambda _subject: None) -> Decision:
    """Judge a request against a profile; every violation becomes one finding.

    `subject_in_use(oneline_subject)` returns the serial of a valid certificate already
    issued for that subject, for OpenSSL's unique_subject rule. `ca_subjects` are the CAs'
    names, compared as RFC 5280 7.1 and OpenSSL compare names (case and spacing aside).
    """
    findings = _check_signature(request) + _check_key(request, policy)
    extension_findings, notes = _check_extensions(request, profile.kind)
    findings += extension_findings
    subject_findings, subject = _check_subject(request.subject, issuer.subject, profile, policy)
    findings += subject_findings
    name_findings, names = _check_names(request, subject or request.subject, profile)
    findings += name_findings
    if subject is None:
        return Decision(findings=tuple(findings))
    line = oneline(subject)
    if comparable(subject) in {comparable(name) for name in ca_subjects}:
        findings.append(Finding("policy.dn.same_as_ca", f"the subject {line} is a CA's own "
                                "subject; choose another commonName"))
    existing = subject_in_use(line) if profile.unique_subject else None
    if existing:
        findings.append(Finding("policy.subject.duplicate",
                                f"a valid certificate (serial {existing}) already exists for "
                                f"{line} and the {profile.name} profile sets unique_subject; "
                                f"renew it within {profile.renew_before_days} days of its end, "
                                "revoke it first, or use another subject"))
    return Decision(findings=tuple(findings), subject=subject, subject_line=line, names=names,
                    notes=tuple(notes))
