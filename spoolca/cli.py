"""The command line: parse, call, render. No logic of its own.

Exit status: 0 success, 1 the operation failed or found a problem, 2 usage or
configuration error. Expected errors are one sentence on stderr; rejections during
`process` are results, not failures.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import getpass
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from spoolca import __version__
from spoolca.config import Config, load_config
from spoolca.errors import SpoolcaError, UsageError
from spoolca.keys.algorithms import DEFAULT_KEY_TYPE, KEY_TYPES
from spoolca.log import configure_logging, record_traceback
from spoolca.register.store import Store

if TYPE_CHECKING:
    from spoolca.spool.media import IngestReport

__all__ = ["main"]

DEFAULT_CONFIG = Path("/etc/spoolca/spoolca.toml")
MIN_PASSPHRASE = 8
DEFAULT_ROOT_SUBJECT = "/CN=spoolca Root CA"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _config_path(args: argparse.Namespace) -> Path:
    if args.config:
        return Path(args.config)
    env = os.environ.get("SPOOLCA_CONFIG")
    return Path(env) if env else DEFAULT_CONFIG


def _load(args: argparse.Namespace) -> Config:
    return load_config(_config_path(args))


@contextlib.contextmanager
def _opened(args: argparse.Namespace) -> Iterator[tuple[Config, Store]]:
    config = _load(args)
    store = Store(config.database)
    try:
        yield config, store
    finally:
        store.close()


# -- init ------------------------------------------------------------------------------

def _init_passphrase(args: argparse.Namespace) -> bytes | None:
    if args.passphrase_file and args.no_passphrase:
        raise UsageError("--passphrase-file and --no-passphrase contradict each other; give one")
    if args.no_passphrase:
        return None
    if args.passphrase_file:
        try:
            data = Path(args.passphrase_file).read_bytes()
        except OSError as exc:
            raise UsageError(f"failed to read the passphrase file {args.passphrase_file}: "
                             f"{exc.strerror}") from None
        passphrase = data[:-1] if data.endswith(b"\n") else data
    elif sys.stdin.isatty():
        first = getpass.getpass("CA key passphrase: ")
        if first != getpass.getpass("Repeat the passphrase: "):
            raise UsageError("the two passphrases differ; nothing was created")
        passphrase = first.encode()
    else:
        raise UsageError("init needs --passphrase-file FILE (or --no-passphrase to store the "
                         "keys unencrypted) when not run on a terminal")
    if len(passphrase) < MIN_PASSPHRASE:
        raise UsageError(f"the passphrase must have at least {MIN_PASSPHRASE} characters")
    return passphrase


def cmd_init(args: argparse.Namespace) -> int:
    from spoolca.authority.ceremony import default_intermediate_subject, init_ca
    from spoolca.dn import parse_subject

    passphrase = _init_passphrase(args)
    try:
        root_subject = parse_subject(args.root_subject)
        inter_subject = parse_subject(args.intermediate_subject) if args.intermediate_subject \
            else default_intermediate_subject(root_subject)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    directory = Path(args.dir)
    passphrase_file = str(Path(args.passphrase_file).resolve()) if args.passphrase_file else None
    report = init_ca(directory, root_subject=root_subject, intermediate_subject=inter_subject,
                     key_type=args.key_type, passphrase=passphrase,
                     passphrase_file=passphrase_file, root_days=args.root_days,
                     intermediate_days=args.intermediate_days, now=_now())
    state = "encrypted with your passphrase" if report.encrypted \
        else "NOT encrypted (--no-passphrase)"
    print(f"Created a new CA in {directory}/")
    for label, cert in (("root", report.root), ("intermediate", report.intermediate)):
        print(f"  {label:<13} {cert.subject.rfc4514_string()}, valid until "
              f"{cert.not_valid_after_utc:%Y-%m-%d}")
    print(f"  keys          {directory}/keys/ (mode 0400, {state})")
    print(f"  config        {report.config}")
    print(f"  certificates  {directory}/spool/outgoing/ca/, CRLs in spool/outgoing/crl/")
    print(f"  audit key     {report.audit_fingerprint} (OpenPGP, in {directory}/gnupg/): give "
          "auditors this fingerprint")
    print(f"Put requests in {directory}/spool/incoming/[server|client|subca]/ and run "
          f"`spoolca --config {report.config} process`.")
    return 0


# -- process, policy check ----------------------------------------------------------------

def cmd_process(args: argparse.Namespace) -> int:
    from spoolca.process.batch import BatchProcessor
    from spoolca.process.passes import run_pass
    from spoolca.process.session import CASession
    from spoolca.service.daemon import hold_instance_lock

    with _opened(args) as (config, store):
        hold_instance_lock(config)
        with CASession(config, store) as session:
            summary = run_pass(BatchProcessor(session))
    total = len(summary.outcomes)
    print(f"processed {total} request(s): {summary.issued} issued, {summary.rejected} rejected, "
          f"{summary.republished} re-published; results in {config.spool_dir / 'outgoing'}/")
    for outcome in summary.outcomes:
        if outcome.status == "rejected" and not outcome.republished:
            codes = ", ".join(f.code for f in outcome.findings)
            print(f"  rejected {outcome.file_name}: {codes}")
    return 0


def _serial(text: str, error: type[SpoolcaError] = SpoolcaError) -> str:
    """A serial from the command line, in the register's notation; `error` if not hex."""
    from spoolca.register.views import normalize_serial

    try:
        return normalize_serial(text)
    except ValueError as exc:
        raise error(str(exc)) from None


