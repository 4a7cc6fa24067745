"""The restore drill (`spoolca backup --verify ARCHIVE`): what custodians run each year.

Restore into a temporary directory, then prove the copy is a working register: SQLite's
integrity check, the audit log recomputed and signed to its end by the pinned appliance
key, its head the one the manifest promised. Nothing is unlocked; the copy is removed.
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from spoolca.backup.archive import BackupError, restore
from spoolca.config import load_config
from spoolca.keys.openpgp import ApplianceKey, stop_agent
from spoolca.register.audit import export, verify_export
from spoolca.register.chain import entry_hash
from spoolca.register.store import Store

__all__ = ["DrillReport", "drill"]


@dataclass(frozen=True, slots=True)
class DrillReport:
    made_at: str
    files: int
    certificates: int
    audit_entries: int
    head: tuple[int, str]
    seconds: float


def drill(archive: Path, fingerprint: str) -> DrillReport:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="spoolca-drill-") as scratch:
        root = Path(scratch) / "state"
        manifest = restore(archive, root, fingerprint)
        config = load_config(root / manifest.config_name)
        store = Store.of(config)
        try:
            problems = store.integrity_problems()
            if problems:
                raise BackupError(f"the restored register is damaged: {problems[0]}")
            head = store.audit_head()
            promised = manifest.body["audit_head"]
            if head != (promised["seq"], promised["hash"]):
                raise BackupError(f"the restored register's audit head {head[0]} is not the "
                                  f"manifest's {promised['seq']}")
            with ApplianceKey(config.gnupg_dir, fingerprint, None) as key:  # public half only
                public = key.public_key()
                export(store, Path(scratch) / "audit", key)
            found = verify_export(Path(scratch) / "audit", public, fingerprint)
            if found.damages:
                damage = found.damages[0]
                raise BackupError(f"the restored audit log does not verify: entry "
                                  f"{damage.seq}: {damage.message}")
            _check_tail(store, found.entries, found.head_hash, head)
            certificates = sum(1 for _ in store.certificate_summaries())
        finally:
            store.close()
            stop_agent(config.gnupg_dir)
    return DrillReport(str(manifest.body["made_at"]), len(manifest.files), certificates,
                       found.entries, head, time.monotonic() - started)


def _check_tail(store: Store, signed: int, signed_hash: str, head: tuple[int, str]) -> None:
    """Entries written after the last checkpoint and before the snapshot: the signed
    manifest's head vouches for them, if they chain from the signed part to it."""
    previous = signed_hash
    for row in store.audit_entries(after=signed):
        if row.prev != previous or entry_hash(row.seq, row.time, row.event, row.actor,
                                              json.loads(row.data), row.prev) != row.hash:
            raise BackupError(f"the restored audit log is broken at entry {row.seq}")
        previous = row.hash
    if previous != head[1]:
        raise BackupError("the restored audit log does not end at the manifest's head")

