"""One processor per state directory: `process`, the daemon and the key ceremonies that
change a running CA take the same lock, and the second is told who holds it."""

from __future__ import annotations

from spoolca.config import Config
from spoolca.errors import SpoolcaError
from spoolca.host.fsutil import instance_lock, lock_holder
from spoolca.keys.openpgp import keyring_owner, reap_keyrings

__all__ = ["hold_instance_lock"]


def hold_instance_lock(config: Config) -> int:
    """The lock's descriptor (held until the process ends). The holder then reaps the
    signers' keyrings (and their agents) a killed one left."""
    lock = config.path.parent / "spoolca.lock"
    try:
        fd = instance_lock(lock)
    except BlockingIOError:
        holder = lock_holder(lock) or "?"
        raise SpoolcaError(f"another spoolca (pid {holder}) is already processing "
                           f"{config.path.parent}; stop it first (lock {lock})") from None
    reap_keyrings(keyring_owner(config.path.parent))
    return fd
