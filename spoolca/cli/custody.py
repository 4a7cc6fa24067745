"""What keeps the CA alive: backups and restores, catch-up, the unlock secret's shares."""

from __future__ import annotations

import argparse

from spoolca.cli.common import command, shares_scheme

__all__ = ["register"]


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    backup = commands.add_parser("backup", help="one signed archive of the register, the "
                                 "encrypted keys, the OpenPGP home and the configuration")
    backup.add_argument("dest", nargs="?", help="the archive to write (.tar.gz), or a "
                        "folder to write spoolca-TIME.tar.gz into")
    backup.add_argument("--verify", metavar="ARCHIVE",
                        help="the restore drill: restore into a temporary directory, check "
                        "the register and its audit log, remove it")
    backup.add_argument("--fingerprint", metavar="F", help="the appliance key (--verify)")
    backup.set_defaults(func=command("backup:cmd_backup"))
    restore = commands.add_parser("restore", help="a backup into a new state directory, "
                                  "after its signature and every file check out")
    restore.add_argument("archive")
    restore.add_argument("--dir", required=True, help="a new (or empty) directory")
    restore.add_argument("--fingerprint", required=True, metavar="F",
                         help="the appliance key's fingerprint from the ceremony record")
    restore.add_argument("--catch-up", metavar="DIR", help="then fold back what the "
                         "appliance published after the backup: a stick's spoolca-results/ "
                         "or a copy of spool/outgoing/ made since")
    restore.set_defaults(func=command("backup:cmd_restore"))
    catch_up = commands.add_parser("catch-up", help="fold back into the register what the "
                                   "appliance published and it lacks (after a restore, a "
                                   "lost ca.db-wal); the service stopped")
    catch_up.add_argument("source", nargs="?", metavar="DIR", help="a stick's "
                          "spoolca-results/ or a copy of outgoing/ (default: spool/outgoing/)")
    catch_up.set_defaults(func=command("backup:cmd_catch_up"))

    shares = commands.add_parser("shares", help="the unlock secret held K-of-N by custodians "
                                 "(SLIP-39 word lists)")
    shares_commands = shares.add_subparsers(dest="shares_command", required=True)
    split = shares_commands.add_parser("split", help="split the current unlock secret")
    reshare = shares_commands.add_parser("reshare", help="a new share set for the same "
                                         "secret, from K shares of the current set")
    rotate = shares_commands.add_parser("rotate", help="a new secret: the keys at rest "
                                        "re-protected, new shares; the old shares void")
    for issuing in (split, reshare, rotate):
        issuing.add_argument("shares", type=shares_scheme, metavar="K-of-N")
        issuing.add_argument("--custodian", action="append", metavar="NAME",
                             help="one per share, in order")
        issuing.add_argument("--out", required=True, metavar="DIR",
                             help="where each custodian's file is written (not the state "
                             "directory)")
    for renewing in (reshare, rotate):
        renewing.add_argument("--old", dest="files", action="append", default=[],
                              metavar="SHARE", help="a share of the current set, once per "
                              "share (none: typed)")
    rotate.add_argument("--install", metavar="FILE",
                        help="the new secret in a root-only file (mode 0400)")
    rotate.add_argument("--credential", metavar="FILE",
                        help="the new secret as a systemd-creds credential")
    rotate.set_defaults(func=command("shares:cmd_shares_rotate"))
    split.set_defaults(func=command("shares:cmd_shares_split"))
    reshare.set_defaults(func=command("shares:cmd_shares_reshare"))
    combine = shares_commands.add_parser("combine", help="K shares -> the secret, installed "
                                         "where the service reads it, never printed")
    combine.add_argument("files", nargs="*", metavar="SHARE",
                         help="share files; none: typed at the terminal, one custodian at "
                         "a time")
    combine.add_argument("--install", metavar="FILE", help="a root-only file (mode 0400)")
    combine.add_argument("--credential", metavar="FILE",
                         help="a systemd-creds encrypted credential")
    combine.set_defaults(func=command("shares:cmd_shares_combine"))
    check = shares_commands.add_parser("check", help="the yearly drill: do these shares "
                                       "recover the secret? Nothing is unlocked")
    check.add_argument("files", nargs="*", metavar="SHARE")
    check.set_defaults(func=command("shares:cmd_shares_check"))
