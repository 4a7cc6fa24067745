"""The stick: requests in, results out."""

from __future__ import annotations

import argparse

from spoolca.cli.common import command, identity_option, positive

__all__ = ["register"]


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    media = commands.add_parser("media", help="requests in from a stick, results out to it")
    media_commands = media.add_subparsers(dest="media_command", required=True)
    media_ingest = media_commands.add_parser("ingest", help="copy a mounted stick's requests "
                                             "into incoming/, defensively")
    media_ingest.add_argument("dir")
    identity_option(media_ingest)
    media_ingest.add_argument("--wait", type=float, metavar="SECONDS", default=0,
                              help="then wait up to SECONDS for the daemon to answer them")
    media_ingest.set_defaults(func=command("media:cmd_media_ingest"))
    media_export = media_commands.add_parser("export", help="write results, CA files, CRLs "
                                             "and the audit log to a mounted stick")
    media_export.add_argument("dir")
    identity_option(media_export)
    media_export.add_argument("--through-daemon", action="store_true",
                              help="the running daemon composes and signs the export (the "
                              "media unit's way: it holds no key)")
    media_export.add_argument("--wait", type=positive, default=300.0, metavar="SECONDS",
                              help="with --through-daemon: how long to wait for the daemon "
                              "(default 300)")
    media_export.set_defaults(func=command("media:cmd_media_export"))
