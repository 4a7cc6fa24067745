"""`spoolca media ingest|export`: requests in from a stick, results out to it; `spoolca
trip close`: the visit ends and the next one is planned."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from spoolca.commands.common import now, opened, parse_moment
from spoolca.config import Config
from spoolca.errors import UsageError
from spoolca.register.store import Store, format_time

if TYPE_CHECKING:
    from spoolca.stick.ingest import IngestReport


def cmd_media_ingest(args: argparse.Namespace) -> int:
    from spoolca.stick.ingest import ingest_from

    source = _stick(args.dir)
    with opened(args) as (config, store):
        report = ingest_from(config, store, source, now(), _identity(args), progress=True)
        print(f"copied {len(report.copied)} file(s) from {source} "
              f"(medium {report.medium.key}) into {config.spool_dir / 'incoming'}/")
        for item in report.skipped:
            print(f"  skipped {item['file']}: {item['reason']}")
        if report.skipped_total > len(report.skipped):
            counts = ", ".join(f"{n} {why}" for why, n in sorted(report.skipped_by_reason.items()))
            print(f"  ... {report.skipped_total} skipped in all: {counts}")
        if args.wait:
            return _wait_for_answers(store, report, args.wait,
                                     config.spool_dir / "outgoing")
    return 0


def _stick(name: str) -> Path:
    """The mounted stick's folder, or one sentence on why it cannot be used."""
    path = Path(name)
    try:
        if path.is_dir():
            return path
    except OSError as exc:
        raise UsageError(f"cannot open {path}: {exc.strerror or exc}") from exc
    raise UsageError(f"{path} is not a directory: give the mounted stick's folder")


def _identity(args: argparse.Namespace) -> Path | None:
    """--identity: the file the media unit's root step filled with `blkid -p -o export`."""
    if args.identity is None:
        return None
    path = Path(args.identity)
    if not path.is_file():
        raise UsageError(f"{path}: no such identity file (blkid -p -o export DEVICE > FILE)")
    return path


def _wait_for_answers(store: Store, report: IngestReport, seconds: float,
                      outgoing: Path) -> int:
    """Until every request taken from the stick is answered and its answer published
    (outgoing/NAME/result.json: the export that follows carries only what is there; a
    request recorded and not yet published would miss the stick), or the deadline."""
    import time

    # Revocation requests too: they are answered (result.json) like CSRs.
    shas = [str(item["sha256"]) for item in report.copied
            if not str(item["as"]).lower().endswith((".asc", ".sig"))]
    deadline = time.monotonic() + seconds
    while (answered := _published(store, shas, outgoing)) < len(shas):
        if time.monotonic() > deadline:
            print(f"only {answered} of {len(shas)} request(s) answered after {seconds:.0f} s; "
                  "the rest will be answered on the next trip")
            return 1
        time.sleep(0.2)
    print(f"all {len(shas)} request(s) answered")
    return 0


def _published(store: Store, shas: list[str], outgoing: Path) -> int:
    """How many of these files (by their bytes) have an answer recorded and published."""
    if (recorded := store.answered(shas)) < len(shas):
        return recorded
    names = store.outputs_of_files(shas)
    return sum(1 for sha in shas if any((outgoing / name / "result.json").exists()
                                         for name in names.get(sha, ())))


def cmd_media_export(args: argparse.Namespace) -> int:
    from spoolca.process.session import CASession
    from spoolca.stick.export import export_to

    target = _stick(args.dir)
    with opened(args) as (config, store):
        if args.through_daemon:  # no key here: the daemon composes and signs
            root, names = export_to(config, store, None, target, now(), _identity(args),
                                    daemon_seconds=args.wait)
        else:
            with CASession(config, store, actor="media") as session:
                session.seal()  # the stick carries the latest signed head
                root, names = export_to(config, store, session.audit_key(), target, now(),
                                        _identity(args), progress=True)
        lapse = _lapse_warning(config, store)
    print(f"wrote {len(names)} result(s), the CA certificates, CRLs and audit log to {root}/ "
          "and synced it: the stick can be removed")
    if lapse:
        print(f"WARNING: {lapse}", file=sys.stderr)
    return 0


def _lapse_warning(config: Config, store: Store) -> str | None:
    """The sentence when the planned next trip comes after the return window closes."""
    from spoolca.register.returnwindow import lapse_before, next_trip, return_window

    moment = now()
    return lapse_before(return_window(config, store, moment), next_trip(config, store, moment))


def cmd_trip_close(args: argparse.Namespace) -> int:
    """The visit ends: the next trip is planned. Exit 1, recording nothing, when a CRL
    would lapse before it, unless --accept-lapse (then recorded as accepted)."""
    from spoolca.register.returnwindow import close_trip

    planned = format_time(parse_moment(args.next)) if args.next else None
    if planned is not None and planned <= format_time(now()):
        raise UsageError(f"--next {planned} is not in the future: give the date the stick "
                         "is to come back")
    with opened(args) as (config, store):
        window, trip, lapse = close_trip(config, store, now(), planned,
                                         accept_lapse=args.accept_lapse)
    if lapse and not args.accept_lapse:
        print(f"REFUSED: {lapse}. Nothing was recorded; give --accept-lapse to close the "
              "trip anyway (recorded in the audit log).", file=sys.stderr)
        return 1
    back = f"; bring the stick back between {window.opens} and {window.closes}" \
        if window else ""
    print(f"trip closed: next trip {trip or 'not planned'}{back}")
    if lapse:
        print(f"WARNING (accepted, recorded): {lapse}", file=sys.stderr)
    return 0


def cmd_verify_publication(args: argparse.Namespace) -> int:
    """Exit 0 only if every CRL of the export may be served; 1 naming each that may not.
    Needs no state directory and no key: it runs on the online web server."""
    import datetime as dt

    from spoolca.commands.audit import trust_of
    from spoolca.stick.publication import MANIFEST, check_publication

    folder = Path(args.dir)
    if not (folder / "crl" / MANIFEST).is_file():
        raise UsageError(f"{folder} holds no crl/{MANIFEST}: give the export's folder (the "
                         "stick's spoolca-results/)")
    armored, fingerprint = trust_of(args, folder / "audit", on_appliance=False)
    checked = check_publication(folder, Path(args.served) if args.served else None,
                                dt.datetime.now(dt.UTC), armored, fingerprint)
    for line in checked.good:
        print(f"ok: {line}")
    for line in checked.refused:
        print(f"REFUSED: {line}")
    if not checked.good and not checked.refused:
        print("nothing to publish: this export carries no CRL (a restored appliance makes "
              "its CRLs at its service's first start)")
    return 1 if checked.refused else 0
