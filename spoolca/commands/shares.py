"""`spoolca shares split|combine|check|reshare|rotate`: the unlock secret held K-of-N.

Each custodian's share is written once, to a file of its own on removable media (never
in the state directory); the appliance keeps only a verifier and the audit entry. The
secret itself is never printed: `combine` installs it where the service reads it.
"""

from __future__ import annotations

import argparse
import getpass
import re
import secrets
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from spoolca.authority.custody import record_checked, record_combined, record_share_set
from spoolca.commands.common import now, opened
from spoolca.errors import UsageError

if TYPE_CHECKING:
    from spoolca.config import Config
    from spoolca.register.store import Store

__all__ = [
    "check_plan",
    "cmd_shares_check",
    "cmd_shares_combine",
    "cmd_shares_reshare",
    "cmd_shares_rotate",
    "cmd_shares_split",
    "issue",
]

_SCHEME = re.compile(r"([0-9]+)-of-([0-9]+)")
_WORDS = re.compile(r"[a-z]+(?: [a-z]+){19,}")


def scheme(text: str) -> tuple[int, int]:
    match = _SCHEME.fullmatch(text)
    if not match:
        raise argparse.ArgumentTypeError("write it K-of-N, e.g. 3-of-5")
    return int(match.group(1)), int(match.group(2))


def cmd_shares_split(args: argparse.Namespace) -> int:
    from spoolca.authority.unlock import check_unlock_secret
    from spoolca.host.memory import no_core_dumps
    from spoolca.keys.algorithms import read_passphrase

    no_core_dumps()  # before the secret is read
    with opened(args) as (config, store):
        secret = read_passphrase(config.passphrase_credential, config.passphrase_file)
        if secret is None:
            raise UsageError("no unlock secret to split: the CA keys are not encrypted, or "
                             "the passphrase file or credential is not readable here")
        check_unlock_secret(config, secret)  # shares of a wrong secret: no
        _recorded(args, config, store, secret, "shares.issued",
                  issue(args, config, store, secret, "shares.issued"))
    return 0


def cmd_shares_reshare(args: argparse.Namespace) -> int:
    with opened(args) as (config, store):
        secret = _recovered(args, store)
        _recorded(args, config, store, secret, "shares.reissued",
                  issue(args, config, store, secret, "shares.reissued"))
    return 0


def cmd_shares_combine(args: argparse.Namespace) -> int:
    from spoolca.keys.installed import placed

    target = placed(args.install, args.credential)
    with opened(args) as (_config, store):
        secret = _recovered(args, store)
        where = target.install(secret)
        record_combined(store, where, now())
    print(f"the shares recover the unlock secret; installed in {where}")
    return 0


def cmd_shares_rotate(args: argparse.Namespace) -> int:
    """A new secret: keys at rest re-protected, new shares, the old shares void. The new
    secret is on disk (TARGET.next) before any key changes: an interruption loses nothing,
    and running rotate again with the old shares finishes the job."""
    from spoolca.keys.installed import placed
    from spoolca.process.instance import hold_instance_lock
    from spoolca.process.session import CASession

    target = placed(args.install, args.credential)
    with opened(args) as (config, store):
        hold_instance_lock(config)  # the daemon holds keys unlocked: stop it first
        old = _recovered(args, store)
        new = target.read_staged()  # an interrupted rotation's, to finish it
        if new is None:
            new = secrets.token_urlsafe(32).encode()
            target.install(new, staged=True)
        with CASession(config, store, actor="cli") as session:
            changed = session.rotate_unlock_secret(old, new)
        target.install(new)
        target.remove_staged()
        _recorded(args, config, store, new, "shares.rotated",
                  issue(args, config, store, new, "shares.rotated"))
    print(f"the CA keys and the audit key are protected by a new secret ({changed} "
          f"re-protected), installed in {target.shown()}; the old shares no longer open "
          "anything")
    return 0


