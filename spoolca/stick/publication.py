"""The publication manifest: what the online side is to serve, signed, and its check.

Every export carries crl/publication.json and its detached signature by the appliance
key: for each CRL on it, the CA that signed it (and the SHA-256 of that CA's
certificate, so a CA file swapped beside a forged CRL is caught), its number, thisUpdate,
nextUpdate, SHA-256, and the URL relying parties fetch it from (the CA's configured
crl_url). `spoolca verify-publication` runs where the CRLs are served, with no key and
no state directory: it refuses a manifest not signed by the trusted key, a CRL that is
not the one listed or not signed by its CA, one that has lapsed, and one that would
replace a newer CRL already served (a rolled-back or replayed stick), so a deployment
step can refuse to serve a wrong CRL.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509

from spoolca.config import Config
from spoolca.host.untrusted import read_untrusted
from spoolca.register.generations import settings
from spoolca.spool.outgoing import CRL_BUNDLE

__all__ = ["MANIFEST", "Checked", "check_publication", "manifest_of"]

MANIFEST = "publication.json"
_MAX_CRL = 64 << 20
_MAX_FILE = 1 << 20
_TIME = "%Y-%m-%dT%H:%M:%SZ"


def _time(moment: dt.datetime) -> str:
    return moment.strftime(_TIME)


def _number(crl: x509.CertificateRevocationList) -> int:
    return int(crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number)


def manifest_of(config: Config, outgoing: Path, now: dt.datetime) -> bytes:
    """crl/publication.json for the CRLs in OUTGOING/crl (the ones an export carries)."""
    entries = []
    for path in sorted((outgoing / "crl").glob("*.crl")):
        name = path.stem
        data = path.read_bytes()
        crl = x509.load_der_x509_crl(data)
        issuer = outgoing / "ca" / f"{name}.pem"
        entries.append({
            "authority": name, "file": path.name, "issuer": crl.issuer.rfc4514_string(),
            "issuer_certificate_sha256": hashlib.sha256(issuer.read_bytes()).hexdigest(),
            "number": _number(crl), "this_update": _time(crl.last_update_utc),
            "next_update": _time(crl.next_update_utc) if crl.next_update_utc else None,
            "sha256": hashlib.sha256(data).hexdigest(),
            "url": settings(config, name).crl_url})
    bundle = outgoing / "crl" / CRL_BUNDLE
    digest = hashlib.sha256(bundle.read_bytes()).hexdigest() if bundle.is_file() else None
    return (json.dumps({"made_at": _time(now), "crls": entries, "crl_bundle_sha256": digest},
                       indent=2, sort_keys=True) + "\n").encode()


@dataclass
class Checked:
    """What verify-publication found: a line per CRL that may be served, and every
    reason one may not."""

    good: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)


def check_publication(folder: Path, served: Path | None, now: dt.datetime, body: bytes,
                      manifest_ok: str | None) -> Checked:
    """The CRLs of an export (FOLDER holds crl/ and ca/) against its manifest BODY (the
    bytes whose signature was checked), their CAs, the clock and what SERVED already
    holds. MANIFEST_OK: None if the signature was good, else why not (then nothing may
    be served)."""
    checked = Checked()
    if manifest_ok is not None:
        checked.refused.append(f"{MANIFEST}: {manifest_ok}")
        return checked
    manifest = json.loads(body)
    listed = {str(entry["file"]) for entry in manifest["crls"]}
    for path in sorted((folder / "crl").glob("*.crl")):
        if path.name not in listed:
            checked.refused.append(f"{path.name}: not in the signed manifest")
    bundle = folder / "crl" / CRL_BUNDLE
    if bundle.is_file() and hashlib.sha256(_read(bundle, _MAX_CRL)).hexdigest() != \
            manifest.get("crl_bundle_sha256"):
        checked.refused.append(f"{CRL_BUNDLE}: not the file the manifest lists")
    for entry in manifest["crls"]:
        problem = _check_entry(folder, served, entry, now)
        (checked.refused if problem else checked.good).append(
            f"{entry['file']}: {problem}" if problem else
            f"{entry['file']}: #{entry['number']}, this update {entry['this_update']}, next "
            f"update {entry['next_update']}, by {entry['issuer']}"
            + (f", for {entry['url']}" if entry.get("url") else ""))
    return checked


def _read(path: Path, limit: int) -> bytes:
    read = read_untrusted(path, limit)
    if read.data is None:
        raise ValueError(f"cannot be read ({read.detail})")
    return read.data


def _check_entry(folder: Path, served: Path | None, entry: dict[str, Any],
                 now: dt.datetime) -> str | None:
    """Why the CRL ENTRY names may not be served (None: it may)."""
    name = Path(str(entry["file"])).name
    try:
        data = _read(folder / "crl" / name, _MAX_CRL)
        issuer_pem = _read(folder / "ca" / f"{Path(str(entry['authority'])).name}.pem",
                           _MAX_FILE)
    except ValueError as exc:
        return str(exc)
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        return "not the file the manifest lists (its SHA-256 differs)"
    if hashlib.sha256(issuer_pem).hexdigest() != entry["issuer_certificate_sha256"]:
        return "its CA certificate is not the one the manifest lists"
    try:
        crl = x509.load_der_x509_crl(data)
        issuer = x509.load_pem_x509_certificate(issuer_pem)
        signed = crl.is_signature_valid(issuer.public_key())  # type: ignore[arg-type]
    except (ValueError, TypeError) as exc:
        return f"cannot be read as a CRL and its CA ({exc})"
    if crl.issuer != issuer.subject or not signed:
        return f"not signed by {issuer.subject.rfc4514_string()}: a foreign CRL"
    if crl.next_update_utc is None or crl.next_update_utc <= now:
        return f"lapsed: its nextUpdate {entry['next_update']} has passed"
    if _number(crl) != entry["number"] or _time(crl.last_update_utc) != entry["this_update"]:
        return "its number or thisUpdate is not what the manifest says"
    return _against_served(served, name, crl, data)


def _against_served(served: Path | None, name: str, crl: x509.CertificateRevocationList,
                    data: bytes) -> str | None:
    """A CRL may replace the one served only if it is newer (or the very same)."""
    if served is None or not (served / name).is_file():
        return None
    try:
        old_data = _read(served / name, _MAX_CRL)
        old = x509.load_der_x509_crl(old_data)
    except ValueError:
        return None  # what is served is not a CRL: anything genuine replaces it
    if old_data == data:
        return None
    if _number(crl) <= _number(old) or crl.last_update_utc < old.last_update_utc:
        return (f"rolled back: #{_number(crl)} of {_time(crl.last_update_utc)} would replace "
                f"#{_number(old)} of {_time(old.last_update_utc)}, which is served")
    return None
