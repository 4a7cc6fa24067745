"""Files and folders of our own: explicit modes, temp-then-rename, fsync (see the package)."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import secrets
import stat
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

__all__ = ["LIBC", "PRIVATE_DIR", "PRIVATE_FILE", "PUBLIC_FILE", "SHARED_DIR", "StagedFolder",
           "append_private", "atomic_write", "atomic_write_stream", "ensure_dir", "fsync_dir",
           "move", "probe_directory", "remove_empty_dirs", "remove_file", "remove_tree",
           "reveal", "stage_folder", "sync_filesystem", "write_new"]

PRIVATE_FILE = 0o600
PUBLIC_FILE = 0o644
PRIVATE_DIR = 0o700
SHARED_DIR = 0o755


def ensure_dir(path: Path, mode: int = PRIVATE_DIR) -> Path:
    """Create `path` (and parents) if missing, with exactly `mode` whatever the umask
    (the service runs with UMask=0077); an existing directory keeps its mode."""
    try:
        path.mkdir(mode=mode)
    except FileExistsError:
        return path
    except FileNotFoundError:
        ensure_dir(path.parent, mode)
        return ensure_dir(path, mode)
    os.chmod(path, mode)
    return path


def fsync_dir(path: Path) -> None:
    """Make a rename or create inside `path` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_fd(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def write_new(path: Path, data: bytes, mode: int = PRIVATE_FILE) -> None:
    """Create a file that must not exist yet (O_EXCL), with `mode`, and fsync it.

    Used for keys: never overwrite, never follow a planted symlink.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        os.fchmod(fd, mode)  # the umask must not widen or narrow what we asked for
        _write_fd(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    fsync_dir(path.parent)


def append_private(path: Path, data: bytes) -> None:
    """Append to a file only this user may read (0600), never through a symlink.

    For diagnostics in a shared directory such as /tmp: a file planted by another user
    is refused rather than written to."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, PRIVATE_FILE)
    try:
        info = os.fstat(fd)
        if info.st_uid != os.geteuid() or not stat.S_ISREG(info.st_mode):
            raise PermissionError(f"{path} belongs to another user")
        os.fchmod(fd, PRIVATE_FILE)
        _write_fd(fd, data)
    finally:
        os.close(fd)


def _temp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")


def atomic_write(path: Path, data: bytes, mode: int = PUBLIC_FILE, *, durable: bool = True) -> None:
    """Replace `path` with `data` atomically: temp file, (fsync), rename, (fsync dir).

    With durable=False the caller promises a `sync_filesystem` before relying on it.
    """
    _replace(path, mode, durable, lambda fd: _write_fd(fd, data))


def atomic_write_stream(path: Path, fill: Callable[[BinaryIO], None],
                        mode: int = PRIVATE_FILE) -> None:
    """atomic_write for what does not fit in memory (a backup archive, a restored
    register): `fill` writes into the temp file; fsynced, renamed, the folder fsynced."""
    def write(fd: int) -> None:
        with os.fdopen(fd, "wb", closefd=False) as handle:
            fill(handle)

    _replace(path, mode, True, write)


def _replace(path: Path, mode: int, durable: bool, write: Callable[[int], None]) -> None:
    temp = _temp_name(path)
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        os.fchmod(fd, mode)
        write(fd)
        if durable:
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        temp.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.replace(temp, path)
    if durable:
        fsync_dir(path.parent)


@dataclass(frozen=True, slots=True)
class StagedFolder:
    """A result folder's files written under temporary names: on disk, not yet visible.

    `temp` is a whole new folder under a dot-name; `replaced` the (temporary, final) file
    pairs of a folder that exists already (a re-publication)."""

    folder: Path
    temp: Path | None
    replaced: tuple[tuple[Path, Path], ...] = ()


def stage_folder(folder: Path, files: Mapping[str, bytes], mode: int = PUBLIC_FILE, *,
                 links: Mapping[str, Path] | None = None) -> StagedFolder:
    """Write what `folder` is to hold, under temporary names; `reveal` shows it.

    Durability is the caller's, batched: one `sync_filesystem` between staging and
    revealing makes every byte durable before any name appears (invariant 14: a rename
    committed by someone else's fsync, say SQLite's, must never publish files whose data
    never reached the disk). `links` names files that are hard links to shared, never-
    modified files (saving an inode each; copied where the file system cannot link)."""
    links = links or {}
    if not os.path.lexists(folder):
        temp = folder.with_name(f".{folder.name}.{secrets.token_hex(6)}.tmp")
        os.mkdir(temp, SHARED_DIR)
        try:
            os.chmod(temp, SHARED_DIR)  # exact modes whatever the umask (UMask=0077)
            for name, data in files.items():
                _create(temp / name, data, mode)
            for name, source in links.items():
                _link_or_copy(source, temp / name, mode)
        except BaseException:
            remove_tree(temp)
            raise
        return StagedFolder(folder, temp)
    pairs = []
    try:
        for name, data in [*files.items(),
                           *((name, source.read_bytes()) for name, source in links.items())]:
            pairs.append((_temp_name(folder / name), folder / name))
            _create(pairs[-1][0], data, mode)
    except BaseException:
        for temp_file, _ in pairs:
            remove_file(temp_file)
        raise
    return StagedFolder(folder, None, tuple(pairs))


def reveal(staged: StagedFolder) -> None:
    """Give staged files their names: a new folder appears whole, in one rename; a
    re-published one has each file replaced. The renames are durable at the caller's
    next `sync_filesystem`."""
    if staged.temp is None:
        for temp_file, final in staged.replaced:
            os.replace(temp_file, final)
        return
    try:
        os.rename(staged.temp, staged.folder)  # fails if it appeared meanwhile, not empty
    except OSError as exc:
        if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR):
            raise
        remove_tree(staged.temp)  # the same result, published by someone else meanwhile