def _parse_moment(text: str) -> dt.datetime:
    """ISO 8601 (2026-11-01, 2026-11-01T12:00:00Z, with an offset); naive times are UTC."""
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"{text!r} is not a date: use ISO 8601, e.g. 2026-11-01T12:00:00Z"
                         ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _publish_crls(config: Config, store: Store, names: list[str] | None) -> list[str]:
    """Remake CRLs now; return one line each (or why they wait for the daemon)."""
    from spoolca.errors import KeyStoreError
    from spoolca.process.session import CASession

    try:
        with CASession(config, store, actor="cli") as session:
            made = session.refresh_crls(names)
    except KeyStoreError as exc:
        return [f"the CRL is not remade yet ({exc}); the daemon remakes it on its next turn, "
                "or run `spoolca crl` where the passphrase is available"]
    return [f"published {r.authority} CRL #{r.number} ({r.entries} revoked), valid until "
            f"{r.next_update}: {config.spool_dir / 'outgoing' / 'crl' / r.authority}.crl"
            for r in made]


def cmd_revoke(args: argparse.Namespace) -> int:
    from spoolca.process.session import CASession

    serial = _serial(args.serial)
    invalidity = _parse_moment(args.invalidity_date) if args.invalidity_date else None
    with _opened(args) as (config, store):
        with CASession(config, store, actor="cli") as session:
            record = session.revoke(serial, args.reason, invalidity)
        verb = "lifted the hold on" if args.reason == "removeFromCRL" else "revoked"
        print(f"{verb} {serial} ({record.subject}), reason {args.reason}")
        for line in _publish_crls(config, store, [record.issuer]):
            print(line)
    return 0


def cmd_renew(args: argparse.Namespace) -> int:
    from spoolca.process.batch import BatchProcessor
    from spoolca.process.renewal import renew
    from spoolca.process.session import CASession

    serial = _serial(args.serial)
    with _opened(args) as (config, store), CASession(config, store, actor="cli") as session:
        outcome = renew(BatchProcessor(session), serial)
        if outcome.status != "issued":
            codes = ", ".join(f"{f.code} ({f.message})" for f in outcome.findings)
            raise SpoolcaError(f"certificate {serial} was not renewed: {codes}")
        print(f"renewed {serial} as {outcome.serial}: "
              f"{config.spool_dir / 'outgoing' / outcome.output_name}/")
        for line in _publish_crls(config, store, None):
            print(line)
    return 0


