"""Requests in from a mounted stick (`spoolca media ingest`).

Every stick is hostile. The stick's folder is opened once, without following a link,
and everything under it is reached by descriptor, one name at a time (fsutil.Folder): a
link is never followed, nothing outside the stick is ever read. Only regular files are
opened at all (a device node or FIFO is refused by lstat first); each file, the total,
the count and the depth are capped; every name is made safe (no traversal, no control
or non-UTF-8 bytes); each file is read whole before a copy is renamed into incoming/ (a
stick pulled mid-copy leaves nothing half-written); a second copy of the same content
is skipped; and everything skipped is listed with the reason.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import os
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from spoolca.config import Config
from spoolca.errors import SpoolcaError
from spoolca.host.fsutil import Folder, atomic_write, ensure_dir, move, sync_filesystem
from spoolca.host.progress import Progress
from spoolca.host.untrusted import FAT_HIDDEN, FAT_SYSTEM, read_untrusted
from spoolca.register.store import Store
from spoolca.spool.tree import (
    COMPANION_SUFFIXES,
    NON_PROFILE_FOLDERS,
    REQUEST_SUFFIXES,
    SIGNATURE_SUFFIXES,
    SSH_KEY_SUFFIX,
)
from spoolca.stick.medium import Medium, identify, secret_of, start_trip
from spoolca.stick.privatekeys import REASON as PRIVATE_KEY_REASON
from spoolca.stick.privatekeys import holds_private_key

__all__ = ["IngestReport", "ingest_from", "printable", "shorten"]

SKIPS_PER_REASON = 20
SKIPS_LISTED = 100  # skipped files listed by name in the report and the audit log
MAX_SHOWN = 160     # characters of a name (escaped) shown there
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
AMBIGUOUS_NAME = ("its name reads the same as another file's: the stick was mounted with a "
                  "character set that cannot show it (mount with iocharset=utf8)")
NOT_A_REQUEST = "not a request (*.csr, *.pem, *.req, *.der) or a signature (*.asc)"
HIDDEN = "hidden or system file on the stick (Windows does not show it to its owner)"


@dataclass(slots=True)
class IngestReport:
    """What was copied in, and what was not, with why."""

    medium: Medium
    copied: list[dict[str, object]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)  # the first SKIPS_LISTED
    skipped_by_reason: dict[str, int] = field(default_factory=dict)  # every one, counted

    def skip(self, file: str, why: str, detail: str = "") -> None:
        """One file not taken. A hostile stick may hold 100,000: the audit entry and
        memory stay bounded, since only the first SKIPS_LISTED are kept by name."""
        self.skipped_by_reason[why] = self.skipped_by_reason.get(why, 0) + 1
        # A few per reason, so a flood of one kind never hides a rarer, telling one.
        if len(self.skipped) < SKIPS_LISTED and self.skipped_by_reason[why] <= SKIPS_PER_REASON:
            reason = f"{why} ({detail})" if detail else why
            self.skipped.append({"file": shorten(file), "reason": shorten(reason)})

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped_by_reason.values())


@dataclass(frozen=True, slots=True)
class _Candidate:
    """A name on the stick that may be a request: where it is, and how to show it."""

    folder: Folder   # the stick, or one of its profile folders, held by descriptor
    name: str
    profile: str
    shown: str


def _safe(name: str) -> str:
    """A stick's file name, made safe to create: no separators, dots first, control or
    non-ASCII characters (each run becomes `_`); never empty."""
    cleaned = _UNSAFE.sub("_", name).lstrip(".")[:120]
    return cleaned or "request"


def shorten(text: str) -> str:
    return text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN - 1] + "…"


def printable(raw: str) -> str:
    """A name for the report: undecodable bytes as \\xHH, control characters escaped."""
    out = []
    for char in raw:
        code = ord(char)
        if 0xDC80 <= code <= 0xDCFF:  # a byte os.fsdecode could not decode
            out.append(f"\\x{code - 0xDC00:02x}")
        elif not char.isprintable():
            out.append(char.encode("unicode_escape").decode("ascii"))
        else:
            out.append(char)
    return "".join(out)


def _ssh_private(lowered: str) -> bool:
    """The private half of an OpenSSH key pair, by its name: ssh-keygen writes NAME and
    NAME.pub, so in an SSH folder a file with no suffix (or id_*, not .pub) is one."""
    return "." not in lowered or (lowered.startswith("id_") and
                                  not lowered.endswith((SSH_KEY_SUFFIX, ".json")))


def _a_request(lowered: str, profile: str, ssh_profiles: set[str]) -> bool:
    """Whether a file of this (lowercased) name is a request in PROFILE's folder: a CSR,
    a revocation request in revoke/, an SSH key or its request file in an SSH folder."""
    if profile in ssh_profiles:
        return lowered.endswith((SSH_KEY_SUFFIX, ".json"))
    return lowered.endswith(REQUEST_SUFFIXES) or (profile == "revoke"
                                                 and lowered.endswith(".json"))


def _walk(stick: Folder, profiles: set[str], report: IngestReport, results_folder: str,
          max_files: int, opened: list[Folder], ssh_profiles: set[str]) -> list[_Candidate]:
    """Candidate files, two levels deep at most, every folder opened by descriptor (the
    ones it opens go into OPENED, for the caller to close).

    Memory stays bounded whatever the stick holds: names that are not requests are
    counted and dropped as they are met, and at most twice max_files are kept (requests
    and their signatures)."""
    found: list[_Candidate] = []
    # FAT shows 8.3 names in upper case: SERVER/, REVOKE/ are the server and revoke folders.
    folders = {name.lower(): name for name in (*profiles, *ssh_profiles, *NON_PROFILE_FOLDERS)}

    def consider(folder: Folder, name: str, profile: str, shown: Callable[[], str]) -> None:
        lowered = name.lower()
        if holds_private_key(name) or (profile in ssh_profiles and _ssh_private(lowered)):
            report.skip(shown(), PRIVATE_KEY_REASON)
        elif not lowered.endswith(SIGNATURE_SUFFIXES) and not _a_request(lowered, profile,
                                                                         ssh_profiles):
            report.skip(shown(), NOT_A_REQUEST)
        elif len(found) >= 2 * max_files:  # requests and their signatures
            report.skip(shown(), f"more than {max_files} requests on one stick")
        else:
            found.append(_Candidate(folder, name, profile, shown()))

    with os.scandir(stick.fd) as entries:
        listed = list(entries)
    for entry in listed:
        if entry.name.lower() == results_folder.lower() or entry.name.startswith("."):
            continue
        shown = printable(entry.name)
        if not entry.is_dir(follow_symlinks=False):
            consider(stick, entry.name, "", functools.partial(str, shown))
            continue
        profile = folders.get(entry.name.lower())
        if profile is None:
            report.skip(shown + "/", "not a profile folder")
            continue
        try:
            inner = stick.sub(entry.name)  # a link put in its place since: refused here
        except OSError as exc:
            report.skip(shown + "/", "unreadable", exc.strerror or str(exc))
            continue
        opened.append(inner)
        with os.scandir(inner.fd) as inner_entries:
            for item in inner_entries:
                if item.name.startswith("."):
                    continue
                if item.is_dir(follow_symlinks=False):
                    report.skip(f"{shown}/{printable(item.name)}/",
                                "folder too deep (profile/file only)")
                else:
                    consider(inner, item.name, profile,
                             functools.partial(_inner_name, shown, item.name))
    return _unambiguous(found, report)


def _inner_name(folder: str, name: str) -> str:
    """How a file inside a profile folder is shown (made only when it is listed)."""
    return f"{folder}/{printable(name)}"


def _unambiguous(found: list[_Candidate], report: IngestReport) -> list[_Candidate]:
    """Drop names listed twice in one folder. A FAT driver shows a character its
    iocharset cannot represent as `?`, so 日本.csr and 中国.csr both read as ??.csr and
    opening that name gets one of them: neither can be taken as what its owner put there."""
    counts = Counter((c.folder.fd, c.name) for c in found)
    for candidate in found:
        if counts[(candidate.folder.fd, candidate.name)] > 1:
            report.skip(candidate.shown, AMBIGUOUS_NAME)
    return [c for c in found if counts[(c.folder.fd, c.name)] == 1]


def _take(folder: Folder, name: str, limit: int) -> tuple[bytes | None, str | None]:
    """The bytes of a regular file on the stick, or why it is not taken."""
    read = read_untrusted(name, limit, dir_fd=folder.fd)
    if read.problem == "file.not_regular":
        return None, ("a symbolic link (never followed)" if read.detail == "a symbolic link"
                      else "not a regular file")
    if read.problem is None and (read.fat_attributes or 0) & (FAT_HIDDEN | FAT_SYSTEM):
        return None, HIDDEN  # Windows hides it from the very person who put it there
    if read.problem is not None or read.data is None:
        # The reason alone, no size or errno text: skipped files are counted by reason.
        return None, (read.problem or "file.unreadable").split(".")[-1].replace("_", " ")
    return read.data, None


def _companion(folder: Folder, name: str) -> str | None:
    """The name of the detached signature beside a request (x.csr.asc, x.csr.sig)."""
    return next((name + suffix for suffix in COMPANION_SUFFIXES
                 if folder.exists(name + suffix)), None)


class _Placing:
    """Copies into incoming/, written under dot-names (which the daemon never takes),
    made durable together, one syncfs per BATCH of them, and only then given their names:
    a request never appears before its bytes are on disk (a power cut leaves no empty
    CSR to answer), without one fsync per file (2.5 ms each on a loop-mounted ext4). The
    batch keeps the daemon busy while the rest of the stick is read."""

    BATCH = 256

    def __init__(self, incoming: Path) -> None:
        self._incoming = incoming
        self._pending: list[tuple[Path, Path]] = []
        self._names: set[Path] = set()

    def place(self, folder: Path, name: str, data: bytes) -> Path:
        target = folder / name
        temp = folder / f".{name}.part"
        atomic_write(temp, data, durable=False)
        self._pending.append((temp, target))  # in order: a signature before its request
        self._names.add(target)
        return target

    def taken(self, path: Path) -> bool:
        return path in self._names or os.path.lexists(path)

    def full(self) -> bool:
        return len(self._pending) >= self.BATCH

    def flush(self) -> None:
        if not self._pending:
            return
        sync_filesystem([self._incoming])
        for temp, target in self._pending:
            move(temp, target)
        self._pending.clear()
        self._names.clear()


def ingest_from(config: Config, store: Store, source: Path, now: dt.datetime,
                identity: Path | None = None, *, progress: bool = False) -> IngestReport:
    """Copy a stick's requests (each with its detached signature) into incoming/."""
    try:
        stick = Folder.open(source)
    except OSError as exc:
        raise SpoolcaError(f"cannot open the stick's folder {source}: {exc.strerror or exc}"
                           " (a symbolic link is not followed: give the stick's own folder)"
                           ) from None
    opened: list[Folder] = []
    with stick:
        report = IngestReport(start_trip(config, secret_of(stick, identify(source, identity))))
        try:
            candidates = sorted(_walk(stick, set(config.profiles), report,
                                      config.results_folder, config.stick_max_requests,
                                      opened, set(config.ssh_profiles)),
                                key=lambda c: (c.profile, c.name))
            _copy_in(config, candidates, report, progress)
        finally:
            for folder in opened:
                folder.close()
    incoming = config.spool_dir / "incoming"
    sync_filesystem([incoming])
    with store.transaction("media", now) as tx:
        for item in report.copied:
            tx.add_media_file(report.medium.key, str(item["sha256"]), str(item["as"]))
        tx.record("media.ingested", {"medium": report.medium.described(),
                                     "files": report.copied, "skipped": report.skipped,
                                     "skipped_total": report.skipped_total,
                                     "skipped_by_reason": report.skipped_by_reason})
    return report


