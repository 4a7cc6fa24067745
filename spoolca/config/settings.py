"""The one TOML configuration file, read into frozen, validated objects.

Every problem is collected and reported at once with its key path (`profiles.server.
validity_days: must be a positive integer`), unknown keys included, so a typo such as
`allowed_domain` is an error and not a silently ignored rule. Secrets are never in the
file: the passphrase is named by a systemd credential or a file path.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from spoolca.config.certtypes import (
    TYPE_KEYS,
    CertificateType,
    NameForm,
    read_type,
    shipped_types,
)
from spoolca.config.constraints import CONSTRAINT_KEYS, SubCAConstraints, read_constraints
from spoolca.config.policy import DN_RULES, Policy, read_dn, read_policy
from spoolca.config.sshsettings import SSHProfile, SSHSettings, read_ssh
from spoolca.config.tomlreader import TableReader
from spoolca.errors import ConfigError

__all__ = [
    "DN_RULES",
    "AuthoritySettings",
    "CertificateType",
    "Config",
    "KeyStore",
    "LintMode",
    "Policy",
    "Profile",
    "load_config",
]

class KeyStore(enum.StrEnum):
    """Where a CA's key is: an encrypted file, or a PKCS#11 token under key_label."""

    FILE = "file"
    PKCS11 = "pkcs11"


class LintMode(enum.StrEnum):
    """Pre-issuance lint: pkilint's PKIX linter, or none."""

    PKIX = "pkix"
    OFF = "off"


AUTHORITIES = ("root", "intermediate")
RESERVED_PROFILE_NAMES = frozenset({"revoke"})  # incoming/revoke/ is for revocation requests

@dataclass(frozen=True, slots=True)
class ReportSettings:
    """[media]: what the stick report (REPORT.html, report.json, `status`) warns about."""

    expiry_warning_days: tuple[int, ...]  # leaves expiring within each window are listed
    ca_warning_days: int                  # a CA certificate this close to its end: warning
    crl_warning_days: int                 # a CRL this close to its nextUpdate: warning
    return_margin_days: int = 2   # the return window closes this long before a CRL lapses
    trip_interval_days: int = 0   # the planned time between trips (0: none planned)


_REPORT_DEFAULTS = {"expiry_warning_days": (30, 60, 90), "ca_warning_days": 365,
                    "crl_warning_days": 14, "return_margin_days": 2, "trip_interval_days": 0}


def _read_report(reader: TableReader, media: Mapping[str, Any]) -> ReportSettings:
    windows = reader.get(media, "expiry_warning_days", list, [30, 60, 90], "media.")
    if not windows or not all(isinstance(d, int) and not isinstance(d, bool) and 0 < d <= 3650
                              for d in windows):
        reader.problems.append("media.expiry_warning_days: must be a list of days (1-3650)")
        windows = [30, 60, 90]
    return ReportSettings(
        expiry_warning_days=tuple(sorted(set(windows))),
        ca_warning_days=reader.positive(media, "ca_warning_days", 365, "media."),
        crl_warning_days=reader.positive(media, "crl_warning_days", 14, "media."),
        return_margin_days=reader.bounded(media, "return_margin_days", 2, "media.", 0, 365),
        trip_interval_days=reader.bounded(media, "trip_interval_days", 0, "media.", 0, 3650))


@dataclass(frozen=True, slots=True)
class Profile:
    """What a folder under incoming/ gets: a certificate type (usage, names, extensions)
    plus the rules for who may have one."""

    name: str
    usage: CertificateType   # its kind (a shipped type) with the profile's own keys applied
    issuer: str
    allowed_domains: tuple[str, ...]
    allow_wildcards: bool
    allow_ip: bool
    unique_subject: bool
    dn: tuple[tuple[str, str], ...]
    preserve_dn: bool
    renew_before_days: int
    revoke_superseded: bool
    require_signature: bool
    authorized_signers: tuple[str, ...]
    constraints: SubCAConstraints = dataclasses.field(default_factory=SubCAConstraints)

    @property
    def kind(self) -> str:
        """The shipped type it started from ("server", "smime", ...)."""
        return self.usage.name

    @property
    def validity_days(self) -> int:
        return self.usage.validity_days


