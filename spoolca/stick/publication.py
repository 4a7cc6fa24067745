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
from spoolca.register.records import format_time
from spoolca.spool.outgoing import CRL_BUNDLE, PRESIGNED
from spoolca.x509.crl import MAX_CRL_BYTES, ReadCRL, read_crl

__all__ = ["MANIFEST", "Checked", "check_manifest", "check_publication", "manifest_of"]

MANIFEST = "publication.json"
_MAX_FILE = 1 << 20


def manifest_of(config: Config, crl_files: dict[str, bytes], ca_files: dict[str, bytes],
                now: dt.datetime, presigned: dict[str, bytes] | None = None) -> bytes:
    """crl/publication.json for the files of an export's crl/, ca/ and crl-presigned/ (by
    name, the very bytes written to it: a CRL or CA file republished meanwhile must not
    make the manifest disagree with what the export carries)."""
    cas = [(name, data, x509.load_pem_x509_certificate(data))
           for name, data in sorted(ca_files.items())
           if name.endswith(".pem") and not name.startswith("ca-")]  # not the chains
    bundle = crl_files.get(CRL_BUNDLE)
    digest = hashlib.sha256(bundle).hexdigest() if bundle is not None else None
    return (json.dumps({"made_at": format_time(now), "crls": _entries(config, crl_files, cas),
                        "presigned": _entries(config, presigned or {}, cas),
                        "crl_bundle_sha256": digest}, indent=2, sort_keys=True) + "\n").encode()


def _entries(config: Config, files: dict[str, bytes],
             cas: list[tuple[str, bytes, x509.Certificate]]) -> list[dict[str, Any]]:
    entries = []
    for file_name, data in sorted(files.items()):
        crl = read_crl(data) if file_name.endswith(".crl") else None
        if not isinstance(crl, ReadCRL):
            continue  # .crl.pem, the bundle, next-update.json (ours: always readable)
        issuer = _issuer_of(cas, crl)  # None: not published yet (see _issuer_of)
        authority = file_name.removesuffix(".crl").split("--from-")[0]
        entries.append({
            "authority": authority, "file": file_name,
            "issuer": crl.issuer.rfc4514_string(),
            "issuer_file": issuer[0] if issuer else None,
            "issuer_certificate_sha256":
                hashlib.sha256(issuer[1]).hexdigest() if issuer else None,
            "number": crl.number, "this_update": format_time(crl.this_update),
            "next_update": format_time(crl.next_update) if crl.next_update else None,
            "sha256": hashlib.sha256(data).hexdigest(),
            "url": settings(config, authority).crl_url})
    return entries


def _issuer_of(cas: list[tuple[str, bytes, x509.Certificate]], crl: ReadCRL
               ) -> tuple[str, bytes] | None:
    """The CA certificate file whose key signed CRL, and its bytes: after a rekey the
    current generation is intermediate.pem and an older one intermediate-gN.pem, so it is
    found by its signature, not by its name. None if outgoing/ca/ holds none yet: a
    restored appliance whose service published its CRLs and was stopped before its CA
    files (the model test found an export crashing there); verify-publication then
    refuses that CRL until an export carries its CA."""
    return next(((name, data) for name, data, cert in cas if cert.subject == crl.issuer
                 and crl.crl.is_signature_valid(cert.public_key())),  # type: ignore[arg-type]
                None)


@dataclass
class Checked:
    """What verify-publication found: a line per CRL that may be served, and every
    reason one may not."""

    good: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)


def check_publication(folder: Path, served: Path | None, now: dt.datetime, armored: str,
                      fingerprint: str) -> Checked:
    """The CRLs of an export (FOLDER holds crl/ and ca/) against its manifest, once that
    is signed by FINGERPRINT's key (ARMORED), then against their CAs, the clock and what
    SERVED already holds. A manifest not so signed: nothing may be served."""
    body, problem = _signed_manifest(folder / "crl" / MANIFEST, armored, fingerprint)
    if problem is not None:
        return Checked(refused=[f"{MANIFEST}: {problem}"])
    return check_manifest(folder, served, now, json.loads(body))


def check_manifest(folder: Path, served: Path | None, now: dt.datetime,
                   manifest: dict[str, Any]) -> Checked:
    """The CRLs of an export against its MANIFEST, whose signature was checked: each
    listed, its CA's, not lapsed, not older than what SERVED holds."""
    checked = Checked()
    series = manifest.get("presigned") or []
    cas = _covered_cas(folder)
    for sub, entries in (("crl", manifest["crls"]), (PRESIGNED, series)):
        listed = {str(entry["file"]) for entry in entries}
        for path in sorted((folder / sub).glob("*.crl")):
            if path.name not in listed:
                checked.refused.append(f"{sub}/{path.name}: not in the signed manifest")
    bundle = folder / "crl" / CRL_BUNDLE
    if bundle.is_file() and hashlib.sha256(_read(bundle, MAX_CRL_BYTES)).hexdigest() != \
            manifest.get("crl_bundle_sha256"):
        checked.refused.append(f"{CRL_BUNDLE}: not the file the manifest lists")
    for entry in manifest["crls"]:
        problem = _check_entry(folder, served, entry, now, cas)
        (checked.refused if problem else checked.good).append(
            f"{entry['file']}: {problem}" if problem else
            f"{entry['file']}: #{entry['number']}, this update {entry['this_update']}, next "
            f"update {entry['next_update']}, by {entry['issuer']}"
            + (f", for {entry['url']}" if entry.get("url") else ""))
    for entry in series:  # each is served from its thisUpdate: not yet valid is right
        problem = _check_entry(folder, served, entry, now, cas, PRESIGNED)
        (checked.refused if problem else checked.good).append(
            f"{PRESIGNED}/{entry['file']}: {problem}" if problem else
            f"{PRESIGNED}/{entry['file']}: #{entry['number']}, pre-signed, to be served as "
            f"{entry['authority']}.crl from {entry['this_update']} until {entry['next_update']}"
            ", carrying no revocation made after it was signed")
    return checked


