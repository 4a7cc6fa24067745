"""OpenSSH certificates: the SSH CAs, their revocations and what they signed."""

from __future__ import annotations

import argparse

from spoolca.cli.common import command

__all__ = ["register"]


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ssh = commands.add_parser("ssh", help="the SSH user and host CAs (OpenSSH certificates)")
    ssh_commands = ssh.add_subparsers(dest="ssh_command", required=True)
    init = ssh_commands.add_parser("init", help="make the SSH user and host CA keys "
                                   "(once; recorded) and publish them in outgoing/ssh/")
    init.add_argument("--key-type", default="ed25519",
                      choices=("ed25519", "ecdsa-p256", "ecdsa-p384"))
    init.set_defaults(func=command("ssh:cmd_ssh_init"))
    revoke = ssh_commands.add_parser("revoke", help="revoke SSH certificates by serial or "
                                     "key ID; the KRL is remade")
    revoke.add_argument("which", metavar="SERIAL|KEY_ID")
    revoke.add_argument("--ca", choices=("user", "host"), required=True)
    revoke.set_defaults(func=command("ssh:cmd_ssh_revoke"))
    listing = ssh_commands.add_parser("list", help="the SSH certificates of a CA")
    listing.add_argument("--ca", choices=("user", "host"), required=True)
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(func=command("ssh:cmd_ssh_list"))
