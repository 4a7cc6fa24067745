"""`spoolca backup DEST`, `spoolca backup --verify ARCHIVE`, `spoolca restore ARCHIVE`."""

from __future__ import annotations

import argparse
from pathlib import Path

from spoolca.commands.common import now, opened
from spoolca.errors import UsageError

__all__ = ["cmd_backup", "cmd_restore"]


def cmd_backup(args: argparse.Namespace) -> int:
    if args.verify:
        return _drill(Path(args.verify), _fingerprint(args))
    if not args.dest:
        raise UsageError("name the archive to write (spoolca backup DEST), or --verify ARCHIVE")
    from spoolca.backup.archive import make_backup
    from spoolca.process.session import CASession
    from spoolca.register.records import format_time

    destination = Path(args.dest)
    if destination.exists():
        raise UsageError(f"{destination} exists: a backup never replaces a file")
    moment = now()
    with opened(args) as (config, store), CASession(config, store, actor="backup") as session:
        session.seal()  # the head the archive carries is signed
        manifest = make_backup(config, store, session.audit_key(), destination,
                               format_time(moment))
        with store.transaction("backup", moment) as tx:
            tx.record("backup.made", {"archive": destination.name,
                                      "manifest_sha256": _sha256(manifest.raw),
                                      "audit_head": manifest.body["audit_head"],
                                      "files": len(manifest.files)})
    head = manifest.body["audit_head"]
    print(f"wrote {destination}: {len(manifest.files)} files, the register at audit entry "
          f"{head['seq']} ({head['hash']}), signed by {manifest.body['appliance_key']}. "
          f"Check it now: spoolca backup --verify {destination} --fingerprint "
          f"{manifest.body['appliance_key']}")
    return 0


def _sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def _fingerprint(args: argparse.Namespace) -> str:
    if not args.fingerprint:
        raise UsageError("--fingerprint: the appliance key's fingerprint from the ceremony "
                         "record; a backup is trusted only against it")
    return str(args.fingerprint).replace(" ", "").upper()


def _drill(archive: Path, fingerprint: str) -> int:
    from spoolca.backup.drill import drill

    report = drill(archive, fingerprint)
    print(f"{archive}: restores and checks out ({report.seconds:.1f} s): made "
          f"{report.made_at}, {report.files} files, {report.certificates} certificates, "
          f"audit log of {report.audit_entries} signed entries intact to entry "
          f"{report.head[0]} ({report.head[1]})")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    from spoolca.backup.archive import restore
    from spoolca.config import load_config
    from spoolca.spool.tree import Spool

    target = Path(args.dir)
    manifest = restore(Path(args.archive), target, _fingerprint(args))
    config = manifest.config_name
    restored = load_config(target / config)
    Spool(restored.spool_dir).create(restored.profiles)  # empty: results come back below
    print(f"restored {len(manifest.files)} files into {target}/ (the register at audit "
          f"entry {manifest.body['audit_head']['seq']}). Next: chown -R spoolca:spoolca "
          f"{target}; give the service the CA passphrase as before; start it with "
          f"--config {target / config}: its recovery publishes every result again")
    return 0