@dataclass(frozen=True, slots=True)
class AuthoritySettings:
    """Where a CA's key lives, which URLs go into the certificates it issues, and how
    long its CRLs live."""

    name: str
    key: Path
    crl_url: str
    issuer_url: str
    crl_interval_days: int  # a CRL is made this often (ADCS/EJBCA: the publication interval)
    crl_overlap_days: int   # and lives this much longer, so the next one is out before it ends
    key_store: KeyStore = KeyStore.FILE  # PKCS11: in the [pkcs11] token, under key_label
    key_label: str = ""
    max_days: int = 0      # the longest certificate `ca renew`/`ca rekey` signs for this CA

    @property
    def crl_days(self) -> int:
        """A CRL's life: nextUpdate - thisUpdate = interval + overlap."""
        return self.crl_interval_days + self.crl_overlap_days

    @property
    def crl_refresh_days(self) -> int:
        """How long before its nextUpdate a CRL is replaced: the overlap."""
        return self.crl_overlap_days


@dataclass(frozen=True, slots=True)
class Config:
    """The whole validated configuration; paths are absolute."""

    path: Path
    sha256: str
    database: Path
    keys_dir: Path
    spool_dir: Path
    gnupg_dir: Path
    passphrase_credential: str
    passphrase_file: Path | None
    lint: LintMode
    max_request_bytes: int
    rescan_seconds: int  # the daemon rescans incoming/ this often, events or not
    signers_keyring: Path | None
    revokers: tuple[str, ...]
    results_folder: str
    stick_max_requests: int  # files taken from one stick (requests and signatures)
    stick_max_mib: int       # and their bytes
    report: ReportSettings
    default_profile: str
    authorities: Mapping[str, AuthoritySettings]
    policy: Policy
    profiles: Mapping[str, Profile]
    pkcs11_module: Path | None = None  # the token's PKCS#11 library, if a key is in one
    pkcs11_token: str = ""
    clock_max_forward_days: int = 7  # [clock]: how far past the floor the clock is trusted
    clock_backdate_minutes: int = 0  # [clock]: notBefore and thisUpdate this much earlier
    ssh: SSHSettings | None = None   # [ssh]: the SSH CAs' keys, if SSH is on
    ssh_profiles: Mapping[str, SSHProfile] = dataclasses.field(
        default_factory=lambda: MappingProxyType({}))


_PROFILE_KEYS = {"kind", "issuer", "allowed_domains", "allow_wildcards",
                 "allow_ip", "unique_subject", "dn", "preserve_dn", "renew_before_days",
                 "revoke_superseded", "require_signature", "authorized_signers",
                 *CONSTRAINT_KEYS, *TYPE_KEYS}


def _read_profile(reader: TableReader, name: str, table: Mapping[str, Any],
                  policy: Policy) -> Profile:
    where = f"profiles.{name}."
    reader.unknown(table, _PROFILE_KEYS, where)
    if not name.replace("-", "").replace("_", "").isalnum() or name in RESERVED_PROFILE_NAMES:
        reader.problems.append(f"profiles.{name}: a profile name must be letters, digits, - "
                               f"or _ and not one of {', '.join(sorted(RESERVED_PROFILE_NAMES))}")
    kinds = shipped_types()
    kind = reader.get(table, "kind", str, name if name in kinds else "", where)
    if kind not in kinds:
        reader.problems.append(f"{where}kind: must be one of {', '.join(kinds)}")
        kind = "server"
    usage = read_type(reader, table, where, kinds[kind])
    issuer = reader.get(table, "issuer", str, "root" if usage.ca else "intermediate", where)
    if issuer not in AUTHORITIES:
        reader.problems.append(f"{where}issuer: must be one of {', '.join(AUTHORITIES)}")
    if usage.ca and issuer != "root":
        reader.problems.append(f"{where}issuer: a CA profile is issued by the root (the "
                               "intermediate has pathlen:0)")
    if not usage.ca and CONSTRAINT_KEYS & set(table):
        reader.problems.append(f"{where}{sorted(CONSTRAINT_KEYS & set(table))[0]}: only a "
                               "CA profile constrains what it certifies")
    domains = tuple(d.lower().strip(".") for d in reader.strings(table, "allowed_domains", where))
    dn = read_dn(reader, reader.table(table, "dn", where), f"{where}dn.") if "dn" in table \
        else policy.dn
    dn = _with_required(reader, dn, usage.subject_requires, where)
    for key, form in (("allow_wildcards", NameForm.DNS), ("allow_ip", NameForm.IP)):
        if table.get(key) is True and form not in usage.name_forms:
            reader.problems.append(f"{where}{key}: the type carries no {form} names "
                                   "(name_forms)")
    return Profile(
        name=name,
        usage=usage,
        issuer=issuer,
        allowed_domains=domains,
        allow_wildcards=reader.get(table, "allow_wildcards", bool, False, where),
        allow_ip=reader.get(table, "allow_ip", bool, False, where),
        unique_subject=reader.get(table, "unique_subject", bool, True, where),
        dn=dn,
        preserve_dn=reader.get(table, "preserve_dn", bool, policy.preserve_dn, where),
        renew_before_days=reader.positive(table, "renew_before_days", 30, where),
        revoke_superseded=reader.get(table, "revoke_superseded", bool, False, where),
        require_signature=reader.get(table, "require_signature", bool, False, where),
        authorized_signers=_fingerprints(reader, table, "authorized_signers", where),
        constraints=read_constraints(reader, table, where),
    )


