"""outgoing/: everything spoolca hands out, written by this module alone.

DESIGN's one publication path. Results (a batch of folders), the CA files, the CRLs and
their schedule, the signed audit log, ceremony records, cross-certificates: each is a
method of Outgoing, so each gets the same care (temp-then-rename, fsync, the modes a
relying party needs). The rest of the code reads outgoing/ (an export copies it to a
stick, recovery compares it with the register) and hands bytes here to write; the layout
test holds every other module to that (tests/test_layout.py).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from spoolca.host.fsutil import (
    SHARED_DIR,
    atomic_write,
    ensure_dir,
    exclusive_lock,
    remove_file,
    remove_tree,
    reveal,
    stage_folder,
    sync_filesystem,
)
from spoolca.host.untrusted import read_untrusted
from spoolca.register.audit import export
from spoolca.spool.tree import RESERVED_NAMES, Spool, archive_file, remove_empty_claims

if TYPE_CHECKING:
    from spoolca.keys.openpgp import ApplianceKey
    from spoolca.register.store import Store

__all__ = ["CRL_BUNDLE", "PRESIGNED", "PRESIGNED_NOTICE", "Outgoing", "PublishJob",
           "presigned_name"]

CRL_BUNDLE = "crl-bundle.pem"  # outgoing/crl/: every CA's CRL, for nginx and OpenVPN
PRESIGNED = "crl-presigned"    # outgoing/crl-presigned/: a series of future CRLs
PRESIGNED_NOTICE = "README.txt"


def presigned_name(authority: str, this_update: str) -> str:
    """A pre-signed CRL's file: its CA and the time from which it is to be served
    (sorted by name, the files are in the order they are served)."""
    return f"{authority}--from-{this_update.replace(':', '')}.crl"


@dataclass(frozen=True, slots=True)
class PublishJob:
    """One result folder to write and the original to archive after it."""

    output_name: str
    files: dict[str, bytes]       # empty: the result is already out (recovery archives)
    links: dict[str, Path]
    original: Path | None         # None: nothing to archive (renewal, re-publication)
    file_name: str
    signature: Path | None = None
    request_file: Path | None = None  # an SSH key's NAME.json, archived with it


@dataclass(frozen=True, slots=True)
class Outgoing:
    """The outgoing/ folder of one spool."""

    root: Path

    @classmethod
    def of(cls, spool_dir: Path) -> Outgoing:
        return cls(Spool(spool_dir).outgoing)

    # -- where things are (to read) -----------------------------------------------------

    @property
    def ca(self) -> Path:
        return self.root / "ca"

    @property
    def crl(self) -> Path:
        return self.root / "crl"

    @property
    def audit(self) -> Path:
        return self.root / "audit"

    @property
    def ceremony(self) -> Path:
        return self.root / "ceremony"

    def __truediv__(self, name: str) -> Path:
        """outgoing/NAME, to read."""
        return self.root / name

    # -- writing ------------------------------------------------------------------------

    def create(self) -> None:
        """The fixed folders: ca/, crl/, audit/ and ceremony/."""
        for name in sorted(RESERVED_NAMES):
            ensure_dir(self.root / name, SHARED_DIR)

    def results(self, archive: Path, jobs: Sequence[PublishJob]) -> None:
        """Results staged and made durable before any appears (invariant 14: a rename that
        another fsync commits must not publish empty files); then revealed, and the
        originals archived; then that is made durable too. A crash at any point leaves
        each result either whole under its name or absent (recovery publishes it from the
        register)."""
        staged = [stage_folder(self.root / job.output_name, job.files, links=job.links)
                  for job in jobs if job.files or job.links]
        sync_filesystem([self.root])
        for folder in staged:
            reveal(folder)
        emptied = set()
        for job in jobs:
            if job.original is not None:
                archive_file(archive, job.original, job.file_name, job.output_name,
                             job.signature, job.request_file)
                emptied.add(job.original.parent)
        sync_filesystem([self.root, archive])
        remove_empty_claims(emptied)

    def present(self) -> set[str]:
        """The names outgoing/ holds, once the half-built folders a crash left behind
        (.NAME.tmp) are removed."""
        present = set()
        for entry in os.scandir(self.root):
            if entry.name.startswith(".") and entry.name.endswith(".tmp"):
                remove_tree(Path(entry.path))
            else:
                present.add(entry.name)
        return present

    def holds(self, name: str, files: dict[str, bytes], links: dict[str, Path]) -> bool:
        """Whether outgoing/NAME holds exactly these files, and these links' bytes, under
        these names (its stale temporary files, from a re-publication a crash
        interrupted, are removed)."""
        folder = self.root / name
        try:
            expected = {**files, **{n: source.read_bytes() for n, source in links.items()}}
            for entry in os.scandir(folder):
                if entry.name.startswith(".") and entry.name.endswith(".tmp"):
                    remove_file(Path(entry.path))
            for file_name, data in expected.items():
                if read_untrusted(folder / file_name, len(data)).data != data:
                    return False
        except OSError:
            return False
        return True

    def ca_files(self, files: dict[str, bytes]) -> None:
        """outgoing/ca/: the CA certificates and chains (spool.results.ca_files)."""
        ensure_dir(self.ca, SHARED_DIR)
        for name, data in files.items():
            atomic_write(self.ca / name, data)

    def ca_file(self, name: str, data: bytes) -> Path:
        """One more file beside the CA files (a cross-certificate, a cross-signing
        request): the next stick export carries it out with them."""
        self.ca_files({name: data})
        return self.ca / name

    def crl_files(self, authority: str, der: bytes, armoured: bytes,
                  still_newest: Callable[[], bool]) -> None:
        """outgoing/crl/NAME.crl and .crl.pem, under the folder's lock, and only if
        STILL_NEWEST says no newer CRL was recorded meanwhile (another process may
        publish too)."""
        ensure_dir(self.crl, 0o755)
        with exclusive_lock(self.crl / ".lock"):
            if not still_newest():
                return
            atomic_write(self.crl / f"{authority}.crl", der)
            atomic_write(self.crl / f"{authority}.crl.pem", armoured)
            atomic_write(self.crl / CRL_BUNDLE, self._crl_bundle())

    @property
    def ssh(self) -> Path:
        return self.root / "ssh"

    def ssh_files(self, files: dict[str, bytes]) -> None:
        """outgoing/ssh/: the SSH CAs' public keys and KRL, each replaced atomically."""
        ensure_dir(self.ssh, 0o755)
        with exclusive_lock(self.ssh / ".lock"):
            for name, data in files.items():
                atomic_write(self.ssh / name, data, 0o644)

    @property
    def presigned(self) -> Path:
        return self.root / PRESIGNED

    def presigned_crls(self, authority: str, files: dict[str, bytes], notice: bytes) -> None:
        """outgoing/crl-presigned/: AUTHORITY's series (FILES by name) in place of any
        earlier one of it, and the notice that says what a series cannot do."""
        ensure_dir(self.presigned, 0o755)
        with exclusive_lock(self.crl / ".lock"):
            self._drop_presigned(authority)
            for name, der in files.items():
                atomic_write(self.presigned / name, der)
            atomic_write(self.presigned / PRESIGNED_NOTICE, notice)

    def void_presigned(self, authority: str) -> None:
        """A newer CRL was made: AUTHORITY's series is void (each is numbered below it and
        verify-publication would refuse them), so it leaves outgoing/ and the next stick."""
        if self.presigned.is_dir():
            with exclusive_lock(self.crl / ".lock"):
                self._drop_presigned(authority)
                if not any(self.presigned.glob("*.crl")):
                    remove_file(self.presigned / PRESIGNED_NOTICE)

    def _drop_presigned(self, authority: str) -> None:
        for path in self.presigned.glob(f"{authority}--from-*.crl"):
            remove_file(path)

    def _crl_bundle(self) -> bytes:
        """Every CA's current CRL in one PEM file, as nginx's `ssl_crl` and OpenVPN's
        `crl-verify` need it: they check every level of the chain (OpenSSL's
        crl_check_all), so with the intermediate's CRL alone every client is refused."""
        return b"".join(path.read_bytes() for path in sorted(self.crl.glob("*.crl.pem")))

    def crl_schedule(self, body: bytes) -> None:
        """outgoing/crl/next-update.json: when each CRL ends, when the stick must return."""
        ensure_dir(self.crl, 0o755)
        atomic_write(self.crl / "next-update.json", body)

    def audit_log(self, store: Store, key: ApplianceKey) -> int:
        """outgoing/audit/: what it lacks of the signed log (register.audit.export).
        Returns the seq exported up to."""
        return export(store, self.audit, key)

    def ceremony_record(self, name: str, text: bytes, signature: bytes) -> None:
        """outgoing/ceremony/NAME and NAME.asc: a signed ceremony record, for the stick."""
        ensure_dir(self.ceremony, 0o755)
        atomic_write(self.ceremony / name, text, 0o644)
        atomic_write(self.ceremony / f"{name}.asc", signature, 0o644)
