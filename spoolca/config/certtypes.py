"""What a certificate is for, as data: its key usage, purposes, the names it carries and
the extensions it adds.

Every anchor lets the operator define a certificate type (easy-rsa's x509-types,
openssl.cnf extension sections, CFSSL signing profiles). Here a type is a table of
plain keys; the ones spoolca ships (certificate-types.toml beside this file) are the
same data a profile writes in spoolca.toml, so `kind = "server"` is a starting point,
not a code path. A type that cannot be right (a CA without keyCertSign, a leaf with it,
a purpose its key usage forbids) is refused with every problem at once.
"""

from __future__ import annotations

import enum
import functools
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from importlib import resources
from typing import Any

from spoolca.config.constraints import PURPOSES
from spoolca.config.tomlreader import TableReader
from spoolca.errors import InternalError
from spoolca.notation.dnattributes import ATTRIBUTE_NAMES

__all__ = ["KEY_FAMILIES", "KEY_USAGES", "TYPE_KEYS", "CertificatePolicy", "CertificateType",
           "CommonName", "NameForm", "purpose_name", "read_type", "shipped_types", "type_problems"]


class NameForm(enum.StrEnum):
    """A subjectAltName form a certificate may carry."""

    DNS = "dns"
    IP = "ip"
    EMAIL = "email"
    URI = "uri"


class CommonName(enum.StrEnum):
    """How a request's commonName is read."""

    HOSTNAME = "hostname"  # a DNS name or IP address, also put in the subjectAltName
    EMAIL = "email"        # an e-mail address when it has an @, also put in the SAN
    TEXT = "text"          # a label, not a name anything is checked against


# keyUsage bits as openssl.cnf names them -> cryptography's KeyUsage arguments.
KEY_USAGES = {"digitalSignature": "digital_signature", "nonRepudiation": "content_commitment",
              "contentCommitment": "content_commitment", "keyEncipherment": "key_encipherment",
              "dataEncipherment": "data_encipherment", "keyAgreement": "key_agreement",
              "keyCertSign": "key_cert_sign", "cRLSign": "crl_sign"}
# Purposes beyond the constraint keys' (RFC 5280 4.2.1.12; RFC 4945 for IKE; Microsoft's
# document signing; anyExtendedKeyUsage is refused: a purpose list must say something).
_MORE_PURPOSES = {"ipsecIKE": "1.3.6.1.5.5.7.3.17", "msDocumentSigning": "1.3.6.1.4.1.311.10.3.12",
                  "smartcardLogon": "1.3.6.1.4.1.311.20.2.2", "eapOverLAN": "1.3.6.1.5.5.7.3.14",
                  "secureShellClient": "1.3.6.1.5.5.7.3.21",
                  "secureShellServer": "1.3.6.1.5.5.7.3.22"}
_PURPOSES = {**PURPOSES, **_MORE_PURPOSES}
_ANY_PURPOSE = "2.5.29.37.0"
# What key_types names (x509.keypolicy.key_family tells a request's); sizes are [policy]'s.
KEY_FAMILIES = ("rsa", "ec-p256", "ec-p384", "ec-p521", "ed25519")


def purpose_name(oid: str) -> str:
    """The name a purpose OID is written with, or the OID itself."""
    return next((name for name, dotted in _PURPOSES.items() if dotted == oid), oid)


@dataclass(frozen=True, slots=True)
class CertificatePolicy:
    """One certificatePolicies entry (RFC 5280 4.2.1.4) with its optional qualifiers."""

    oid: str
    cps: str = ""     # a URI where the certification practice statement is
    notice: str = ""  # userNotice explicitText, shown by some relying parties


@dataclass(frozen=True, slots=True)
class CertificateType:
    """What a profile's certificates say about their key and names."""

    name: str                           # the shipped type it started from ("server", ...)
    summary: str
    validity_days: int
    ca: bool
    key_usage: tuple[str, ...]          # openssl.cnf names, in the order written
    rsa_key_usage: tuple[str, ...]      # added when the key is RSA (key transport)
    extended_key_usage: tuple[str, ...]  # dotted OIDs; empty: no extension
    critical_extended_key_usage: bool
    name_forms: frozenset[NameForm]
    required_forms: frozenset[NameForm]
    common_name: CommonName
    ocsp_no_check: bool = False
    must_staple: bool = False           # TLS feature status_request (RFC 7633)
    policies: tuple[CertificatePolicy, ...] = ()
    key_types: tuple[str, ...] = ()     # empty: every type [policy] accepts
    subject_requires: tuple[str, ...] = ()  # DN attributes every subject must have

    def usage_flags(self, rsa: bool) -> frozenset[str]:
        """cryptography's KeyUsage argument names this type sets for a key."""
        names = self.key_usage + (self.rsa_key_usage if rsa else ())
        return frozenset(KEY_USAGES[name] for name in names)