def _with_required(reader: TableReader, dn: tuple[tuple[str, str], ...],
                   required: tuple[str, ...], where: str) -> tuple[tuple[str, str], ...]:
    """DN rules that give every subject the attributes its type requires (a device's
    serialNumber): "supplied" where the rules do not name one; an "optional" rule for it
    contradicts the type and is refused."""
    rules = dict(dn)
    for attribute in required:
        if rules.get(attribute) == "optional":
            reader.problems.append(f"{where}dn.{attribute}: the type requires it in every "
                                   "subject: \"supplied\" or \"match\" (or set subject_requires)")
        elif attribute not in rules:
            dn += ((attribute, "supplied"),)
    return dn


def _fingerprints(reader: TableReader, table: Mapping[str, Any], key: str,
                  where: str) -> tuple[str, ...]:
    """Full OpenPGP v4 fingerprints only: a short key id can be forged."""
    values = tuple(f.upper().replace(" ", "") for f in reader.strings(table, key, where))
    for value in values:
        if len(value) != 40 or any(c not in "0123456789ABCDEF" for c in value):
            reader.problems.append(f"{where}{key}: {value!r} is not a full 40-hex-digit "
                                   "fingerprint")
    return values


def _read_authorities(reader: TableReader, raw: Mapping[str, Any], base: Path
                      ) -> dict[str, AuthoritySettings]:
    table = reader.table(raw, "authorities", "")
    reader.unknown(table, set(AUTHORITIES), "authorities.")
    result = {}
    for name in AUTHORITIES:
        where = f"authorities.{name}."
        entry = reader.table(table, name, "authorities.")
        reader.unknown(entry, {"key", "crl_url", "issuer_url", *_CRL_KEYS, "key_store",
                               "key_label", "max_days"}, where)
        urls = {key: reader.get(entry, key, str, "", where) for key in ("crl_url", "issuer_url")}
        for key, url in urls.items():
            if url and not url.startswith("http://"):
                # RFC 5280 4.2.1.13 and 4.2.2.1: relying parties fetch these over plain HTTP.
                reader.problems.append(f"{where}{key}: must be an http:// URL")
        interval, overlap = _crl_schedule(reader, entry, name, where)
        store = reader.get(entry, "key_store", str, "file", where)
        if store not in KEY_STORES:
            reader.problems.append(f"{where}key_store: \"file\" or \"pkcs11\"")
        result[name] = AuthoritySettings(
            name=name,
            key=base / reader.get(entry, "key", str, f"keys/{name}.key.pem", where),
            crl_url=urls["crl_url"],
            issuer_url=urls["issuer_url"],
            crl_interval_days=interval,
            crl_overlap_days=overlap,
            key_store=KeyStore(store) if store in KEY_STORES else KeyStore.FILE,
            key_label=reader.get(entry, "key_label", str, f"spoolca-{name}", where),
            max_days=reader.positive(entry, "max_days", _MAX_DAYS[name], where),
        )
    return result


def _read_pkcs11(reader: TableReader, raw: Mapping[str, Any], base: Path,
                 authorities: Mapping[str, AuthoritySettings], ssh_in_token: bool = False
                 ) -> tuple[Path | None, str]:
    """The token that holds the keys whose key_store is "pkcs11" (and only then required)."""
    table = reader.table(raw, "pkcs11", "")
    reader.unknown(table, {"module", "token"}, "pkcs11.")
    module = reader.get(table, "module", str, "", "pkcs11.")
    token = reader.get(table, "token", str, "", "pkcs11.")
    if ssh_in_token or any(a.key_store == "pkcs11" for a in authorities.values()):
        for key, value in (("module", module), ("token", token)):
            if not value:
                reader.problems.append(f"pkcs11.{key}: required, a CA key is in a token")
    return (base / module) if module else None, token