def _copy_in(config: Config, candidates: list[_Candidate], report: IngestReport,
             progress: bool) -> None:
    incoming = config.spool_dir / "incoming"
    signatures_taken: set[tuple[int, str]] = set()
    ssh_profiles = set(config.ssh_profiles)
    seen: dict[str, str] = {}
    total = 0
    placing = _Placing(incoming)
    with Progress(len(candidates), "ingest", shown=progress) as bar:
        for candidate in candidates:
            bar.advance()
            if placing.full():
                placing.flush()
            folder, name, profile, shown = (candidate.folder, candidate.name,
                                            candidate.profile, candidate.shown)
            lowered = name.lower()
            if lowered.endswith(SIGNATURE_SUFFIXES):
                if (folder.fd, name) not in signatures_taken:
                    report.skip(shown, "a signature whose request was not taken")
                continue
            problem = None
            if not _a_request(lowered, profile, ssh_profiles):
                problem = NOT_A_REQUEST
            elif len(report.copied) >= config.stick_max_requests:
                problem = f"more than {config.stick_max_requests} requests on one stick"
            data, problem = (None, problem) if problem else \
                _take(folder, name, config.max_request_bytes)
            if data is not None and holds_private_key(name, data):
                data, problem = None, PRIVATE_KEY_REASON  # the appliance keeps no copy
            if data is not None:
                digest = hashlib.sha256(data).hexdigest()
                if digest in seen:
                    data, problem = None, "the same content as another file on the stick"
                elif total + len(data) > config.stick_max_mib * 1024**2:
                    data, problem = None, f"more than {config.stick_max_mib} MiB on one stick"
            if data is None:
                report.skip(shown, problem or "unreadable")
                continue
            target_folder = ensure_dir(incoming / profile if profile else incoming, 0o755)
            if read_untrusted(target_folder / _safe(name), len(data)).data == data:
                # The same stick ingested twice before the daemon took it: one request,
                # not a second copy answered again under NAME-2.
                report.skip(shown, "already copied in and waiting to be answered")
                continue
            seen[digest] = shown
            total += len(data)
            safe = _free_name(target_folder, _safe(name), placing.taken).name
            signature = _companion(folder, name)
            if signature is not None:
                signatures_taken.add((folder.fd, signature))
                signed, why = _take(folder, signature, config.max_request_bytes)
                if signed is None:
                    report.skip(f"{shown}{signature[len(name):]}", why or "unreadable")
                else:  # the signature first: the request must never be seen without it
                    placing.place(target_folder, f"{safe}{signature[len(name):]}", signed)
            target = placing.place(target_folder, safe, data)
            report.copied.append({"file": shorten(shown),
                                  "as": str(target.relative_to(incoming)),
                                  "sha256": digest, "size": len(data),
                                  "signed": signature is not None})
    placing.flush()


def _free_name(folder: Path, name: str, taken: Callable[[Path], bool]) -> Path:
    target, counter = folder / name, 1
    while taken(target):
        counter += 1
        stem, dot, suffix = name.partition(".")
        target = folder / f"{stem}-{counter}{dot}{suffix}"
    return target
