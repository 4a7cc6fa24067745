"""`spoolca media ingest|export`: requests in from a stick, results out to it."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from spoolca.commands.common import now, opened
from spoolca.errors import UsageError
from spoolca.register.store import Store

if TYPE_CHECKING:
    from spoolca.spool.media import IngestReport


def cmd_media_ingest(args: argparse.Namespace) -> int:
    from spoolca.spool.media import ingest_from

    source = Path(args.dir)
    if not source.is_dir():
        raise UsageError(f"{source} is not a directory: give the mounted stick's folder")
    with opened(args) as (config, store):
        report = ingest_from(config, store, source, now())
        print(f"copied {len(report.copied)} file(s) from {source} "
              f"(medium {report.medium.key}) into {config.spool_dir / 'incoming'}/")
        for item in report.skipped:
            print(f"  skipped {item['file']}: {item['reason']}")
        if report.skipped_total > len(report.skipped):
            counts = ", ".join(f"{n} {why}" for why, n in sorted(report.skipped_by_reason.items()))
            print(f"  ... {report.skipped_total} skipped in all: {counts}")
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
    with opened(args) as (config, store), CASession(config, store, actor="media") as session:
        session.seal()  # the stick carries the latest signed head; only the audit key opens
        root, names = export_to(config, store, session.audit_key(), target, now())
    print(f"wrote {len(names)} result(s), the CA certificates, CRLs and audit log to {root}/ "
          "and synced it: the stick can be removed")
    return 0
