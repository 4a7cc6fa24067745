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
                              help="then wait up to SECONDS for the daemon to answer them "
                              "and publish the answers")
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
    trip = commands.add_parser("trip", help="the end of a visit: the next trip planned")
    trip_commands = trip.add_subparsers(dest="trip_command", required=True)
    close = trip_commands.add_parser(
        "close", help="record the next trip; refused (exit 1) if a CRL would lapse before it")
    close.add_argument("--next", metavar="DATE", help="when the stick comes back (default: "
                       "now + [media] trip_interval_days)")
    close.add_argument("--accept-lapse", action="store_true", help="close the trip even "
                       "though a CRL lapses before the next one (recorded in the audit log)")
    close.set_defaults(func=command("media:cmd_trip_close"))
    publication = commands.add_parser(
        "verify-publication", help="on the web server: may an export's CRLs be served? "
        "(signed manifest, their CAs, not lapsed, newer than what is served); exit 1 if not")
    publication.add_argument("dir", help="an export (the stick's spoolca-results/): crl/, "
                             "ca/ and audit/appliance-key.asc")
    publication.add_argument("--served", metavar="DIR", help="where the CRLs are served "
                             "now, by file name: none may be replaced by an older one")
    publication.add_argument("--fingerprint", help="the appliance key's fingerprint, as its "
                             "operator gave it to you")
    publication.add_argument("--trusted-key", metavar="FILE",
                             help="your own copy of the appliance's public key")
    publication.add_argument("--key", metavar="FILE", help="a public key to check with "
                             "(default: the export's); trusted only if it has --fingerprint")
    publication.set_defaults(func=command("media:cmd_verify_publication"))
