"""A register that went back in time is found before anything is written (invariant 14).

Every batch's checkpoint, `{seq, hash}` of the audit head signed by the appliance key, is
exported to outgoing/audit/ after it commits. The newest exported checkpoint therefore
names an entry this register wrote: if the register ends before it, or holds another
entry there, it lost committed history (a lost ca.db-wal, an older copy of ca.db put
back). Writing to it then would fork the log relying parties and auditors already hold,
and a resubmitted CSR would be signed a second time; so the store refuses to write, and
the operator catches it up (`spoolca catch-up`) or restores.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from spoolca.host.untrusted import loads_bounded

if TYPE_CHECKING:
    from spoolca.register.store import Store

__all__ = ["CHECKPOINT_NAME", "behind_export", "behind_sentence", "latest_exported_checkpoint"]

CHECKPOINT_NAME = re.compile(r"^checkpoint-(\d{10})\.json$")


def latest_exported_checkpoint(folder: Path) -> int:
    """The seq of the newest checkpoint in an exported log (0: none)."""
    try:
        names = [entry.name for entry in os.scandir(folder)]
    except (FileNotFoundError, NotADirectoryError):
        return 0
    return max((int(m.group(1)) for m in map(CHECKPOINT_NAME.match, names) if m), default=0)


def behind_export(store: Store, folder: Path) -> str | None:
    """Why the register is behind the log it exported to FOLDER, or None.

    The signature is not checked here (outgoing/ is the appliance's own): a forged
    checkpoint could only make the CA refuse to sign, never sign more."""
    seq = latest_exported_checkpoint(folder)
    if seq == 0:
        return None
    try:
        point = loads_bounded((folder / f"checkpoint-{seq:010d}.json").read_bytes(),
                              max_bytes=4096, max_depth=2)
        digest = str(point["hash"])
    except (OSError, ValueError, KeyError, TypeError):
        return None  # unreadable: the export is damaged, not the register
    head, _ = store.audit_head()
    if head < seq:
        return (f"the register (ca.db) ends at audit entry {head}, but this appliance "
                f"signed and exported entry {seq} ({folder}): it lost committed history "
                "(a lost ca.db-wal, or an older copy of ca.db)")
    if store.audit_hash(seq) != digest:
        return (f"the register's audit entry {seq} is not the one this appliance signed "
                f"and exported ({folder}): its history was replaced")
    return None


def behind_sentence(problem: str) -> str:
    """The operator's sentence: what was lost, and the two ways back."""
    return (f"{problem}. Nothing is signed or recorded until it is caught up: stop the "
            "service, then `spoolca catch-up` folds back what outgoing/ holds (recorded), "
            "or restore a backup with `spoolca restore ARCHIVE --dir NEW --catch-up DIR`")
