"""Results back out to a mounted stick (`spoolca media export`).

Under spoolca-results/ on the stick: the results of the requests that stick brought, the
CA certificates, the CRLs, the audit log, the report and a README.txt; each result
folder and the export as a whole carry SHA256SUMS signed by the appliance's OpenPGP key,
and MANIFEST.json names the audit head it was made with.

The stick is someone else's file system: its folder is opened once without following a
link and everything is done by descriptor (fsutil.Folder), so a link on it named like
our folders (`.spoolca-results.part -> /var/lib/spoolca`) is removed as a link, never
followed, and nothing is written outside the stick. The export is written whole under a
dot-name, synced, and only then swapped in for the previous one: a stick that is full or
pulled never shows a partial export, and the previous one stays until the new one is
complete. The checksums are of the bytes written, not read back from the stick.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import hashlib
import json
from pathlib import Path

from spoolca.config import Config
from spoolca.errors import SpoolcaError
from spoolca.fsutil import Folder
from spoolca.openpgp import ApplianceKey
from spoolca.progress import Progress
from spoolca.register.store import Store
from spoolca.report.facts import Trip, gather
from spoolca.report.html import render
from spoolca.spool.medium import Medium, current_trip, end_trip, give_secret, identify, secret_of

__all__ = ["export_to"]

_SUMS = ("SHA256SUMS", "SHA256SUMS.asc")


class _Tree:
    """Files written under one folder of the stick, by relative name; their SHA-256 is
    kept as written, for the SHA256SUMS that cover them."""

    def __init__(self, top: Folder) -> None:
        self._folders = {"": top}
        self.digests: dict[str, str] = {}

    def _folder(self, relative: str) -> Folder:
        if relative not in self._folders:
            parent, _, name = relative.rpartition("/")
            self._folders[relative] = self._folder(parent).make_folder(name)
        return self._folders[relative]

    def write(self, relative: str, data: bytes) -> None:
        parent, _, name = relative.rpartition("/")
        self._folder(parent).write(name, data)
        self.digests[relative] = hashlib.sha256(data).hexdigest()

    def copy(self, source: Path, relative: str) -> None:
        """Our own folder's files (outgoing/NAME, ca/, crl/, ...) into RELATIVE."""
        self._folder(relative)
        for path in sorted(source.iterdir()):
            if path.is_file() and not path.name.startswith("."):
                self.write(f"{relative}/{path.name}", path.read_bytes())

    def sign_sums(self, under: str, key: ApplianceKey) -> None:
        """SHA256SUMS of every file written below UNDER (sha256sum -c format), and its
        detached signature."""
        prefix = f"{under}/" if under else ""
        lines = [f"{digest}  {name[len(prefix):]}\n"
                 for name, digest in sorted(self.digests.items())
                 if name.startswith(prefix) and name[len(prefix):] not in _SUMS]
        body = "".join(lines).encode()
        self.write(f"{prefix}SHA256SUMS", body)
        self.write(f"{prefix}SHA256SUMS.asc", key.sign(body).encode())

    def close(self) -> None:
        for relative, folder in self._folders.items():
            if relative:
                folder.close()


def export_to(config: Config, store: Store, key: ApplianceKey, target: Path,
              now: dt.datetime, identity: Path | None = None, *, progress: bool = False
              ) -> tuple[Path, list[str]]:
    """Write this stick's results and the appliance's public state to it; sync it. A
    failure is one sentence; the trip stays open for a retry."""
    seen = identify(target, identity)
    outgoing = config.spool_dir / "outgoing"
    root, staging = config.results_folder, f".{config.results_folder}.part"
    try:
        with Folder.open(target) as stick:
            try:
                medium = _owner(config, stick, seen)
                names = [n for n in _results_of(store, medium) if (outgoing / n).is_dir()]
                stick.remove_tree(staging)  # a link there is removed, never followed
                with stick.make_folder(staging) as folder:
                    tree = _Tree(folder)
                    try:
                        with Progress(len(names), "export", shown=progress) as bar:
                            head_seq = _write_export(config, store, key, tree, names, now,
                                                     medium or seen, bar)
                    finally:
                        tree.close()
                # Every byte on the stick before the name appears: pulled after the
                # swap, the stick holds a whole export, never names without contents.
                stick.sync()
                stick.replace(staging, root)
                stick.sync()
            except OSError:
                with contextlib.suppress(OSError):
                    stick.remove_tree(staging)
                raise
    except OSError as exc:
        raise SpoolcaError(f"failed to write the results to {target}: {exc.strerror or exc}; "
                           "the stick holds no partial export (an earlier one, if any, is "
                           f"kept): {_what_to_do(exc)}") from None
    end_trip(config, seen)
    medium = medium or seen
    with store.transaction("media", now) as tx:
        if medium.secret:  # the results its UUID or trip had are its secret's from now on
            tx.move_media_files(medium.weak_key, medium.key)
        tx.record("media.exported", {"medium": medium.described(), "results": names,
                                     "audit_head_seq": head_seq})
    return target / root, names