def _recorded(args: argparse.Namespace, config: Config, store: Store, secret: bytes,
              event: str, shares: list[Path]) -> None:
    """The custody event's ceremony record, signed with the appliance key (which the
    same secret opens): K, N, the custodians, the share files' SHA-256; never a share."""
    from spoolca.authority.founding.record import write_record
    from spoolca.keys.openpgp import ApplianceKey

    key = ApplianceKey(config.gnupg_dir, store.meta("audit_key_fingerprint") or "", secret)
    try:
        threshold, count = args.shares
        record = write_record(config, store, key, event, now(), [
            ("shares", f"{threshold}-of-{count}"), ("custodians", ", ".join(args.custodian)),
            ("set", str(store.meta("shares")))], [], shares)
    finally:
        key.close()
    print(f"ceremony record: {record}")


def cmd_shares_check(args: argparse.Namespace) -> int:
    with opened(args) as (_config, store):
        _recovered(args, store)
        record_checked(store, now())
    print("these shares recover the unlock secret (checked against the appliance's "
          "verifier; nothing was unlocked)")
    return 0


def check_plan(shares: tuple[int, int], names: list[str], out: str | None, state: Path
               ) -> Path:
    """A share plan that can be carried out: one different custodian per share, and a
    folder for their files outside the state directory. Returns that folder."""
    threshold, count = shares
    if len(names) != count or len(set(names)) != count or not out:
        raise UsageError(f"{threshold}-of-{count} shares need {count} different --custodian "
                         "names and a folder for their files")
    folder, state = Path(out).resolve(), state.resolve()
    if folder == state or state in folder.parents:
        raise UsageError(f"{folder} is in the state directory: shares are never kept on the "
                         "appliance (write them to a stick per custodian, or a printout)")
    return folder


def issue(args: argparse.Namespace, config: Config, store: Store, secret: bytes,
           event: str) -> list[Path]:
    from spoolca.host.fsutil import ensure_dir, write_new
    from spoolca.keys.shares import identifier, split

    threshold, count = args.shares
    names = args.custodian or []
    out = check_plan(args.shares, names, args.out, config.path.parent)
    mnemonics = split(secret, threshold, count)
    set_id = identifier(mnemonics[0])
    ensure_dir(out, 0o700)
    written = []
    for index, (name, words) in enumerate(zip(names, mnemonics, strict=True), start=1):
        safe = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
        written.append(out / f"{safe}.share.txt")
        write_new(written[-1], (
            f"spoolca unlock share {index} of {count} for {name}: any {threshold} recover "
            f"the CA's unlock secret.\nShare set {set_id}. Keep it apart from the others.\n"
            f"\n{words}\n").encode(), 0o400)
    record_share_set(store, secret, threshold, count, set_id, names, event, now())
    print(f"wrote {count} shares ({threshold} of them recover the secret), one file per "
          f"custodian, in {out}/; set {set_id}. Give each file to its custodian and remove "
          "it from here")
    return written


def _recovered(args: argparse.Namespace, store: Store) -> bytes:
    from spoolca.host.memory import no_core_dumps
    from spoolca.keys.shares import combine, verify

    no_core_dumps()  # before any share is read

    mnemonics = [_read_share(Path(f)) for f in args.files] if args.files else _typed()
    secret = combine(mnemonics)
    stored = store.meta("shares_verifier")
    if stored is None or not verify(secret, stored):
        raise UsageError("these shares recover a secret, but not this appliance's current "
                         "one (an old or another CA's share set)")
    return secret


def _read_share(path: Path) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        raise UsageError(f"cannot read the share {path}: {exc.strerror or exc}") from None
    found = _WORDS.findall(text)
    if len(found) != 1:
        raise UsageError(f"{path} holds no share (a line of 20 or 33 words)")
    return str(found[0])


def _typed() -> list[str]:
    """One custodian at a time at the terminal, input hidden; as many as the first
    share says are needed."""
    from spoolca.keys.shares import threshold

    if not sys.stdin.isatty():
        return [line.strip() for line in sys.stdin if line.strip()]
    first = getpass.getpass("Custodian 1, type your share (hidden), then Enter: ").strip()
    return [first] + [getpass.getpass(f"Custodian {i}, type your share (hidden), then "
                                      "Enter: ").strip() for i in range(2, threshold(first) + 1)]
