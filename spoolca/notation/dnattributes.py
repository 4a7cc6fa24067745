"""The DN attributes spoolca knows, by OpenSSL long name: short name and dotted OID.

Plain strings, so reading the configuration (whose [policy.dn] keys are these names)
does not import cryptography; spoolca.notation.dn turns them into cryptography's OIDs.
"""

from __future__ import annotations

__all__ = ["ATTRIBUTE_NAMES"]

# OpenSSL long name -> (short name, dotted OID), as openssl.cnf's policy sections name them.
ATTRIBUTE_NAMES: dict[str, tuple[str, str]] = {
    "countryName": ("C", "2.5.4.6"),
    "stateOrProvinceName": ("ST", "2.5.4.8"),
    "localityName": ("L", "2.5.4.7"),
    "organizationName": ("O", "2.5.4.10"),
    "organizationalUnitName": ("OU", "2.5.4.11"),
    "commonName": ("CN", "2.5.4.3"),
    "emailAddress": ("emailAddress", "1.2.840.113549.1.9.1"),
    "serialNumber": ("serialNumber", "2.5.4.5"),
    "givenName": ("GN", "2.5.4.42"),
    "surname": ("SN", "2.5.4.4"),
    "title": ("title", "2.5.4.12"),
    "pseudonym": ("pseudonym", "2.5.4.65"),
    "domainComponent": ("DC", "0.9.2342.19200300.100.1.25"),
    "streetAddress": ("street", "2.5.4.9"),
    "postalCode": ("postalCode", "2.5.4.17"),
    "businessCategory": ("businessCategory", "2.5.4.15"),
    "userId": ("UID", "0.9.2342.19200300.100.1.1"),
}
