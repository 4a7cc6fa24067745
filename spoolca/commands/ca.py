"""Commands that run the CA: init, process, revoke, renew, crl, serve, policy check, demo."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from spoolca.commands.common import config_path, now, opened, parse_moment, serial_arg
from spoolca.config import Config
from spoolca.errors import SpoolcaError, UsageError
from spoolca.log import configure_logging
from spoolca.register.store import Store

if TYPE_CHECKING:
    from spoolca.authority.ceremony import CeremonyReport

MIN_PASSPHRASE = 8


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
    from spoolca.memory import no_core_dumps

    no_core_dumps()  # before the passphrase is read
    if args.ceremony:
        from spoolca.commands.ceremony import apply_ceremony

        apply_ceremony(args)
    elif args.rehearse:
        raise UsageError("--rehearse rehearses a --ceremony FILE")
    if not args.dir:
        raise UsageError("init needs --dir DIR (or a --ceremony file that names it)")
    passphrase = _init_passphrase(args)
    try:
        root_subject = parse_subject(args.root_subject)
        inter_subject = parse_subject(args.intermediate_subject) if args.intermediate_subject \
            else default_intermediate_subject(root_subject)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    directory = Path(args.dir)
    if args.shares:
        _check_shares(args, directory, passphrase)  # before anything is made
    passphrase_file = str(Path(args.passphrase_file).resolve()) if args.passphrase_file else None
    report = init_ca(directory, root_subject=root_subject, intermediate_subject=inter_subject,
                     key_type=args.key_type, passphrase=passphrase,
                     passphrase_file=passphrase_file, root_days=args.root_days,
                     intermediate_days=args.intermediate_days, now=now())
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
    _ceremony_record(args, report, passphrase)
    return 0


def _ceremony_record(args: argparse.Namespace, report: CeremonyReport,
                     passphrase: bytes | None) -> None:
    """init's shares (if asked) and its ceremony record, signed by the new appliance key."""
    from spoolca.authority.record import certificate_lines, write_record
    from spoolca.commands.shares import issue
    from spoolca.config import load_config
    from spoolca.openpgp import ApplianceKey

    config = load_config(Path(report.config))
    store = Store(config.database)
    key = ApplianceKey(config.gnupg_dir, report.audit_fingerprint, passphrase)
    try:
        shares: list[Path] = []
        if args.shares and passphrase is not None:
            shares = issue(argparse.Namespace(shares=args.shares, custodian=args.custodian,
                                              out=args.shares_out), config, store, passphrase,
                           "shares.issued")
        parameters = [("root days", str(args.root_days)),
                      ("intermediate days", str(args.intermediate_days)),
                      ("key type", args.key_type),
                      ("keys at rest", "encrypted" if report.encrypted else "NOT encrypted"),
                      ("shares", f"{args.shares[0]}-of-{args.shares[1]}: "
                       f"{', '.join(args.custodian)}" if shares else "none")]
        outgoing = config.spool_dir / "outgoing"
        outputs = [*sorted((outgoing / "ca").glob("*.pem")), *sorted((outgoing / "crl").glob(
            "*.crl")), *sorted(config.keys_dir.glob("*.pem")), config.path, *shares]
        if args.rehearse:
            parameters.insert(0, ("REHEARSAL", "throwaway keys in a temporary directory: "
                                  "never use this CA"))
        record = write_record(config, store, key, "init-rehearsal" if args.rehearse else "init",
                              now(), parameters,
                              [*certificate_lines("root CA", report.root),
                               *certificate_lines("intermediate CA", report.intermediate)],
                              outputs)
        print(f"  ceremony      {record} (signed; print it for the binder)")
        if args.rehearse:
            print(f"REHEARSAL: throwaway keys in {report.directory}; review the record, "
                  "then remove the folder and run the ceremony for real")
    finally:
        key.close()
        store.close()


def _check_shares(args: argparse.Namespace, directory: Path, passphrase: bytes | None) -> None:
    """init --shares: refused before the CA is made, not halfway."""
    from spoolca.commands.shares import check_plan

    if passphrase is None:
        raise UsageError("--shares splits the passphrase: give --passphrase-file")
    check_plan(args.shares, args.custodian or [], args.shares_out, directory)