TYPE_KEYS = {"validity_days", "ca", "key_usage", "rsa_key_usage", "extended_key_usage",
             "critical_extended_key_usage", "name_forms", "required_forms", "common_name",
             "ocsp_no_check", "must_staple", "certificate_policies", "key_types",
             "subject_requires"}
_SHIPPED_ONLY = {"summary"}


def _names(reader: TableReader, table: Mapping[str, Any], key: str, where: str,
           known: Iterable[str]) -> tuple[str, ...] | None:
    """KEY's list of names, each one of KNOWN (None: the table does not set KEY)."""
    if key not in table:
        return None
    known = tuple(known)
    values = reader.strings(table, key, where)
    for value in values:
        if value not in known:
            reader.problems.append(f"{where}{key}: {value!r} is not one of {', '.join(known)}")
    return tuple(v for v in values if v in known)


def _is_oid(text: str) -> bool:
    """A dotted OID: two arcs at least, the first 0, 1 or 2 (X.660)."""
    arcs = text.split(".")
    return len(arcs) >= 2 and all(arc.isdigit() for arc in arcs) and arcs[0] in ("0", "1", "2")


def _purposes(reader: TableReader, table: Mapping[str, Any], where: str
              ) -> tuple[str, ...] | None:
    if "extended_key_usage" not in table:
        return None
    oids = []
    for value in reader.strings(table, "extended_key_usage", where):
        oid = _PURPOSES.get(value, value)
        if not _is_oid(oid):
            reader.problems.append(f"{where}extended_key_usage: {value!r} is neither a purpose "
                                   f"({', '.join(_PURPOSES)}) nor a dotted OID")
        elif oid == _ANY_PURPOSE:
            reader.problems.append(f"{where}extended_key_usage: anyExtendedKeyUsage says "
                                   "nothing; name the purposes")
        else:
            oids.append(oid)
    return tuple(dict.fromkeys(oids))


def _policies(reader: TableReader, table: Mapping[str, Any], where: str
              ) -> tuple[CertificatePolicy, ...] | None:
    if "certificate_policies" not in table:
        return None
    entries = reader.get(table, "certificate_policies", list, [], where)
    policies = []
    for number, entry in enumerate(entries):
        at = f"{where}certificate_policies[{number}]."
        if not isinstance(entry, dict):
            reader.problems.append(f"{at[:-1]}: must be a table {{oid = ..., cps = ...}}")
            continue
        reader.unknown(entry, {"oid", "cps", "notice"}, at)
        oid = reader.get(entry, "oid", str, "", at)
        if not _is_oid(oid):
            reader.problems.append(f"{at}oid: a dotted OID is required (2.23.140.1.2.1 ...)")
        cps = reader.get(entry, "cps", str, "", at)
        if cps and not cps.startswith(("http://", "https://")):
            reader.problems.append(f"{at}cps: must be an http:// or https:// URL")
        notice = reader.get(entry, "notice", str, "", at)
        if len(notice) > 200:  # RFC 5280 4.2.1.4: explicitText is at most 200 characters
            reader.problems.append(f"{at}notice: at most 200 characters")
        policies.append(CertificatePolicy(oid, cps, notice))
    return tuple(policies)


def read_type(reader: TableReader, table: Mapping[str, Any], where: str,
              base: CertificateType) -> CertificateType:
    """BASE with the type keys TABLE sets (unknown keys are the caller's to report)."""
    changes: dict[str, Any] = {}
    for key in ("ca", "critical_extended_key_usage", "ocsp_no_check", "must_staple"):
        if key in table:
            changes[key] = reader.get(table, key, bool, getattr(base, key), where)
    if "validity_days" in table:
        changes["validity_days"] = reader.positive(table, "validity_days", base.validity_days,
                                                   where)
    for key in ("key_usage", "rsa_key_usage"):
        values = _names(reader, table, key, where, KEY_USAGES)
        if values is not None:
            changes[key] = values
    for key in ("name_forms", "required_forms"):
        forms = _names(reader, table, key, where, tuple(NameForm))
        if forms is not None:
            changes[key] = frozenset(NameForm(f) for f in forms)
    if "common_name" in table:
        value = reader.get(table, "common_name", str, base.common_name, where)
        if value not in tuple(CommonName):
            reader.problems.append(f"{where}common_name: one of {', '.join(CommonName)}")
        else:
            changes["common_name"] = CommonName(value)
    purposes, policies = _purposes(reader, table, where), _policies(reader, table, where)
    if purposes is not None:
        changes["extended_key_usage"] = purposes
    if policies is not None:
        changes["policies"] = policies
    key_types = _names(reader, table, "key_types", where, KEY_FAMILIES)
    if key_types is not None:
        changes["key_types"] = key_types
    required = _names(reader, table, "subject_requires", where, ATTRIBUTE_NAMES)
    if required is not None:
        changes["subject_requires"] = required
    made = replace(base, **changes)
    reader.problems += type_problems(made, where)
    return made


