"""A recording block device: every write and flush a file system makes, in order.

dm-log-writes is not in this machine's kernel, and User-Mode Linux does not run on every
CI host; FUSE and loop devices are everywhere root is. So: a FUSE file system of one file,
`disk.img`, served here over /dev/fuse (the kernel protocol spoken directly, nothing to
install), backed by an image file; a loop device on it; ext4 on the loop device. The
loop driver writes through to us and turns each flush of the block layer (a journal
commit, an fsync) into an fsync of the file: every write arrives in order, and every
barrier too. `Recording.writes` is the log; `crash_state` rebuilds the device as a power
cut at any point of it would have left it (a prefix of the writes; a real disk may keep
any subset of those since the last barrier, and `crash_state` can drop some of them).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import random
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Recording", "crash_state", "recording"]

_LIBC = ctypes.CDLL(None, use_errno=True)
_IN_HEADER = struct.Struct("<IIQQIIII")   # len opcode unique nodeid uid gid pid padding
_OUT_HEADER = struct.Struct("<IiQ")        # len error unique
_ATTR = struct.Struct("<QQQQQQIIIIIIIIII")  # fuse_attr (88 bytes)
_LOOKUP, _FORGET, _GETATTR, _SETATTR = 1, 2, 3, 4
_OPEN, _READ, _WRITE, _STATFS, _RELEASE, _FSYNC = 14, 15, 16, 17, 18, 20
_FLUSH, _INIT, _OPENDIR, _READDIR, _RELEASEDIR = 25, 26, 27, 28, 29
_ACCESS, _DESTROY, _BATCH_FORGET = 34, 38, 42
_ROOT, _FILE = 1, 2
_FOPEN_DIRECT_IO = 1
_NAME = b"disk.img"


@dataclass
class Recording:
    """The log: ("w", offset, bytes) for a write, ("f",) for a barrier (fsync), and
    ("m", label) for a mark the test set between steps of its workload."""

    entries: list[tuple] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def mark(self, label: str) -> int:
        with self.lock:
            self.entries.append(("m", label))
            return len(self.entries)

    def index_of(self, label: str) -> int:
        return next(i for i, e in enumerate(self.entries) if e == ("m", label))


class _Server:
    """One FUSE session serving one regular file of a fixed size, write-through."""

    def __init__(self, backing: Path, mountpoint: Path, log: Recording) -> None:
        self.backing = os.open(backing, os.O_RDWR)
        self.size = os.fstat(self.backing).st_size
        self.log = log
        self.fuse = os.open("/dev/fuse", os.O_RDWR)
        options = f"fd={self.fuse},rootmode=40000,user_id=0,group_id=0,allow_other"
        if _LIBC.mount(b"spoolca-blocklog", os.fsencode(mountpoint), b"fuse", 6,
                       options.encode()) != 0:  # MS_NOSUID | MS_NODEV
            err = ctypes.get_errno()
            raise OSError(err, f"mounting FUSE on {mountpoint}: {os.strerror(err)}")
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                request = os.read(self.fuse, 1 << 20 | 4096)
            except OSError as exc:
                if exc.errno in (errno.ENODEV, errno.EBADF):
                    return  # unmounted
                if exc.errno in (errno.EINTR, errno.ENOENT):
                    continue
                raise
            length, opcode, unique, node, *_rest = _IN_HEADER.unpack_from(request)
            body = request[_IN_HEADER.size:length]
            if opcode in (_FORGET, _BATCH_FORGET):
                continue  # no reply
            error, payload = self._answer(opcode, node, body)
            reply = _OUT_HEADER.pack(_OUT_HEADER.size + len(payload), -error, unique)
            with contextlib.suppress(OSError):  # an interrupted request is gone
                os.write(self.fuse, reply + payload)
            if opcode == _DESTROY:
                return

    def _attr(self, node: int) -> bytes:
        if node == _ROOT:
            return _ATTR.pack(_ROOT, 0, 0, 0, 0, 0, 0, 0, 0, 0o040755, 2, 0, 0, 0, 4096, 0)
        blocks = (self.size + 511) // 512
        return _ATTR.pack(_FILE, self.size, blocks, 0, 0, 0, 0, 0, 0, 0o100600, 1, 0, 0, 0,
                          4096, 0)

    def _answer(self, opcode: int, node: int, body: bytes) -> tuple[int, bytes]:
        if opcode == _INIT:
            _major, minor = struct.unpack_from("<II", body)
            return 0, struct.pack("<IIIIHHIIHHI7I", 7, min(minor, 31), 1 << 17, 0, 16, 12,
                                  1 << 17, 1, 32, 0, 0, *([0] * 7))
        if opcode == _LOOKUP:
            if body.rstrip(b"\0") != _NAME:
                return errno.ENOENT, b""
            return 0, struct.pack("<QQQQII", _FILE, 1, 3600, 3600, 0, 0) + self._attr(_FILE)
        if opcode in (_GETATTR, _SETATTR):
            return 0, struct.pack("<QII", 3600, 0, 0) + self._attr(node)
        if opcode in (_OPEN, _OPENDIR):
            return 0, struct.pack("<QII", 1, _FOPEN_DIRECT_IO if node == _FILE else 0, 0)
        if opcode == _READ:
            _fh, offset, size = struct.unpack_from("<QQI", body)
            return 0, os.pread(self.backing, size, offset)
        if opcode == _WRITE:
            _fh, offset, size = struct.unpack_from("<QQI", body)
            data = body[40:40 + size]
            os.pwrite(self.backing, data, offset)
            with self.log.lock:
                self.log.entries.append(("w", offset, data))
            return 0, struct.pack("<II", size, 0)
        if opcode == _FSYNC:
            with self.log.lock:
                self.log.entries.append(("f",))
            return 0, b""
        if opcode == _STATFS:
            return 0, struct.pack("<QQQQQIIII6I", 1 << 20, 0, 0, 2, 0, 4096, 255, 4096, 0,
                                  *([0] * 6))
        if opcode == _READDIR:
            return 0, b""
        if opcode in (_FLUSH, _RELEASE, _RELEASEDIR, _ACCESS, _DESTROY):
            return 0, b""
        return errno.ENOSYS, b""

    def close(self, mountpoint: Path) -> None:
        subprocess.run(["umount", str(mountpoint)], check=False, capture_output=True)
        self.thread.join(timeout=10)
        os.close(self.fuse)
        os.close(self.backing)


def _run(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True,
                          timeout=120).stdout.strip()


@contextlib.contextmanager
def recording(folder: Path, size_mib: int = 96) -> Iterator[tuple[Path, Recording, Path]]:
    """A fresh ext4 on a recorded loop device, mounted; yields (mountpoint, the log,
    the image it started from). The log starts after mkfs."""
    image, base = folder / "disk.img", folder / "base.img"
    with image.open("wb") as handle:
        handle.truncate(size_mib << 20)
    _run("mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", str(image))
    base.write_bytes(image.read_bytes())
    fuse_dir, mountpoint = folder / "fuse", folder / "mnt"
    fuse_dir.mkdir()
    mountpoint.mkdir()
    log = Recording()
    server = _Server(image, fuse_dir, log)
    loop = None
    try:
        loop = _run("losetup", "--find", "--show", str(fuse_dir / "disk.img"))
        _run("mount", "-t", "ext4", loop, str(mountpoint))
        try:
            yield mountpoint, log, base
        finally:
            _unmount(mountpoint)
    finally:
        if loop:
            subprocess.run(["losetup", "-d", loop], check=False, capture_output=True)
        server.close(fuse_dir)


def _unmount(mountpoint: Path) -> None:
    """umount, waiting (with a deadline) for a process that is exiting to let go."""
    deadline = time.monotonic() + 30
    while subprocess.run(["umount", str(mountpoint)], capture_output=True).returncode:
        if time.monotonic() > deadline:
            raise AssertionError(f"{mountpoint} is still busy after 30 s")
        time.sleep(0.05)


def crash_state(base: Path, log: Recording, upto: int, target: Path,
                drop: random.Random | None = None) -> None:
    """TARGET: the device as a power cut after the first UPTO log entries left it. With
    DROP, each write since the last barrier before UPTO is lost with even chance (a disk
    cache keeps any subset of what was not flushed)."""
    last_barrier = max((i for i, e in enumerate(log.entries[:upto]) if e[0] == "f"),
                       default=-1)
    target.write_bytes(base.read_bytes())
    fd = os.open(target, os.O_WRONLY)
    try:
        for index, entry in enumerate(log.entries[:upto]):
            if entry[0] != "w":
                continue
            if drop is not None and index > last_barrier and drop.random() < 0.5:
                continue
            os.pwrite(fd, entry[2], entry[1])
    finally:
        os.close(fd)
