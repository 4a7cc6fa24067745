"""The sneakernet: requests in from a mounted stick, results back out to it.

Every stick is hostile. Ingest follows no symlink (O_NOFOLLOW), takes regular files only,
caps each file, the total, the count and the depth, makes every name safe (no
traversal, no control or non-UTF-8 bytes), reads each file whole before a copy is
renamed into incoming/ (a stick pulled mid-copy leaves nothing half-written), skips a
second copy of the same content, and lists everything it skipped with the reason.

Export writes, under spoolca-results/ on the stick, the results of the requests that
stick brought, the CA certificates, the CRLs, the audit log and a README.txt; each
result folder and the export as a whole carry SHA256SUMS signed by the appliance's
OpenPGP key, and MANIFEST.json names the audit head it was made with. Everything is
synced before the command returns, so the stick can be pulled at once.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import hashlib
import json
import os
import re
import stat
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from spoolca.config import Config
from spoolca.errors import SpoolcaError
from spoolca.fsutil import atomic_write, ensure_dir, move, remove_tree, sync_filesystem
from spoolca.openpgp import ApplianceKey
from spoolca.progress import Progress
from spoolca.register.store import Store
from spoolca.report.facts import Trip, gather
from spoolca.report.html import render
from spoolca.spool.medium import Medium, current_trip, end_trip, identify, start_trip
from spoolca.spool.tree import NON_PROFILE_FOLDERS, REQUEST_SUFFIXES, SIGNATURE_SUFFIXES, companion
from spoolca.untrusted import FAT_HIDDEN, FAT_SYSTEM, fat_attributes, read_untrusted

__all__ = ["IngestReport", "export_to", "identify", "ingest_from"]

SKIPS_PER_REASON = 20
SKIPS_LISTED = 100  # skipped files listed by name in the report and the audit log
MAX_SHOWN = 160     # characters of a name (escaped) shown there
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


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
            self.skipped.append({"file": _shorten(file), "reason": _shorten(reason)})

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped_by_reason.values())


def _safe(name: str) -> str:
    """A stick's file name, made safe to create: no separators, dots first, control or
    non-ASCII characters (each run becomes `_`); never empty."""
    cleaned = _UNSAFE.sub("_", name).lstrip(".")[:120]
    return cleaned or "request"


def _shorten(text: str) -> str:
    return text if len(text) <= MAX_SHOWN else text[:MAX_SHOWN - 1] + "…"


def _printable(raw: str) -> str:
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


AMBIGUOUS_NAME = ("its name reads the same as another file's: the stick was mounted with a "
                  "character set that cannot show it (mount with iocharset=utf8)")
NOT_A_REQUEST = "not a request (*.csr, *.pem, *.req, *.der) or a signature (*.asc)"
HIDDEN = "hidden or system file on the stick (Windows does not show it to its owner)"


def _walk(source: Path, profiles: set[str], report: IngestReport, results_folder: str,
          max_files: int) -> list[tuple[Path, str, str]]:
    """(path, profile, display name) of candidate files, two levels deep at most.

    Memory stays bounded whatever the stick holds: names that are not requests are
    counted and dropped as they are met, and at most twice max_files are kept (requests
    and their signatures)."""
    found: list[tuple[Path, str, str]] = []
    # FAT shows 8.3 names in upper case: SERVER/, REVOKE/ are the server and revoke folders.
    folders = {name.lower(): name for name in (*profiles, *NON_PROFILE_FOLDERS)}

    def consider(path: Path, profile: str, name: str, shown: Callable[[], str]) -> None:
        lowered = name.lower()
        if not lowered.endswith((*REQUEST_SUFFIXES, *SIGNATURE_SUFFIXES)) and \
                not (profile == "revoke" and lowered.endswith(".json")):
            report.skip(shown(), NOT_A_REQUEST)
        elif len(found) >= 2 * max_files:  # requests and their signatures
            report.skip(shown(), f"more than {max_files} requests on one stick")
        else:
            found.append((path, profile, shown()))

    for entry in os.scandir(source):
        if entry.name.lower() == results_folder.lower() or entry.name.startswith("."):
            continue
        shown = _printable(entry.name)
        if not entry.is_dir(follow_symlinks=False):
            consider(Path(entry.path), "", entry.name, lambda s=shown: s)
            continue
        folder = folders.get(entry.name.lower())
        if folder is None:
            report.skip(shown + "/", "not a profile folder")
            continue
        for inner in os.scandir(entry.path):
            if inner.name.startswith("."):
                continue
            if inner.is_dir(follow_symlinks=False):
                report.skip(f"{shown}/{_printable(inner.name)}/",
                            "folder too deep (profile/file only)")
            else:
                consider(Path(inner.path), folder, inner.name,
                         lambda n=inner.name, s=shown: f"{s}/{_printable(n)}")
    return _unambiguous(found, report)


def _unambiguous(found: list[tuple[Path, str, str]], report: IngestReport
                 ) -> list[tuple[Path, str, str]]:
    """Drop names listed twice in one folder. A FAT driver shows a character its
    iocharset cannot represent as `?`, so 日本.csr and 中国.csr both read as ??.csr and
    opening that name gets one of them: neither can be taken as what its owner put there."""
    counts = Counter(path for path, _, _ in found)
    for path, _, shown in found:
        if counts[path] > 1:
            report.skip(shown, AMBIGUOUS_NAME)
    return [candidate for candidate in found if counts[candidate[0]] == 1]


def _kind(path: Path) -> str | None:
    """Why a path is not taken (symlink, FIFO, device...), or None for a regular file."""
    try:
        mode = os.lstat(path).st_mode
    except OSError as exc:
        return f"unreadable ({exc.strerror})"
    if stat.S_ISLNK(mode):
        return "a symbolic link (never followed)"
    if not stat.S_ISREG(mode):
        return "not a regular file"
    return None


def _take(path: Path, limit: int) -> tuple[bytes | None, str | None]:
    """The bytes of a regular file on the stick, or why it is not taken."""
    problem = _kind(path)
    if problem is not None:
        return None, problem
    read = read_untrusted(path, limit)
    if read.problem is not None or read.data is None:
        # The reason alone, no size or errno text: skipped files are counted by reason.
        return None, (read.problem or "file.unreadable").split(".")[-1].replace("_", " ")
    return read.data, None


def _place(folder: Path, name: str, data: bytes) -> Path:
    """Write under a dot-name, then rename: complete before it appears."""
    target = folder / name
    temp = folder / f".{name}.part"
    atomic_write(temp, data)
    move(temp, target)
    return target


def ingest_from(config: Config, store: Store, source: Path, now: dt.datetime,
                identity: Path | None = None, *, progress: bool = False) -> IngestReport:
    """Copy a stick's requests (each with its detached signature) into incoming/."""
    report = IngestReport(start_trip(config, identify(source, identity)))
    incoming = config.spool_dir / "incoming"
    candidates = sorted(_walk(source, set(config.profiles), report, config.results_folder,
                              config.stick_max_requests),
                        key=lambda c: (c[1], c[0].name))
    signatures_taken: set[str] = set()
    seen: dict[str, str] = {}
    total = 0
    with Progress(len(candidates), "ingest", shown=progress) as bar:
        for path, profile, shown in candidates:
            bar.advance()
            lowered = path.name.lower()
            if lowered.endswith(SIGNATURE_SUFFIXES):
                if str(path) not in signatures_taken:
                    report.skip(shown, "a signature whose request was not taken")
                continue
            problem = None
            if not (lowered.endswith(REQUEST_SUFFIXES) or profile == "revoke"):
                problem = NOT_A_REQUEST
            elif (fat_attributes(path) or 0) & (FAT_HIDDEN | FAT_SYSTEM):
                problem = HIDDEN  # Windows hides it from the very person who put it there
            elif len(report.copied) >= config.stick_max_requests:
                problem = f"more than {config.stick_max_requests} requests on one stick"
            data, problem = (None, problem) if problem else _take(path, config.max_request_bytes)
            if data is not None:
                digest = hashlib.sha256(data).hexdigest()
                if digest in seen:
                    data, problem = None, "the same content as another file on the stick"
                elif total + len(data) > config.stick_max_mib * 1024**2:
                    data, problem = None, f"more than {config.stick_max_mib} MiB on one stick"
            if data is None:
                report.skip(shown, problem or "unreadable")
                continue
            folder = ensure_dir(incoming / profile if profile else incoming, 0o755)
            if read_untrusted(folder / _safe(path.name), len(data)).data == data:
                # The same stick ingested twice before the daemon took it: one request,
                # not a second copy answered again under NAME-2.
                report.skip(shown, "already copied in and waiting to be answered")
                continue
            seen[digest] = shown
            total += len(data)
            name = _free_name(folder, _safe(path.name)).name
            signature = companion(path)
            if signature is not None:
                signatures_taken.add(str(signature))
                signed, why = _take(signature, config.max_request_bytes)
                if signed is None:
                    report.skip(f"{shown}{signature.suffix}", why or "unreadable")
                else:  # the signature first: the request must never be seen without it
                    _place(folder, f"{name}{signature.suffix}", signed)
            target = _place(folder, name, data)
            report.copied.append({"file": _shorten(shown), "as": str(target.relative_to(incoming)),
                                  "sha256": digest, "size": len(data),
                                  "signed": signature is not None})
    sync_filesystem([incoming])
    with store.transaction("media", now) as tx:
        for item in report.copied:
            tx.add_media_file(report.medium.key, str(item["sha256"]), str(item["as"]))
        tx.record("media.ingested", {"medium": {"uuid": report.medium.uuid,
                                                "label": report.medium.label,
                                                "path": report.medium.path},
                                     "files": report.copied, "skipped": report.skipped,
                                     "skipped_total": report.skipped_total,
                                     "skipped_by_reason": report.skipped_by_reason})
    return report


