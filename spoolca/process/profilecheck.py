"""`spoolca policy check-profiles`: every profile judged against the CA that issues it,
before any request meets it.

Loading the configuration already refuses a profile that cannot be right on its own (a
CA type without keyCertSign, purposes that contradict the key usage, a wildcard without
DNS names, ...). What only the issuing CA can tell is checked here: a validity longer
than the CA has left, purposes the CA's own extendedKeyUsage does not allow, a CA profile
under a CA whose path length is spent, key types that the [policy] refuses. Then a
specimen certificate of each profile (a throwaway key, names of the forms it takes, the
configured URLs) is signed by a throwaway twin of its CA and linted by the rules it
claims: pkilint's RFC 5280 validators, or the CA/B Forum's S/MIME or TLS ones when its
certificate policy names them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from ipaddress import IPv4Address

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from spoolca.config import AuthoritySettings, Config, Profile
from spoolca.config.certtypes import NameForm, purpose_name
from spoolca.config.policy import Policy
from spoolca.keys.filekey import lint_twin
from spoolca.notation.dnattributes import ATTRIBUTE_NAMES
from spoolca.register.generations import settings as generation_settings
from spoolca.x509.issuer import IssuingCA, issue_leaf, new_serial
from spoolca.x509.lint import CertificateLinter, claims_tls_rules
from spoolca.x509.profiles import CAURLs

__all__ = ["ProfileReport", "check_profiles"]

_CURVES = {"ec-p256": ("P-256", ec.SECP256R1), "ec-p384": ("P-384", ec.SECP384R1),
           "ec-p521": ("P-521", ec.SECP521R1)}


@dataclass
class ProfileReport:
    """One profile's verdict: what its certificates are, and every problem found."""

    name: str
    summary: str
    rulebook: str = ""
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)   # true today, not wrong


def check_profiles(config: Config, certificates: dict[str, x509.Certificate],
                   current: dict[str, str], now: dt.datetime) -> list[ProfileReport]:
    """Every configured profile checked against its issuing CA's certificate (CURRENT:
    the generation of each CA that issues now, whose URLs its certificates carry)."""
    linter = CertificateLinter()
    return [_check(config, profile, certificates[profile.issuer],
                   generation_settings(config, current[profile.issuer]), linter, now)
            for profile in config.profiles.values()]


def _check(config: Config, profile: Profile, issuer: x509.Certificate,
           settings: AuthoritySettings, linter: CertificateLinter, now: dt.datetime
           ) -> ProfileReport:
    usage = profile.usage
    purposes = ", ".join(purpose_name(p) for p in usage.extended_key_usage) or "any"
    crl = f", CRL at {settings.crl_url}" if settings.crl_url else ""
    report = ProfileReport(profile.name, f"{usage.name}, {usage.validity_days} days, issued "
                                         f"by {settings.name}{crl}, purposes {purposes}")
    report.problems += _against_issuer(profile, issuer)
    report.notes += _crl_life(claims_tls_rules(p.oid for p in usage.policies), usage.ca,
                              settings)
    left = (issuer.not_valid_after_utc - now).days
    if profile.validity_days > left:
        report.notes.append(f"validity_days: {profile.validity_days} days, but "
                            f"{profile.issuer} has {max(left, 0)} days left: certificates "
                            "issued now end with it")
    family = _key_family(profile, config.policy)
    if family is None:
        report.problems.append(f"key_types: the [policy.keys] section accepts none of "
                               f"{', '.join(usage.key_types)}: every request would be refused")
        return report
    twin = lint_twin(issuer.public_key())  # type: ignore[arg-type]
    ca = IssuingCA(profile.issuer, issuer, twin, CAURLs(settings.crl_url,
                                                        settings.issuer_url), twin)
    key = _specimen_key(family)
    signed = issue_leaf(usage=usage, subject=_specimen_subject(profile, issuer),
                        public_key=key.public_key(), names=_specimen_names(profile),
                        ca=ca, serial=new_serial(lambda _s: False),
                        validity_days=usage.validity_days, now=now, linter=linter,
                        constraints=profile.constraints)
    if signed.certificate is not None:
        report.rulebook = linter.rulebook(signed.certificate.public_bytes(Encoding.DER))
    report.problems += [f"specimen ({family} key): {f.code}: {f.message}"
                        for f in signed.findings]
    return report


