"""`spoolca audit export|verify|show`: the signed audit log."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from spoolca.commands.common import load, now, opened
from spoolca.errors import SpoolcaError, UsageError


def cmd_audit_export(args: argparse.Namespace) -> int:
    from spoolca.process.session import CASession
    from spoolca.register.audit import export

    with opened(args) as (config, store), CASession(config, store, actor="cli") as session:
        session.seal()  # the audit key alone is unlocked
        folder = Path(args.target) if args.target else config.spool_dir / "outgoing" / "audit"
        last = export(store, folder, session.audit_key())
        if args.target:
            with store.transaction("cli", now()) as tx:
                tx.record("audit.exported", {"folder": str(folder), "through_seq": last})
    print(f"exported the audit log through entry {last} to {folder}/")
    return 0


def _audit_key_for(args: argparse.Namespace) -> tuple[str, str]:
    """(armored public key, fingerprint): --key, or this appliance's own key."""
    from spoolca.openpgp import ApplianceKey

    if args.key:
        armored = Path(args.key).read_text()
        fingerprint = args.fingerprint or _fingerprint_of(armored)
        return armored, fingerprint
    with opened(args) as (config, store):
        fingerprint = store.meta("audit_key_fingerprint") or ""
        armored = ApplianceKey(config.gnupg_dir, fingerprint, None).public_key()
    if args.fingerprint and args.fingerprint.upper() != fingerprint.upper():
        raise SpoolcaError(f"this appliance's audit key is {fingerprint}, not {args.fingerprint}")
    return armored, fingerprint


def _fingerprint_of(armored: str) -> str:
    from spoolca.openpgp import Keyring

    with Keyring(armored) as keyring:
        fingerprints = sorted(keyring.fingerprints)
    if len(fingerprints) != 1:
        raise UsageError("--key must hold exactly one OpenPGP public key")
    return fingerprints[0]


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from spoolca.register.audit import verify_export

    armored, fingerprint = _audit_key_for(args)
    folder = Path(args.dir) if args.dir else load(args).spool_dir / "outgoing" / "audit"
    since = Path(args.since_checkpoint) if args.since_checkpoint else None
    damages, entries, signed = verify_export(folder, armored, fingerprint, since)
    if damages and damages[0].kind != "unsigned tail":
        damage = damages[0]
        print(f"DAMAGED at entry {damage.seq}: {damage.kind}: {damage.message}")
        return 1
    print(f"intact: {entries} entries, the chain recomputed; signed through entry {signed} "
          f"by {fingerprint}")
    if damages:
        print(f"note: {damages[0].message} (an unsigned tail, not tampering: the next "
              "checkpoint will sign them)")
    return 0


def cmd_audit_show(args: argparse.Namespace) -> int:
    with opened(args) as (_config, store):
        rows = list(store.audit_entries())
    shown = []
    for seq, time, event, actor, data, _prev, _digest in rows:
        fields = json.loads(data)
        if args.event and not event.startswith(args.event):
            continue
        if args.serial and args.serial.upper() not in data.upper():
            continue
        if args.since and time < args.since:
            continue
        shown.append({"seq": seq, "time": time, "event": event, "actor": actor, "data": fields})
    if args.json:
        print(json.dumps(shown, indent=2, ensure_ascii=False))
        return 0
    print(f"{'SEQ':>6} {'TIME':<20} {'EVENT':<22} {'ACTOR':<8} DETAIL")
    for entry in shown:
        print(f"{entry['seq']:>6} {entry['time']:<20} {entry['event']:<22} "
              f"{entry['actor']:<8} {_detail(entry['data'])}")
    return 0


def _detail(data: dict[str, object]) -> str:
    """The few fields an auditor reads first: who, which serial, what outcome, why."""
    keys = ("file", "serial", "subject", "reason", "codes", "authority", "number",
            "next_update", "sha256")
    parts = [f"{k}={data[k]}" for k in keys if data.get(k) not in (None, [], "")]
    return " ".join(parts) if parts else json.dumps(data, sort_keys=True)[:120]
