"""A backup made and a restore done, as the register records them.

`backup.made` names the archive and the head it holds, so an auditor can tie a file on
the shelf to the log; `backup.restored` says where the restored register came from and
sets the CRL number floor: numbers given after the backup are not in it, so the next one
is the restore's time (YYYYMMDDhhmmss * 1000), above any number given one by one since,
and every CA's CRL is due at once.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path
from typing import Any

from spoolca.backup.archive import Manifest
from spoolca.register.store import Store

__all__ = ["record_backup", "record_restore"]


def record_backup(store: Store, destination: Path, manifest: Manifest,
                  moment: dt.datetime) -> None:
    with store.transaction("backup", moment) as tx:
        tx.record("backup.made", {"archive": destination.name,
                                  "manifest_sha256": hashlib.sha256(manifest.raw).hexdigest(),
                                  "audit_head": manifest.body["audit_head"],
                                  "files": len(manifest.files)})


def record_restore(store: Store, archive: str, manifest: dict[str, Any],
                   source: Path | None, moment: dt.datetime) -> int:
    """The restore recorded, its CRLs due, the CRL number floor set; the floor."""
    floor = int(moment.strftime("%Y%m%d%H%M%S")) * 1000
    with store.transaction("restore", moment) as tx:
        tx.set_meta("crl_number_floor", str(floor))
        for name in store.authority_names():
            tx.set_meta(f"crl_pending:{name}", "1")
        tx.record("backup.restored", {"archive": archive, "made_at": manifest["made_at"],
                                      "audit_head": manifest["audit_head"],
                                      "caught_up_from": str(source) if source else None,
                                      "crl_number_floor": floor})
    return floor
