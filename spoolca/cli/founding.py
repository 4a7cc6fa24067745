"""`spoolca init` and the imports: a CA founded here, or brought in."""

from __future__ import annotations

import argparse

from spoolca.cli.common import DEFAULT_ROOT_SUBJECT, command, positive, shares_scheme
from spoolca.keys import DEFAULT_KEY_TYPE, KEY_TYPES

__all__ = ["register"]


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    init = commands.add_parser("init", help="create a new root and intermediate CA")
    init.add_argument("--dir", help="the new state directory")
    init.add_argument("--ceremony", metavar="FILE", help="everything below from a reviewed "
                      "ceremony file (TOML; see config/ceremony.toml)")
    init.add_argument("--rehearse", action="store_true", help="with --ceremony: the same "
                      "ceremony in a temporary directory, throwaway keys and passphrase")
    init.add_argument("--root-subject", default=DEFAULT_ROOT_SUBJECT, metavar="DN",
                      help="OpenSSL -subj form: /C=US/ST=New York/O=Example/CN=Example Root CA")
    init.add_argument("--intermediate-subject", metavar="DN",
                      help="default: the root subject with 'Root' in its CN made 'Intermediate'")
    init.add_argument("--key-type", choices=KEY_TYPES, default=DEFAULT_KEY_TYPE,
                      help=f"CA key type (default {DEFAULT_KEY_TYPE})")
    init.add_argument("--key-store", choices=("file", "pkcs11"), default="file",
                      help="where the CA keys are made: encrypted files (default) or a "
                      "PKCS#11 token, whose PIN is then the passphrase")
    init.add_argument("--intermediate-key-store", choices=("file", "pkcs11"),
                      help="the intermediate's key elsewhere than the root's")
    init.add_argument("--pkcs11-module", metavar="PATH", help="the token's PKCS#11 library")
    init.add_argument("--token", metavar="LABEL", help="the token's label")
    init.add_argument("--key-label", metavar="PREFIX", default="spoolca",
                      help="token keys are labelled PREFIX-root, PREFIX-intermediate")
    init.add_argument("--passphrase-file", metavar="F", help="encrypt the keys with the "
                      "passphrase in F (and read it from there at run time)")
    init.add_argument("--no-passphrase", action="store_true",
                      help="store the CA keys unencrypted (not recommended)")
    init.add_argument("--shares", type=shares_scheme, metavar="K-of-N",
                      help="split the passphrase among N custodians, K to recover it")
    init.add_argument("--custodian", action="append", metavar="NAME", help="with --shares")
    init.add_argument("--shares-out", metavar="DIR", help="with --shares: one file each")
    for role in ("root", "intermediate"):
        init.add_argument(f"--{role}-crl-url", metavar="URL", help=f"the {role} CRL's "
                          "http:// URL, written into what it signs (cRLDistributionPoints)")
        init.add_argument(f"--{role}-issuer-url", metavar="URL", help=f"where the {role} "
                          "certificate is published (authorityInfoAccess caIssuers)")
    init.add_argument("--root-days", type=positive, default=7305, help="default 7305 (20 y)")
    init.add_argument("--intermediate-days", type=positive, default=3653,
                      help="default 3653 (10 y), capped by the root's validity")
    init.set_defaults(func=command("init:cmd_init"))

    for kind, what in (("openssl", "an OpenSSL CA directory (the how-tos' CA/)"),
                       ("easyrsa", "an easy-rsa pki/")):
        importer = commands.add_parser(f"import-{kind}", help=f"bring in {what}")
        importer.add_argument("source", metavar="DIR")
        importer.add_argument("--dir", required=True, help="the new state directory")
        importer.add_argument("--passphrase-file", metavar="F", help="encrypt the keys with "
                              "the passphrase in F (and read it from there at run time)")
        importer.add_argument("--no-passphrase", action="store_true",
                              help="store the CA keys unencrypted (not recommended)")
        importer.add_argument("--source-passphrase-file", metavar="F",
                              help="the passphrase of the old CA's key files")
        importer.add_argument("--resolve", action="append", metavar="CODE=ACTION",
                              help="how to resolve a discrepancy the check reported")
        importer.add_argument("--intermediate-subject", metavar="DN", help="a one-level CA "
                              "gets a new intermediate: its subject (default from the root)")
        importer.add_argument("--pkcs11-module", metavar="PATH", help="for a CA key in a "
                              "token (openssl.cnf names a pkcs11: URI): the token's library; "
                              "the key stays there and --passphrase-file holds its PIN")
        importer.set_defaults(func=command(f"importing:cmd_import_{kind}"))