def _crl_life(tls_rules: bool, certifies_ca: bool, settings: AuthoritySettings) -> list[str]:
    """The CA/B Forum's bounds on a CRL's life (TLS BRs 4.9.7): at most 10 days for the
    CRL of a CA whose certificates claim the TLS rules, 12 months for one that
    certifies CAs. True of a private CA too, so a note, not a problem."""
    bound = 365 if certifies_ca else 10 if tls_rules else None
    if bound is None or settings.crl_days <= bound:
        return []
    return [f"the {settings.name} CA's CRLs live {settings.crl_days} days "
            f"(crl_publish_interval_days + crl_overlap_days); the CA/B Forum's TLS Baseline "
            f"Requirements (4.9.7) allow {bound} for the CRL that covers these certificates"]


def _against_issuer(profile: Profile, issuer: x509.Certificate) -> list[str]:
    """What the issuing CA's own certificate makes impossible: a life longer than the
    CA's whole life, purposes it may not grant, a CA under a spent path length."""
    problems = []
    life = (issuer.not_valid_after_utc - issuer.not_valid_before_utc).days
    if profile.validity_days > life:
        problems.append(f"validity_days: {profile.validity_days} days, longer than "
                        f"{profile.issuer}'s whole life ({life} days): no certificate can "
                        "have it")
    try:
        allowed = issuer.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        allowed = None
    if allowed is not None and ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE not in allowed:
        dotted = {oid.dotted_string for oid in allowed}
        for purpose in profile.usage.extended_key_usage:
            if purpose not in dotted:
                problems.append(f"extended_key_usage: {purpose_name(purpose)} is not among "
                                f"{profile.issuer}'s own purposes: relying parties that "
                                "chain purposes (OpenSSL, Windows) refuse its certificates")
    basic = issuer.extensions.get_extension_for_class(x509.BasicConstraints).value
    if profile.usage.ca and basic.path_length == 0:
        problems.append(f"ca: {profile.issuer} has pathlen 0 and cannot certify a CA")
    return problems


def _key_family(profile: Profile, policy: Policy) -> str | None:
    """A key type both the profile and [policy.keys] accept (None: none is)."""
    accepted = ["rsa"] + [family for family, (curve, _) in _CURVES.items()
                          if curve in policy.ec_curves]
    accepted += ["ed25519"] if policy.allow_ed25519 else []
    wanted = profile.usage.key_types or ("ec-p256", *accepted)
    return next((family for family in wanted if family in accepted), None)


def _specimen_key(family: str) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | \
        ed25519.Ed25519PrivateKey:
    if family in _CURVES:
        return ec.generate_private_key(_CURVES[family][1]())
    if family == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    return rsa.generate_private_key(65537, 2048)


def _domain(profile: Profile) -> str:
    return profile.allowed_domains[0] if profile.allowed_domains else "example.com"


def _specimen_names(profile: Profile) -> list[x509.GeneralName]:
    """One name of each form the profile's type takes."""
    domain, forms = _domain(profile), profile.usage.name_forms
    made: dict[NameForm, x509.GeneralName] = {
        NameForm.DNS: x509.DNSName(f"specimen.{domain}"),
        NameForm.IP: x509.IPAddress(IPv4Address("192.0.2.1")),
        NameForm.EMAIL: x509.RFC822Name(f"specimen@{domain}"),
        NameForm.URI: x509.UniformResourceIdentifier(f"https://{domain}/specimen")}
    return [made[form] for form in NameForm if form in forms and
            (form != NameForm.IP or profile.allow_ip or form in profile.usage.required_forms)]


def _specimen_subject(profile: Profile, issuer: x509.Certificate) -> x509.Name:
    """A subject the profile would issue: its dn rules' attributes ("match" ones with the
    CA's values, "supplied" ones with a specimen's), the common name of its type."""
    names = _specimen_names(profile)
    email = next((n.value for n in names if isinstance(n, x509.RFC822Name)), None)
    dns = next((n.value for n in names if isinstance(n, x509.DNSName)), None)
    common = {"email": email, "hostname": dns}.get(str(profile.usage.common_name)) or \
        f"Specimen {profile.name}"
    attributes = []
    for field_name, rule in profile.dn:
        oid = x509.ObjectIdentifier(ATTRIBUTE_NAMES[field_name][1])
        value = {NameOID.COMMON_NAME: common, NameOID.EMAIL_ADDRESS: email,
                 NameOID.COUNTRY_NAME: "XX"}.get(oid, "Specimen")
        if rule == "match":
            held = issuer.subject.get_attributes_for_oid(oid)
            value = str(held[0].value) if held else None
        if value and rule != "optional":
            attributes.append(x509.NameAttribute(oid, value))
    if not any(a.oid == NameOID.COMMON_NAME for a in attributes):
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common))
    return x509.Name(attributes)
