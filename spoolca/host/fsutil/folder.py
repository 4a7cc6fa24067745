"""A folder of someone else's (a stick), worked on by descriptor (see Folder)."""

from __future__ import annotations

import ctypes
import os
import stat
from pathlib import Path

from spoolca.host.fsutil.files import _RENAMEAT2, LIBC, PUBLIC_FILE, SHARED_DIR, _write_fd

__all__ = ["Folder"]

_RENAME_EXCHANGE = 2


class Folder:
    """A directory held by descriptor, opened without following a link: every name
    under it is resolved relative to it, one component at a time, never through a link
    (invariant 16). For a stick, whose files and folders are anyone's choice: a link
    there named like our own folder (`spoolca-results -> /var/lib/spoolca`) is removed
    as the link it is; nothing is read or written outside the stick."""

    def __init__(self, fd: int, shown: str) -> None:
        self.fd = fd
        self.shown = shown  # for messages only: never opened again by this name

    @classmethod
    def open(cls, path: Path) -> Folder:
        return cls(os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC),
                   str(path))

    def sub(self, name: str) -> Folder:
        """The folder NAME in this one (OSError ELOOP or ENOTDIR if it is not one)."""
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                     dir_fd=self.fd)
        return Folder(fd, f"{self.shown}/{name}")

    def make_folder(self, name: str, mode: int = SHARED_DIR) -> Folder:
        os.mkdir(name, mode, dir_fd=self.fd)
        return self.sub(name)

    def write(self, name: str, data: bytes, mode: int = PUBLIC_FILE) -> None:
        """A new file NAME here (never over an existing one, never through a link)."""
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     mode, dir_fd=self.fd)
        try:
            _write_fd(fd, data)
        finally:
            os.close(fd)

    def exists(self, name: str) -> bool:
        try:
            os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        return True

    def remove_tree(self, name: str) -> None:
        """NAME and, if it is a folder (not a link to one), all below it."""
        try:
            info = os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return
        if not stat.S_ISDIR(info.st_mode):
            os.unlink(name, dir_fd=self.fd)
            return
        with self.sub(name) as inner, os.scandir(inner.fd) as entries:
            for entry in list(entries):
                inner.remove_tree(entry.name)
        os.rmdir(name, dir_fd=self.fd)

    def replace(self, source: str, target: str) -> None:
        """SOURCE takes TARGET's name, whatever TARGET is (a folder is swapped whole and
        removed after, where the file system can exchange two names; else moved aside)."""
        if self.exists(target):
            if _RENAMEAT2 is not None and _RENAMEAT2(
                    self.fd, os.fsencode(source), self.fd, os.fsencode(target),
                    _RENAME_EXCHANGE) == 0:
                self.remove_tree(source)  # the old one, under the new one's former name
                return
            aside = f".{target}.old"
            self.remove_tree(aside)
            os.rename(target, aside, src_dir_fd=self.fd, dst_dir_fd=self.fd)
            os.rename(source, target, src_dir_fd=self.fd, dst_dir_fd=self.fd)
            self.remove_tree(aside)
            return
        os.rename(source, target, src_dir_fd=self.fd, dst_dir_fd=self.fd)

    def sync(self) -> None:
        """Everything on this folder's file system on stable storage (syncfs), and the
        folder's own entries."""
        if LIBC.syncfs(self.fd) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"syncfs failed on {self.shown}: {os.strerror(err)}")
        os.fsync(self.fd)

    def close(self) -> None:
        os.close(self.fd)

    def __enter__(self) -> Folder:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