def type_problems(kind: CertificateType, where: str) -> list[str]:
    """What makes a type wrong whatever it is used for, each a sentence with its key."""
    problems = []
    usage = set(kind.usage_flags(rsa=False)) | set(kind.usage_flags(rsa=True))
    if kind.ca and "key_cert_sign" not in usage:
        problems.append(f"{where}key_usage: a CA type must have keyCertSign")
    if not kind.ca and usage & {"key_cert_sign", "crl_sign"}:
        problems.append(f"{where}key_usage: keyCertSign and cRLSign are for CA types "
                        "(ca = true) only")
    if not usage:
        problems.append(f"{where}key_usage: at least one key usage")
    if kind.ca and (kind.name_forms or kind.required_forms):
        problems.append(f"{where}name_forms: a CA type carries no subjectAltName (its "
                        "constraints say what it may certify)")
    if not kind.required_forms <= kind.name_forms:
        problems.append(f"{where}required_forms: must be among name_forms")
    if kind.common_name == CommonName.HOSTNAME and not {NameForm.DNS, NameForm.IP} & \
            kind.name_forms:
        problems.append(f"{where}common_name: \"hostname\" needs dns or ip in name_forms")
    if kind.common_name == CommonName.EMAIL and NameForm.EMAIL not in kind.name_forms:
        problems.append(f"{where}common_name: \"email\" needs email in name_forms")
    problems += _purpose_problems(kind, usage, where)
    return problems


# What each purpose needs of keyUsage (RFC 5280 4.2.1.12: "consistent"; RFC 3161 2.3,
# RFC 6960 4.2.2.2, CA/B S/MIME BR 7.1.2.3): at least one of these bits.
_PURPOSE_NEEDS = {PURPOSES["serverAuth"]: {"digital_signature", "key_encipherment",
                                           "key_agreement"},
                  PURPOSES["clientAuth"]: {"digital_signature", "key_agreement"},
                  PURPOSES["codeSigning"]: {"digital_signature"},
                  PURPOSES["emailProtection"]: {"digital_signature", "content_commitment",
                                                "key_encipherment", "key_agreement"},
                  PURPOSES["timeStamping"]: {"digital_signature", "content_commitment"},
                  PURPOSES["OCSPSigning"]: {"digital_signature", "content_commitment"}}


def _purpose_problems(kind: CertificateType, usage: set[str], where: str) -> list[str]:
    problems = []
    for oid in kind.extended_key_usage:
        needs = _PURPOSE_NEEDS.get(oid)
        if needs is not None and not needs & usage:
            problems.append(f"{where}extended_key_usage: {purpose_name(oid)} contradicts "
                            f"key_usage (it needs one of "
                            f"{', '.join(sorted(n for n, f in KEY_USAGES.items() if f in needs))})")
    if kind.ca and kind.extended_key_usage:
        problems.append(f"{where}extended_key_usage: a CA type limits its purposes with "
                        "the profile's `purposes` key")
    stamping = PURPOSES["timeStamping"]
    if stamping in kind.extended_key_usage and (len(kind.extended_key_usage) > 1 or not
                                                kind.critical_extended_key_usage):
        problems.append(f"{where}extended_key_usage: timeStamping must be the only purpose, "
                        "and critical (RFC 3161 2.3)")
    if kind.ocsp_no_check and PURPOSES["OCSPSigning"] not in kind.extended_key_usage:
        problems.append(f"{where}ocsp_no_check: only for an OCSPSigning type (RFC 6960 "
                        "4.2.2.2.1)")
    if kind.must_staple and PURPOSES["serverAuth"] not in kind.extended_key_usage:
        problems.append(f"{where}must_staple: only for a TLS server type")
    return problems


@functools.cache
def shipped_types() -> Mapping[str, CertificateType]:
    """The types in certificate-types.toml, read with the same rules as a profile's."""
    text = resources.files("spoolca.config").joinpath("certificate-types.toml").read_text()
    reader = TableReader()
    made = {}
    for name, table in tomllib.loads(text).items():
        reader.unknown(table, TYPE_KEYS | _SHIPPED_ONLY, f"{name}.")
        blank = CertificateType(
            name=name, summary=table.get("summary", ""), validity_days=375, ca=False,
            key_usage=(), rsa_key_usage=(), extended_key_usage=(),
            critical_extended_key_usage=False, name_forms=frozenset(),
            required_forms=frozenset(), common_name=CommonName.TEXT)
        made[name] = read_type(reader, table, f"{name}.", blank)
    if reader.problems:  # a bug in the shipped file, not the operator's mistake
        raise InternalError(f"certificate-types.toml: {'; '.join(reader.problems)}")
    return made