# An offline CA: the root signs rarely (subordinate CAs) and its CRL lives half a
# year; the intermediate's lives 30 days and is remade 10 days before it ends, so a
# stick that comes back every 20 days always carries out a fresh one.
# A CRL is made every interval and lives interval + overlap (ADCS's "CRL publication
# interval" and "overlap period", EJBCA's "CRL period" and "overlap time"). The root's
# CRL lives 180 days, within the CA/B Forum's 12 months for a CA that issues CA
# certificates; the issuing CA's 30 days.
_CRL_INTERVAL_DAYS = {"root": 150, "intermediate": 20}
_CRL_OVERLAP_DAYS = {"root": 30, "intermediate": 10}
# The older names: the CRL's whole life, and how long before its end the next is made.
_CRL_KEYS = {"crl_publish_interval_days", "crl_overlap_days", "crl_days", "crl_refresh_days"}


def _check_return_margin(reader: TableReader, report: ReportSettings,
                         authorities: Mapping[str, AuthoritySettings]) -> None:
    """The return window (from a CA's next CRL to its lapse minus the margin) must not
    be empty for any CA: the margin is less than every overlap."""
    for name, authority in authorities.items():
        if report.return_margin_days >= authority.crl_overlap_days:
            reader.problems.append(
                f"media.return_margin_days: {report.return_margin_days} leaves no return "
                f"window for the {name} CA, whose next CRL is made {authority.crl_overlap_days} "
                "day(s) before its current one ends; make it smaller than every "
                "crl_overlap_days")


def _crl_schedule(reader: TableReader, entry: Mapping[str, Any], name: str,
                  where: str) -> tuple[int, int]:
    """(interval, overlap) in days, from the ADCS/EJBCA keys or from the older pair
    (crl_days = interval + overlap, crl_refresh_days = overlap); never a mix of both."""
    older = {"crl_days", "crl_refresh_days"} & set(entry)
    newer = {"crl_publish_interval_days", "crl_overlap_days"} & set(entry)
    if older and newer:
        reader.problems.append(f"{where}crl_days and crl_refresh_days are the older names of "
                               "crl_publish_interval_days and crl_overlap_days: use one pair")
    if older:
        days = reader.positive(entry, "crl_days", _CRL_INTERVAL_DAYS[name]
                               + _CRL_OVERLAP_DAYS[name], where)
        overlap = reader.positive(entry, "crl_refresh_days", _CRL_OVERLAP_DAYS[name], where)
        if overlap >= days:
            reader.problems.append(f"{where}crl_refresh_days: must be less than crl_days")
        return max(days - overlap, 1), overlap
    interval = reader.positive(entry, "crl_publish_interval_days", _CRL_INTERVAL_DAYS[name],
                               where)
    overlap = reader.positive(entry, "crl_overlap_days", _CRL_OVERLAP_DAYS[name], where)
    return interval, overlap
# Lifetime caps for CA certificates signed after init: 25 and 10 years, as Let's Encrypt's
# ceremony tool caps roots and intermediates.
_MAX_DAYS = {"root": 25 * 366, "intermediate": 10 * 366}

KEY_STORES = tuple(store.value for store in KeyStore)
_TOP_KEYS = {"default_profile", "lint", "max_request_bytes", "rescan_seconds", "paths",
             "passphrase", "pkcs11", "clock",
             "authorities", "policy", "profiles", "signers", "media", "ssh", "ssh_profiles"}


