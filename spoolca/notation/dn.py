"""Distinguished names in OpenSSL's notations: `-subj` input and `index.txt` one-line output.

Users of the seeds type subjects as `/C=US/ST=New York/O=Example/CN=Example CA`, and
auditors compare `index.txt` lines byte for byte, so both notations are reproduced here
exactly as OpenSSL writes them (X509_NAME_oneline).
"""

from __future__ import annotations

from cryptography import x509
from cryptography.x509.oid import ObjectIdentifier

from spoolca.notation.dnattributes import ATTRIBUTE_NAMES

__all__ = [
    "ATTRIBUTES",
    "attribute_name",
    "comparable",
    "oneline",
    "parse_subject",
]

# OpenSSL long name -> (short name, OID): the keys of the configuration's [policy.dn].
ATTRIBUTES: dict[str, tuple[str, ObjectIdentifier]] = {
    long: (short, ObjectIdentifier(dotted)) for long, (short, dotted) in ATTRIBUTE_NAMES.items()}

_BY_OID = {oid: (long, short) for long, (short, oid) in ATTRIBUTES.items()}
_BY_SHORT = {short.lower(): oid for _long, (short, oid) in ATTRIBUTES.items()}
_BY_SHORT.update({long.lower(): oid for long, (_short, oid) in ATTRIBUTES.items()})


def attribute_name(oid: ObjectIdentifier) -> str:
    """The OpenSSL long name of a DN attribute, or its dotted OID if OpenSSL has none here."""
    known = _BY_OID.get(oid)
    return known[0] if known else oid.dotted_string


def _split_unescaped(text: str, separator: str) -> list[str]:
    """Split on `separator` except where it is escaped with a backslash, unescaping."""
    parts: list[str] = []
    current: list[str] = []
    chars = iter(text)
    for char in chars:
        if char == "\\":
            current.append(next(chars, "\\"))
        elif char == separator:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def parse_subject(text: str) -> x509.Name:
    """Parse OpenSSL `-subj` notation (`/C=US/O=Org/CN=Name`, `+` for multi-valued RDNs).

    Raises ValueError naming the offending part, so the command line can say which.
    """
    if not text.startswith("/"):
        raise ValueError(f"subject {text!r} must start with '/', as in /C=US/O=Example/CN=Name")
    rdns: list[x509.RelativeDistinguishedName] = []
    for rdn_text in _split_unescaped(text[1:], "/"):
        if not rdn_text:
            continue
        attributes = []
        for pair in _split_unescaped(rdn_text.replace("\\+", "\x00"), "+"):
            key, sep, value = pair.replace("\x00", "+").partition("=")
            oid = _BY_SHORT.get(key.strip().lower())
            if not sep or oid is None:
                raise ValueError(f"unknown or malformed subject attribute {pair!r}")
            if not value:
                raise ValueError(f"subject attribute {key} has no value")
            attributes.append(x509.NameAttribute(oid, value))
        rdns.append(x509.RelativeDistinguishedName(attributes))
    if not rdns:
        raise ValueError(f"subject {text!r} names no attribute")
    return x509.Name(rdns)


def _oneline_value(value: str | bytes) -> str:
    """Escape a value the way X509_NAME_oneline does: bytes outside ' '..'~' become \\xHH."""
    if isinstance(value, str) and value.isascii() and value.isprintable():
        return value  # nothing to escape
    raw = value.encode("utf-8") if isinstance(value, str) else value
    return "".join(chr(b) if 0x20 <= b <= 0x7E else f"\\x{b:02X}" for b in raw)


def oneline(name: x509.Name) -> str:
    """The subject as OpenSSL writes it into `index.txt`: `/C=US/O=Org/CN=Name`."""
    parts = []
    for rdn in name.rdns:
        members = []
        for attr in rdn:
            known = _BY_OID.get(attr.oid)
            short = known[1] if known else attr.oid.dotted_string
            members.append(f"{short}={_oneline_value(attr.value)}")
        parts.append("/" + "+".join(members))
    return "".join(parts)


def _canonical(value: str | bytes) -> str | bytes:
    """RFC 5280 7.1 / OpenSSL's x509_name_canon: case folded, spaces trimmed and collapsed."""
    return " ".join(value.split()).casefold() if isinstance(value, str) else value


def comparable(name: x509.Name) -> tuple[frozenset[tuple[str, str | bytes]], ...]:
    """A key under which two names compare equal exactly when OpenSSL treats them as one.

    The string type (PrintableString, UTF8String, ...) is ignored, case is folded and
    whitespace collapsed, and each RDN is a set (multi-valued RDNs are unordered).
    """
    return tuple(frozenset((attr.oid.dotted_string, _canonical(attr.value)) for attr in rdn)
                 for rdn in name.rdns)
