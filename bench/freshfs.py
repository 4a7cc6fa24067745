"""A fresh ext4 of its own for each side of a bench (issue 32): a loop-mounted image made
for the run, as an appliance's own disk, so that neither side inherits the file-creation
speed of what the machine did before (ext4's allocator slows after many deletions) nor
the other side's leftovers. Needs root (mount); `available()` says whether it can."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["available", "fresh_fs"]


def available() -> str | None:
    """None if fresh file systems can be made here, else why not."""
    if os.geteuid() != 0:
        return "mounting a loop device needs root"
    for tool in ("mkfs.ext4", "mount", "umount"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    return None


@contextlib.contextmanager
def fresh_fs(files: int, megabytes: int = 256) -> Iterator[Path]:
    """A new, empty ext4 mounted for the block, with room for about FILES files; its
    image lives in the temp folder (each side of a comparison the same) and is gone
    afterwards."""
    size = megabytes + files // 8  # 128 KiB a file: certificates, results, the register
    image_dir = Path(tempfile.mkdtemp(prefix="spoolca-fs-"))
    image, mount = image_dir / "disk.img", image_dir / "mnt"
    mount.mkdir()
    try:
        with image.open("wb") as handle:
            handle.truncate(size << 20)
        subprocess.run(["mkfs.ext4", "-q", "-F", "-N", str(max(files * 12, 65536)),
                        "-E", "lazy_itable_init=0,lazy_journal_init=0", str(image)],
                       check=True, capture_output=True)
        subprocess.run(["mount", "-o", "loop", str(image), str(mount)], check=True,
                       capture_output=True)
        try:
            yield mount
        finally:
            subprocess.run(["umount", str(mount)], check=False, capture_output=True)
    finally:
        shutil.rmtree(image_dir, ignore_errors=True)
