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
from cryptography.x509.oid import NameOID

from spoolca.config import Policy, Profile
from spoolca.config.certtypes import CommonName, NameForm
from spoolca.errors import InternalError
from spoolca.findings import Finding, Severity
from spoolca.notation.dn import ATTRIBUTES, attribute_name, comparable, oneline
from spoolca.x509.csr import Request
from spoolca.x509.keypolicy import check_key, check_key_type, check_signature
from spoolca.x509.names import domain_allowed, hostname_problem, is_email, is_uri, parse_ip
from spoolca.x509.requested import check_extensions

__all__ = ["CASubjects", "Decision", "evaluate"]

_REPEATABLE = {"organizationalUnitName", "domainComponent", "streetAddress"}
# Printable means no control, format (bidirectional overrides, zero-width), surrogate,
# private-use or unassigned character, and no line or paragraph separator.
_UNPRINTABLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
_KNOWN_OIDS = frozenset(oid for _short, oid in ATTRIBUTES.values())

GeneralName = x509.DNSName | x509.IPAddress | x509.RFC822Name | x509.UniformResourceIdentifier


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome for one request: accepted when there is no finding."""

    findings: tuple[Finding, ...]
    subject: x509.Name | None = None
    subject_line: str = ""
    names: tuple[GeneralName, ...] = field(default=())
    notes: tuple[Finding, ...] = ()  # informational: what was requested and overridden

    def __post_init__(self) -> None:
        # One reason once: a CN that is also in the SAN is judged twice, said once.
        object.__setattr__(self, "findings", tuple(dict.fromkeys(self.findings)))
        misplaced = [f.code for f in self.findings if f.severity != Severity.REFUSAL] + \
            [f.code for f in self.notes if f.severity != Severity.NOTE]
        if misplaced:  # a note would refuse a request, or a reason be shown as a note
            raise InternalError(f"findings of the wrong severity in a decision: {misplaced}")

    @property
    def accepted(self) -> bool:
        return not self.findings


def _attributes(name: x509.Name) -> list[x509.NameAttribute[str | bytes]]:
    return [attr for rdn in name.rdns for attr in rdn]


def _grouped(name: x509.Name) -> dict[str, list[str]]:
    """Values per attribute long name, in order: built once per name and evaluation, since
    hashing an x509.Name (to cache by it) costs more than building this."""
    grouped: dict[str, list[str]] = {}
    for rdn in name.rdns:
        for attr in rdn:
            grouped.setdefault(attribute_name(attr.oid), []).append(str(attr.value))
    return grouped


@functools.lru_cache(maxsize=64)
def _ca_grouped(issuer: x509.Certificate) -> dict[str, list[str]]:
    """The issuing CA's subject, grouped: the same few CAs sign every request."""
    return _grouped(issuer.subject)


def unprintable(text: str) -> str | None:
    """The first character of `text` that is not printable, or None."""
    if text.isascii() and text.isprintable():  # the common case, without a lookup per character
        return None
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


def _issued_subject(subject: x509.Name, grouped: dict[str, list[str]],
                    dn: tuple[tuple[str, str], ...], policy: Policy, preserve: bool
                    ) -> x509.Name:
    """The subject to sign: policy order, unnamed fields dropped, unless preserve_dn."""
    keep_email = policy.email_in_dn
    if preserve:
        rdns = []
        for rdn in subject.rdns:
            attrs = [a for a in rdn if keep_email or a.oid != NameOID.EMAIL_ADDRESS]
            if attrs:
                rdns.append(x509.RelativeDistinguishedName(attrs))
        return x509.Name(rdns)
    attributes: list[x509.NameAttribute[str | bytes]] = []
    for field_name, _rule in dn:
        if field_name == "emailAddress" and not keep_email:
            continue
        oid = ATTRIBUTES[field_name][1]
        attributes.extend(x509.NameAttribute(oid, value) for value in grouped.get(field_name, ()))
    return x509.Name(attributes)


def _check_subject(subject: x509.Name, grouped: dict[str, list[str]],
                   ca_grouped: dict[str, list[str]], profile: Profile, policy: Policy
                   ) -> tuple[list[Finding], x509.Name | None]:
    findings: list[Finding] = []
    attributes = _attributes(subject)
    if not attributes:
        return [Finding("policy.dn.empty", "the request's subject is empty")], None
    for attr in attributes:
        if attr.oid not in _KNOWN_OIDS and profile.preserve_dn:
            findings.append(Finding("policy.dn.unknown_attribute",
                                    f"subject attribute {attr.oid.dotted_string} is not known"))
        elif attr.oid in _KNOWN_OIDS and isinstance(attr.value, str):
            problem = _check_value(attribute_name(attr.oid), attr.value, policy)
            if problem:
                findings.append(problem)
    for field_name, rule in profile.dn:
        findings += _check_rule(field_name, rule, grouped.get(field_name, []),
                                ca_grouped.get(field_name, []))
    if findings:
        return findings, None
    return [], _issued_subject(subject, grouped, profile.dn, policy, profile.preserve_dn)


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
    kept: dict[str, str] = {}
    for item in items:
        kept.setdefault(item.lower(), item)  # the first spelling of each, in order
    return list(kept.values())


