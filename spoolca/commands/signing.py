"""Commands that run the CA: process, revoke, renew, crl, serve, policy check, demo."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import sys
from pathlib import Path

from spoolca.commands.common import config_path, now, opened, parse_moment, serial_arg
from spoolca.config import Config
from spoolca.errors import SpoolcaError, UsageError
from spoolca.log import configure_logging
from spoolca.register.store import CRLRecord, Store, format_time
from spoolca.register.views import is_ssh_name, parse_ssh_name


def cmd_process(args: argparse.Namespace) -> int:
    from spoolca.process.batch import BatchProcessor
    from spoolca.process.instance import hold_instance_lock
    from spoolca.process.passes import run_pass
    from spoolca.process.session import CASession

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


def _publish_crls(config: Config, store: Store, names: list[str] | None,
                  until: dt.datetime | None = None) -> list[str]:
    """Remake CRLs now; return one line each (or why they wait for the daemon)."""
    from spoolca.errors import KeyStoreError
    from spoolca.process.session import CASession

    try:
        with CASession(config, store, actor="cli") as session:
            made = session.refresh_crls(names, until=until)
    except KeyStoreError as exc:
        return [f"the CRL is not remade yet ({exc}); the daemon remakes it on its next turn, "
                "or run `spoolca crl` where the passphrase is available"]
    return [f"published {r.authority} CRL #{r.number} ({r.entries} revoked), valid until "
            f"{r.next_update}: {config.spool_dir / 'outgoing' / 'crl' / r.authority}.crl"
            for r in made]


def cmd_revoke(args: argparse.Namespace) -> int:
    from spoolca.process.session import CASession

    if is_ssh_name(args.serial):  # ssh:CA:SERIAL or ssh:CA:KEY_ID
        from spoolca.commands.ssh import cmd_ssh_revoke

        try:
            ca, which = parse_ssh_name(args.serial)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        return cmd_ssh_revoke(argparse.Namespace(**{**vars(args), "ca": ca, "which": which}))
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


def cmd_reconsider(args: argparse.Namespace) -> int:
    from spoolca.process.reconsider import reconsider

    with opened(args) as (config, store):
        queued = reconsider(config, store, args.request, now())
    print(f"the rejection is forgotten and the request is queued again as {queued}: the "
          "daemon decides it (or run spoolca process)")
    return 0


def cmd_crl(args: argparse.Namespace) -> int:
    """`spoolca crl`: remake every live CA's CRL now; `--extend --until DATE`: the same
    entries with that nextUpdate (an emergency re-sign); `--presign N`: a series of future
    CRLs for a trip that must be skipped."""
    from spoolca.process.session import CASession
    from spoolca.register.generations import live_names

    if args.until and not args.extend:
        raise SpoolcaError("--until goes with --extend")
    if sum(map(bool, (args.extend, args.presign, args.due))) > 1:
        raise SpoolcaError("--due, --extend and --presign do different things: choose one")
    with opened(args) as (config, store):
        names = live_names(store, now())  # and an older generation while its leaves live
        if args.ca:
            unknown = sorted(set(args.ca) - set(names))
            if unknown:
                raise SpoolcaError(f"no live CA named {', '.join(unknown)}: choose among "
                                   f"{', '.join(names)}")
            names = [n for n in names if n in args.ca]
        if args.presign:
            with CASession(config, store, actor="cli") as session:
                series = session.presign_crls(names, args.presign)
            _print_series(config, series)
            return 0
        if args.due:
            from spoolca.authority.revocation import due_crls

            due = set(due_crls(config, store, now()))
            names = [n for n in names if n in due]
            if not names:
                print("no CRL is due: each is within its publish interval")
                return 0
        until = parse_moment(args.until) if args.extend and args.until else None
        lines = _publish_crls(config, store, names, until)
    for line in lines:
        print(line)
    return 0 if all(line.startswith("published") for line in lines) else 1


def _print_series(config: Config, series: dict[str, list[CRLRecord]]) -> None:
    from spoolca.authority.revocation import PRESIGNED_STATEMENT

    folder = config.spool_dir / "outgoing" / "crl-presigned"
    for name, records in series.items():
        print(f"pre-signed {len(records)} {name} CRL(s) #{records[0].number}-"
              f"#{records[-1].number}, to be served from {records[0].this_update} on, "
              f"covering until {records[-1].next_update}: {folder}/")
    if not series:
        print("nothing pre-signed: every CA chosen ends before its next interval")
        return
    made = format_time(now())
    print("WARNING: " + PRESIGNED_STATEMENT.format(made=made).split(". ")[0] + ".",
          file=sys.stderr)


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
    from spoolca.host.fsutil import lock_holder

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
    from spoolca.host.untrusted import read_untrusted
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


def cmd_policy_check_profiles(args: argparse.Namespace) -> int:
    from spoolca.authority.unlock import load_ca_certificates
    from spoolca.process.profilecheck import check_profiles
    from spoolca.register.generations import current_name

    with opened(args) as (config, store):
        current = {base: current_name(store, base) for base in config.authorities}
        reports = check_profiles(config, load_ca_certificates(store), current, now())
    for report in reports:
        verdict = f"{len(report.problems)} problem(s)" if report.problems else "ok"
        linted = f"; linted as {report.rulebook}" if report.rulebook else ""
        print(f"{report.name}: {verdict} ({report.summary}{linted})")
        for problem in report.problems:
            print(f"  profiles.{report.name}.{problem}")
        for note in report.notes:
            print(f"  note: profiles.{report.name}.{note}")
    return 1 if any(report.problems for report in reports) else 0


def cmd_demo(args: argparse.Namespace) -> int:
    from spoolca.demo import run_demo

    # The demo speaks to a person: one line per result of its own, and only warnings
    # and errors from the log (the daemon's JSON lines are for journald).
    configure_logging(sys.stderr, level=logging.WARNING)
    return run_demo(Path(args.dir), once=args.once)
