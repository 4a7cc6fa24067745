"""Requests whose only fault is a lax encoding of their subject, as common tools write
them and OpenSSL accepts them: made correct, their meaning unchanged.

- node-forge writes every attribute as a PrintableString, also an e-mail address as a
  CN: `@` is not a PrintableString character (X.680 41.4);
- PKI.js puts the whole subject in one RDN, a SET not in DER order (X.690 11.6);
- older tools write Latin-1 in a T61String (TeletexString).

cryptography refuses these (DER is strict). OpenSSL reads them, and so do we: the subject
is encoded again correctly (a PrintableString that cannot be one becomes a UTF8String, a
T61String's Latin-1 a UTF8String, a SET's members sorted), the request's signature is
checked over the bytes its owner signed, and the result says what was re-encoded. The
certificate's subject is built from the policy anyway (never these bytes). Anything else
that does not parse is refused, with the field named (`explain`).
"""

from __future__ import annotations

import re
import string

from spoolca.notation import der

__all__ = ["Repaired", "explain", "repair"]

# The string types a subject attribute may be written in (X.520 DirectoryString and
# the IA5String of emailAddress and domainComponent; NumericString, VisibleString).
_STRING_TAGS = frozenset({0x0C, 0x12, 0x13, 0x14, 0x16, 0x1A, 0x1C, 0x1E})

_PRINTABLE = frozenset((string.ascii_letters + string.digits + " '()+,-./:=?").encode())
_PRINTABLE_STRING, _T61_STRING, _UTF8_STRING, _SET, _SEQUENCE = 0x13, 0x14, 0x0C, 0x31, 0x30


class Repaired:
    """A request made DER-correct: its new DER, the bytes its owner signed (the original
    certificationRequestInfo), and what was re-encoded, for the result's notes."""

    def __init__(self, der_bytes: bytes, signed: bytes, changes: tuple[str, ...]) -> None:
        self.der, self.signed, self.changes = der_bytes, signed, changes


def repair(request: bytes) -> Repaired | None:
    """The request with its subject encoded correctly, or None if that is not what is
    wrong with it (nothing to repair, or not a request at all)."""
    try:
        outer = der.content(request)
        info, algorithm, signature = der.read_tlvs(outer)
        info_bytes = outer[info[1]:info[2]]
        fields = der.content(info_bytes)
        version, subject, key, *attributes = der.read_tlvs(fields)
        changes: list[str] = []
        fixed = _subject(fields[subject[1]:subject[2]], changes)
    except (ValueError, IndexError, UnicodeDecodeError):
        return None
    if not changes:
        return None
    rest = b"".join(fields[start:end] for _tag, start, end in (key, *attributes))
    new_info = der.tlv(_SEQUENCE, fields[version[1]:version[2]] + fixed + rest)
    new = der.tlv(_SEQUENCE, new_info + outer[algorithm[1]:algorithm[2]]
                  + outer[signature[1]:signature[2]])
    return Repaired(new, info_bytes, tuple(dict.fromkeys(changes)))


def _subject(name: bytes, changes: list[str]) -> bytes:
    if name[0] != _SEQUENCE:
        raise ValueError("the subject is not a SEQUENCE")
    body = der.content(name)
    rdns = []
    for tag, start, end in der.read_tlvs(body):
        if tag != _SET:
            raise ValueError("an RDN is not a SET")
        rdn = der.content(body[start:end])
        members = [_attribute(rdn[s:e], changes) for _t, s, e in der.read_tlvs(rdn)]
        if members != sorted(members):
            changes.append("an RDN's attributes were not in DER order (sorted)")
            members.sort()
        rdns.append(der.tlv(_SET, b"".join(members)))
    return der.tlv(_SEQUENCE, b"".join(rdns))


