"""[ssh] and [ssh_profiles.NAME]: the appliance's SSH certificate authorities and what
each incoming/NAME/ folder of OpenSSH public keys gets (docs/operator/ssh.md).

SSH is off until [ssh] names the CA keys (`spoolca ssh init` makes them). A profile's
name is its folder under incoming/, so it must not be an X.509 profile's or `revoke`.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spoolca.config.tomlreader import TableReader

__all__ = ["EXTENSIONS", "KEY_TYPES", "OPTIONS", "SSH_CAS", "SSHProfile", "SSHSettings",
           "read_ssh"]

# OpenSSH's user-certificate extensions (PROTOCOL.certkeys) and critical options.
EXTENSIONS = ("no-touch-required", "permit-X11-forwarding", "permit-agent-forwarding",
              "permit-port-forwarding", "permit-pty", "permit-user-rc")
OPTIONS = ("force-command", "source-address")
KEY_TYPES = ("ed25519", "ecdsa", "rsa")

SSH_CAS = ("user", "host")
_PROFILE_KEYS = {"type", "principals", "max_days", "default_days", "extensions",
                 "critical_options", "key_types", "rsa_min_bits", "require_signature",
                 "authorized_signers"}


@dataclass(frozen=True, slots=True)
class SSHProfile:
    """What an incoming/NAME/ folder of OpenSSH keys gets."""

    name: str
    cert_type: str                 # "user" or "host"
    principals: tuple[str, ...]    # patterns a requested principal must match
    max_days: int
    default_days: int
    extensions: tuple[str, ...]    # allowed on a user certificate, and given by default
    critical_options: tuple[str, ...]  # which a request may set
    key_types: tuple[str, ...] = KEY_TYPES
    rsa_min_bits: int = 3072
    require_signature: bool = False
    authorized_signers: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SSHSettings:
    """Where the user and host CA keys are (OpenSSH's TrustedUserCAKeys and
    @cert-authority take their public halves)."""

    keys: Mapping[str, Path]  # "user", "host" -> the private key file
    key_store: str = "file"   # or "pkcs11": in the [pkcs11] token, under labels[ca]
    labels: Mapping[str, str] = dataclasses.field(default_factory=dict)


def read_ssh(reader: TableReader, raw: Mapping[str, Any], base: Path,
             taken: set[str]) -> tuple[SSHSettings | None, dict[str, SSHProfile]]:
    """[ssh] and its profiles; TAKEN: folder names already meaning something."""
    table = reader.table(raw, "ssh", "")
    reader.unknown(table, {"user_key", "host_key", "key_store", "user_label", "host_label"},
                   "ssh.")
    profiles_table = reader.table(raw, "ssh_profiles", "")
    if not table:
        if profiles_table:
            reader.problems.append("ssh_profiles: SSH profiles need an [ssh] table naming "
                                   "the CA keys (spoolca ssh init)")
        return None, {}
    keys = {kind: base / reader.get(table, f"{kind}_key", str, f"keys/ssh-{kind}-ca.key.pem",
                                    "ssh.") for kind in SSH_CAS}
    store = reader.get(table, "key_store", str, "file", "ssh.")
    if store not in ("file", "pkcs11"):
        reader.problems.append("ssh.key_store: \"file\" or \"pkcs11\"")
    labels = {kind: reader.get(table, f"{kind}_label", str, f"spoolca-ssh-{kind}", "ssh.")
              for kind in SSH_CAS}
    profiles = {}
    for name, entry in profiles_table.items():
        where = f"ssh_profiles.{name}."
        if not isinstance(entry, dict):
            reader.problems.append(f"ssh_profiles.{name}: must be a table")
            continue
        if name.lower() in {t.lower() for t in taken}:
            reader.problems.append(f"ssh_profiles.{name}: the folder incoming/{name}/ is "
                                   "already an X.509 profile's (or revoke/): choose another name")
            continue
        profiles[name] = _profile(reader, name, entry, where)
    return SSHSettings(keys, store, labels), profiles


def _profile(reader: TableReader, name: str, entry: Mapping[str, Any], where: str
             ) -> SSHProfile:
    reader.unknown(entry, _PROFILE_KEYS, where)
    kind = reader.get(entry, "type", str, "user", where)
    if kind not in SSH_CAS:
        reader.problems.append(f"{where}type: \"user\" or \"host\"")
    principals = reader.strings(entry, "principals", where)
    if not principals:
        reader.problems.append(f"{where}principals: name the principals (patterns) this "
                               "profile may certify, e.g. [\"*.hosts.example.com\"]")
    for pattern in principals:
        if pattern in ("*", "?*") and kind == "host":
            reader.problems.append(f"{where}principals: {pattern!r} would certify any host name")
        fnmatch.translate(pattern)  # never raises; patterns are shell-style
    max_days = reader.positive(entry, "max_days", 30 if kind == "user" else 365, where)
    default_days = reader.positive(entry, "default_days", min(7 if kind == "user" else 365,
                                                              max_days), where)
    if default_days > max_days:
        reader.problems.append(f"{where}default_days: more than max_days")
    default_extensions = ("permit-agent-forwarding", "permit-port-forwarding", "permit-pty",
                          "permit-user-rc", "permit-X11-forwarding") if kind == "user" else ()
    extensions = _choices(reader, entry, "extensions", where, EXTENSIONS, default_extensions)
    if kind == "host" and extensions:
        reader.problems.append(f"{where}extensions: host certificates carry none")
    options = _choices(reader, entry, "critical_options", where, OPTIONS, ())
    key_types = _choices(reader, entry, "key_types", where, KEY_TYPES, KEY_TYPES,
                         " (DSA is never certified)")
    rsa_min = reader.positive(entry, "rsa_min_bits", 3072, where)
    if rsa_min < 2048:
        reader.problems.append(f"{where}rsa_min_bits: may not be below 2048")
    signers = reader.strings(entry, "authorized_signers", where)
    return SSHProfile(name=name, cert_type=kind, principals=principals, max_days=max_days,
                      default_days=default_days, extensions=extensions,
                      critical_options=options, key_types=key_types,
                      rsa_min_bits=rsa_min,
                      require_signature=reader.get(entry, "require_signature", bool, False,
                                                   where),
                      authorized_signers=signers)


def _choices(reader: TableReader, entry: Mapping[str, Any], key: str, where: str,
             allowed: tuple[str, ...], default: tuple[str, ...], why: str = ""
             ) -> tuple[str, ...]:
    """A list of names from ALLOWED (DEFAULT when absent); each other one a problem."""
    values = reader.strings(entry, key, where) if key in entry else default
    for value in values:
        if value not in allowed:
            reader.problems.append(f"{where}{key}: {value!r} is not one of "
                                   f"{', '.join(allowed)}{why}")
    return tuple(values)
