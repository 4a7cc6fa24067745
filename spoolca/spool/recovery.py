"""After a crash: results the register holds are put back on the spool.

A crash between a commit and its publication leaves recorded results with no folder in
outgoing/ (and the originals may already be archived). The register alone is enough to
rebuild each result byte for byte, as what it was (issued, rejected, revoked): result.json
depends only on what was recorded, and the certificate is stored.
"""

from __future__ import annotations

import os
from pathlib import Path

from spoolca.fsutil import remove_tree
from spoolca.register.store import Status, Store, SubmissionRecord
from spoolca.spool.publisher import PublishJob
from spoolca.spool.results import ChainFiles, issued_files, rejected_files, revocation_files
from spoolca.spool.tree import REVOKE, Spool

__all__ = ["recorded_files", "recorded_jobs"]


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
    if record.status != Status.ISSUED or record.serial is None:
        return rejected_files(name=name, file_name=record.file_name,
                              request_sha256=record.request_sha256, profile=record.profile,
                              decided_at=record.decided_at, reasons=record.findings), {}
    certificate = store.certificate(record.serial)
    assert certificate is not None, f"the register lost certificate {record.serial}"
    chain = chains[certificate.issuer]
    return (issued_files(certificate, chain, name=name, file_name=record.file_name,
                         decided_at=record.decided_at, notes=record.findings),
            {"chain.pem": chain.path})


def recorded_jobs(store: Store, chains: dict[str, ChainFiles], spool: Spool
                  ) -> list[PublishJob]:
    """A publication job for every recorded result missing from outgoing/; half-built
    folders a crash left behind are removed first."""
    present = set()
    for entry in os.scandir(spool.outgoing):
        if entry.name.startswith(".") and entry.name.endswith(".tmp"):
            remove_tree(Path(entry.path))
        else:
            present.add(entry.name)
    jobs = []
    for name, record in store.latest_submissions().items():
        if name not in present:
            files, links = recorded_files(store, chains, record)
            jobs.append(PublishJob(name, files, links, None, record.file_name))
    return jobs