def _free_name(folder: Path, name: str) -> Path:
    target, counter = folder / name, 1
    while os.path.lexists(target):
        counter += 1
        stem, dot, suffix = name.partition(".")
        target = folder / f"{stem}-{counter}{dot}{suffix}"
    return target


def _sums(folder: Path, key: ApplianceKey) -> None:
    """SHA256SUMS of every file below `folder` (sha256sum -c format), and its signature."""
    lines = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        relative = path.relative_to(folder).as_posix()
        if relative in ("SHA256SUMS", "SHA256SUMS.asc"):
            continue
        lines.append(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {relative}\n")
    body = "".join(lines).encode()
    atomic_write(folder / "SHA256SUMS", body)
    atomic_write(folder / "SHA256SUMS.asc", key.sign(body).encode())


def _copy_tree(source: Path, target: Path) -> None:
    ensure_dir(target, 0o755)
    for path in sorted(source.iterdir()):
        if path.is_file() and not path.name.startswith("."):
            atomic_write(target / path.name, path.read_bytes(), durable=False)


def export_to(config: Config, store: Store, key: ApplianceKey, target: Path,
              now: dt.datetime, identity: Path | None = None, *, progress: bool = False
              ) -> tuple[Path, list[str]]:
    """Write this stick's results and the appliance's public state to it; sync it.

    Written whole into a dot-folder first and renamed into place last: a stick that is
    full (or pulled) never shows a partial export, and the previous one stays until the
    new one is complete. A failure is one sentence; the trip stays open for a retry."""
    seen = identify(target, identity)
    medium = current_trip(config, seen)
    outgoing = config.spool_dir / "outgoing"
    names = [n for n in store.outputs_from_medium(medium.key) if (outgoing / n).is_dir()] \
        if medium is not None else []
    root = target / config.results_folder
    staging = target / f".{config.results_folder}.part"
    try:
        remove_tree(staging)
        with Progress(len(names), "export", shown=progress) as bar:
            head_seq = _write_export(config, store, key, staging, names, now, medium or seen,
                                     bar)
        # Every byte on the stick before the name appears: pulled after the rename, the
        # stick holds a whole export, never names whose contents never reached it.
        sync_filesystem([staging])
        remove_tree(root)  # our own folder on the stick: replaced whole each trip
        move(staging, root)
        sync_filesystem([root])
        os.sync()  # the stick's own file system too, whatever syncfs covered
    except OSError as exc:
        with contextlib.suppress(OSError):
            remove_tree(staging)
        fix = {errno.EROFS: "the stick is read-only (its write-protect switch, or mounted "
                            "read-only): make it writable and export again",
               errno.ENOSPC: "free space on it and export again",
               errno.EDQUOT: "free space on it and export again"}.get(
            exc.errno or 0, "check the stick and export again")
        raise SpoolcaError(f"failed to write the results to {target}: "
                           f"{exc.strerror or exc}; the stick holds no partial export (an "
                           f"earlier one, if any, is kept): {fix}") from None
    end_trip(config, seen)
    medium = medium or seen
    with store.transaction("media", now) as tx:
        tx.record("media.exported", {"medium": {"uuid": medium.uuid, "label": medium.label,
                                                "path": medium.path},
                                     "results": names, "audit_head_seq": head_seq})
    return root, names


def _write_export(config: Config, store: Store, key: ApplianceKey, root: Path,
                  names: list[str], now: dt.datetime, medium: Medium, bar: Progress) -> int:
    """The whole export under `root`; returns the audit head it carries."""
    outgoing = config.spool_dir / "outgoing"
    for name in names:
        _copy_tree(outgoing / name, root / "results" / name)
        _sums(root / "results" / name, key)
        bar.advance()
    for folder in ("ca", "crl", "audit", "ceremony"):
        if (outgoing / folder).is_dir():  # ceremony/: from the first ceremony record on
            _copy_tree(outgoing / folder, root / folder)
    head_seq, head_hash = store.audit_head()
    schedule = outgoing / "crl" / "next-update.json"
    due = json.loads(schedule.read_text()) if schedule.exists() else {}
    atomic_write(root / "MANIFEST.json", (json.dumps({
        "made_at": now.strftime("%Y-%m-%dT%H:%M:%SZ"), "results": names,
        "audit_head": {"seq": head_seq, "hash": head_hash},
        "appliance_key": key.fingerprint, "crl": due}, indent=2, sort_keys=True) + "\n").encode())
    atomic_write(root / "README.txt", _readme(names, due, key.fingerprint).encode())
    _write_report(config, store, root, now, Trip({"key": medium.key, "uuid": medium.uuid,
                                                  "label": medium.label, "path": medium.path},
                                                 names), key.fingerprint)
    _sums(root, key)
    return head_seq


def _write_report(config: Config, store: Store, root: Path, now: dt.datetime, trip: Trip,
                  fingerprint: str) -> None:
    """report.json and REPORT.html: what this trip did and when to come back (signed with
    the rest through SHA256SUMS)."""
    facts = gather(config, store, now, trip, fingerprint)
    atomic_write(root / "report.json",
                 (json.dumps(facts, indent=2, sort_keys=True) + "\n").encode(), durable=False)
    atomic_write(root / "REPORT.html", render(facts).encode(), durable=False)


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