def cmd_crl(args: argparse.Namespace) -> int:
    with _opened(args) as (config, store):
        lines = _publish_crls(config, store, ["root", "intermediate"])
    for line in lines:
        print(line)
    return 0 if all(line.startswith("published") for line in lines) else 1


def cmd_audit_export(args: argparse.Namespace) -> int:
    from spoolca.process.session import CASession
    from spoolca.register.audit import export

    with _opened(args) as (config, store), CASession(config, store, actor="cli") as session:
        session.seal()  # the audit key alone is unlocked
        folder = Path(args.target) if args.target else config.spool_dir / "outgoing" / "audit"
        last = export(store, folder, session.audit_key())
        if args.target:
            with store.transaction("cli", _now()) as tx:
                tx.record("audit.exported", {"folder": str(folder), "through_seq": last})
    print(f"exported the audit log through entry {last} to {folder}/")
    return 0


def _audit_key_for(args: argparse.Namespace) -> tuple[str, str]:
    """(armored public key, fingerprint): --key, or this appliance's own key."""
    from spoolca.openpgp import ApplianceKey

    if args.key:
        armored = Path(args.key).read_text()
        fingerprint = args.fingerprint or _fingerprint_of(armored)
        return armored, fingerprint
    with _opened(args) as (config, store):
        fingerprint = store.meta("audit_key_fingerprint") or ""
        armored = ApplianceKey(config.gnupg_dir, fingerprint, None).public_key()
    if args.fingerprint and args.fingerprint.upper() != fingerprint.upper():
        raise SpoolcaError(f"this appliance's audit key is {fingerprint}, not {args.fingerprint}")
    return armored, fingerprint


def _fingerprint_of(armored: str) -> str:
    from spoolca.openpgp import Keyring

    with Keyring(armored) as keyring:
        fingerprints = sorted(keyring.fingerprints)
    if len(fingerprints) != 1:
        raise UsageError("--key must hold exactly one OpenPGP public key")
    return fingerprints[0]


def cmd_audit_verify(args: argparse.Namespace) -> int:
    from spoolca.register.audit import verify_export

    armored, fingerprint = _audit_key_for(args)
    folder = Path(args.dir) if args.dir else _load(args).spool_dir / "outgoing" / "audit"
    since = Path(args.since_checkpoint) if args.since_checkpoint else None
    damages, entries, signed = verify_export(folder, armored, fingerprint, since)
    if damages and damages[0].kind != "unsigned tail":
        damage = damages[0]
        print(f"DAMAGED at entry {damage.seq}: {damage.kind}: {damage.message}")
        return 1
    print(f"intact: {entries} entries, the chain recomputed; signed through entry {signed} "
          f"by {fingerprint}")
    if damages:
        print(f"note: {damages[0].message} (an unsigned tail, not tampering: the next "
              "checkpoint will sign them)")
    return 0


def cmd_audit_show(args: argparse.Namespace) -> int:
    with _opened(args) as (_config, store):
        rows = list(store.audit_entries())
    shown = []
    for seq, time, event, actor, data, _prev, _digest in rows:
        fields = json.loads(data)
        if args.event and not event.startswith(args.event):
            continue
        if args.serial and args.serial.upper() not in data.upper():
            continue
        if args.since and time < args.since:
            continue
        shown.append({"seq": seq, "time": time, "event": event, "actor": actor, "data": fields})
    if args.json:
        print(json.dumps(shown, indent=2, ensure_ascii=False))
        return 0
    print(f"{'SEQ':>6} {'TIME':<20} {'EVENT':<22} {'ACTOR':<8} DETAIL")
    for entry in shown:
        print(f"{entry['seq']:>6} {entry['time']:<20} {entry['event']:<22} "
              f"{entry['actor']:<8} {_detail(entry['data'])}")
    return 0


