"""What a subordinate CA may certify: nameConstraints, path length and purposes.

A subordinate handed to a team or a site should only be able to vouch for its own
names. RFC 5280 4.2.1.10 name constraints (DNS names, IP ranges, e-mail domains) are
enforced by every path validator (OpenSSL, GnuTLS, NSS, Go), and an extendedKeyUsage in
a CA certificate restricts the purposes of its chain in practice (OpenSSL, NSS, Go).
A constraint binds only the name forms it names: a subordinate permitted one DNS domain
could otherwise certify any IP address, e-mail address or URI. So a subordinate that
lists what it permits has every other form shut (CA/Browser Forum BR 7.1.2.5).
Read from a `subca` profile's keys; plain data here, turned into extensions in x509.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from spoolca.config.tomlreader import TableReader
from spoolca.notation.dn import parse_subject

__all__ = ["CONSTRAINT_KEYS", "PURPOSES", "SubCAConstraints", "read_constraints"]

# extendedKeyUsage names as openssl.cnf spells them -> dotted OIDs (RFC 5280 4.2.1.12).
PURPOSES = {"serverAuth": "1.3.6.1.5.5.7.3.1", "clientAuth": "1.3.6.1.5.5.7.3.2",
            "codeSigning": "1.3.6.1.5.5.7.3.3", "emailProtection": "1.3.6.1.5.5.7.3.4",
            "timeStamping": "1.3.6.1.5.5.7.3.8", "OCSPSigning": "1.3.6.1.5.5.7.3.9"}
CONSTRAINT_KEYS = {"permitted_dns", "excluded_dns", "permitted_ip", "excluded_ip",
                   "permitted_email", "excluded_email", "permitted_dirname", "path_length",
                   "purposes"}


@dataclass(frozen=True, slots=True)
class SubCAConstraints:
    permitted_dns: tuple[str, ...] = ()
    excluded_dns: tuple[str, ...] = ()
    permitted_ip: tuple[str, ...] = ()   # networks, e.g. "10.0.0.0/8"
    excluded_ip: tuple[str, ...] = ()
    permitted_email: tuple[str, ...] = ()  # domains ("example.com") or ".example.com"
    excluded_email: tuple[str, ...] = ()
    permitted_dirname: str = ""  # OpenSSL -subj form; its leaves' subjects must lie below
    path_length: int = 0
    purposes: tuple[str, ...] = ()  # empty: no extendedKeyUsage in the subordinate

    @property
    def names_constrained(self) -> bool:
        return any((self.permitted_dns, self.excluded_dns, self.permitted_ip,
                    self.excluded_ip, self.permitted_email, self.excluded_email,
                    self.permitted_dirname))

    @property
    def permits(self) -> bool:
        """Whether it lists what is permitted (then every other name form is shut: a
        constraint binds only the forms it names, RFC 5280 4.2.1.10)."""
        return any((self.permitted_dns, self.permitted_ip, self.permitted_email))


def _domains(reader: TableReader, table: Mapping[str, Any], key: str, where: str
             ) -> tuple[str, ...]:
    values = tuple(v.strip().lower() for v in reader.strings(table, key, where))
    for value in values:
        labels = value.removeprefix(".").split(".")
        if not all(label and len(label) <= 63 and label.replace("-", "").isalnum()
                   and label.isascii() for label in labels):
            reader.problems.append(f"{where}{key}: {value!r} is not a DNS domain (A-labels)")
    return values


def _networks(reader: TableReader, table: Mapping[str, Any], key: str, where: str
              ) -> tuple[str, ...]:
    values = reader.strings(table, key, where)
    for value in values:
        try:
            ipaddress.ip_network(value, strict=True)
        except ValueError:
            reader.problems.append(f"{where}{key}: {value!r} is not a network like "
                                   "10.0.0.0/8 or 2001:db8::/32")
    return values


def read_constraints(reader: TableReader, table: Mapping[str, Any], where: str
                     ) -> SubCAConstraints:
    path_length = reader.get(table, "path_length", int, 0, where)
    if not 0 <= path_length <= 8:
        reader.problems.append(f"{where}path_length: must be 0 to 8")
        path_length = 0
    purposes = reader.strings(table, "purposes", where)
    for purpose in purposes:
        if purpose not in PURPOSES:
            reader.problems.append(f"{where}purposes: {purpose!r} is not one of "
                                   f"{', '.join(PURPOSES)}")
    dirname = reader.get(table, "permitted_dirname", str, "", where)
    if dirname:
        try:
            parse_subject(dirname)
        except ValueError as exc:
            reader.problems.append(f"{where}permitted_dirname: {exc}")
    return SubCAConstraints(
        permitted_dirname=dirname,
        permitted_dns=_domains(reader, table, "permitted_dns", where),
        excluded_dns=_domains(reader, table, "excluded_dns", where),
        permitted_ip=_networks(reader, table, "permitted_ip", where),
        excluded_ip=_networks(reader, table, "excluded_ip", where),
        permitted_email=_domains(reader, table, "permitted_email", where),
        excluded_email=_domains(reader, table, "excluded_email", where),
        path_length=path_length, purposes=purposes)