def _owner(config: Config, stick: Folder, seen: Medium) -> Medium | None:
    """Whose results go on STICK: the owner of the secret it carries, or (giving it one
    now) its UUID's or this trip's; None for a stick with neither a UUID nor a trip nor
    a secret (an export without its ingest: the CA's public files only)."""
    medium = current_trip(config, secret_of(stick, seen))
    if medium is None:
        return None
    return medium if medium.secret else give_secret(stick, medium)


def _results_of(store: Store, medium: Medium | None) -> list[str]:
    """The outgoing/ names of MEDIUM's results: its secret's, and what its UUID or trip
    brought before the secret (moved to the secret when this export commits)."""
    if medium is None:
        return []
    return sorted({*store.outputs_from_medium(medium.key),
                   *store.outputs_from_medium(medium.weak_key)})


def _what_to_do(exc: OSError) -> str:
    if exc.errno == errno.EROFS:
        return ("the stick is read-only (its write-protect switch, or mounted read-only): "
                "make it writable and export again")
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "free space on it and export again"
    if exc.errno in (errno.ELOOP, errno.ENOTDIR):
        return ("the stick (or a folder on it) is a symbolic link: give the stick's own "
                "folder")
    return "check the stick and export again"


def _write_export(config: Config, store: Store, key: ApplianceKey, tree: _Tree,
                  names: list[str], now: dt.datetime, medium: Medium, bar: Progress) -> int:
    """The whole export into TREE; returns the audit head it carries."""
    outgoing = config.spool_dir / "outgoing"
    for name in names:
        tree.copy(outgoing / name, f"results/{name}")
        tree.sign_sums(f"results/{name}", key)
        bar.advance()
    for folder in ("ca", "crl", "audit", "ceremony"):
        if (outgoing / folder).is_dir():  # ceremony/: from the first ceremony record on
            tree.copy(outgoing / folder, folder)
    head_seq, head_hash = store.audit_head()
    schedule = outgoing / "crl" / "next-update.json"
    due = json.loads(schedule.read_text()) if schedule.exists() else {}
    tree.write("MANIFEST.json", (json.dumps({
        "made_at": now.strftime("%Y-%m-%dT%H:%M:%SZ"), "results": names,
        "audit_head": {"seq": head_seq, "hash": head_hash},
        "appliance_key": key.fingerprint, "crl": due}, indent=2, sort_keys=True) + "\n").encode())
    tree.write("README.txt", _readme(names, due, key.fingerprint).encode())
    facts = gather(config, store, now, Trip({"key": medium.key, "uuid": medium.uuid,
                                              "label": medium.label, "path": medium.path},
                                             names), key.fingerprint)
    tree.write("report.json", (json.dumps(facts, indent=2, sort_keys=True) + "\n").encode())
    tree.write("REPORT.html", render(facts).encode())
    tree.sign_sums("", key)
    return head_seq


def _readme(names: list[str], due: dict[str, object], fingerprint: str) -> str:
    return_by = due.get("return_by", "unknown")
    return f"""spoolca results
===============

results/NAME/    one folder per request this stick brought: cert.pem, chain.pem,
                 fullchain.pem, cert.crt and result.json (status, and reasons if rejected)
ca/              the root and intermediate certificates and ca-chain.pem
crl/             the current CRLs (NAME.crl DER, NAME.crl.pem) and next-update.json
audit/           the signed audit log (spoolca audit verify, or by hand: see its README)
MANIFEST.json    what this export holds and the audit head it was made with
REPORT.html      this trip's outcomes, the return-by date, what expires (report.json: the
                 same facts for machines)
SHA256SUMS(.asc) checksums of everything here, signed by the appliance's OpenPGP key
                 {fingerprint}

Check:  gpg --verify SHA256SUMS.asc SHA256SUMS && sha256sum -c SHA256SUMS

Requests answered: {len(names)}.
Bring this stick back before {return_by}: the current CRL ends then, and a fresh one
must reach relying parties before it does.
"""
