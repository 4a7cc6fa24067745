"""[policy]: the subject and key rules every profile shares, read and checked.

Apart from spoolca.config because the rules are a concept of their own (the seeds'
policy_match, RFC 5280's upper bounds, the key floors), and profiles reuse `read_dn`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from spoolca.config.tomlreader import TableReader
from spoolca.notation.dnattributes import ATTRIBUTE_NAMES as ATTRIBUTES

__all__ = ["DN_RULES", "EC_CURVES", "RSA_FLOOR_BITS", "Policy", "read_dn", "read_policy"]

DN_RULES = ("match", "supplied", "optional")
# The seeds' policy_match, in the order OpenSSL writes the issued subject.
DEFAULT_DN = (
    ("countryName", "match"),
    ("stateOrProvinceName", "match"),
    ("organizationName", "match"),
    ("organizationalUnitName", "optional"),
    ("commonName", "supplied"),
    ("emailAddress", "optional"),
)
# Upper bounds: RFC 5280 Appendix A (ub-*), and the seed's commonName_max/emailAddress_max.
DEFAULT_MAX_LENGTH = {
    "commonName": 64,
    "emailAddress": 40,
    "organizationName": 64,
    "organizationalUnitName": 64,
    "localityName": 128,
    "stateOrProvinceName": 128,
    "serialNumber": 64,
}
RSA_FLOOR_BITS = 2048
EC_CURVES = ("P-256", "P-384", "P-521")



@dataclass(frozen=True, slots=True)
class Policy:
    """Subject and key rules shared by all profiles (a profile may replace `dn`)."""

    dn: tuple[tuple[str, str], ...]
    max_length: Mapping[str, int]
    preserve_dn: bool
    email_in_dn: bool
    rsa_min_bits: int
    ec_curves: frozenset[str]
    allow_ed25519: bool
    max_san_entries: int = 100        # subjectAltName entries a request may ask for
    max_subject_attributes: int = 32  # and attributes its subject may hold


def read_dn(reader: TableReader, table: Mapping[str, Any], where: str
             ) -> tuple[tuple[str, str], ...]:
    rules = []
    for field, rule in table.items():
        if field not in ATTRIBUTES:
            reader.problems.append(f"{where}{field}: unknown DN attribute")
        elif rule not in DN_RULES:
            reader.problems.append(f"{where}{field}: must be one of {', '.join(DN_RULES)}")
        else:
            rules.append((field, rule))
    return tuple(rules)


def read_policy(reader: TableReader, raw: Mapping[str, Any]) -> Policy:
    table = reader.table(raw, "policy", "")
    reader.unknown(table, {"dn", "max_length", "preserve_dn", "email_in_dn", "keys",
                           "max_san_entries", "max_subject_attributes"}, "policy.")
    dn = read_dn(reader, reader.table(table, "dn", "policy."), "policy.dn.") if "dn" in table \
        else DEFAULT_DN
    lengths = dict(DEFAULT_MAX_LENGTH)
    for field, limit in reader.table(table, "max_length", "policy.").items():
        if field not in ATTRIBUTES or field == "countryName":
            reader.problems.append(f"policy.max_length.{field}: not a settable DN attribute")
        elif isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0:
            reader.problems.append(f"policy.max_length.{field}: must be a positive integer")
        else:
            lengths[field] = limit
    keys = reader.table(table, "keys", "policy.")
    reader.unknown(keys, {"rsa_min_bits", "ec_curves", "allow_ed25519"}, "policy.keys.")
    rsa_min = reader.positive(keys, "rsa_min_bits", RSA_FLOOR_BITS, "policy.keys.")
    if rsa_min < RSA_FLOOR_BITS:
        reader.problems.append(f"policy.keys.rsa_min_bits: may not be below {RSA_FLOOR_BITS}")
    curves = reader.strings(keys, "ec_curves", "policy.keys.") if "ec_curves" in keys \
        else EC_CURVES
    for curve in curves:
        if curve not in EC_CURVES:
            reader.problems.append(f"policy.keys.ec_curves: {curve!r} is not one of "
                                   f"{', '.join(EC_CURVES)}")
    return Policy(
        dn=dn,
        max_length=MappingProxyType(lengths),
        preserve_dn=reader.get(table, "preserve_dn", bool, False, "policy."),
        email_in_dn=reader.get(table, "email_in_dn", bool, False, "policy."),
        rsa_min_bits=max(rsa_min, RSA_FLOOR_BITS),
        ec_curves=frozenset(curves),
        allow_ed25519=reader.get(keys, "allow_ed25519", bool, True, "policy.keys."),
        max_san_entries=reader.positive(table, "max_san_entries", 100, "policy."),
        max_subject_attributes=reader.positive(table, "max_subject_attributes", 32, "policy."),
    )