def _create(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    try:
        os.fchmod(fd, mode)
        _write_fd(fd, data)
    finally:
        os.close(fd)


def _link_or_copy(source: Path, target: Path, mode: int) -> None:
    try:
        os.link(source, target, follow_symlinks=False)
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EXDEV, errno.EMLINK, errno.ENOTSUP):
            raise
        _create(target, source.read_bytes(), mode)


# The C library the interpreter is linked with, by dlopen(NULL): find_library would run
# ldconfig, a few milliseconds of every command's start.
LIBC = ctypes.CDLL(None, use_errno=True)
_AT_FDCWD = -100
_RENAME_NOREPLACE = 1
_RENAMEAT2 = getattr(LIBC, "renameat2", None)  # glibc 2.28 and later


def move(source: Path, target: Path) -> None:
    """Rename within one file system: atomic, and never over an existing file.

    Every move of a spool file (claim, archive, placing a copied request) goes through
    here; a symlink is moved as itself, never followed. One renameat2(RENAME_NOREPLACE):
    the kernel refuses an existing target in the same step as the rename, where a check
    before rename(2) left a window for a file to appear. A file system or C library
    without it (EINVAL, ENOSYS) gets the check, then the rename."""
    if _RENAMEAT2 is not None:
        if _RENAMEAT2(_AT_FDCWD, os.fsencode(source), _AT_FDCWD, os.fsencode(target),
                      _RENAME_NOREPLACE) == 0:
            return
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOSYS):
            raise OSError(err, os.strerror(err), str(source), None, str(target))
    if os.path.lexists(target):
        raise FileExistsError(errno.EEXIST, "refusing to move over an existing file",
                              str(target))
    os.rename(source, target)


def probe_directory(folder: Path, size: int = 1 << 16) -> None:
    """Write SIZE bytes into FOLDER, sync and remove them: OSError (ENOSPC, EROFS) if it
    does not take a write now."""
    probe = _temp_name(folder / "write-probe")
    fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, PRIVATE_FILE)
    try:
        _write_fd(fd, b"\0" * size)
        os.fsync(fd)
    finally:
        os.close(fd)
        remove_file(probe)


def remove_file(path: Path) -> None:
    """Remove one file of our own (never a directory), if it is there."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def remove_empty_dirs(paths: Iterable[Path]) -> None:
    """rmdir each folder that is empty now (deepest first); others are left alone."""
    for path in sorted(set(paths), key=lambda p: len(p.parts), reverse=True):
        try:
            os.rmdir(path)
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOENT):
                raise


def remove_tree(path: Path) -> None:
    """Remove a temporary tree of our own making, never following symlinks."""
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(path):
            if entry.is_dir(follow_symlinks=False):
                remove_tree(Path(entry.path))
            else:
                os.unlink(entry.path)
        os.rmdir(path)


def sync_filesystem(paths: Iterable[Path]) -> None:
    """One durability barrier for a whole batch: syncfs(2) each distinct file system.

    syncfs writes back every dirty page and inode of the file system and, since Linux
    5.8, reports write-back errors; it replaces thousands of per-file fsyncs.
    """
    seen: set[int] = set()
    for path in paths:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            device = os.fstat(fd).st_dev
            if device in seen:
                continue
            seen.add(device)
            if LIBC.syncfs(fd) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"syncfs failed on {path}: {os.strerror(err)}")
        finally:
            os.close(fd)
