"""The spool tree on disk: scanning, claiming, naming, archiving.

Files on the spool come from removable media and are untrusted: names are made safe
before they name anything we write, symlinks are moved but never followed, and a file
is claimed by an atomic rename into work/ so it is processed once, whoever is looking.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from spoolca.fsutil import SHARED_DIR, ensure_dir

__all__ = [
    "REQUEST_SUFFIXES",
    "RESERVED_NAMES",
    "Claimed",
    "Spool",
    "archive_file",
    "is_ignored",
    "safe_name",
]

REQUEST_SUFFIXES = (".csr", ".pem", ".req", ".der")
# outgoing/ folders of our own: a request called ca.csr must not land in outgoing/ca/.
RESERVED_NAMES = frozenset({"ca", "crl", "audit"})
# Folders under incoming/ that are not profiles (revoke/ is for revocation requests).
NON_PROFILE_FOLDERS = frozenset({"revoke"})
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_NAME = 100


def is_ignored(name: str) -> bool:
    """Files still being written (dotfiles, *.tmp, *.part) and detached signatures."""
    return name.startswith(".") or name.endswith((".tmp", ".part", ".asc", ".sig"))


def safe_name(file_name: str) -> str:
    """NAME for outgoing/NAME/: the file name without extension, made safe.

    No path separators, no leading dot, no control or non-ASCII characters (each run
    becomes `_`), at most 100 characters; never empty.
    """
    stem = file_name
    for suffix in REQUEST_SUFFIXES:
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    cleaned = _UNSAFE.sub("_", stem).lstrip(".")[:_MAX_NAME]
    return cleaned or "request"


@dataclass(frozen=True, slots=True)
class Claimed:
    """A submission moved into work/<profile>/, ours to process."""

    path: Path
    profile: str
    file_name: str


@dataclass(frozen=True, slots=True)
class Spool:
    """The spool directories under one root."""

    root: Path

    @property
    def incoming(self) -> Path:
        return self.root / "incoming"

    @property
    def work(self) -> Path:
        return self.root / "work"

    @property
    def outgoing(self) -> Path:
        return self.root / "outgoing"

    @property
    def archive(self) -> Path:
        return self.root / "archive"

    def create(self, profiles: Iterable[str]) -> None:
        """The whole tree: incoming/<profile>/ for each profile, outgoing/{ca,crl,audit}."""
        for folder in (self.incoming, self.work, self.archive):
            ensure_dir(folder, SHARED_DIR)
        for name in profiles:
            ensure_dir(self.incoming / name, SHARED_DIR)
        for name in sorted(RESERVED_NAMES):
            ensure_dir(self.outgoing / name, SHARED_DIR)

    def _candidates(self, default_profile: str) -> list[tuple[Path, str]]:
        found: list[tuple[Path, str]] = []
        try:
            entries = sorted(os.scandir(self.incoming), key=lambda e: e.name)
        except FileNotFoundError:
            return found
        for entry in entries:
            if is_ignored(entry.name):
                continue
            if entry.is_dir(follow_symlinks=False) and not entry.name.lower().endswith(
                    REQUEST_SUFFIXES):
                if entry.name in NON_PROFILE_FOLDERS:
                    continue
                for inner in sorted(os.scandir(entry.path), key=lambda e: e.name):
                    if is_ignored(inner.name):
                        continue
                    # A sub-folder is left alone, unless it is named like a request: then
                    # it is claimed and rejected (file.not_regular) rather than left forever.
                    if not inner.is_dir(follow_symlinks=False) or inner.name.lower().endswith(
                            REQUEST_SUFFIXES):
                        found.append((Path(inner.path), entry.name))
            else:
                found.append((Path(entry.path), default_profile))
        return found

    def claim_incoming(self, default_profile: str) -> list[Claimed]:
        """Move every waiting submission into work/, in name order; return them.

        A folder inside a profile folder is left where it is (never recursed into).
        A name already in work/ waits for the next pass instead of replacing it.
        """
        claimed = []
        made: set[str] = set()
        for source, profile in self._candidates(default_profile):
            if profile not in made:
                ensure_dir(self.work / profile, SHARED_DIR)
                made.add(profile)
            target = self.work / profile / source.name
            if os.path.lexists(target):
                continue
            try:
                os.rename(source, target)
            except FileNotFoundError:
                continue  # taken away meanwhile: nothing to do
            claimed.append(Claimed(target, profile, source.name))
        return claimed

    def pending_work(self) -> list[Claimed]:
        """Submissions claimed by an earlier pass that did not finish (a crash)."""
        pending = []
        try:
            folders = sorted(os.scandir(self.work), key=lambda e: e.name)
        except FileNotFoundError:
            return pending
        for folder in folders:
            if not folder.is_dir(follow_symlinks=False):
                continue
            for entry in sorted(os.scandir(folder.path), key=lambda e: e.name):
                pending.append(Claimed(Path(entry.path), folder.name, entry.name))
        return pending

    def archive_claimed(self, claimed: Claimed, output_name: str) -> Path:
        """Move a processed original to archive/NAME.ext (kept forever: nothing is lost)."""
        return archive_file(self.archive, claimed.path, claimed.file_name, output_name)


def archive_file(archive: Path, path: Path, file_name: str, output_name: str) -> Path:
    """Rename `path` to archive/NAME.ext, never over another file.

    Flat, one rename and no mkdir per request; NAME pairs it with outgoing/NAME/.
    """
    suffix = next((s for s in REQUEST_SUFFIXES if file_name.lower().endswith(s)), ".request")
    target = archive / f"{output_name}{suffix}"
    counter = 1
    while os.path.lexists(target):
        counter += 1
        target = archive / f"{output_name}.{counter}{suffix}"
    os.rename(path, target)
    return target
