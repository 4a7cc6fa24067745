"""The command line: parse, call, render. No logic of its own.

Exit status: 0 success, 1 the operation failed or found a problem, 2 usage or
configuration error. Expected errors are one sentence on stderr; rejections during
`process` are results, not failures. The commands live in spoolca.commands.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
from collections.abc import Callable, Sequence

from spoolca import __version__
from spoolca.clihelp import add_epilogs
from spoolca.errors import SpoolcaError
from spoolca.keys import DEFAULT_KEY_TYPE, KEY_TYPES
from spoolca.log import configure_logging, record_traceback

__all__ = ["main"]

# Each command's module is imported only when that command runs: a read-only command
# must not pay for the daemon's, the linter's or gpg's imports at start-up.
DEFAULT_ROOT_SUBJECT = "/CN=spoolca Root CA"


def _command(target: str) -> Callable[[argparse.Namespace], int]:
    """`module:function` in spoolca.commands, resolved when the command is run."""
    module, function = target.split(":")

    def run(args: argparse.Namespace) -> int:
        import importlib

        return getattr(importlib.import_module(f"spoolca.commands.{module}"), function)(args)

    run.target = target  # type: ignore[attr-defined]  # for the test that resolves them all
    return run


def _identity_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--identity", metavar="FILE",
                        help="the stick's UUID and label as root read them before mounting "
                        "(`blkid -p -o export DEVICE`); default: ask findmnt")


def _shares_scheme(text: str) -> tuple[int, int]:
    from spoolca.commands.shares import scheme

    return scheme(text)


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spoolca", description="An offline certificate "
                                     "authority driven by a spool directory.")
    parser.add_argument("--version", action="version", version=f"spoolca {__version__}")
    parser.add_argument("--config", metavar="PATH", help="configuration file (default: "
                        "$SPOOLCA_CONFIG, else /etc/spoolca/spoolca.toml, else "
                        "/var/lib/spoolca/spoolca.toml, where the install puts it)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

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
    init.add_argument("--shares", type=_shares_scheme, metavar="K-of-N",
                      help="split the passphrase among N custodians, K to recover it")
    init.add_argument("--custodian", action="append", metavar="NAME", help="with --shares")
    init.add_argument("--shares-out", metavar="DIR", help="with --shares: one file each")
    for role in ("root", "intermediate"):
        init.add_argument(f"--{role}-crl-url", metavar="URL", help=f"the {role} CRL's "
                          "http:// URL, written into what it signs (cRLDistributionPoints)")
        init.add_argument(f"--{role}-issuer-url", metavar="URL", help=f"where the {role} "
                          "certificate is published (authorityInfoAccess caIssuers)")
    init.add_argument("--root-days", type=_positive, default=7305, help="default 7305 (20 y)")
    init.add_argument("--intermediate-days", type=_positive, default=3653,
                      help="default 3653 (10 y), capped by the root's validity")
    init.set_defaults(func=_command("init:cmd_init"))

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
        importer.set_defaults(func=_command(f"importing:cmd_import_{kind}"))

    process = commands.add_parser("process", help="one pass over incoming/, then exit")
    process.set_defaults(func=_command("signing:cmd_process"))

    serve = commands.add_parser("serve", help="the daemon: watch the spool (systemd "
                                "Type=notify)")
    serve.set_defaults(func=_command("signing:cmd_serve"))
    reload = commands.add_parser("reload", help="ask the running daemon to re-read its "
                                 "configuration; wait; exit 1 if it refused it")
    reload.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS")
    reload.set_defaults(func=_command("signing:cmd_reload"))

    listing = commands.add_parser("list", help="the certificate register")
    listing.add_argument("--json", action="store_true")
    listing.add_argument("--status", choices=("valid", "revoked", "expired"))
    listing.add_argument("--expiring", type=_positive, metavar="DAYS",
                         help="only valid certificates that expire within DAYS")
    listing.set_defaults(func=_command("register:cmd_list"))

    backup = commands.add_parser("backup", help="one signed archive of the register, the "
                                 "encrypted keys, the OpenPGP home and the configuration")
    backup.add_argument("dest", nargs="?", help="the archive to write (.tar.gz), or a "
                        "folder to write spoolca-TIME.tar.gz into")
    backup.add_argument("--verify", metavar="ARCHIVE",
                        help="the restore drill: restore into a temporary directory, check "
                        "the register and its audit log, remove it")
    backup.add_argument("--fingerprint", metavar="F", help="the appliance key (--verify)")
    backup.set_defaults(func=_command("backup:cmd_backup"))
    restore = commands.add_parser("restore", help="a backup into a new state directory, "
                                  "after its signature and every file check out")
    restore.add_argument("archive")
    restore.add_argument("--dir", required=True, help="a new (or empty) directory")
    restore.add_argument("--fingerprint", required=True, metavar="F",
                         help="the appliance key's fingerprint from the ceremony record")
    restore.add_argument("--catch-up", metavar="DIR", help="then fold back what the "
                         "appliance published after the backup: a stick's spoolca-results/ "
                         "or a copy of spool/outgoing/ made since")
    restore.set_defaults(func=_command("backup:cmd_restore"))
    catch_up = commands.add_parser("catch-up", help="fold back into the register what the "
                                   "appliance published and it lacks (after a restore, a "
                                   "lost ca.db-wal); the service stopped")
    catch_up.add_argument("source", nargs="?", metavar="DIR", help="a stick's "
                          "spoolca-results/ or a copy of outgoing/ (default: spool/outgoing/)")
    catch_up.set_defaults(func=_command("backup:cmd_catch_up"))

    ca = commands.add_parser("ca", help="the CAs themselves")
    ca_commands = ca.add_subparsers(dest="ca_command", required=True)
    ca_renew = ca_commands.add_parser("renew", help="a new certificate for a CA's same key "
                                      "and subject: what it issued keeps verifying")
    ca_renew.add_argument("authority", choices=("root", "intermediate"))
    ca_renew.add_argument("--days", type=_positive, metavar="N",
                          help="default: 7305 (root), 3653 (intermediate)")
    ca_renew.set_defaults(func=_command("ca:cmd_ca_renew"))
    ca_rekey = ca_commands.add_parser("rekey", help="a new key and certificate for the "
                                      "intermediate; the old generation keeps its CRL")
    ca_rekey.add_argument("authority", choices=("intermediate",))
    ca_rekey.add_argument("--days", type=_positive, metavar="N", help="default 3653")
    ca_rekey.set_defaults(func=_command("ca:cmd_ca_rekey"))
    cross = ca_commands.add_parser("cross-sign", help="our root's key certifies another "
                                   "root's subject and key (a cross-certificate)")
    cross.add_argument("certificate", metavar="CERT", help="the CA certificate to cross-sign "
                       "(PEM or DER)")
    cross.add_argument("--days", type=_positive, default=3653, metavar="N",
                       help="default 3653, capped by both roots' ends")
    cross.add_argument("--out", metavar="FILE", help="default: outgoing/ca/cross-SERIAL.pem")
    cross.set_defaults(func=_command("ca:cmd_ca_cross_sign"))
    cross_request = ca_commands.add_parser("cross-request", help="a CSR of our root's "
                                           "subject and key, for another root to cross-sign")
    cross_request.add_argument("--out", metavar="FILE",
                               help="default: outgoing/ca/root-cross-request.csr")
    cross_request.set_defaults(func=_command("ca:cmd_ca_cross_request"))

    shares = commands.add_parser("shares", help="the unlock secret held K-of-N by custodians "
                                 "(SLIP-39 word lists)")
    shares_commands = shares.add_subparsers(dest="shares_command", required=True)
    split = shares_commands.add_parser("split", help="split the current unlock secret")
    reshare = shares_commands.add_parser("reshare", help="a new share set for the same "
                                         "secret, from K shares of the current set")
    rotate = shares_commands.add_parser("rotate", help="a new secret: the keys at rest "
                                        "re-protected, new shares; the old shares void")
    for issuing in (split, reshare, rotate):
        issuing.add_argument("shares", type=_shares_scheme, metavar="K-of-N")
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
    rotate.set_defaults(func=_command("shares:cmd_shares_rotate"))
    split.set_defaults(func=_command("shares:cmd_shares_split"))
    reshare.set_defaults(func=_command("shares:cmd_shares_reshare"))
    combine = shares_commands.add_parser("combine", help="K shares -> the secret, installed "
                                         "where the service reads it, never printed")
    combine.add_argument("files", nargs="*", metavar="SHARE",
                         help="share files; none: typed at the terminal, one custodian at "
                         "a time")
    combine.add_argument("--install", metavar="FILE", help="a root-only file (mode 0400)")
    combine.add_argument("--credential", metavar="FILE",
                         help="a systemd-creds encrypted credential")
    combine.set_defaults(func=_command("shares:cmd_shares_combine"))
    check = shares_commands.add_parser("check", help="the yearly drill: do these shares "
                                       "recover the secret? Nothing is unlocked")
    check.add_argument("files", nargs="*", metavar="SHARE")
    check.set_defaults(func=_command("shares:cmd_shares_check"))

    status = commands.add_parser("status", help="when the stick must come back, what "
                                 "expires, what the CA did (the stick report's facts)")
    status.add_argument("--json", action="store_true", help="the facts as report.json has them")
    status.set_defaults(func=_command("status:cmd_status"))

    revoke = commands.add_parser("revoke", help="revoke a certificate; its CRL is remade")
    revoke.add_argument("serial")
    revoke.add_argument("--reason", default="unspecified", metavar="R",
                        help="an RFC 5280 reason by its OpenSSL name: unspecified, "
                        "keyCompromise, CACompromise, affiliationChanged, superseded, "
                        "cessationOfOperation, certificateHold, removeFromCRL (lifts a hold), "
                        "privilegeWithdrawn, aACompromise")
    revoke.add_argument("--invalidity-date", metavar="T",
                        help="when the key was (or may have been) compromised, ISO 8601")
    revoke.set_defaults(func=_command("signing:cmd_revoke"))

    renew = commands.add_parser("renew", help="re-sign a certificate's stored request")
    renew.add_argument("serial")
    renew.set_defaults(func=_command("signing:cmd_renew"))

    reconsider = commands.add_parser("reconsider", help="decide a rejected request again "
                                     "(after a policy change): back into incoming/, audited")
    reconsider.add_argument("request", metavar="NAME|SHA256",
                            help="its name under outgoing/, or the request's SHA-256")
    reconsider.set_defaults(func=_command("signing:cmd_reconsider"))

    crl = commands.add_parser("crl", help="remake and publish both CRLs now")
    crl.set_defaults(func=_command("signing:cmd_crl"))

    audit = commands.add_parser("audit", help="the signed audit log")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True)
    audit_export = audit_commands.add_parser("export", help="sign a checkpoint and export the "
                                             "log (to outgoing/audit/, or DIR)")
    audit_export.add_argument("target", nargs="?", metavar="DIR")
    audit_export.set_defaults(func=_command("audit:cmd_audit_export"))
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
    audit_verify.set_defaults(func=_command("audit:cmd_audit_verify"))
    audit_show = audit_commands.add_parser("show", help="the log, readable")
    audit_show.add_argument("--json", action="store_true")
    audit_show.add_argument("--event", metavar="E", help="events starting with E")
    audit_show.add_argument("--serial", metavar="S")
    audit_show.add_argument("--since", metavar="T", help="entries from time T (ISO 8601)")
    audit_show.set_defaults(func=_command("audit:cmd_audit_show"))

    media = commands.add_parser("media", help="requests in from a stick, results out to it")
    media_commands = media.add_subparsers(dest="media_command", required=True)
    media_ingest = media_commands.add_parser("ingest", help="copy a mounted stick's requests "
                                             "into incoming/, defensively")
    media_ingest.add_argument("dir")
    _identity_option(media_ingest)
    media_ingest.add_argument("--wait", type=float, metavar="SECONDS", default=0,
                              help="then wait up to SECONDS for the daemon to answer them")
    media_ingest.set_defaults(func=_command("media:cmd_media_ingest"))
    media_export = media_commands.add_parser("export", help="write results, CA files, CRLs "
                                             "and the audit log to a mounted stick")
    media_export.add_argument("dir")
    _identity_option(media_export)
    media_export.add_argument("--through-daemon", action="store_true",
                              help="the running daemon composes and signs the export (the "
                              "media unit's way: it holds no key)")
    media_export.add_argument("--wait", type=_positive, default=300.0, metavar="SECONDS",
                              help="with --through-daemon: how long to wait for the daemon "
                              "(default 300)")
    media_export.set_defaults(func=_command("media:cmd_media_export"))

    show = commands.add_parser("show", help="one certificate, human-readable")
    show.add_argument("serial")
    show.set_defaults(func=_command("register:cmd_show"))

    index = commands.add_parser("export-index", help="the register as OpenSSL index.txt")
    index.add_argument("--authority", choices=("root", "intermediate"),
                       help="only the certificates this CA issued (its own index.txt)")
    index.add_argument("--no-updatedb", action="store_true", help="expired entries stay V, "
                       "as openssl ca leaves them until -updatedb")
    index.set_defaults(func=_command("register:cmd_export_index"))

    policy = commands.add_parser("policy", help="policy tools")
    policy_commands = policy.add_subparsers(dest="policy_command", required=True)
    check = policy_commands.add_parser("check", help="dry run: the decision and every reason")
    check.add_argument("file")
    check.add_argument("--profile", help="default: the configured default_profile")
    check.set_defaults(func=_command("signing:cmd_policy_check"))

    clock = commands.add_parser("clock", help="the clock guard: is the system clock "
                                "trusted, and confirming it when the register is what is off")
    clock_commands = clock.add_subparsers(dest="clock_command")
    clock.set_defaults(func=_command("clock:cmd_clock_status"), json=False)
    clock_status = clock_commands.add_parser("status", help="the clock, the register's floor "
                                             "and ceiling; exit 1 if signing is refused")
    clock_status.add_argument("--json", action="store_true")
    clock_status.set_defaults(func=_command("clock:cmd_clock_status"))
    confirm = clock_commands.add_parser("confirm", help="the system clock is right although "
                                        "the guard refuses it: recorded in the audit log")
    confirm.add_argument("--time", required=True, metavar="T", help="the time read off a "
                         "clock you trust (ISO 8601, UTC unless it says otherwise); must be "
                         "within 10 minutes of the system clock")
    confirm.add_argument("--repair", action="store_true", help="the clock is behind the "
                         "floor because a wrong clock dated records ahead: set the floor back")
    confirm.set_defaults(func=_command("clock:cmd_clock_confirm"))

    demo = commands.add_parser("demo", help="a demo CA in DIR, sample requests, and the "
                               "daemon watching its spool")
    demo.add_argument("--dir", default="demo")
    demo.add_argument("--once", action="store_true",
                      help="process the samples once and exit instead of running the daemon")
    demo.set_defaults(func=_command("signing:cmd_demo"))
    add_epilogs(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(sys.stderr)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        from spoolca.commands.asowner import become_owner

        become_owner(args)  # root: as the state directory's owner, before touching it
        return func(args)
    except SpoolcaError as exc:
        print(f"spoolca: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("spoolca: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `spoolca list | head`: the reader had enough, as with cat
        with contextlib.suppress(BrokenPipeError):
            sys.stdout.close()
        sys.stdout = io.StringIO()  # nothing left to flush at exit
        return 141
    except PermissionError as exc:  # a place the command may not use: not a bug
        print(f"spoolca: {_denied(exc)}", file=sys.stderr)
        return 1
    except Exception as exc:  # a bug: one sentence, and where its traceback was kept
        from spoolca.register.damage import damaged

        damage = damaged(exc)
        if damage is not None:  # a damaged disk is not a bug: what to do, and exit 3
            print(f"spoolca: {damage}", file=sys.stderr)
            return damage.exit_code
        where = record_traceback(exc)
        print(f"spoolca: unexpected error ({type(exc).__name__}: {exc}); this is a bug, "
              f"its traceback is in {where}", file=sys.stderr)
        return 1


def _denied(exc: PermissionError) -> str:
    """Permission denied, in a sentence that says who was denied and what to do."""
    from spoolca.privileges import helper

    where = exc.filename or "a file"
    text = f"permission denied: {where}"
    if helper() is not None:  # root's command, running as the state directory's owner
        import pwd

        user = pwd.getpwuid(os.getuid()).pw_name
        text += (f"; root's commands run as {user}, the state directory's owner: give it "
                 f"a folder it may write (chown {user} FOLDER), or mount the stick for it "
                 f"(mount -o uid={user},gid={user} DEVICE DIR)")
    return text


if __name__ == "__main__":
    sys.exit(main())
