"""An SSH certificate request: an OpenSSH public key line (incoming/PROFILE/NAME.pub)
and, beside it, an optional request file (NAME.json):

    {"principals": ["alice"], "key_id": "alice@laptop", "validity_days": 7,
     "extensions": ["permit-pty"], "critical_options": {"source-address": "10.0.0.0/8"}}

Every key is optional; what is missing comes from the profile. Untrusted bytes from a
stick: both files are bounded before they are read, the key line is parsed by the
cryptography library (linear in its length), the request file by loads_bounded (one flat
object, lists one level down); nothing raises, every reason is a Finding.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    SSHCertPublicKeyTypes,
    SSHPublicKeyTypes,
    load_ssh_public_key,
)

from spoolca.findings import Finding
from spoolca.host.untrusted import loads_bounded

__all__ = ["MAX_KEY_BYTES", "MAX_REQUEST_BYTES", "SSHRequest", "key_blob", "parse_ssh_request"]

MAX_KEY_BYTES = 16 * 1024      # an RSA-16384 key line is under 3 KiB
MAX_REQUEST_BYTES = 16 * 1024  # the documented request file needs a few hundred bytes
_KEYS = {"principals", "key_id", "validity_days", "extensions", "critical_options"}
_MAX_PRINCIPALS = 256          # OpenSSH's own limit (SSHKEY_CERT_MAX_PRINCIPALS)
_MAX_TEXT = 256


@dataclass(frozen=True)
class SSHRequest:
    """What was asked for; None: the profile decides."""

    public_key: SSHCertPublicKeyTypes
    key_line: str                      # "ssh-ed25519 AAAA...", without the comment
    comment: str
    principals: tuple[str, ...] | None = None
    key_id: str | None = None
    validity_days: int | None = None
    extensions: tuple[str, ...] | None = None
    critical_options: dict[str, str] = field(default_factory=dict)

    @property
    def identity(self) -> str:
        """The request's SHA-256: its key and what it asks for (the comment aside). The
        same key asking again for the same is the same request, answered once."""
        asked = {"principals": self.principals, "key_id": self.key_id,
                 "validity_days": self.validity_days, "extensions": self.extensions,
                 "critical_options": self.critical_options}
        text = self.key_line + "\n" + json.dumps(asked, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()


def key_blob(key: SSHPublicKeyTypes) -> bytes:
    """The key in SSH wire format (what KRLs and fingerprints are made of)."""
    line = key.public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH)
    return base64.b64decode(line.split()[1])


def parse_ssh_request(key_data: bytes, request_data: bytes | None
                      ) -> SSHRequest | list[Finding]:
    """The request, or every reason these bytes are not one. Pure, never raises."""
    if len(key_data) > MAX_KEY_BYTES:
        return [Finding("ssh.unparseable", f"the key file is {len(key_data)} bytes, more than "
                        f"{MAX_KEY_BYTES}: not one OpenSSH public key")]
    key, comment, problem = _key(key_data)
    if key is None:
        return [Finding("ssh.unparseable", problem)]
    asked, findings = _asked(request_data) if request_data is not None else ({}, [])
    if findings:
        return findings
    line = key.public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()
    return SSHRequest(key, line, comment, **asked)


def _key(data: bytes) -> tuple[SSHCertPublicKeyTypes | None, str, str]:
    lines = [line for line in data.replace(b"\r", b"").split(b"\n") if line.strip()]
    if len(lines) != 1:
        return None, "", (f"the key file holds {len(lines)} lines: one OpenSSH public key "
                          "line is expected (the .pub file ssh-keygen wrote)")
    parts = lines[0].strip().split(None, 2)
    if parts and parts[0].endswith(b"-cert-v01@openssh.com"):
        return None, "", "this is a certificate, not a public key: send the .pub key"
    try:
        key = load_ssh_public_key(b" ".join(parts[:2]))
    except Exception as exc:  # untrusted bytes: whatever the parser raises is a refusal
        kind = parts[0][:40].decode(errors="replace") if parts else ""
        return None, "", f"not an OpenSSH public key line ({kind!r}: {exc})"
    if not isinstance(key, (ed25519.Ed25519PublicKey, ec.EllipticCurvePublicKey,
                            rsa.RSAPublicKey)):
        return None, "", f"a {type(key).__name__} cannot be certified"
    comment = parts[2].decode(errors="replace")[:_MAX_TEXT] if len(parts) > 2 else ""
    return key, comment, ""


def _asked(data: bytes) -> tuple[dict[str, Any], list[Finding]]:
    """The request file's keys, checked for shape (the profile judges their values)."""
    try:
        body = loads_bounded(data, max_bytes=MAX_REQUEST_BYTES, max_depth=2)
    except ValueError as exc:
        return {}, [Finding("ssh.request_unparseable", f"the request file is not JSON: "
                            f"{str(exc)[:200]}")]
    if not isinstance(body, dict):
        return {}, [Finding("ssh.request_unparseable", "the request file must be one JSON "
                            "object")]
    problems = [f"{key!r} is not a request key" for key in sorted(set(body) - _KEYS)]
    asked: dict[str, Any] = {}
    principals = body.get("principals")
    if principals is not None:
        if not _texts(principals) or not principals or len(principals) > _MAX_PRINCIPALS:
            problems.append(f"principals must be a list of 1 to {_MAX_PRINCIPALS} names")
        else:
            asked["principals"] = tuple(principals)
    key_id = body.get("key_id")
    if key_id is not None:
        if not isinstance(key_id, str) or not 0 < len(key_id) <= _MAX_TEXT:
            problems.append(f"key_id must be text of 1 to {_MAX_TEXT} characters")
        else:
            asked["key_id"] = key_id
    days = body.get("validity_days")
    if days is not None:
        if not isinstance(days, int) or isinstance(days, bool) or not 0 < days <= 36500:
            problems.append("validity_days must be a whole number of days (1-36500)")
        else:
            asked["validity_days"] = days
    extensions = body.get("extensions")
    if extensions is not None:
        if not _texts(extensions) or len(extensions) > 32:
            problems.append("extensions must be a list of extension names")
        else:
            asked["extensions"] = tuple(extensions)
    options = body.get("critical_options")
    if options is not None:
        if not isinstance(options, dict) or len(options) > 8 or not all(
                isinstance(v, str) and len(v) <= _MAX_TEXT for v in options.values()):
            problems.append("critical_options must map option names to text")
        else:
            asked["critical_options"] = dict(options)
    if problems:
        return {}, [Finding("ssh.request_invalid", "; ".join(problems))]
    return asked, []


def _texts(value: object) -> bool:
    return isinstance(value, list) and all(
        isinstance(v, str) and 0 < len(v) <= _MAX_TEXT for v in value)