def _detail(data: dict[str, object]) -> str:
    """The few fields an auditor reads first: who, which serial, what outcome, why."""
    keys = ("file", "serial", "subject", "reason", "codes", "authority", "number",
            "next_update", "sha256")
    parts = [f"{k}={data[k]}" for k in keys if data.get(k) not in (None, [], "")]
    return " ".join(parts) if parts else json.dumps(data, sort_keys=True)[:120]


def cmd_media_ingest(args: argparse.Namespace) -> int:
    from spoolca.spool.media import ingest_from

    source = Path(args.dir)
    if not source.is_dir():
        raise UsageError(f"{source} is not a directory: give the mounted stick's folder")
    with _opened(args) as (config, store):
        report = ingest_from(config, store, source, _now())
        print(f"copied {len(report.copied)} file(s) from {source} "
              f"(medium {report.medium.key}) into {config.spool_dir / 'incoming'}/")
        for item in report.skipped:
            print(f"  skipped {item['file']}: {item['reason']}")
        if args.wait:
            return _wait_for_answers(store, report, args.wait)
    return 0


def _wait_for_answers(store: Store, report: IngestReport, seconds: float) -> int:
    """Until the daemon has answered every request taken from the stick, or the deadline."""
    import time

    # Revocation requests too: they are answered (result.json) like CSRs.
    shas = [str(item["sha256"]) for item in report.copied
            if not str(item["as"]).lower().endswith((".asc", ".sig"))]
    deadline = time.monotonic() + seconds
    while (answered := store.answered(shas)) < len(shas):
        if time.monotonic() > deadline:
            print(f"only {answered} of {len(shas)} request(s) answered after {seconds:.0f} s; "
                  "the rest will be answered on the next trip")
            return 1
        time.sleep(0.2)
    print(f"all {len(shas)} request(s) answered")
    return 0


def cmd_media_export(args: argparse.Namespace) -> int:
    from spoolca.process.session import CASession
    from spoolca.spool.media import export_to

    target = Path(args.dir)
    if not target.is_dir():
        raise UsageError(f"{target} is not a directory: give the mounted stick's folder")
    with _opened(args) as (config, store), CASession(config, store, actor="media") as session:
        session.seal()  # the stick carries the latest signed head; only the audit key opens
        root, names = export_to(config, store, session.audit_key(), target, _now())
    print(f"wrote {len(names)} result(s), the CA certificates, CRLs and audit log to {root}/ "
          "and synced it: the stick can be removed")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from spoolca.service.daemon import Daemon

    configure_logging(sys.stdout)  # journald reads stdout; JSON unless on a terminal
    return Daemon(_config_path(args)).run()


def cmd_policy_check(args: argparse.Namespace) -> int:
    from spoolca.fsutil import read_untrusted
    from spoolca.process.dryrun import check_request

    with _opened(args) as (config, store):
        read = read_untrusted(Path(args.file), config.max_request_bytes)
        if read.data is None:
            raise SpoolcaError(f"failed to read {args.file}: {read.detail}")
        profile = args.profile or config.default_profile
        verdict, findings = check_request(config, store, read.data, profile, _now())
    if verdict == "accepted":
        print(f"accepted: {args.file} would be issued under profile {profile}")
        return 0
    print(f"rejected: {args.file} under profile {profile}, {len(findings)} reason(s):")
    for finding in findings:
        print(f"  {finding.code}: {finding.message}")
    return 1


# -- register views --------------------------------------------------------------------