_FORM_WORDS = {NameForm.DNS: "DNS name", NameForm.IP: "IP address",
               NameForm.EMAIL: "e-mail address", NameForm.URI: "URI"}


@dataclass
class _Names:
    """The names a certificate will carry, by form, in the order they were found."""

    dns: list[str] = field(default_factory=list)
    ips: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = field(default_factory=list)
    emails: list[str] = field(default_factory=list)
    uris: list[str] = field(default_factory=list)

    def forms(self) -> set[NameForm]:
        present = {NameForm.DNS: self.dns, NameForm.IP: self.ips, NameForm.EMAIL: self.emails,
                   NameForm.URI: self.uris}
        return {form for form, names in present.items() if names}

    def general_names(self) -> tuple[GeneralName, ...]:
        names: list[GeneralName] = [x509.DNSName(d) for d in self.dns]
        names += [x509.IPAddress(ip) for ip in dict.fromkeys(self.ips)]
        names += [x509.RFC822Name(e) for e in self.emails]
        names += [x509.UniformResourceIdentifier(u) for u in self.uris]
        return tuple(names)


def _sort_requested(request: Request, profile: Profile, found: _Names) -> list[Finding]:
    """Each subjectAltName the request asks for into its form, if the type carries it."""
    findings = []
    forms = profile.usage.name_forms
    for general in _requested_names(request.extensions):
        if isinstance(general, x509.DNSName) and NameForm.DNS in forms:
            found.dns.append(general.value)
        elif isinstance(general, x509.IPAddress) and NameForm.IP in forms \
                and isinstance(general.value, ipaddress.IPv4Address | ipaddress.IPv6Address):
            found.ips.append(general.value)
        elif isinstance(general, x509.RFC822Name) and NameForm.EMAIL in forms:
            found.emails.append(general.value)
        elif isinstance(general, x509.UniformResourceIdentifier) and NameForm.URI in forms:
            found.uris.append(general.value)
        else:
            findings.append(Finding("policy.san.type_not_allowed",
                                    f"the {profile.name} profile does not issue "
                                    f"{type(general).__name__} subjectAltNames ({general.value})"))
    return findings


def _names_from_subject(grouped: dict[str, list[str]], profile: Profile,
                        found: _Names) -> list[Finding]:
    """The commonName, read as the type says (CA/B 7.1.4.3: a hostname CN is also a SAN),
    and emailAddress attributes where the type carries e-mail names."""
    findings = []
    rule = profile.usage.common_name
    for cn in grouped.get("commonName", ()):
        if rule == CommonName.HOSTNAME:
            ip = parse_ip(cn)
            if ip is not None:
                found.ips.insert(0, ip)
            elif hostname_problem(cn, allow_wildcards=True) is not None:
                findings.append(Finding("policy.cn.not_a_hostname", f"commonName {cn!r} of a "
                                        f"{profile.kind} request must be its hostname or IP "
                                        "address"))
            else:
                found.dns.insert(0, cn)
        elif rule == CommonName.EMAIL and "@" in cn:
            if is_email(cn):
                found.emails.insert(0, cn)
            else:
                findings.append(Finding("policy.cn.invalid_email",
                                        f"commonName {cn!r} is not a valid e-mail address"))
    if NameForm.EMAIL in profile.usage.name_forms:
        found.emails += grouped.get("emailAddress", [])
    return findings


def _check_names(request: Request, grouped: dict[str, list[str]], profile: Profile
                 ) -> tuple[list[Finding], tuple[GeneralName, ...]]:
    """subjectAltName: the only extension taken from the CSR, after its names pass.
    GROUPED: the request's subject by attribute (the issued subject has the same
    commonNames)."""
    found = _Names()
    findings = _sort_requested(request, profile, found)
    findings += _names_from_subject(grouped, profile, found)
    found.dns, found.emails = _dedupe(found.dns), _dedupe(found.emails)
    findings += _check_dns(found.dns, profile)
    for ip in found.ips if not profile.allow_ip else []:
        findings.append(Finding("policy.san.ip_not_allowed", f"IP address {ip} was requested; "
                                f"the {profile.name} profile sets allow_ip = false"))
    findings += [Finding("policy.san.email_invalid", f"{e!r} is not a valid e-mail address")
                 for e in found.emails if not is_email(e)]
    findings += [Finding("policy.san.uri_invalid", f"{u!r} is not an absolute URI")
                 for u in found.uris if not is_uri(u)]
    required = profile.usage.required_forms
    if required and not required & found.forms():
        words = [_FORM_WORDS[form] for form in NameForm if form in required]
        either = " or ".join(filter(None, (", ".join(words[:-1]), words[-1])))
        findings.append(Finding("policy.san.missing", f"a {profile.kind} request must name "
                                f"at least one {either} (commonName or subjectAltName)"))
    if findings:  # refused names (a U-label, say) cannot even be built as GeneralNames
        return findings, ()
    return findings, found.general_names()


