"""Keeping secrets out of core dumps (invariant 13).

Every command that unlocks a key calls `no_core_dumps()` before it reads the passphrase
or a key: RLIMIT_CORE 0 (no core file, systemd-coredump included, which honours it) and
PR_SET_DUMPABLE 0 (no core either way, and another process of the same user can neither
ptrace us nor read /proc/PID/mem). Both units also set LimitCORE=0.

What Python cannot promise: a `str` or `bytes` is immutable and may be copied by the
interpreter, and freed memory is not wiped. So secrets are held as `bytearray` where we
keep them, zeroed when done, and turned into `str` only for the call that needs one
(python-gnupg); the key material inside OpenSSL is its own to manage. Non-dumpable is the
guarantee; zeroing is best effort.
"""

from __future__ import annotations

import ctypes
import resource

from spoolca.host.fsutil import LIBC

__all__ = ["is_dumpable", "no_core_dumps", "wipe"]

_PR_SET_DUMPABLE = 4
_PR_GET_DUMPABLE = 3


def no_core_dumps() -> None:
    """No core file and no same-user debugger for the rest of this process's life."""
    # Under the unit, LimitCORE=0 has done it, and setrlimit is filtered (@resources).
    if resource.getrlimit(resource.RLIMIT_CORE) != (0, 0):
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if LIBC.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_DUMPABLE, 0) failed")


def is_dumpable() -> bool:
    return bool(LIBC.prctl(_PR_GET_DUMPABLE, 0, 0, 0, 0))


def wipe(secret: bytearray | None) -> None:
    """Overwrite a secret we hold, in place (best effort: see the module's docstring)."""
    if secret is not None:
        secret[:] = bytes(len(secret))
