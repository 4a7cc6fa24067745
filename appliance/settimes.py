"""Set every in-use inode's access, change and creation times in an ext4 image to one
epoch (appliance/build): mke2fs -d copies them from the extracted tree, where the kernel
stamped them with the extraction's own time, so two builds would differ in those bytes.

    python3 appliance/settimes.py IMAGE EPOCH

mke2fs -d allocates inodes in order from the first non-reserved one, so the in-use
inodes are the root (2) and 11 up to the count of inodes in use; the script checks that
the next one is free before it writes anything.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys


def _debugfs(image: str, *requests: str, write: bool = False, epoch: int | None = None) -> str:
    args = ["debugfs", *(["-w"] if write else []), "-f", "-", image]
    # debugfs stamps the superblock's write time as it closes: the epoch, not now.
    env = {**os.environ, "E2FSPROGS_FAKE_TIME": str(epoch)} if epoch is not None else None
    done = subprocess.run(args, input="\n".join(requests) + "\n", capture_output=True,
                          text=True, check=True, env=env)
    return done.stdout + done.stderr


def main(image: str, epoch: int) -> None:
    header = subprocess.run(["dumpe2fs", "-h", image], capture_output=True, text=True,
                            check=True).stdout
    count = int(re.search(r"^Inode count:\s+(\d+)", header, re.M).group(1))
    free = int(re.search(r"^Free inodes:\s+(\d+)", header, re.M).group(1))
    used = count - free
    probe = _debugfs(image, f"testi <{used}>", f"testi <{used + 1}>")
    in_order = f"Inode {used} is marked in use" in probe and \
        f"Inode {used + 1} is not in use" in probe
    if not in_order:
        sys.exit(f"settimes: inodes of {image} are not allocated in order: {probe!r}")
    stamp = f"@{epoch}"
    requests = []
    for inode in (2, *range(11, used + 1)):
        for field in ("atime", "ctime", "crtime"):
            requests += [f"sif <{inode}> {field} {stamp}", f"sif <{inode}> {field}_extra 0"]
    _debugfs(image, *requests, write=True, epoch=epoch)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
