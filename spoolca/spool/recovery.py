"""After a crash: results the register holds are put back on the spool.

A crash between a batch's commit and its publication leaves recorded results with no
folder in outgoing/ (and the originals may already be archived). The register alone
is enough to rebuild each result byte for byte: result.json depends only on what was
recorded, and the certificate is stored.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography import x509

from spoolca.fsutil import publish_folder, remove_tree, sync_filesystem
from spoolca.log import get_logger
from spoolca.register.store import Store
from spoolca.spool.results import ChainFiles, issued_files, rejected_files

__all__ = ["recorded_files", "republish_missing"]

_log = get_logger("spoolca.spool.recovery")


def recorded_files(store: Store, chains: dict[str, ChainFiles], *, name: str, file_name: str,
                   identity: str, profile: str, status: str, serial: str | None,
                   reasons: list[dict[str, str]], decided_at: str
                   ) -> tuple[dict[str, bytes], dict[str, Path]]:
    """The files (and hard links) of a recorded result, rebuilt from the register."""
    if status != "issued" or serial is None:
        return rejected_files(name=name, file_name=file_name, request_sha256=identity,
                              profile=profile, decided_at=decided_at, reasons=reasons), {}
    record = store.certificate(serial)
    assert record is not None, f"the register lost certificate {serial}"
    chain = chains[record.issuer]
    cert = x509.load_der_x509_certificate(record.der)
    return (issued_files(cert, record, chain, name=name, file_name=file_name,
                         decided_at=decided_at, notes=reasons), {"chain.pem": chain.path})


def republish_missing(store: Store, chains: dict[str, ChainFiles], outgoing: Path) -> int:
    """Publish every recorded result missing from outgoing/; drop half-built folders."""
    present = set()
    for entry in os.scandir(outgoing):
        if entry.name.startswith(".") and entry.name.endswith(".tmp"):
            remove_tree(Path(entry.path))  # a folder a crash left half-built
        else:
            present.add(entry.name)
    count = 0
    for name, row in store.latest_submissions().items():
        if name in present:
            continue
        identity, file_name, profile, status, reasons, decided_at = row
        request = store.request(identity)
        files, links = recorded_files(
            store, chains, name=name, file_name=file_name, identity=identity, profile=profile,
            status=status, serial=request.serial if request is not None else None,
            reasons=reasons, decided_at=decided_at)
        publish_folder(outgoing / name, files, links=links)
        count += 1
    if count:
        sync_filesystem([outgoing])
        _log.info("recovered", republished=count)
    return count
