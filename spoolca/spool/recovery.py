"""After a crash: results the register holds are put back on the spool.

A crash between a commit and its publication leaves recorded results with no folder in
outgoing/ (and the originals may already be archived). The register alone is enough to
rebuild each result byte for byte, as what it was (issued, rejected, revoked): result.json
depends only on what was recorded, and the certificate is stored.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from spoolca.log import get_logger
from spoolca.register.store import Status, Store, SubmissionRecord
from spoolca.register.views import is_ssh_name, parse_ssh_name
from spoolca.spool.outgoing import Outgoing, PublishJob
from spoolca.spool.results import (
    ChainFiles,
    issued_files,
    not_held_files,
    rejected_files,
    revocation_files,
    ssh_files,
)
from spoolca.spool.tree import RESERVED_NAMES, REVOKE, Spool

__all__ = ["recorded_files", "recorded_jobs"]

_log = get_logger("spoolca.spool.recovery")


def recorded_files(store: Store, chains: dict[str, ChainFiles], record: SubmissionRecord,
                   name: str | None = None) -> tuple[dict[str, bytes], dict[str, Path]]:
    """The files (and hard links) of a recorded result, rebuilt from the register; `name`
    is the output folder when it differs from the record's (a new submission of it)."""
    name = name or record.output_name
    if record.profile == REVOKE:
        return revocation_files(name=name, file_name=record.file_name,
                                request_sha256=record.request_sha256,
                                decided_at=record.decided_at, status=record.status,
                                serial=record.serial, reasons=record.findings), {}
    if record.status == Status.ISSUED and is_ssh_name(record.serial):
        return _ssh_files(store, record, name), {}
    if record.status != Status.ISSUED or record.serial is None:
        # Registers before schema 6 did not say; their times differ for most re-sends.
        again = record.again or (bool(record.received_at) and
                                 record.received_at != record.decided_at)
        return rejected_files(name=name, file_name=record.file_name,
                              request_sha256=record.request_sha256, profile=record.profile,
                              decided_at=record.decided_at, reasons=record.findings,
                              again=again), {}
    certificate = store.certificate(record.serial)
    assert certificate is not None, f"the register lost certificate {record.serial}"
    if not certificate.der:  # known from a caught-up audit log alone
        return not_held_files(certificate, name=name, file_name=record.file_name,
                              decided_at=record.decided_at), {}
    chain = chains[certificate.issuer]
    return (issued_files(certificate, chain, name=name, file_name=record.file_name,
                         decided_at=record.decided_at, notes=record.findings),
            {"chain.pem": chain.path})


def _ssh_files(store: Store, record: SubmissionRecord, name: str) -> dict[str, bytes]:
    """An issued SSH certificate's answer, from the register (ssh:CA:SERIAL)."""
    import json

    ca, serial = parse_ssh_name(str(record.serial))
    [found] = store.ssh_certificates(ca, serial=int(serial))
    notes = [{"code": "note.earlier_answer", "message": f"this request was decided on "
              f"{record.decided_at}; that certificate is published again, not signed again"}
             ] if record.again else None
    return ssh_files(name=name, file_name=record.file_name,
                     request_sha256=record.request_sha256, profile=record.profile,
                     decided_at=record.decided_at, ca=ca, serial=int(serial),
                     key_id=found["key_id"], principals=json.loads(found["principals"]),
                     valid_after=found["valid_after"], valid_before=found["valid_before"],
                     certificate=found["certificate"].encode(), notes=notes)


def recorded_jobs(store: Store, chains: dict[str, ChainFiles], spool: Spool,
                  heartbeat: Callable[[], None] = lambda: None
                  ) -> tuple[list[PublishJob], list[str]]:
    """A publication job for every recorded result missing from outgoing/, and for every
    one published after the last confirmed mark (`Store.published_through`) whose files
    are not what the register says (a power cut can leave a folder whose names were
    committed without their bytes); half-built folders a crash left behind are removed
    first. Also the results outgoing/ holds that the register has no submission for."""
    outgoing = Outgoing(spool.outgoing)
    present = outgoing.present()
    jobs = []
    latest = store.latest_submissions()
    for count, (name, record) in enumerate(latest.items()):
        if count % 1024 == 0:
            heartbeat()  # a register of a million results takes a while to go through
        if name not in present:
            files, links = recorded_files(store, chains, record)
            jobs.append(PublishJob(name, files, links, None, record.file_name))
    for name, record in store.latest_submissions(after=store.published_through()).items():
        if name in present:
            files, links = recorded_files(store, chains, record)
            if not outgoing.holds(name, files, links):
                _log.warning("republished a damaged result", name=name)
                jobs.append(PublishJob(name, files, links, None, record.file_name))
    unknown = [name for name in sorted(present - latest.keys() - RESERVED_NAMES)
               if os.path.isfile(outgoing / name / "result.json")]
    return jobs, unknown
