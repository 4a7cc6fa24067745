"""A register file SQLite finds damaged: told apart from a bug or a passing fault.

A failing disk or a bad copy makes SQLite report SQLITE_CORRUPT or SQLITE_NOTADB. Retrying
cannot help and writing on would spread the damage, so the command and the daemon stop
with the operator's sentence (exit 3; the unit does not restart on it) instead.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from spoolca.errors import RegisterDamagedError

__all__ = ["damaged"]

_DAMAGE = ("SQLITE_CORRUPT", "SQLITE_NOTADB")


def damaged(exc: BaseException, path: Path | str = "ca.db") -> RegisterDamagedError | None:
    """The operator's sentence if EXC is SQLite finding the register's file damaged (a
    failing disk or a bad copy), else None: a bug, or a passing fault, is not that."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    if not isinstance(exc, sqlite3.DatabaseError) or not name.startswith(_DAMAGE):
        return None
    return RegisterDamagedError(
        f"the register {path} is damaged ({exc}): stop the service and restore the latest "
        "backup into a new directory (spoolca restore ARCHIVE --dir NEW --fingerprint F "
        "--catch-up DIR, DIR a stick's export or a copy of spool/outgoing/ made since); "
        "nothing more was written to it")
