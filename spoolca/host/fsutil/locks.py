"""Locks: one processor per state directory, exports that take turns, shared agents."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from spoolca.host.fsutil.files import PRIVATE_FILE

__all__ = ["exclusive_lock", "hold_lock", "instance_lock", "lock_holder"]


@contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive flock on `path`: a lock file (created 0600), or a folder itself
    (no file appears in it); never through a symlink."""
    flags = os.O_RDONLY | os.O_DIRECTORY if path.is_dir() else os.O_RDWR | os.O_CREAT
    fd = os.open(path, flags | os.O_NOFOLLOW, PRIVATE_FILE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def hold_lock(path: Path, *, shared: bool = False) -> int:
    """An flock on `path` (created 0600, never through a symlink) until the returned fd
    is closed. Exclusive: at once, or BlockingIOError; shared: waits for an exclusive."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, PRIVATE_FILE)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise
    return fd


_INSTANCE_LOCKS: list[int] = []  # held for the process's life (release_instance_locks)


def instance_lock(path: Path) -> int:
    """Hold an exclusive lock on `path` for the life of the process; return its fd.

    One processor per state directory: two would race on work/ and the register.
    Raises BlockingIOError if another process holds it."""
    fd = hold_lock(path)
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    _INSTANCE_LOCKS.append(fd)
    return fd


def release_instance_locks() -> None:
    """Let go of every instance lock this process holds: for a process that runs one
    command after another in itself (the test suite's in-process command line), where
    "until the process ends" would be too long."""
    while _INSTANCE_LOCKS:
        os.close(_INSTANCE_LOCKS.pop())


def lock_holder(path: Path) -> int | None:
    """The pid written in an instance lock (see instance_lock) if a process holds it."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        text = os.read(fd, 32).decode(errors="replace").strip()
        return int(text) if text.isdigit() else None
    finally:
        os.close(fd)
    return None
