"""An SSH profile's rules, and a request judged by them (issue 30).

A profile (`[ssh_profiles.NAME]` in spoolca.toml) says what its certificates are: user or
host; which principals a request may name (shell-style patterns: `*.hosts.example.com`,
`deploy-*`); the longest validity and the one given when none is asked; the extensions a
user certificate may carry (and carries when none are asked); the critical options a
request may set; the key types it certifies. Every reason is given at once.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from spoolca.config.sshsettings import SSHProfile
from spoolca.findings import Finding
from spoolca.ssh.request import SSHRequest

__all__ = ["SSHDecision", "judge"]

# A user name or a host name, never a pattern: no wildcard, comma or space.
_USER = re.compile(r"[A-Za-z0-9._@+-]{1,64}")
_HOST = re.compile(r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                   r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*")


@dataclass(frozen=True, slots=True)
class SSHDecision:
    """What the certificate will say."""

    principals: tuple[str, ...]
    key_id: str
    validity_days: int
    extensions: tuple[str, ...]
    critical_options: tuple[tuple[str, str], ...]


def judge(profile: SSHProfile, request: SSHRequest) -> SSHDecision | list[Finding]:
    """The decision for REQUEST under PROFILE, or every reason it is refused."""
    findings = _key(profile, request)
    principals = request.principals or ()
    if not principals:
        findings.append(Finding("ssh.principals_missing", "name the principals (user names "
                                "or host names) in the request file: {\"principals\": [...]}"))
    syntax = _HOST if profile.cert_type == "host" else _USER
    for principal in principals:
        if not syntax.fullmatch(principal):
            findings.append(Finding("ssh.principal_invalid", f"{principal[:80]!r} is not a "
                                    f"{profile.cert_type} name"))
        elif not any(fnmatch.fnmatchcase(principal.lower(), p.lower())
                     for p in profile.principals):
            findings.append(Finding("ssh.principal_refused", f"{principal!r} is not among the "
                                    f"principals profile {profile.name} allows "
                                    f"({', '.join(profile.principals) or 'none'})"))
    days = request.validity_days or profile.default_days
    if days > profile.max_days:
        findings.append(Finding("ssh.validity_too_long", f"{days} days asked; profile "
                                f"{profile.name} allows at most {profile.max_days}"))
    extensions = request.extensions if request.extensions is not None else profile.extensions
    if profile.cert_type == "host" and request.extensions:
        findings.append(Finding("ssh.extension_refused", "host certificates carry no "
                                "extensions"))
    for name in extensions if profile.cert_type == "user" else ():
        if name not in profile.extensions:
            findings.append(Finding("ssh.extension_refused", f"{name[:80]!r} is not an "
                                    f"extension profile {profile.name} gives"))
    findings += _options(profile, request.critical_options)
    if findings:
        return findings
    key_id = request.key_id or f"{profile.name}:{principals[0]}:{request.identity[:16]}"
    return SSHDecision(principals, key_id, days,
                       tuple(sorted(extensions)) if profile.cert_type == "user" else (),
                       tuple(sorted(request.critical_options.items())))


def _key(profile: SSHProfile, request: SSHRequest) -> list[Finding]:
    key = request.public_key
    kind = "ed25519" if isinstance(key, ed25519.Ed25519PublicKey) else \
        "ecdsa" if isinstance(key, ec.EllipticCurvePublicKey) else "rsa"
    if kind not in profile.key_types:
        return [Finding("ssh.key_type_refused", f"{kind} keys are not certified under "
                        f"profile {profile.name} ({', '.join(profile.key_types)})")]
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < max(profile.rsa_min_bits, 2048):
        return [Finding("ssh.key_too_small", f"an RSA key of {key.key_size} bits; at least "
                        f"{max(profile.rsa_min_bits, 2048)}")]
    return []


def _options(profile: SSHProfile, options: dict[str, str]) -> list[Finding]:
    findings = []
    for name, value in sorted(options.items()):
        if name not in profile.critical_options:
            findings.append(Finding("ssh.option_refused", f"the critical option {name[:80]!r} "
                                    f"is not one profile {profile.name} lets a request set"))
        elif name == "source-address":
            try:
                for part in value.split(","):
                    ipaddress.ip_network(part.strip(), strict=False)
            except ValueError:
                findings.append(Finding("ssh.option_invalid", f"source-address {value[:80]!r}"
                                        " is not a comma-separated list of addresses"))
    return findings

