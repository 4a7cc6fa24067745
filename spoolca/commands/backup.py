"""`spoolca backup DEST`, `backup --verify ARCHIVE`, `restore ARCHIVE [--catch-up DIR]` and
`catch-up [DIR]`: the register kept, checked, put back, and caught up."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spoolca.commands.common import load, now, opened
from spoolca.errors import UsageError

if TYPE_CHECKING:
    from spoolca.authority.catchup import CaughtUp
    from spoolca.config import Config

__all__ = ["cmd_backup", "cmd_catch_up", "cmd_restore"]


def cmd_backup(args: argparse.Namespace) -> int:
    if args.verify:
        return _drill(Path(args.verify), _fingerprint(args))
    if not args.dest:
        raise UsageError("name the archive to write (spoolca backup DEST), or --verify ARCHIVE")
    from spoolca.backup.archive import make_backup
    from spoolca.backup.recorded import record_backup
    from spoolca.process.session import CASession
    from spoolca.register.records import format_time

    moment = now()
    destination = Path(args.dest)
    if destination.is_dir():  # a backup folder: a new archive in it, named by its time
        destination = destination / f"spoolca-{moment:%Y%m%dT%H%M%SZ}.tar.gz"
    if destination.exists():
        raise UsageError(f"{destination} exists: a backup never replaces a file")
    with opened(args) as (config, store), CASession(config, store, actor="backup") as session:
        session.seal()  # the head the archive carries is signed
        manifest = make_backup(config, store, session.audit_key(), destination,
                               format_time(moment))
        record_backup(store, destination, manifest, moment)
    head = manifest.body["audit_head"]
    print(f"wrote {destination}: {len(manifest.files)} files, the register at audit entry "
          f"{head['seq']} ({head['hash']}), signed by {manifest.body['appliance_key']}. "
          f"Check it now: spoolca backup --verify {destination} --fingerprint "
          f"{manifest.body['appliance_key']}")
    return 0


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
    from spoolca.spool.outgoing import Outgoing
    from spoolca.spool.tree import Spool

    target = Path(args.dir)
    manifest = restore(Path(args.archive), target, _fingerprint(args))
    config = manifest.config_name
    restored = load_config(target / config)
    Spool(restored.spool_dir).create(restored.profiles)  # empty: results come back below
    Outgoing.of(restored.spool_dir).create()
    head = manifest.body["audit_head"]
    caught = _after_restore(restored, Path(args.archive).name, manifest.body,
                            Path(args.catch_up) if args.catch_up else None)
    print(f"restored {len(manifest.files)} files into {target}/ (the register at audit "
          f"entry {head['seq']}, made {manifest.body['made_at']}).")
    if caught is not None:
        print(_caught_up_line(caught))
    else:
        print("WARNING: anything this appliance issued or revoked after that entry is not in "
              "the restored register, and a revocation lost is a certificate trusted again. "
              "Catch it up before the service starts, from a stick's export or a copy of "
              "outgoing/ made since: spoolca --config "
              f"{target / config} catch-up DIR (certificates and revocations are folded back "
              "whenever it is run; the audit log only while nothing was recorded since)")
    print(f"Next: chown -R spoolca:spoolca {target}; give the service the CA passphrase as "
          f"before; start it with --config {target / config}: its recovery publishes every "
          "result again, and it publishes new CRLs at once (numbered above any published)")
    return 0


def _after_restore(config: Config, archive: str, manifest: dict[str, Any],
                   source: Path | None) -> CaughtUp | None:
    """The restored register caught up (if asked), its CRLs due at once and numbered
    above anything published since the backup, the restore recorded."""
    from spoolca.authority.catchup import catch_up
    from spoolca.backup.recorded import record_restore
    from spoolca.register.store import Store

    store = Store.of(config, check_history=False)
    try:
        caught = catch_up(config, store, source, now()) if source is not None else None
        record_restore(store, archive, manifest, source, now())
    finally:
        store.close()
    return caught


def cmd_catch_up(args: argparse.Namespace) -> int:
    from spoolca.authority.catchup import catch_up
    from spoolca.process.instance import hold_instance_lock
    from spoolca.register.store import Store

    config = load(args)
    hold_instance_lock(config)  # the service stopped: nothing decided meanwhile
    source = Path(args.source) if args.source else config.spool_dir / "outgoing"
    store = Store.of(config, check_history=False)
    try:
        caught = catch_up(config, store, source, now())
    finally:
        store.close()
    print(_caught_up_line(caught))
    checked = Store.of(config)
    try:
        checked.check_history()  # the register against its own exported log, again
    finally:
        checked.close()
    return 0


def _caught_up_line(caught: CaughtUp) -> str:
    crls = ", ".join(f"{name} #{number}" for name, number in sorted(caught.crls.items()))
    lines = [f"caught up from {caught.source}: {caught.entries} audit entries folded, "
             f"{len(caught.certificates)} certificate(s) (and {len(caught.not_held)} known "
             f"from the log alone), {caught.rejections} rejection(s), "
             f"{len(caught.revocations)} revocation(s), {len(caught.unheld)} hold(s) lifted; "
             f"CRLs published up to {crls or 'none found'}; recorded as register.caught_up. "
             "The CRLs are remade above every number published at the service's next start "
             "(or now: spoolca crl)"]
    lines += [f"  not folded: {text}" for text in caught.not_folded]
    return "\n".join(lines)