def _too_many(request: Request, policy: Policy) -> list[Finding]:
    """The caps that bound a request's work (invariant 9: time is bounded like bytes): a
    64 KiB request may name 6,000 DNS names, each then built, linted and signed."""
    findings = []
    names = len(_requested_names(request.extensions))
    if names > policy.max_san_entries:
        findings.append(Finding("policy.san.too_many", f"the request names {names} "
                                f"subjectAltNames; at most {policy.max_san_entries} are "
                                "issued in one certificate ([policy] max_san_entries)"))
    attributes = len(request.subject)
    if attributes > policy.max_subject_attributes:
        findings.append(Finding("policy.dn.too_many_attributes", f"the subject holds "
                                f"{attributes} attributes; at most "
                                f"{policy.max_subject_attributes} ([policy] "
                                "max_subject_attributes)"))
    return findings


class CASubjects:
    """The CAs' own subjects as OpenSSL compares names, made once for many evaluations."""

    def __init__(self, names: Iterable[x509.Name]) -> None:
        self._keys = frozenset(comparable(name) for name in names)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, x509.Name) and comparable(name) in self._keys


def evaluate(request: Request, profile: Profile, policy: Policy, issuer: x509.Certificate, *,
             ca_subjects: CASubjects | Iterable[x509.Name] = (),
             subject_in_use: Callable[[str], str | None] = lambda _subject: None) -> Decision:
    """Judge a request against a profile; every violation becomes one finding.

    `subject_in_use(oneline_subject)` returns the serial of a valid certificate already
    issued for that subject, for OpenSSL's unique_subject rule. `ca_subjects` are the CAs'
    names, compared as RFC 5280 7.1 and OpenSSL compare names (case and spacing aside).
    """
    findings = check_signature(request) + check_key(request, policy)
    findings += check_key_type(request, profile.usage.key_types, profile.name)
    too_many = _too_many(request, policy)
    if too_many:  # judged no further: its names would take seconds each step
        return Decision(findings=tuple(findings + too_many))
    extension_findings, notes = check_extensions(request, profile.usage)
    notes = [*(Finding("note.subject_reencoded", f"the request's subject was re-encoded: "
                       f"{change}; its signature was checked over the bytes as sent")
               for change in request.repairs), *notes]
    findings += extension_findings
    grouped = _grouped(request.subject)
    subject_findings, subject = _check_subject(request.subject, grouped, _ca_grouped(issuer),
                                               profile, policy)
    findings += subject_findings
    name_findings, names = _check_names(request, grouped, profile)
    findings += name_findings
    if subject is None:
        return Decision(findings=tuple(findings))
    line = oneline(subject)
    if not isinstance(ca_subjects, CASubjects):
        ca_subjects = CASubjects(ca_subjects)
    if subject in ca_subjects:
        findings.append(Finding("policy.dn.same_as_ca", f"the subject {line} is a CA's own "
                                "subject; choose another commonName"))
    existing = subject_in_use(line) if profile.unique_subject else None
    if existing:
        findings.append(Finding("policy.subject.duplicate",
                                f"a valid certificate (serial {existing}) already exists for "
                                f"{line} and the {profile.name} profile sets unique_subject; "
                                f"renew it within {profile.renew_before_days} days of its end, "
                                "revoke it first, or use another subject"))
    notes += _dropped_fields(request.subject, subject, profile)
    return Decision(findings=tuple(findings), subject=subject, subject_line=line, names=names,
                    notes=tuple(notes))


def _dropped_fields(asked: x509.Name, issued: x509.Name, profile: Profile) -> list[Finding]:
    """A note for each subject field the request had and the certificate does not (the
    profile's dn does not name it, as with OpenSSL's policy): said, never silent."""
    kept = {(a.oid, a.value) for a in issued}
    dropped = [f"{attribute_name(a.oid)}={a.value!r}" for a in _attributes(asked)
               if (a.oid, a.value) not in kept]
    if not dropped:
        return []
    return [Finding("note.dn_field_dropped", f"the request's subject has {', '.join(dropped)}, "
                    f"which the {profile.name} profile's dn does not name: left out of the "
                    "certificate (name the field in the profile's dn, or set preserve_dn, to "
                    "keep it)")]
