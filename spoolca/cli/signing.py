"""The signing work: one pass, the daemon, revocation, renewal, deciding again, CRLs, the
policy's dry run, the demo."""

from __future__ import annotations

import argparse

from spoolca.cli.common import command, positive

__all__ = ["register"]


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    process = commands.add_parser("process", help="one pass over incoming/, then exit")
    process.set_defaults(func=command("signing:cmd_process"))

    serve = commands.add_parser("serve", help="the daemon: watch the spool (systemd "
                                "Type=notify)")
    serve.set_defaults(func=command("signing:cmd_serve"))
    reload = commands.add_parser("reload", help="ask the running daemon to re-read its "
                                 "configuration; wait; exit 1 if it refused it")
    reload.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS")
    reload.set_defaults(func=command("signing:cmd_reload"))

    revoke = commands.add_parser("revoke", help="revoke a certificate; its CRL is remade")
    revoke.add_argument("serial", help="hex, as `spoolca list` shows it; or ssh:user|host:SERIAL "
                        "(or :KEY_ID) for an SSH certificate")
    revoke.add_argument("--reason", default="unspecified", metavar="R",
                        help="an RFC 5280 reason by its OpenSSL name: unspecified, "
                        "keyCompromise, CACompromise, affiliationChanged, superseded, "
                        "cessationOfOperation, certificateHold, removeFromCRL (lifts a hold), "
                        "privilegeWithdrawn, aACompromise")
    revoke.add_argument("--invalidity-date", metavar="T",
                        help="when the key was (or may have been) compromised, ISO 8601")
    revoke.set_defaults(func=command("signing:cmd_revoke"))

    renew = commands.add_parser("renew", help="re-sign a certificate's stored request")
    renew.add_argument("serial")
    renew.set_defaults(func=command("signing:cmd_renew"))

    reconsider = commands.add_parser("reconsider", help="decide a rejected request again "
                                     "(after a policy change): back into incoming/, audited")
    reconsider.add_argument("request", metavar="NAME|SHA256",
                            help="its name under outgoing/, or the request's SHA-256")
    reconsider.set_defaults(func=command("signing:cmd_reconsider"))

    crl = commands.add_parser("crl", help="remake and publish both CRLs now")
    crl.add_argument("--ca", action="append", metavar="NAME",
                     help="only this CA (repeatable; default: every live CA)")
    crl.add_argument("--due", action="store_true", help="only the CRLs that are due (missing, "
                     "behind a revocation, or past their publish interval), as the daemon "
                     "does")
    crl.add_argument("--extend", action="store_true", help="emergency re-sign: the same "
                     "revocations, a new nextUpdate (--until), recorded as such")
    crl.add_argument("--until", metavar="DATE", help="with --extend: the nextUpdate "
                     "(default: now + interval + overlap)")
    crl.add_argument("--presign", type=positive, metavar="N", help="sign N future CRLs per "
                     "CA, one per publish interval, for a trip that must be skipped (none "
                     "can carry a later revocation)")
    crl.set_defaults(func=command("signing:cmd_crl"))

    policy = commands.add_parser("policy", help="policy tools")
    policy_commands = policy.add_subparsers(dest="policy_command", required=True)
    check = policy_commands.add_parser("check", help="dry run: the decision and every reason")
    check.add_argument("file")
    check.add_argument("--profile", help="default: the configured default_profile")
    check.set_defaults(func=command("signing:cmd_policy_check"))
    profiles = policy_commands.add_parser(
        "check-profiles", help="every profile against its issuing CA: a specimen "
        "certificate of each, linted by the rules it claims")
    profiles.set_defaults(func=command("signing:cmd_policy_check_profiles"))

    demo = commands.add_parser("demo", help="a demo CA in DIR, sample requests, and the "
                               "daemon watching its spool")
    demo.add_argument("--dir", default="demo")
    demo.add_argument("--once", action="store_true",
                      help="process the samples once and exit instead of running the daemon")
    demo.set_defaults(func=command("signing:cmd_demo"))