def _signed_manifest(path: Path, armored: str, fingerprint: str) -> tuple[bytes, str | None]:
    """The manifest's bytes, read once (those the signature is checked over are those
    trusted), and None if they carry one good signature by FINGERPRINT, else why not."""
    from spoolca.keys.openpgp import Keyring, verify_detached

    body = read_untrusted(path, _MAX_FILE).data or b""
    signature = read_untrusted(path.with_name(f"{path.name}.asc"), 1 << 16).data
    if signature is None:
        return body, "it is not signed"
    with Keyring(armored) as keyring:
        return body, verify_detached(body, signature.decode(errors="replace"), keyring,
                                     fingerprint)


def _read(path: Path, limit: int) -> bytes:
    read = read_untrusted(path, limit)
    if read.data is None:
        raise ValueError(f"cannot be read ({read.detail})")
    return read.data


def _check_entry(folder: Path, served: Path | None, entry: dict[str, Any],
                 now: dt.datetime, cas: list[tuple[str, x509.Certificate]],
                 sub: str = "crl") -> str | None:
    """Why the CRL ENTRY names (in FOLDER/SUB) may not be served (None: it may). What is
    served is by CA: a pre-signed CRL too must be newer than the one served."""
    name = Path(str(entry["file"])).name
    if not entry.get("issuer_file"):
        return ("its CA certificate is not on this export (the appliance had not published "
                "it yet): export again once its service has started")
    try:
        data = _read(folder / sub / name, MAX_CRL_BYTES)
        issuer_pem = _read(folder / "ca" / Path(str(entry["issuer_file"])).name, _MAX_FILE)
    except ValueError as exc:
        return str(exc)
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        return "not the file the manifest lists (its SHA-256 differs)"
    if hashlib.sha256(issuer_pem).hexdigest() != entry["issuer_certificate_sha256"]:
        return "its CA certificate is not the one the manifest lists"
    parsed = read_crl(data)
    if isinstance(parsed, str):
        return parsed
    try:
        issuer = x509.load_pem_x509_certificate(issuer_pem)
        signed = parsed.crl.is_signature_valid(issuer.public_key())  # type: ignore[arg-type]
    except Exception as exc:  # untrusted bytes, as in read_crl
        return f"cannot be checked against its CA ({type(exc).__name__}: {exc})"
    if parsed.issuer != issuer.subject or not signed:
        return f"not signed by {issuer.subject.rfc4514_string()}: a foreign CRL"
    if parsed.next_update is None or parsed.next_update <= now:
        return f"lapsed: its nextUpdate {entry['next_update']} has passed"
    if parsed.number != entry["number"] or format_time(parsed.this_update) != entry["this_update"]:
        return "its number or thisUpdate is not what the manifest says"
    elsewhere = _named_elsewhere(cas, parsed, str(entry.get("url") or ""))
    if elsewhere:
        return elsewhere
    return _against_served(served, f"{entry['authority']}.crl", parsed, data, now)


def _covered_cas(folder: Path) -> list[tuple[str, x509.Certificate]]:
    """The export's CA certificates (not the chains), parsed once for every CRL; an
    unreadable one is left out here (_check_entry refuses the CRL it signed)."""
    found = []
    for path in sorted((folder / "ca").glob("*.pem")):
        if path.name.startswith("ca-"):
            continue  # the chains: the same certificates again
        try:
            found.append((path.name, x509.load_pem_x509_certificate(_read(path, _MAX_FILE))))
        except Exception:  # noqa: S112 - untrusted bytes; refused where they matter
            continue
    return found


def _named_elsewhere(cas: list[tuple[str, x509.Certificate]], crl: ReadCRL, url: str
                     ) -> str | None:
    """Why the CRL is not where the CA certificates it covers say relying parties fetch
    it (their cRLDistributionPoints, e.g. the intermediate's naming the root's CRL), if
    it is not: published at the manifest's URL, it would never be found there."""
    for name, cert in cas:
        if cert.issuer != crl.issuer or cert.subject == cert.issuer:
            continue
        try:
            points = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
        except (x509.ExtensionNotFound, ValueError):
            continue
        uris = [n.value for point in points for n in point.full_name or ()
                if isinstance(n, x509.UniformResourceIdentifier)]
        if uris and url not in uris:
            return (f"to be published at {url or 'no URL'}, but {name} names "
                    f"{', '.join(uris)}: relying parties fetch it from there (set the CA's "
                    "crl_url to it, or re-sign that certificate)")
    return None


def _against_served(served: Path | None, name: str, new: ReadCRL, data: bytes,
                    now: dt.datetime) -> str | None:
    """A CRL may replace the one served only if it is newer (or the very same): a higher
    number, and a thisUpdate not earlier, unless the served one's thisUpdate is still
    in the future (a wrong clock dated it ahead; relying parties refuse it until then,
    and a higher-numbered CRL dated right is its cure)."""
    if served is None or not (served / name).is_file():
        return None
    try:
        old_data = _read(served / name, MAX_CRL_BYTES)
    except ValueError:
        return None
    old = read_crl(old_data)
    if isinstance(old, str) or old_data == data:
        return None  # what is served is not a CRL (a genuine one replaces it), or is this one
    if new.number <= old.number or (old.this_update <= now and \
            new.this_update < old.this_update):
        return (f"rolled back: #{new.number} of {format_time(new.this_update)} would replace "
                f"#{old.number} of {format_time(old.this_update)}, which is served")
    return None
