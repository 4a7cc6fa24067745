"""The CAs themselves: renew, rekey, cross-sign, cross-request."""

from __future__ import annotations

import argparse

from spoolca.cli.common import command, positive

__all__ = ["register"]


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ca = commands.add_parser("ca", help="the CAs themselves")
    ca_commands = ca.add_subparsers(dest="ca_command", required=True)
    ca_renew = ca_commands.add_parser("renew", help="a new certificate for a CA's same key "
                                      "and subject: what it issued keeps verifying")
    ca_renew.add_argument("authority", choices=("root", "intermediate"))
    ca_renew.add_argument("--days", type=positive, metavar="N",
                          help="default: 7305 (root), 3653 (intermediate)")
    ca_renew.set_defaults(func=command("ca:cmd_ca_renew"))
    ca_rekey = ca_commands.add_parser("rekey", help="a new key and certificate for the "
                                      "intermediate; the old generation keeps its CRL")
    ca_rekey.add_argument("authority", choices=("intermediate",))
    ca_rekey.add_argument("--days", type=positive, metavar="N", help="default 3653")
    ca_rekey.set_defaults(func=command("ca:cmd_ca_rekey"))
    cross = ca_commands.add_parser("cross-sign", help="our root's key certifies another "
                                   "root's subject and key (a cross-certificate)")
    cross.add_argument("certificate", metavar="CERT", help="the CA certificate to cross-sign "
                       "(PEM or DER)")
    cross.add_argument("--days", type=positive, default=3653, metavar="N",
                       help="default 3653, capped by both roots' ends")
    cross.add_argument("--out", metavar="FILE", help="default: outgoing/ca/cross-SERIAL.pem")
    cross.set_defaults(func=command("ca:cmd_ca_cross_sign"))
    cross_request = ca_commands.add_parser("cross-request", help="a CSR of our root's "
                                           "subject and key, for another root to cross-sign")
    cross_request.add_argument("--out", metavar="FILE",
                               help="default: outgoing/ca/root-cross-request.csr")
    cross_request.set_defaults(func=command("ca:cmd_ca_cross_request"))
