"""A backup made and a restore done, as the register records them.

`backup.made` names the archive and the head it holds, so an auditor can tie a file on
the shelf to the log; `backup.restored` says where the restored register came from and
that the CRL numbers restart from a floor: numbers given after the backup are not in it,
so the next CRL is numbered from its own time (register.tx.next_crl_number), above any
number given one by one since, and every CA's CRL is due at once.

The floor is not taken from the clock at restore: restore runs before the clock guard
can be asked (the restored register's floor is the backup's, and a restore weeks later
always looks ahead), and one restore under a clock far ahead would number every later
CRL below its own. The first CRL is made under the guard, by the CA session.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path
from typing import Any

from spoolca.backup.archive import Manifest
from spoolca.register.store import Store
from spoolca.register.tx import FLOOR_AT_NEXT_CRL

__all__ = ["record_backup", "record_restore"]


def record_backup(store: Store, destination: Path, manifest: Manifest,
                  moment: dt.datetime) -> None:
    with store.transaction("backup", moment) as tx:
        tx.record("backup.made", {"archive": destination.name,
                                  "manifest_sha256": hashlib.sha256(manifest.raw).hexdigest(),
                                  "audit_head": manifest.body["audit_head"],
                                  "files": len(manifest.files)})


def record_restore(store: Store, archive: str, manifest: dict[str, Any],
                   source: Path | None, moment: dt.datetime) -> None:
    """The restore recorded, its CRLs due, their numbers to restart from a floor set by
    the first one."""
    with store.transaction("restore", moment) as tx:
        tx.set_meta("crl_number_floor", FLOOR_AT_NEXT_CRL)
        for name in store.authority_names():
            tx.set_meta(f"crl_pending:{name}", "1")
        tx.record("backup.restored", {"archive": archive, "made_at": manifest["made_at"],
                                      "audit_head": manifest["audit_head"],
                                      "caught_up_from": str(source) if source else None,
                                      "crl_number_floor": "at the first CRL"})
