"""Reading the register: list, show, export-index, status, and the clock guard."""

from __future__ import annotations

import argparse

from spoolca.cli.common import command, positive

__all__ = ["register"]


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    listing = commands.add_parser("list", help="the certificate register")
    listing.add_argument("--json", action="store_true")
    listing.add_argument("--status", choices=("valid", "revoked", "expired"))
    listing.add_argument("--expiring", type=positive, metavar="DAYS",
                         help="only valid certificates that expire within DAYS")
    listing.set_defaults(func=command("register:cmd_list"))

    show = commands.add_parser("show", help="one certificate, human-readable")
    show.add_argument("serial")
    show.set_defaults(func=command("register:cmd_show"))

    index = commands.add_parser("export-index", help="the register as OpenSSL index.txt")
    index.add_argument("--authority", choices=("root", "intermediate"),
                       help="only the certificates this CA issued (its own index.txt)")
    index.add_argument("--no-updatedb", action="store_true", help="expired entries stay V, "
                       "as openssl ca leaves them until -updatedb")
    index.set_defaults(func=command("register:cmd_export_index"))

    status = commands.add_parser("status", help="when the stick must come back, what "
                                 "expires, what the CA did (the stick report's facts)")
    status.add_argument("--json", action="store_true", help="the facts as report.json has them")
    status.set_defaults(func=command("status:cmd_status"))

    clock = commands.add_parser("clock", help="the clock guard: is the system clock "
                                "trusted, and confirming it when the register is what is off")
    clock_commands = clock.add_subparsers(dest="clock_command")
    clock.set_defaults(func=command("clock:cmd_clock_status"), json=False)
    clock_status = clock_commands.add_parser("status", help="the clock, the register's floor "
                                             "and ceiling; exit 1 if signing is refused")
    clock_status.add_argument("--json", action="store_true")
    clock_status.set_defaults(func=command("clock:cmd_clock_status"))
    confirm = clock_commands.add_parser("confirm", help="the system clock is right although "
                                        "the guard refuses it: recorded in the audit log")
    confirm.add_argument("--time", required=True, metavar="T", help="the time read off a "
                         "clock you trust (ISO 8601, UTC unless it says otherwise); must be "
                         "within 10 minutes of the system clock")
    confirm.add_argument("--repair", action="store_true", help="the clock is behind the "
                         "floor because a wrong clock dated records ahead: set the floor back")
    confirm.set_defaults(func=command("clock:cmd_clock_confirm"))
