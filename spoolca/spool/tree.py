"""The spool tree on disk: scanning, claiming, naming, archiving.

Files on the spool come from removable media and are untrusted: names are made safe
before they name anything we write, symlinks are moved but never followed, and a file
is claimed by an atomic rename into work/CLAIM/PROFILE/ so it is processed once,
whoever is looking. CLAIM names the claim round: the register records it with each
answer, so after a crash a claimed file that was already answered is finished (archived),
never decided a second time. Folder names and extensions are matched without regard to
case: FAT shows 8.3 names in upper case (SERVER/ALICE.CSR, REVOKE/LOST.JSON).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from spoolca.errors import UntakeableError
from spoolca.host.fsutil import SHARED_DIR, ensure_dir, move, remove_empty_dirs
from spoolca.log import get_logger

_log = get_logger("spoolca.spool.tree")

__all__ = [
    "COMPANION_SUFFIXES",
    "REQUEST_SUFFIXES",
    "RESERVED_NAMES",
    "REVOKE",
    "SIGNATURE_SUFFIXES",
    "SSH_KEY_SUFFIX",
    "Claimed",
    "Spool",
    "archive_file",
    "companion",
    "is_ignored",
    "printable_name",
    "remove_empty_claims",
    "request_file_of",
    "safe_name",
]

REQUEST_SUFFIXES = (".csr", ".pem", ".req", ".der")
SSH_KEY_SUFFIX = ".pub"  # an SSH profile's folder: NAME.pub, and its request file NAME.json
# What NAME is cut from: requests, revocation requests (revoke/NAME.json), SSH keys.
_NAMED_SUFFIXES = (*REQUEST_SUFFIXES, ".json", SSH_KEY_SUFFIX)
# outgoing/ folders of our own: a request called ca.csr must not land in outgoing/ca/.
RESERVED_NAMES = frozenset({"ca", "crl", "crl-presigned", "ssh", "audit", "ceremony"})
# incoming/revoke/ holds revocation requests; they are claimed and answered like CSRs.
REVOKE = "revoke"
NON_PROFILE_FOLDERS = frozenset({REVOKE})
_CLAIM_PREFIX = "claim-"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_NAME = 100


def is_ignored(name: str) -> bool:
    """Files still being written (dotfiles, *.tmp, *.part) and detached signatures."""
    return name.startswith(".") or name.lower().endswith((".tmp", ".part", ".asc", ".sig"))


def safe_name(file_name: str) -> str:
    """NAME for outgoing/NAME/: the file name without extension, made safe.

    No path separators, no leading dot, no control or non-ASCII characters (each run
    becomes `_`), at most 100 characters; never empty.
    """
    stem = file_name
    for suffix in _NAMED_SUFFIXES:
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    cleaned = _UNSAFE.sub("_", stem).lstrip(".")[:_MAX_NAME]
    return cleaned or "request"


SIGNATURE_SUFFIXES = (".asc", ".sig")
# The spellings a companion signature is looked for under: FAT sticks come in any case.
COMPANION_SUFFIXES = (".asc", ".sig", ".ASC", ".SIG", ".Asc", ".Sig")


def printable_name(name: str) -> tuple[str, str | None]:
    """(a printable rendering of a file name, why the name itself is refused or None).

    A name from a stick may be any bytes: a non-UTF-8 name arrives with surrogate escapes
    that SQLite, JSON and the journal cannot encode, and control characters would forge
    lines in logs. Both are rendered escaped (`bad\\xff.csr`) and refused."""
    if name.isascii() and name.isprintable():  # the common case: nothing to escape
        return name, None
    raw = os.fsencode(name)
    try:
        text, problem = raw.decode("utf-8"), None
    except UnicodeDecodeError:
        text, problem = raw.decode("utf-8", "backslashreplace"), "the file name is not valid UTF-8"
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        text = "".join(f"\\x{ord(c):02x}" if ord(c) < 0x20 or ord(c) == 0x7F else c
                       for c in text)
        problem = problem or "the file name holds control characters"
    return text, problem


@dataclass(frozen=True, slots=True)
class Claimed:
    """A submission moved into work/CLAIM/PROFILE/, ours to process, with its detached
    signature (NAME.asc) if one came beside it."""

    path: Path
    profile: str
    file_name: str  # printable: what result.json, the register and the log show
    signature: Path | None = None
    name_problem: str | None = None  # why the file's own name is refused, if it is
    claim: str | None = None  # the claim round; None for a pre-claim work/PROFILE/ file
    quarantined: bool = False  # it stopped the service too often: answered unread
    request_file: Path | None = None  # an SSH key's NAME.json, if one came beside it

    @classmethod
    def of(cls, path: Path, profile: str, signature: Path | None,
           claim: str | None = None, request_file: Path | None = None) -> Claimed:
        file_name, problem = printable_name(path.name)
        return cls(path, printable_name(profile)[0], file_name, signature, problem, claim,
                   request_file=request_file)

    @property
    def is_revocation(self) -> bool:
        return self.profile == REVOKE


def companion(path: Path) -> Path | None:
    """The detached signature beside a request (x.csr.asc or x.csr.sig), if any."""
    for suffix in COMPANION_SUFFIXES:
        candidate = path.with_name(path.name + suffix)
        if os.path.lexists(candidate):
            return candidate
    return None


def request_file_of(path: Path) -> Path | None:
    """The request file beside an SSH key NAME.pub: NAME.json, in the spellings a stick
    gives it (FAT: ALICE.PUB, ALICE.JSON); one lstat each, never a folder listing (a
    factory stick's folder holds thousands)."""
    if not path.name.lower().endswith(SSH_KEY_SUFFIX):
        return None
    stem = path.name[:-len(SSH_KEY_SUFFIX)]
    for suffix in (".json", ".JSON", ".Json"):
        candidate = path.with_name(stem + suffix)
        if os.path.lexists(candidate):
            return candidate
    return None


def _is_request_file(name: str, ssh: bool) -> bool:
    """Whether NAME, in an SSH profile's folder (SSH), is a request file: never a request
    of its own, it goes with its NAME.pub (and waits for it: a stick's copy brings
    NAME.json first)."""
    return ssh and name.lower().endswith(".json")


def remove_empty_claims(folders: Iterable[Path]) -> None:
    """work/CLAIM/PROFILE/ and work/CLAIM/ once everything in them is archived."""
    claims = {f.parent for f in folders if f.parent.name.startswith(_CLAIM_PREFIX)}
    remove_empty_dirs([*folders, *claims])


@dataclass(frozen=True, slots=True)
class Spool:
    """The spool directories under one root; `profiles` are the configured names."""

    root: Path
    profiles: tuple[str, ...] = ()
    ssh_profiles: tuple[str, ...] = ()  # their folders hold NAME.pub and NAME.json

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
        """incoming/<profile>/ for each profile, work/ and archive/ (outgoing/'s own
        folders: spool.outgoing.Outgoing.create)."""
        for folder in (self.incoming, self.work, self.archive):
            ensure_dir(folder, SHARED_DIR)
        for name in profiles:
            ensure_dir(self.incoming / name, SHARED_DIR)

    def folder_profile(self, folder: str) -> str:
        """The profile a folder under incoming/ names, whatever its case (FAT: SERVER)."""
        lowered = folder.lower()
        return next((p for p in (*self.profiles, *self.ssh_profiles, REVOKE)
                     if p.lower() == lowered), folder)

    def candidates(self, default_profile: str) -> list[tuple[Path, str]]:
        """(path, profile) of everything waiting in incoming/, in name order."""
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
                found += self._in_folder(Path(entry.path))
            else:
                found.append((Path(entry.path), default_profile))
        return found

    def _in_folder(self, folder: Path) -> list[tuple[Path, str]]:
        profile = self.folder_profile(folder.name)
        found = []
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
        ssh = profile in self.ssh_profiles
        for inner in entries:
            if is_ignored(inner.name) or _is_request_file(inner.name, ssh):
                continue
            # A sub-folder is left alone, unless it is named like a request: then it is
            # claimed and rejected (file.not_regular) rather than left there forever.
            if not inner.is_dir(follow_symlinks=False) or inner.name.lower().endswith(
                    (*REQUEST_SUFFIXES, ".json")):
                found.append((Path(inner.path), profile))
        return found

    def profile_of(self, path: Path, default_profile: str) -> str | None:
        """The profile a path under incoming/ belongs to (`revoke` for revocation
        requests), or None if it is not a submission."""
        try:
            relative = path.relative_to(self.incoming)
        except ValueError:
            return None
        parts = relative.parts
        if len(parts) == 1 and not is_ignored(parts[0]):
            return default_profile
        if len(parts) == 2 and not is_ignored(parts[0]) and not is_ignored(parts[1]):
            return self.folder_profile(parts[0])
        return None

    def is_companion(self, path: Path, profile: str) -> bool:
        """A file that goes with a request and is never one: an SSH key's NAME.json."""
        return _is_request_file(path.name, profile in self.ssh_profiles)

    def new_claim(self) -> str:
        """A claim round's name: sortable by time, unique."""
        return f"{_CLAIM_PREFIX}{time.time_ns():016x}-{secrets.token_hex(3)}"

    def claim(self, source: Path, profile: str, claim: str,
              signature: Path | bool | None = True,
              request_file: Path | None = None) -> Claimed | None:
        """Move one submission into work/CLAIM/PROFILE/ by an atomic rename, with its
        detached signature (found here, or passed by a caller whose scan saw it) and an
        SSH key's request file.

        None if it is gone."""
        folder = self.work / claim / profile
        target = folder / source.name
        if signature is True:  # moved first: the request never goes without it
            signature = companion(source)
        if request_file is None and profile in self.ssh_profiles:
            request_file = request_file_of(source)
        moved_signature = moved_request = None
        try:
            if isinstance(signature, Path):
                moved_signature = folder / signature.name
                move(signature, moved_signature)
            if request_file is not None:
                moved_request = folder / request_file.name
                move(request_file, moved_request)
            move(source, target)
        except FileExistsError:
            return None  # incoming/x.csr and incoming/<default>/x.csr: one per round
        except PermissionError as exc:
            raise UntakeableError(source, untakeable_sentence(source, exc)) from None
        except FileNotFoundError:
            if not folder.is_dir() and os.path.lexists(source):
                ensure_dir(folder.parent, SHARED_DIR)
                ensure_dir(folder, SHARED_DIR)
                return self.claim(source, profile, claim, signature, request_file)
            return None
        return Claimed.of(target, profile, moved_signature, claim, moved_request)

    def claim_incoming(self, default_profile: str,
                       candidates: list[tuple[Path, str]] | None = None) -> list[Claimed]:
        """Claim everything waiting in incoming/ (or these candidates of a scan already
        made), in name order, as one claim round."""
        if candidates is None:
            candidates = self.candidates(default_profile)
        folders = {source.parent for source, _profile in candidates}
        signatures = {str(p) for folder in folders for p in folder.iterdir()
                      if p.name.lower().endswith(SIGNATURE_SUFFIXES)}
        claim = self.new_claim()
        claimed = []
        for source, profile in candidates:
            signature = next((Path(f"{source}{suffix}") for suffix in COMPANION_SUFFIXES
                              if f"{source}{suffix}" in signatures), None)
            try:
                claimed.append(self.claim(source, profile, claim, signature))
            except UntakeableError as exc:  # said, and left where it is
                _log.warning("cannot take a file", reason=str(exc))
        return [c for c in claimed if c is not None]

    def untakeable(self, default_profile: str) -> list[tuple[Path, str]]:
        """What waits in incoming/ and cannot be taken by this user, with why (for
        `spoolca status` and STATUS=): its folder not writable, or itself not readable."""
        found = []
        for source, _profile in self.candidates(default_profile):
            if not os.access(source.parent, os.W_OK | os.X_OK):
                problem = PermissionError(13, "Permission denied", str(source.parent))
            elif source.is_file() and not os.access(source, os.R_OK):
                problem = PermissionError(13, "Permission denied", str(source))
            else:
                continue
            found.append((source, untakeable_sentence(source, problem)))
        return found

    def pending_work(self) -> list[Claimed]:
        """Submissions claimed by an earlier pass that did not finish (a crash), in claim
        order; work/PROFILE/ of a version before claim rounds is taken too."""
        pending: list[Claimed] = []
        for entry in _sorted_dirs(self.work):
            if entry.name.startswith(_CLAIM_PREFIX):
                for folder in _sorted_dirs(Path(entry.path)):
                    ssh = folder.name in self.ssh_profiles
                    if _return_orphans(Path(folder.path), self.incoming, ssh):
                        remove_empty_claims([Path(folder.path)])  # it may hold nothing now
                        if not os.path.isdir(folder.path):
                            continue
                    pending += _claimed_in(Path(folder.path), entry.name, ssh)
            else:
                pending += _claimed_in(Path(entry.path), None,
                                       entry.name in self.ssh_profiles)
        return pending


def _sorted_dirs(folder: Path) -> list[os.DirEntry[str]]:
    try:
        return sorted((e for e in os.scandir(folder) if e.is_dir(follow_symlinks=False)),
                      key=lambda e: e.name)
    except FileNotFoundError:
        return []


def _return_orphans(folder: Path, incoming: Path, ssh: bool) -> bool:
    """A claim cut between its renames (a crash: the signature, or an SSH key's request
    file, is moved first) leaves that companion in the round and its request still in
    incoming/. Put the companion back beside its request, so that the two are claimed
    together again; left where it was, the request was answered "unsigned" and the
    signature stayed in work/ for ever. True if any was put back."""
    present = set(os.listdir(folder))
    returned = False
    for name in sorted(present):
        lowered = name.lower()
        if lowered.endswith(SIGNATURE_SUFFIXES):
            requests = [name[:-len(".asc")]]
        elif _is_request_file(name, ssh):
            requests = [name[:-len(".json")] + s for s in (".pub", ".PUB", ".Pub")]
        else:
            continue
        if any(r in present for r in requests):
            continue
        places = (incoming / folder.name, incoming)  # the default profile's: either
        left = next((place for place in places for r in requests
                     if os.path.lexists(place / r)), None)
        if left is not None:
            with contextlib.suppress(FileExistsError, FileNotFoundError):
                move(folder / name, left / name)
                returned = True
    return returned


def _claimed_in(folder: Path, claim: str | None, ssh: bool = False) -> list[Claimed]:
    found = []
    entries = sorted(os.scandir(folder), key=lambda e: e.name)
    for entry in entries:
        if entry.name.lower().endswith(SIGNATURE_SUFFIXES) or \
                _is_request_file(entry.name, ssh):
            continue  # a companion: it goes with its request
        path = Path(entry.path)
        found.append(Claimed.of(path, folder.name, companion(path), claim,
                                request_file_of(path) if ssh else None))
    return found


def untakeable_sentence(source: Path, exc: OSError) -> str:
    """Why SOURCE waits, and what to do: usually a folder made by root in incoming/."""
    import pwd

    folder = source.parent
    try:
        owner = pwd.getpwuid(folder.stat().st_uid).pw_name
    except (OSError, KeyError):
        owner = "another user"
    try:
        me = pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        me = str(os.geteuid())
    return (f"cannot take {source}: {exc.strerror or exc} (its folder belongs to {owner}; "
            f"the service runs as {me}): chown -R {me} {folder}, and it is taken at the "
            "next rescan")


def archive_file(archive: Path, path: Path, file_name: str, output_name: str,
                 signature: Path | None = None, request_file: Path | None = None) -> Path:
    """Rename `path` to archive/NAME.ext (its signature to NAME.ext.asc, an SSH key's
    request file to NAME.ext.json), never over another file.

    Flat, one rename and no mkdir per request; NAME pairs it with outgoing/NAME/.
    """
    suffix = next((s for s in _NAMED_SUFFIXES if file_name.lower().endswith(s)), ".request")
    target = archive / f"{output_name}{suffix}"
    counter = 1
    while os.path.lexists(target):
        counter += 1
        target = archive / f"{output_name}.{counter}{suffix}"
    if signature is not None and os.path.lexists(signature):
        move(signature, target.with_name(target.name + signature.suffix))
    if request_file is not None and os.path.lexists(request_file):
        move(request_file, target.with_name(target.name + ".json"))
    move(path, target)
    return target
