"""`spoolca audit export|verify|show`: the signed audit log."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from spoolca.commands.common import load, now, opened
from spoolca.errors import UsageError

if TYPE_CHECKING:
    from spoolca.keys.openpgp import ApplianceKey
    from spoolca.register.store import Store


def cmd_audit_export(args: argparse.Namespace) -> int:
    from spoolca.process.session import CASession

    with opened(args) as (config, store), CASession(config, store, actor="cli") as session:
        session.seal()  # the audit key alone is unlocked (and outgoing/audit/ is written)
        if args.target:  # outgoing/ is the export's usual place: only another is recorded
            folder = Path(args.target)
            last = _export_to(store, folder, session.audit_key())
        else:
            folder, last = session.outgoing.audit, session.exported
    print(f"exported the audit log through entry {last} to {folder}/")
    return 0


def trust_of(args: argparse.Namespace, folder: Path, *, on_appliance: bool
             ) -> tuple[str, str]:
    """(the public key to check with, the fingerprint trusted).

    Trust comes from the auditor, never from the export: a fingerprint they were given
    (--fingerprint), or their own copy of the key (--trusted-key). Key material found in
    the export, or passed with --key, is only used when its fingerprint is the trusted
    one. ON_APPLIANCE (the command checks the appliance's own files), with neither, its
    own register names the key."""
    exported = folder / "appliance-key.asc"
    if args.trusted_key:
        armored = _read_key(Path(args.trusted_key))
        fingerprint = _fingerprint_of(armored)
        if args.fingerprint and _plain(args.fingerprint) != fingerprint:
            raise UsageError(f"--trusted-key holds {fingerprint}, not --fingerprint "
                             f"{args.fingerprint}")
    elif args.fingerprint:
        fingerprint = _plain(args.fingerprint)
        source = Path(args.key) if args.key else exported
        if not source.is_file():
            raise UsageError(f"no public key to check with: {source} is missing; pass the "
                             "key with --key FILE")
        armored = _read_key(source)
    elif not on_appliance:
        raise UsageError("name the key you trust: --fingerprint FPR (as the appliance's "
                         "operator gave it to you) or --trusted-key FILE (your own copy of "
                         "its public key); a key found beside the log is never trusted")
    else:
        from spoolca.keys.openpgp import ApplianceKey

        with opened(args) as (config, store):
            fingerprint = store.meta("audit_key_fingerprint") or ""
            with ApplianceKey(config.gnupg_dir, fingerprint, None) as key:
                armored = key.public_key()
    return armored, fingerprint


def _plain(fingerprint: str) -> str:
    return fingerprint.replace(" ", "").upper()


def _read_key(path: Path) -> str:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"failed to read the public key {path}: {exc}") from None


def _fingerprint_of(armored: str) -> str:
    from spoolca.keys.openpgp import Keyring

    with Keyring(armored) as keyring:
        fingerprints = sorted(keyring.fingerprints)
    if len(fingerprints) != 1:
        raise UsageError("the key file must hold exactly one OpenPGP public key")
    return fingerprints[0]


def _since_head(text: str | None) -> tuple[int, str] | None:
    if not text:
        return None
    seq, _sep, digest = text.partition(":")
    if not seq.isdigit() or len(digest) != 64:
        raise UsageError(f"--since-head takes SEQ:HASH as verify printed it, not {text!r}")
    return int(seq), digest


def _export_to(store: Store, folder: Path, key: ApplianceKey) -> int:
    """The signed log into a folder of the operator's choice, and that recorded."""
    from spoolca.register.audit import export, record_export

    last = export(store, folder, key)
    record_export(store, folder, last, now())
    return last


def cmd_audit_verify(args: argparse.Namespace) -> int:
    """Exit 0 only if every entry up to the last is covered by a checkpoint signed by the
    trusted key (and extends what --since-* names); 1 otherwise, naming why."""
    from spoolca.register.audit import verify_export
    from spoolca.spool.outgoing import Outgoing

    folder = Path(args.dir) if args.dir else Outgoing.of(load(args).spool_dir).audit
    armored, fingerprint = trust_of(args, folder, on_appliance=not (args.dir or args.key))
    exported = folder / "appliance-key.asc"
    if exported.is_file() and _fingerprint_of(_read_key(exported)) != fingerprint:
        print(f"DAMAGED: the key in the export ({exported.name}) is not the trusted key "
              f"{fingerprint}: it was replaced")
        return 1
    since = Path(args.since_checkpoint) if args.since_checkpoint else None
    found = verify_export(folder, armored, fingerprint, since, _since_head(args.since_head))
    damage = found.damages[0] if found.damages else None
    if damage is not None and damage.kind != "unsigned tail":
        print(f"DAMAGED at entry {damage.seq}: {damage.kind}: {damage.message}")
        return 1
    head = f"head: seq {found.entries}, hash {found.head_hash}, time {found.head_time}"
    if damage is not None and not args.allow_unsigned_tail:
        print(f"NOT VERIFIED: {damage.message}; no checkpoint signed by {fingerprint} vouches "
              "for them, and a genuine export is always signed to its end, so treat them as "
              "forged (--allow-unsigned-tail accepts a log copied in the middle of a batch)")
        return 1
    print(f"intact: {found.entries} entries, the chain recomputed, signed through entry "
          f"{found.signed} by {fingerprint}")
    if damage is not None:
        print(f"WARNING: {damage.message}; NOT signed: trust nothing after entry "
              f"{found.signed} (allowed by --allow-unsigned-tail)")
    print(head)
    print(f"next time: spoolca audit verify ... --since-head {found.entries}:{found.head_hash}")
    return 0


def cmd_audit_show(args: argparse.Namespace) -> int:
    from spoolca.errors import RegisterDamagedError
    from spoolca.register.chain import GENESIS, stored_hash_holds

    with opened(args) as (config, store):
        rows = list(store.audit_entries())
    shown = []
    previous = GENESIS
    for seq, time, event, actor, data, prev, digest in rows:
        # What is shown is what was recorded: a register whose bytes changed (a failing
        # disk, an edit) is said to be damaged, not shown as if it were the log.
        if prev != previous or not stored_hash_holds(seq, time, event, actor, data, prev,
                                                     digest):
            raise RegisterDamagedError(
                f"the register {config.database} is damaged: its audit entry {seq} does not "
                "match its hash. Read the exported log instead (spoolca audit verify --dir "
                "DIR), and restore the latest backup (spoolca restore ... --catch-up DIR)")
        previous = digest
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