def _attribute(pair: bytes, changes: list[str]) -> bytes:
    """One AttributeTypeAndValue, its value a string type that holds what it says."""
    if pair[0] != _SEQUENCE:
        raise ValueError("an attribute is not a SEQUENCE")
    body = der.content(pair)
    (_oid_tag, oid_start, oid_end), (tag, start, end) = der.read_tlvs(body)
    value = der.content(body[start:end])
    if tag == _PRINTABLE_STRING and not set(value) <= _PRINTABLE:
        text = _text(value)
        changes.append("a PrintableString held characters it cannot (now a UTF8String)")
        return der.tlv(_SEQUENCE, body[oid_start:oid_end] + der.tlv(_UTF8_STRING, text))
    if tag == _T61_STRING:
        changes.append("a T61String (Latin-1) is now a UTF8String")
        return der.tlv(_SEQUENCE, body[oid_start:oid_end]
                       + der.tlv(_UTF8_STRING, value.decode("latin-1").encode()))
    return pair


def _text(value: bytes) -> bytes:
    """Bytes a lax PrintableString held, as UTF-8 (ASCII and UTF-8 as they are, else
    Latin-1, as OpenSSL shows them)."""
    try:
        value.decode("utf-8")
        return value
    except UnicodeDecodeError:
        return value.decode("latin-1").encode()


_KIND = re.compile(r"kind: (\w+)")
_LOCATION = re.compile(r'"([A-Za-z]+)::([A-Za-z_]+)"')
_WHAT = {
    "InvalidSetOrdering": "a SET is not in DER order",
    "InvalidValue": "a value is not valid for its type",
    "UnexpectedTag": "a field has the wrong type",
    "ShortData": "the data ends too soon",
    "ExtraData": "there is data after the end",
    "InvalidLength": "a length is wrong",
    "IntegerOverflow": "a number is too large",
    "InvalidTag": "a tag is not valid",
}
_FIELDS = {
    "subject": "the subject", "AttributeValue": "a subject attribute's value",
    "AttributeTypeValue": "a subject attribute", "subject_public_key_info": "the public key",
    "spki": "the public key", "attributes": "the request's attributes",
    "signature_alg": "the signature algorithm", "signature": "the signature",
    "version": "the version", "csr_info": "the request's body",
}


def explain(error: str, request: bytes = b"") -> str:
    """A parser's error (cryptography's Rust debug text) as one sentence that names the
    field and what to change; never the debug text itself. Where the parser does not say
    where, REQUEST's subject is walked to find the attribute at fault."""
    kind = _KIND.search(error)
    what = _WHAT.get(kind.group(1), "its encoding is not valid DER") if kind else \
        "its encoding is not valid DER"
    fields = [_FIELDS.get(field, _FIELDS.get(owner)) for owner, field in
              _LOCATION.findall(error)]
    where = next((f for f in reversed(fields) if f), None) or _subject_fault(request)
    place = f" in {where}" if where else ""
    return (f"not a valid PKCS#10 request: {what}{place}; make it again with OpenSSL "
            "(openssl req -new) or check the tool that made it")


def _subject_fault(request: bytes) -> str | None:
    """Which subject attribute is not a string, or None if the subject is not at fault
    (or the request is too broken to find it)."""
    try:
        outer = der.content(request)
        _tag, start, end = der.read_tlvs(outer)[0]
        fields = der.content(outer[start:end])
        subject = der.read_tlvs(fields)[1]
        body = der.content(fields[subject[1]:subject[2]])
        for _tag, start, end in der.read_tlvs(body):
            rdn = der.content(body[start:end])
            for _t, s, e in der.read_tlvs(rdn):
                pair = der.content(rdn[s:e])
                (_ot, os_, oe), (tag, _vs, _ve) = der.read_tlvs(pair)
                if tag not in _STRING_TAGS:
                    return f"the subject's attribute {_dotted(der.content(pair[os_:oe]))}"
    except (ValueError, IndexError):
        return None
    return None


def _dotted(body: bytes) -> str:
    """An OBJECT IDENTIFIER's content octets in dotted form (X.690 8.19)."""
    numbers, value = [], 0
    for byte in body:
        value = value << 7 | byte & 0x7F
        if not byte & 0x80:
            numbers.append(value)
            value = 0
    first = min(numbers[0] // 40, 2) if numbers else 0
    return ".".join(str(n) for n in [first, numbers[0] - 40 * first, *numbers[1:]]) \
        if numbers else "?"