def cmd_process(args: argparse.Namespace) -> int:
    from spoolca.process.batch import BatchProcessor
    from spoolca.process.passes import run_pass
    from spoolca.process.session import CASession
    from spoolca.service.daemon import hold_instance_lock

    with opened(args) as (config, store):
        hold_instance_lock(config)
        with CASession(config, store) as session:
            summary = run_pass(BatchProcessor(session), shown=True)
    total = len(summary.outcomes)
    print(f"processed {total} request(s): {summary.issued} issued, {summary.rejected} rejected, "
          f"{summary.republished} re-published; results in {config.spool_dir / 'outgoing'}/")
    for outcome in summary.outcomes:
        if outcome.status == "rejected" and not outcome.republished:
            codes = ", ".join(f.code for f in outcome.findings)
            print(f"  rejected {outcome.file_name}: {codes}")
    return 0


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

    serial = serial_arg(args.serial)
    invalidity = parse_moment(args.invalidity_date) if args.invalidity_date else None
    with opened(args) as (config, store):
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

    serial = serial_arg(args.serial)
    with opened(args) as (config, store), CASession(config, store, actor="cli") as session:
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
    with opened(args) as (config, store):
        lines = _publish_crls(config, store, ["root", "intermediate"])
    for line in lines:
        print(line)
    return 0 if all(line.startswith("published") for line in lines) else 1


def cmd_serve(args: argparse.Namespace) -> int:
    from spoolca.service.daemon import Daemon

    configure_logging(sys.stdout)  # journald reads stdout; JSON unless on a terminal
    return Daemon(config_path(args)).run()


def cmd_reload(args: argparse.Namespace) -> int:
    """Ask the running daemon to re-read its configuration and wait for its answer: exit
    0 if it applied it, 1 if it refused (the unit's ExecReload=, so `systemctl reload`
    tells the truth)."""
    import signal
    import time

    from spoolca.service.daemon import reload_answer_path

    path = config_path(args)
    pid = _daemon_pid(path)
    answer = reload_answer_path(path)
    before = _generation(answer)
    os.kill(pid, signal.SIGHUP)
    deadline = time.monotonic() + args.timeout
    while (after := _generation(answer)) == before:
        if time.monotonic() > deadline:
            raise SpoolcaError(f"the daemon (pid {pid}) did not answer the reload within "
                               f"{args.timeout:.0f} s; see its log")
        time.sleep(0.05)
    body = json.loads(answer.read_text())
    print(f"{'reloaded' if body['applied'] else 'refused'}: {body['message']}")
    return 0 if body["applied"] and after else 1


def _daemon_pid(path: Path) -> int:
    """$MAINPID under systemd; else the pid in the daemon's lock file, if it is held."""
    from spoolca.fsutil import lock_holder

    if os.environ.get("MAINPID", "").isdigit():
        return int(os.environ["MAINPID"])
    pid = lock_holder(path.resolve().parent / "spoolca.lock")
    if pid is None:
        raise SpoolcaError(f"no spoolca daemon is running for {path}")
    return pid


def _generation(answer: Path) -> int:
    try:
        return int(json.loads(answer.read_text())["generation"])
    except (OSError, ValueError, KeyError):
        return 0


def cmd_policy_check(args: argparse.Namespace) -> int:
    from spoolca.fsutil import read_untrusted
    from spoolca.process.dryrun import check_request

    with opened(args) as (config, store):
        read = read_untrusted(Path(args.file), config.max_request_bytes)
        if read.data is None:
            raise SpoolcaError(f"failed to read {args.file}: {read.detail}")
        profile = args.profile or config.default_profile
        verdict, findings = check_request(config, store, read.data, profile, now())
    if verdict == "accepted":
        print(f"accepted: {args.file} would be issued under profile {profile}")
        return 0
    print(f"rejected: {args.file} under profile {profile}, {len(findings)} reason(s):")
    for finding in findings:
        print(f"  {finding.code}: {finding.message}")
    return 1


def cmd_demo(args: argparse.Namespace) -> int:
    from spoolca.demo import run_demo

    if not args.once:
        configure_logging(sys.stdout)
    return run_demo(Path(args.dir), once=args.once)
