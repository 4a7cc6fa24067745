"""Every write spoolca makes goes through here: explicit modes, temp-then-rename, fsync.

Invariant 3 (atomic outputs): a reader of the spool never sees a half-written file,
because files are written under a temporary name in the same directory and renamed into
place, and a result folder is built whole under a dot-name and renamed in one step.
Invariant 14 (durable before visible): a name appears only once the bytes under it are
on stable storage, also across a power cut: each file is fsynced before its rename, and
a batch of result folders is staged, synced once, then revealed and synced again.
"""

from __future__ import annotations

from spoolca.host.fsutil.files import (
    LIBC,
    PRIVATE_DIR,
    PRIVATE_FILE,
    PUBLIC_FILE,
    SHARED_DIR,
    StagedFolder,
    append_private,
    atomic_write,
    atomic_write_stream,
    ensure_dir,
    fsync_dir,
    move,
    probe_directory,
    remove_empty_dirs,
    remove_file,
    remove_tree,
    reveal,
    stage_folder,
    sync_filesystem,
    write_new,
)
from spoolca.host.fsutil.folder import Folder
from spoolca.host.fsutil.locks import (
    exclusive_lock,
    hold_lock,
    instance_lock,
    lock_holder,
    release_instance_locks,
)

__all__ = [
    "LIBC",
    "PRIVATE_DIR",
    "PRIVATE_FILE",
    "PUBLIC_FILE",
    "SHARED_DIR",
    "Folder",
    "StagedFolder",
    "append_private",
    "atomic_write",
    "atomic_write_stream",
    "ensure_dir",
    "exclusive_lock",
    "fsync_dir",
    "hold_lock",
    "instance_lock",
    "lock_holder",
    "move",
    "probe_directory",
    "release_instance_locks",
    "remove_empty_dirs",
    "remove_file",
    "remove_tree",
    "reveal",
    "stage_folder",
    "sync_filesystem",
    "write_new",
]
