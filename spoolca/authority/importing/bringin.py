"""`spoolca import-openssl` / `import-easyrsa`: an existing CA brought in whole.

The source is read and checked first (importing.source); while any discrepancy is left
unresolved nothing is written. Then the new appliance is founded as init founds one, with
the old CA certificates and keys (re-encrypted under spoolca's passphrase), every issued
certificate in the old index's own order (so `export-index` gives the index back byte for
byte), every revocation with its date and reason (encoded once, for the CRLs), the CSRs
that match a certificate (so `renew` works), the old CRL number (the next CRL is
numbered above it), the old policy as [policy.dn], and one audit entry with the SHA-256
of every file read.

A CA of one level (the root how-to's flat CA/, an easy-rsa pki/) becomes spoolca's root;
spoolca's model issues from an intermediate, so a new one is made under it (its key like
the root's), and relying parties keep their trust anchor.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import Encoding

from spoolca.authority.founding.ceremony import (
    INTERMEDIATE_DAYS,
    CeremonyReport,
    default_intermediate_subject,
    found_ca,
    refuse_existing,
    sign_ca,
)
from spoolca.authority.founding.newkeys import NewCAKey
from spoolca.authority.importing.source import (
    Discrepancy,
    Source,
    SourceCA,
    key_matches,
    read_file,
    read_source,
    token_uri,
    used,
)
from spoolca.config.text import render_config
from spoolca.errors import KeyStoreError, SpoolcaError
from spoolca.host.memory import no_core_dumps
from spoolca.keys.algorithms import PrivateKey, generate_like, spki
from spoolca.keys.filekey import FileKeySigner
from spoolca.keys.openpgp import stop_agent
from spoolca.keys.token import TokenKey, TokenPool, TokenSigner, token_public_key
from spoolca.notation.dn import oneline
from spoolca.register.records import CertificateRecord, CRLRecord
from spoolca.register.store import Tx, format_time
from spoolca.x509.crl import RevokedEntry, encode_entry
from spoolca.x509.lint import CertificateLinter

__all__ = ["ImportRefusedError", "ImportReport", "import_ca"]

SHOWN = 20  # discrepancies listed in the refusal; the rest counted


class ImportRefusedError(SpoolcaError):
    """The source disagrees with itself; nothing was written."""


@dataclass(frozen=True, slots=True)
class ImportReport:
    ceremony: CeremonyReport
    certificates: int
    revoked: int
    skipped: int
    requests: int
    unmatched_requests: int
    new_intermediate: bool
    next_crl: dict[str, int]


def import_ca(source_dir: Path, kind: str, directory: Path, *, passphrase: bytes | None,
              passphrase_file: str | None, source_passphrase: bytes | None,
              resolutions: Mapping[str, str], now: dt.datetime,
              intermediate_subject: x509.Name | None = None,
              pkcs11_module: Path | None = None) -> ImportReport:
    """Check the source, then found the appliance around it (see the module's text)."""
    no_core_dumps()  # the old CA keys are read here
    refuse_existing(directory)
    source = read_source(source_dir, kind)
    tokens = TokenPool()
    try:
        made = {ca.role: (ca.certificate, _ca_key(source, ca, source_passphrase, passphrase,
                                                  pkcs11_module, tokens, directory))
                for ca in source.cas}
        _refuse_unresolved(source.problems, resolutions)
        if "intermediate" not in made:
            made["intermediate"] = _new_intermediate(made["root"], intermediate_subject,
                                                     directory, now)
        return _found(source, made, directory, passphrase=passphrase,
                      passphrase_file=passphrase_file, resolutions=resolutions, now=now,
                      kind=kind)
    finally:
        tokens.close()


def _found(source: Source, made: dict[str, tuple[x509.Certificate, NewCAKey]],
           directory: Path, *, passphrase: bytes | None, passphrase_file: str | None,
           resolutions: Mapping[str, str], now: dt.datetime, kind: str) -> ImportReport:
    tally = _Tally()
    try:
        report = found_ca(
            directory, made, config_text=_config_text(source.cas[-1], passphrase_file, made),
            passphrase=passphrase, now=now, event="ca.imported",
            details={"source": str(source.folder), "kind": kind,
                     "files_read": source.read, "resolutions": dict(resolutions),
                     "discrepancies": [f"{p.code}: {p.message}" for p in source.problems]},
            populate=lambda tx: _populate(tx, source, resolutions, now, tally))
    finally:
        if (directory / "gnupg").is_dir():
            stop_agent(directory / "gnupg")
    return ImportReport(report, tally.certificates, tally.revoked, tally.skipped,
                        tally.requests, len(source.csrs) - tally.requests,
                        len(source.cas) == 1, tally.next_crl)


@dataclass
class _Tally:
    certificates: int = 0
    revoked: int = 0
    skipped: int = 0
    requests: int = 0
    next_crl: dict[str, int] = field(default_factory=dict)


def _refuse_unresolved(problems: list[Discrepancy], resolutions: Mapping[str, str]) -> None:
    allowed = {p.code: p.actions for p in problems}
    for code, action in resolutions.items():
        if code in allowed and action not in allowed[code]:
            raise ImportRefusedError(f"--resolve {code}={action}: {code} takes "
                                     f"{' or '.join(allowed[code]) or 'no resolution'}")
    left = [p for p in problems if resolutions.get(p.code) not in p.actions]
    if not left:
        return
    shown = "; ".join(f"{p.code}: {p.message}" + (f" (--resolve {p.code}="
                                                   f"{'|'.join(p.actions)})" if p.actions
                                                   else " (cannot be resolved)")
                      for p in left[:SHOWN])
    more = f"; and {len(left) - SHOWN} more" if len(left) > SHOWN else ""
    raise ImportRefusedError(f"nothing was imported: {len(left)} discrepancies: {shown}{more}")


def _ca_key(source: Source, ca: SourceCA, source_passphrase: bytes | None,
            passphrase: bytes | None, module: Path | None, tokens: TokenPool,
            directory: Path) -> NewCAKey:
    """The old CA's key: a key file re-encrypted under spoolca's passphrase, or a key left
    in its token (whose PIN is then spoolca's unlock secret, the --passphrase-file)."""
    uri = token_uri(ca)
    if uri is None:
        return _file_key(_source_key(source, ca, source_passphrase), directory, ca.role)
    if module is None or "token" not in uri or "object" not in uri:
        raise KeyStoreError(f"the {ca.role} CA key is in a token ({ca.key_file}): give "
                            "--pkcs11-module, and a URI naming token= and object=")
    where = TokenKey(module, uri["token"], uri["object"])
    session = tokens.session(where, passphrase)
    public = token_public_key(session, where)
    if not key_matches(ca, public):
        raise ImportRefusedError(f"nothing was imported: key-mismatch: {where.uri} does not "
                                 f"belong to the {ca.role} CA certificate")
    return NewCAKey(public, TokenSigner(session, where, public), where.describe())


def _source_key(source: Source, ca: SourceCA, passphrase: bytes | None) -> PrivateKey:
    data = read_file(source, ca.key_file)
    used(source, ca.key_file)
    try:
        try:
            key = serialization.load_pem_private_key(data, passphrase)
        except TypeError:  # given a passphrase, but the key is not encrypted (easy-rsa nopass)
            if passphrase is None:
                raise
            key = serialization.load_pem_private_key(data, None)
    except TypeError:
        raise KeyStoreError(f"the {ca.role} CA key {ca.key_file} is encrypted: give "
                            "--source-passphrase-file") from None
    except ValueError:
        raise KeyStoreError(f"failed to read the {ca.role} CA key {ca.key_file}: a wrong "
                            "--source-passphrase-file, or not a PEM key") from None
    if not key_matches(ca, key.public_key()):
        raise ImportRefusedError(f"nothing was imported: key-mismatch: {ca.key_file} does not "
                                 f"belong to the {ca.role} CA certificate")
    return key  # type: ignore[return-value]


def _file_key(key: PrivateKey, directory: Path, role: str) -> NewCAKey:
    return NewCAKey(key.public_key(), FileKeySigner(key),
                    {"key_store": "file", "path": str(directory / "keys" / f"{role}.key.pem")},
                    key)


def _new_intermediate(root: tuple[x509.Certificate, NewCAKey], subject: x509.Name | None,
                      directory: Path, now: dt.datetime) -> tuple[x509.Certificate, NewCAKey]:
    root_cert, root_key = root
    new = _file_key(generate_like(root_key.public_key), directory, "intermediate")
    cert = sign_ca(subject or default_intermediate_subject(root_cert.subject),
                   new.public_key, root_cert, root_key, INTERMEDIATE_DAYS, 0, now,
                   CertificateLinter())
    return cert, new


def _config_text(root: SourceCA, passphrase_file: str | None,
                 made: dict[str, tuple[x509.Certificate, NewCAKey]]) -> str:
    """init's configuration, with the policy of the old CA that signed leaves (the
    intermediate's policy_loose in the intermediate how-to) as [policy.dn], and the token
    that keeps a CA key (if one does)."""
    stores = {role: key.store for role, (_cert, key) in made.items()
              if key.store.get("key_store") == "pkcs11"}
    tokens = {(s["module"], s["token"]) for s in stores.values()}
    if len(tokens) > 1:
        raise ImportRefusedError("nothing was imported: the CA keys are in two different "
                                 "tokens; spoolca uses one")
    text = render_config(passphrase_file=passphrase_file,
                         token_keys={role: s["label"] for role, s in stores.items()},
                         pkcs11=next(iter(tokens), None))
    policy = {name: rule for name, rule in root.policy.items()
              if rule in ("match", "supplied", "optional")}
    if policy:
        block = "".join(f'{name} = "{rule}"\n' for name, rule in policy.items())
        text = re.sub(r"(\[policy\.dn\]\n(?:#.*\n)*)(?:\w+ = \"\w+\"\n)+", lambda m: m.group(1)
                      + "# From the imported CA's openssl.cnf policy section.\n" + block,
                      text, count=1)
    return (text.replace("preserve_dn = false", f"preserve_dn = {str(root.preserve_dn).lower()}")
            .replace("email_in_dn = false", f"email_in_dn = {str(root.email_in_dn).lower()}"))


def _populate(tx: Tx, source: Source, resolutions: Mapping[str, str], now: dt.datetime,
              tally: _Tally) -> None:
    """Everything the old CA issued, in its index's order, then what it left unlisted."""
    requests = _requests_by_key(source)
    leaves = {entry.serial for entry in source.cas[-1].entries} if len(source.cas) == 2 \
        else set()
    for ca in source.cas:
        for entry in ca.entries:
            cert = ca.issued.get(entry.serial)
            if cert is None:  # resolved: skip
                tally.skipped += 1
                continue
            # Both how-to CAs count from 1000: a root entry whose serial a leaf also has is
            # registered as SERIAL@root (the register keys certificates by serial alone).
            key = f"{entry.serial}@root" if ca.role == "root" and entry.serial in leaves \
                else entry.serial
            # The index's own spelling (export-index gives it back byte for byte), unless
            # it differs from the certificate's: then the certificate's (resolved so).
            subject = entry.subject if entry.subject == oneline(cert.subject) else \
                oneline(cert.subject)
            _add(tx, ca.role, key, subject, cert, entry.revoked_at,
                 entry.reason, entry.invalidity, requests, tally)
        for serial, cert in ca.unlisted.items():
            if resolutions.get("unlisted-certificate") == "import":
                _add(tx, ca.role, serial, oneline(cert.subject), cert, None, None, None,
                     requests, tally)
            else:
                tally.skipped += 1
        if ca.next_crl_number is not None and ca.next_crl_number > 1:
            last = ca.next_crl_number - 1  # the old CA's last; ours is numbered above it
            tx.add_crl(CRLRecord(ca.role, last, format_time(now), format_time(now), 0,
                                 "imported"))
            tally.next_crl[ca.role] = last + 1


def _add(tx: Tx, issuer: str, serial: str, subject: str, cert: x509.Certificate,
         revoked_at: dt.datetime | None, reason: str | None, invalidity: dt.datetime | None,
         requests: dict[bytes, tuple[str, bytes]], tally: _Tally) -> None:
    der = cert.public_bytes(Encoding.DER)
    profile = _profile(cert)
    request = requests.get(spki(cert.public_key()))
    if request is not None and tx.find_request(request[0]) is None:
        tx.add_request(request[0], profile, "issued", request[1], [], serial)
        tally.requests += 1
    request_sha256 = request[0] if request else "imported:" + hashlib.sha256(der).hexdigest()
    tx.add_imported_certificate(CertificateRecord(
        serial, issuer, request_sha256, profile, subject,
        format_time(cert.not_valid_before_utc), format_time(cert.not_valid_after_utc), der,
        format_time(revoked_at) if revoked_at else None, reason,
        format_time(invalidity) if invalidity else None),
        encode_entry(RevokedEntry(cert.serial_number, revoked_at, reason or "unspecified",
                                  invalidity)) if revoked_at else None)
    tally.certificates += 1
    tally.revoked += revoked_at is not None


def _requests_by_key(source: Source) -> dict[bytes, tuple[str, bytes]]:
    found = {}
    for _path, csr in source.csrs:
        der = csr.public_bytes(Encoding.DER)
        found[spki(csr.public_key())] = (hashlib.sha256(der).hexdigest(), der)
    return found


def _profile(cert: x509.Certificate) -> str:
    """The spoolca profile a certificate of the old CA corresponds to (for renewal)."""
    try:
        if cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            return "subca"
    except x509.ExtensionNotFound:
        pass
    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return "server"
    if x509.oid.ExtendedKeyUsageOID.SERVER_AUTH in usages:
        return "server"
    return "client" if x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH in usages else "server"
