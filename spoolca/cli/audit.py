"""The signed audit log: export, verify, show."""

from __future__ import annotations

import argparse

from spoolca.cli.common import command

__all__ = ["register"]


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    audit = commands.add_parser("audit", help="the signed audit log")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True)
    audit_export = audit_commands.add_parser("export", help="sign a checkpoint and export the "
                                             "log (to outgoing/audit/, or DIR)")
    audit_export.add_argument("target", nargs="?", metavar="DIR")
    audit_export.set_defaults(func=command("audit:cmd_audit_export"))
    audit_verify = audit_commands.add_parser(
        "verify", help="check an exported log: exit 0 only if it is intact and signed to "
        "its end by the trusted key, 1 naming what is wrong")
    audit_verify.add_argument("--dir", help="the exported log (default: outgoing/audit/)")
    audit_verify.add_argument("--fingerprint", help="the fingerprint of the key you trust "
                              "(required with --dir or --key, unless --trusted-key)")
    audit_verify.add_argument("--trusted-key", metavar="FILE", help="your own copy of the "
                              "appliance's public key, trusted as it is")
    audit_verify.add_argument("--key", metavar="FILE", help="a public key to check with "
                              "(default: the export's); trusted only if it has --fingerprint")
    audit_verify.add_argument("--since-head", metavar="SEQ:HASH", help="the head verify "
                              "printed last time: the log must extend it")
    audit_verify.add_argument("--since-checkpoint", metavar="FILE",
                              help="a checkpoint exported earlier (FILE.asc beside it): the "
                              "log must extend it")
    audit_verify.add_argument("--allow-unsigned-tail", action="store_true",
                              help="accept entries after the last checkpoint (a log copied "
                              "mid-batch), with a loud warning")
    audit_verify.set_defaults(func=command("audit:cmd_audit_verify"))
    audit_show = audit_commands.add_parser("show", help="the log, readable")
    audit_show.add_argument("--json", action="store_true")
    audit_show.add_argument("--event", metavar="E", help="events starting with E")
    audit_show.add_argument("--serial", metavar="S")
    audit_show.add_argument("--since", metavar="T", help="entries from time T (ISO 8601)")
    audit_show.set_defaults(func=command("audit:cmd_audit_show"))