def load_config(path: Path) -> Config:
    """Read, validate and freeze the configuration; ConfigError lists every problem."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot be read: {exc.strerror}"]) from None
    try:
        raw = tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), [f"not valid TOML: {exc}"]) from None
    base = path.resolve().parent
    reader = TableReader()
    reader.unknown(raw, _TOP_KEYS, "")
    paths = reader.table(raw, "paths", "")
    reader.unknown(paths, {"database", "keys", "spool", "gnupg"}, "paths.")
    secret = reader.table(raw, "passphrase", "")
    reader.unknown(secret, {"credential", "file"}, "passphrase.")
    passphrase_file = reader.get(secret, "file", str, "", "passphrase.")
    lint_text = reader.get(raw, "lint", str, "pkix", "")
    if lint_text not in tuple(LintMode):
        reader.problems.append("lint: must be \"pkix\" or \"off\"")
    lint = LintMode(lint_text) if lint_text in tuple(LintMode) else LintMode.PKIX
    policy = read_policy(reader, raw)
    profile_tables = reader.table(raw, "profiles", "")
    profiles = {name: _read_profile(reader, name, table if isinstance(table, dict) else {}, policy)
                for name, table in profile_tables.items()}
    if not profiles:
        reader.problems.append("profiles: at least one profile must be configured")
    default_profile = reader.get(raw, "default_profile", str, "server", "")
    if profiles and default_profile not in profiles:
        reader.problems.append(f"default_profile: {default_profile!r} is not a configured profile")
    authorities = _read_authorities(reader, raw, base)
    ssh, ssh_profiles = read_ssh(reader, raw, base, {*profiles, *RESERVED_PROFILE_NAMES})
    if any(p.require_signature for p in ssh_profiles.values()) and not \
            reader.table(raw, "signers", "").get("keyring"):
        reader.problems.append("signers.keyring: an SSH profile sets require_signature, so "
                               "the signers' public keys must be named here")
    pkcs11_module, pkcs11_token = _read_pkcs11(reader, raw, base, authorities,
                                               ssh is not None and ssh.key_store == "pkcs11")
    max_bytes = reader.positive(raw, "max_request_bytes", 65536, "")
    rescan = reader.positive(raw, "rescan_seconds", 30, "")
    signers = reader.table(raw, "signers", "")
    reader.unknown(signers, {"keyring", "revokers"}, "signers.")
    revokers = _fingerprints(reader, signers, "revokers", "signers.")
    keyring = reader.get(signers, "keyring", str, "", "signers.")
    if any(p.require_signature for p in profiles.values()) and not keyring:
        reader.problems.append("signers.keyring: a profile sets require_signature, so the "
                               "signers' public keys must be named here")
    media = reader.table(raw, "media", "")
    reader.unknown(media, {"results_folder", "stick_max_requests", "stick_max_mib",
                           *_REPORT_DEFAULTS}, "media.")
    results_folder = reader.get(media, "results_folder", str, "spoolca-results", "media.")
    if not results_folder or "/" in results_folder or results_folder.startswith("."):
        reader.problems.append("media.results_folder: must be a plain folder name")
    report = _read_report(reader, media)
    clock = reader.table(raw, "clock", "")
    reader.unknown(clock, {"max_forward_days", "backdate_minutes"}, "clock.")
    max_forward = reader.positive(clock, "max_forward_days", 7, "clock.")
    backdate = reader.bounded(clock, "backdate_minutes", 0, "clock.", 0, 1440)
    _check_return_margin(reader, report, authorities)
    if reader.problems:
        raise ConfigError(str(path), reader.problems)
    return Config(
        path=path.resolve(),
        sha256=hashlib.sha256(data).hexdigest(),
        database=base / reader.get(paths, "database", str, "ca.db", "paths."),
        keys_dir=base / reader.get(paths, "keys", str, "keys", "paths."),
        spool_dir=base / reader.get(paths, "spool", str, "spool", "paths."),
        gnupg_dir=base / reader.get(paths, "gnupg", str, "gnupg", "paths."),
        passphrase_credential=reader.get(secret, "credential", str, "spoolca-ca-passphrase",
                                         "passphrase."),
        passphrase_file=(base / passphrase_file) if passphrase_file else None,
        lint=lint,
        max_request_bytes=max_bytes,
        rescan_seconds=rescan,
        signers_keyring=(base / keyring) if keyring else None,
        revokers=revokers,
        results_folder=results_folder,
        stick_max_requests=reader.positive(media, "stick_max_requests", 1000, "media."),
        stick_max_mib=reader.positive(media, "stick_max_mib", 64, "media."),
        report=report,
        default_profile=default_profile,
        authorities=MappingProxyType(authorities),
        policy=policy,
        profiles=MappingProxyType(profiles),
        pkcs11_module=pkcs11_module,
        pkcs11_token=pkcs11_token,
        clock_max_forward_days=max_forward,
        clock_backdate_minutes=backdate,
        ssh=ssh,
        ssh_profiles=MappingProxyType(ssh_profiles),
    )