def cmd_list(args: argparse.Namespace) -> int:
    from spoolca.authority.revocation import crl_status
    from spoolca.register.views import record_as_dict, select

    now = _now()
    with _opened(args) as (config, store):
        records = select(store.certificates(), now, status=args.status,
                         expiring_days=args.expiring)
        crls = crl_status(config, store)
    if args.json:
        print(json.dumps([record_as_dict(r, now) for r in records], indent=2))
        return 0
    print(f"{'SERIAL':<34} {'STATUS':<8} {'NOT AFTER':<20} {'PROFILE':<8} SUBJECT")
    for r in records:
        print(f"{r.serial:<34} {r.status(now):<8} {r.not_after:<20} {r.profile:<8} {r.subject}")
    for crl in crls:
        print(f"{crl.authority} CRL #{crl.number} valid until {crl.next_update}; the next one "
              f"is made from {crl.refresh_at}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    from spoolca.errors import NotFoundError
    from spoolca.register.views import show_text

    serial = _serial(args.serial, UsageError)
    with _opened(args) as (_config, store):
        record = store.certificate(serial)
    if record is None:
        raise NotFoundError(f"no certificate with serial {serial} in the register")
    sys.stdout.write(show_text(record, _now()))
    return 0


def cmd_export_index(args: argparse.Namespace) -> int:
    from spoolca.register.views import index_line

    now = _now()
    with _opened(args) as (_config, store):
        lines = [index_line(r, now) for r in store.certificates()]
    sys.stdout.write("".join(lines))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from spoolca.demo import run_demo

    if not args.once:
        configure_logging(sys.stdout)
    return run_demo(Path(args.dir), once=args.once)


# -- parser --------------------------------------------------------------------------------

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
                        "$SPOOLCA_CONFIG, else /etc/spoolca/spoolca.toml)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    init = commands.add_parser("init", help="create a new root and intermediate CA")
    init.add_argument("--dir", required=True, help="the new state directory")
    init.add_argument("--root-subject", default=DEFAULT_ROOT_SUBJECT, metavar="DN",
                      help="OpenSSL -subj form: /C=US/ST=New York/O=Example/CN=Example Root CA")
    init.add_argument("--intermediate-subject", metavar="DN",
                      help="default: the root subject with 'Root' in its CN made 'Intermediate'")
    init.add_argument("--key-type", choices=KEY_TYPES, default=DEFAULT_KEY_TYPE,
                      help=f"CA key type (default {DEFAULT_KEY_TYPE})")
    init.add_argument("--passphrase-file", metavar="F", help="encrypt the keys with the "
                      "passphrase in F (and read it from there at run time)")
    init.add_argument("--no-passphrase", action="store_true",
                      help="store the CA keys unencrypted (not recommended)")
    init.add_argument("--root-days", type=_positive, default=7305, help="default 7305 (20 y)")
    init.add_argument("--intermediate-days", type=_positive, default=3653,
                      help="default 3653 (10 y), capped by the root's validity")
    init.set_defaults(func=cmd_init)

    process = commands.add_parser("process", help="one pass over incoming/, then exit")
    process.set_defaults(func=cmd_process)

    serve = commands.add_parser("serve", help="the daemon: watch the spool (systemd "
                                "Type=notify)")
    serve.set_defaults(func=cmd_serve)

    listing = commands.add_parser("list", help="the certificate register")
    listing.add_argument("--json", action="store_true")
    listing.add_argument("--status", choices=("valid", "revoked", "expired"))
    listing.add_argument("--expiring", type=_positive, metavar="DAYS",
                         help="only valid certificates that expire within DAYS")
    listing.set_defaults(func=cmd_list)

    revoke = commands.add_parser("revoke", help="revoke a certificate; its CRL is remade")
    revoke.add_argument("serial")
    revoke.add_argument("--reason", default="unspecified", metavar="R",
                        help="an RFC 5280 reason by its OpenSSL name: unspecified, "
                        "keyCompromise, CACompromise, affiliationChanged, superseded, "
                        "cessationOfOperation, certificateHold, removeFromCRL (lifts a hold), "
                        "privilegeWithdrawn, aACompromise")
    revoke.add_argument("--invalidity-date", metavar="T",
                        help="when the key was (or may have been) compromised, ISO 8601")
    revoke.set_defaults(func=cmd_revoke)

    renew = commands.add_parser("renew", help="re-sign a certificate's stored request")
    renew.add_argument("serial")
    renew.set_defaults(func=cmd_renew)

    crl = commands.add_parser("crl", help="remake and publish both CRLs now")
    crl.set_defaults(func=cmd_crl)

    audit = commands.add_parser("audit", help="the signed audit log")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True)
    audit_export = audit_commands.add_parser("export", help="sign a checkpoint and export the "
                                             "log (to outgoing/audit/, or DIR)")
    audit_export.add_argument("target", nargs="?", metavar="DIR")
    audit_export.set_defaults(func=cmd_audit_export)
    audit_verify = audit_commands.add_parser("verify", help="check an exported log: exit 0 "
                                             "if intact, 1 naming the first damage")
    audit_verify.add_argument("--dir", help="the exported log (default: outgoing/audit/)")
    audit_verify.add_argument("--key", metavar="FILE", help="the appliance's public key "
                              "(armored); default: this appliance's own")
    audit_verify.add_argument("--fingerprint", help="the key's expected fingerprint")
    audit_verify.add_argument("--since-checkpoint", metavar="FILE",
                              help="a checkpoint exported earlier (FILE.asc beside it): the "
                              "log must extend it")
    audit_verify.set_defaults(func=cmd_audit_verify)
    audit_show = audit_commands.add_parser("show", help="the log, readable")
    audit_show.add_argument("--json", action="store_true")
    audit_show.add_argument("--event", metavar="E", help="events starting with E")
    audit_show.add_argument("--serial", metavar="S")
    audit_show.add_argument("--since", metavar="T", help="entries from time T (ISO 8601)")
    audit_show.set_defaults(func=cmd_audit_show)

    media = commands.add_parser("media", help="requests in from a stick, results out to it")
    media_commands = media.add_subparsers(dest="media_command", required=True)
    media_ingest = media_commands.add_parser("ingest", help="copy a mounted stick's requests "
                                             "into incoming/, defensively")
    media_ingest.add_argument("dir")
    media_ingest.add_argument("--wait", type=float, metavar="SECONDS", default=0,
                              help="then wait up to SECONDS for the daemon to answer them")
    media_ingest.set_defaults(func=cmd_media_ingest)
    media_export = media_commands.add_parser("export", help="write results, CA files, CRLs "
                                             "and the audit log to a mounted stick")
    media_export.add_argument("dir")
    media_export.set_defaults(func=cmd_media_export)

    show = commands.add_parser("show", help="one certificate, human-readable")
    show.add_argument("serial")
    show.set_defaults(func=cmd_show)

    index = commands.add_parser("export-index", help="the register as OpenSSL index.txt")
    index.set_defaults(func=cmd_export_index)

    policy = commands.add_parser("policy", help="policy tools")
    policy_commands = policy.add_subparsers(dest="policy_command", required=True)
    check = policy_commands.add_parser("check", help="dry run: the decision and every reason")
    check.add_argument("file")
    check.add_argument("--profile", help="default: the configured default_profile")
    check.set_defaults(func=cmd_policy_check)

    demo = commands.add_parser("demo", help="a demo CA in DIR, sample requests, and the "
                               "daemon watching its spool")
    demo.add_argument("--dir", default="demo")
    demo.add_argument("--once", action="store_true",
                      help="process the samples once and exit instead of running the daemon")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(sys.stderr)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except SpoolcaError as exc:
        print(f"spoolca: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("spoolca: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: one sentence, and where its traceback was kept
        where = record_traceback(exc)
        print(f"spoolca: unexpected error ({type(exc).__name__}: {exc}); this is a bug, "
              f"its traceback is in {where}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
