"""Untrusted input, read and parsed with bounds: files from a spool or a stick, and JSON.

A submitted file is read without following a link, without blocking on a FIFO, and no
further than a limit, its type checked on the descriptor it was read from. JSON is
parsed in linear time: json.loads recurses once per nesting level, so a 50,000-deep
`[[[...` raises RecursionError (and costs stack), and its size is the attacker's choice;
the depth is measured first, in one linear pass, and both are bounded before parsing.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import stat
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path
from typing import Any

__all__ = ["FAT_HIDDEN", "FAT_SYSTEM", "UntrustedFile", "UntrustedJSONError", "being_written",
           "json_depth", "loads_bounded", "read_untrusted"]


# A string, or an unterminated one to the end: every attempt consumes what it reads
# (possessive, so no backtracking), which keeps a hostile line of quotes linear.
_STRING = re.compile(rb'"(?:[^"\\]++|\\.?)*+(?:"|\Z)', re.DOTALL)
_NOT_BRACKETS = bytes(byte for byte in range(256) if byte not in b"[]{}")
_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


class UntrustedJSONError(ValueError):
    """The bytes are not JSON within the bounds given."""


def json_depth(data: bytes) -> int:
    """The deepest nesting of arrays and objects in `data`, in linear time.

    Strings are cut out by a regular expression that cannot backtrack (possessive
    quantifiers), an unterminated one to the end; what is left is bracket counting.
    The work is in C but for one step per bracket: a byte-by-byte loop in Python took 51 us
    for each line of the audit log, three quarters of `audit verify`."""
    brackets = _STRING.sub(b"", data).translate(None, _NOT_BRACKETS)
    if not brackets:
        return 0
    return max(0, max(accumulate(_STEP[byte] for byte in brackets)))


def loads_bounded(data: bytes, *, max_bytes: int, max_depth: int) -> Any:
    """json.loads, after checking size and depth; UntrustedJSONError (a ValueError) if
    the bytes are too large, too deep, or not JSON."""
    if len(data) > max_bytes:
        raise UntrustedJSONError(f"{len(data)} bytes, more than {max_bytes}")
    # No deeper than it has opening brackets: most lines are told at once, in C.
    if data.count(b"[") + data.count(b"{") > max_depth and json_depth(data) > max_depth:
        raise UntrustedJSONError(f"nested deeper than {max_depth} levels")
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise UntrustedJSONError(str(exc).split("\n")[0][:200]) from None


@dataclass(frozen=True, slots=True)
class UntrustedFile:
    """What could be read of a submitted file without trusting it."""

    data: bytes | None  # None when not read (not regular, too large, unreadable)
    size: int
    problem: str | None  # a finding code from spoolca.findings, or None
    detail: str = ""
    fat_attributes: int | None = None  # read by descriptor from a stick: hidden, system


def _file_kind(mode: int) -> str:
    kinds = {stat.S_ISLNK: "a symbolic link", stat.S_ISDIR: "a directory",
             stat.S_ISFIFO: "a FIFO", stat.S_ISSOCK: "a socket",
             stat.S_ISCHR: "a character device", stat.S_ISBLK: "a block device"}
    return next((name for test, name in kinds.items() if test(mode)), "not a regular file")


def read_untrusted(path: str | Path, limit: int, *, dir_fd: int | None = None
                   ) -> UntrustedFile:
    """Read a file from an untrusted spool or stick: no symlink followed, no FIFO blocked
    on, nothing but a regular file ever opened.

    lstat first (a device node or FIFO is refused before any open: opening a tape drive
    rewinds it), then O_NOFOLLOW refuses a symlink, O_NONBLOCK keeps a FIFO from hanging
    the daemon, and the type is checked again on the opened descriptor (fstat), so a
    swap between check and open cannot fool it. At most `limit` bytes are read. DIR_FD:
    PATH is a name in that folder (a stick's, opened by descriptor: see fsutil.Folder);
    the FAT attributes are then read on the same descriptor."""
    try:
        info = os.stat(path, dir_fd=dir_fd, follow_symlinks=False)
    except OSError as exc:
        return UntrustedFile(None, 0, "file.unreadable", exc.strerror or str(exc))
    if not stat.S_ISREG(info.st_mode):
        return UntrustedFile(None, 0, "file.not_regular", _file_kind(info.st_mode))
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY
                     | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return UntrustedFile(None, 0, "file.not_regular", "a symbolic link")
        return UntrustedFile(None, 0, "file.unreadable", exc.strerror or str(exc))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            return UntrustedFile(None, 0, "file.not_regular", _file_kind(info.st_mode))
        attributes = _fat_attributes_of(fd) if dir_fd is not None else None
        if info.st_size > limit:
            return UntrustedFile(None, info.st_size, "file.too_large", f"{info.st_size} bytes",
                                 attributes)
        chunks = []
        remaining = limit + 1
        while remaining > 0:
            chunk = os.read(fd, remaining)
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
    except OSError as exc:
        return UntrustedFile(None, 0, "file.unreadable", exc.strerror or str(exc))
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > limit:
        return UntrustedFile(None, len(data), "file.too_large", f"over {limit} bytes",
                             attributes)
    if not data:
        return UntrustedFile(None, 0, "file.empty", "0 bytes", attributes)
    return UntrustedFile(data, len(data), None, "", attributes)


# linux/msdos_fs.h: FAT_IOCTL_GET_ATTRIBUTES = _IOR('r', 0x10, __u32)
_FAT_IOCTL_GET_ATTRIBUTES = 0x80047210
FAT_HIDDEN, FAT_SYSTEM = 0x02, 0x04


def _fat_attributes_of(fd: int) -> int | None:
    """An open file's FAT attribute byte (hidden, system, ...) on a vfat mount, else None."""
    try:
        buffer = bytearray(4)
        fcntl.ioctl(fd, _FAT_IOCTL_GET_ATTRIBUTES, buffer)
        return int.from_bytes(buffer, "little")
    except OSError:  # ENOTTY: not a FAT file system
        return None


def being_written(path: Path) -> bool | None:
    """Whether any process has `path` open for writing; None if that cannot be told.

    A read lease (fcntl F_SETLEASE, F_RDLCK) is refused with EAGAIN exactly while the
    file is open for writing somewhere, which is what "the producer closed it" means.
    It needs the file to be ours (or CAP_LEASE) and regular: otherwise None, and the
    caller falls back to waiting for size and mtime to settle. The lease is dropped at
    once; the daemon ignores SIGIO, so a writer opening in that instant cannot kill it.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_NOCTTY)
    except OSError:
        return None
    try:
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_RDLCK)
    except OSError as exc:
        return True if exc.errno == errno.EAGAIN else None
    else:
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_UNLCK)
        return False
    finally:
        os.close(fd)
