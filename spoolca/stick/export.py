"""Results back out to a mounted stick (`spoolca media export`).

What goes out is composed by stick.composing: by this command itself when it can open
the appliance key (`media export` by hand), or by the daemon when it cannot (the media
unit, which reads hostile sticks and holds no key: `--through-daemon`,
stick.exportrequests). Either way the bytes are the same, signed by the same key.

The stick is someone else's file system: its folder is opened once without following a
link and everything is done by descriptor (fsutil.Folder), so a link on it named like
our folders (`.spoolca-results.part -> /var/lib/spoolca`) is removed as a link, never
followed, and nothing is written outside the stick. The export is written whole under a
dot-name, synced, and only then swapped in for the previous one: a stick that is full or
pulled never shows a partial export, and the previous one stays until the new one is
complete.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import hashlib
import json
import os
from pathlib import Path

from spoolca.config import Config
from spoolca.errors import SpoolcaError
from spoolca.host.fsutil import Folder, remove_tree
from spoolca.keys.openpgp import ApplianceKey
from spoolca.register.store import Store
from spoolca.stick.composing import compose
from spoolca.stick.exportrequests import collect, request_export
from spoolca.stick.medium import Medium, current_trip, end_trip, give_secret, identify, secret_of

__all__ = ["export_to"]

def export_to(config: Config, store: Store, key: ApplianceKey | None, target: Path,
              now: dt.datetime, identity: Path | None = None, *, progress: bool = False,
              daemon_seconds: float = 300.0) -> tuple[Path, list[str]]:
    """Write this stick's results and the appliance's public state to it; sync it. KEY
    None: the daemon composes them (waited for DAEMON_SECONDS at most). A failure is one
    sentence; the trip stays open for a retry."""
    seen = identify(target, identity)
    root, staging = config.results_folder, f".{config.results_folder}.part"
    try:
        with Folder.open(target) as stick:
            try:
                medium = _owner(config, stick, seen)
                stick.remove_tree(staging)  # a link there is removed, never followed
                with stick.make_folder(staging) as folder:
                    if key is not None:
                        names, head_seq = compose(config, store, key, medium, seen, now,
                                                  folder, progress=progress)
                    else:
                        names, head_seq = _through_daemon(config, medium, seen, folder,
                                                          daemon_seconds)
                # Every byte on the stick before the name appears: pulled after the
                # swap, the stick holds a whole export, never names without contents.
                stick.sync()
                stick.replace(staging, root)
                stick.sync()
            except (OSError, SpoolcaError):
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
        if medium.secret_new:  # what its UUID or trip brought is its secret's from now on
            tx.move_media_files(medium.weak_key, medium.key)
        tx.record("media.exported", {"medium": medium.described(), "results": names,
                                     "audit_head_seq": head_seq})
    return target / root, names


def _through_daemon(config: Config, medium: Medium | None, seen: Medium, folder: Folder,
                    seconds: float) -> tuple[list[str], int]:
    """The daemon's export for MEDIUM, copied into FOLDER byte for byte, each file checked
    against the signed SHA256SUMS it came with; (results, audit head) from its manifest."""
    composed = collect(config, request_export(config, medium, seen), seconds)
    try:
        sums = _sums(composed / "SHA256SUMS")
        _copy(composed, folder, "", sums)
        manifest = json.loads((composed / "MANIFEST.json").read_bytes())
        return list(manifest["results"]), int(manifest["audit_head"]["seq"])
    finally:
        remove_tree(composed)


def _sums(path: Path) -> dict[str, str]:
    lines = path.read_text().splitlines()
    return {name: digest for digest, _, name in (line.partition("  ") for line in lines)}


def _copy(source: Path, folder: Folder, relative: str, sums: dict[str, str]) -> None:
    for entry in sorted(os.scandir(source), key=lambda e: e.name):
        name = f"{relative}{entry.name}"
        if entry.is_dir(follow_symlinks=False):
            with folder.make_folder(entry.name) as inner:
                _copy(Path(entry.path), inner, f"{name}/", sums)
            continue
        data = Path(entry.path).read_bytes()
        if name in sums and hashlib.sha256(data).hexdigest() != sums[name]:
            raise SpoolcaError(f"the daemon's export changed on its way: {name} does not "
                               "match its SHA256SUMS")
        folder.write(entry.name, data)


def _owner(config: Config, stick: Folder, seen: Medium) -> Medium | None:
    """Whose results go on STICK: the owner of the secret it carries, or (giving it one
    now) its UUID's or this trip's; None for a stick with neither a UUID nor a trip nor
    a secret (an export without its ingest: the CA's public files only)."""
    medium = current_trip(config, secret_of(stick, seen))
    if medium is None:
        return None
    return medium if medium.secret else give_secret(stick, medium)


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
