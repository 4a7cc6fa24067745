"""Which stick this is (invariant 12): its file system UUID, else the round trip.

The label cannot say (every stick is labelled SPOOLCA) and neither can the mount path
(every stick is mounted at the same place). With no UUID, ingest starts a trip, a random
token kept by mount path in the state directory, and only the export of that same trip
gets the results of the requests it brought.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

from spoolca.config import Config
from spoolca.fsutil import atomic_write, ensure_dir, remove_file

__all__ = ["Medium", "current_trip", "end_trip", "identify", "read_identity", "start_trip"]


@dataclass(frozen=True, slots=True)
class Medium:
    """A stick as the mount describes it. Only the file system UUID identifies it: the
    label is the same on every stick (the udev rule wants SPOOLCA), and every stick is
    mounted at the same path, so neither may ever name whose results to write back."""

    path: str
    uuid: str
    label: str
    trip: str = ""  # with no UUID: the round trip that took its requests (see start_trip)

    @property
    def key(self) -> str:
        return f"uuid:{self.uuid}" if self.uuid else f"trip:{self.trip}"


def _trip_file(config: Config, medium: Medium) -> Path:
    digest = hashlib.sha256(medium.path.encode("utf-8", "surrogateescape")).hexdigest()
    return config.path.parent / "media-trips" / digest[:32]


def start_trip(config: Config, medium: Medium) -> Medium:
    """Ingest of a stick with no UUID: a new round-trip token, kept (by mount path) only
    until the export of the same trip consumes it (invariant 12)."""
    if medium.uuid:
        return medium
    token = secrets.token_hex(8)
    path = _trip_file(config, medium)
    ensure_dir(path.parent, 0o700)
    atomic_write(path, token.encode(), 0o600)
    return dataclasses.replace(medium, trip=token)


def current_trip(config: Config, medium: Medium) -> Medium | None:
    """Export: the same trip's token, or None: a stick with no UUID and no ingest in this
    trip gets no request's results, only the CA's public files."""
    if medium.uuid:
        return medium
    try:
        token = _trip_file(config, medium).read_text().strip()
    except FileNotFoundError:
        return None
    return dataclasses.replace(medium, trip=token)


def end_trip(config: Config, medium: Medium) -> None:
    """After a complete export: the trip is over (a failed export keeps it for a retry)."""
    if not medium.uuid:
        remove_file(_trip_file(config, medium))


_UUID = re.compile(r"[0-9A-Za-z-]{1,64}")
_IDENTITY_BYTES = 4096


def identify(mountpoint: Path, identity: Path | None = None) -> Medium:
    """The stick's UUID and label: from IDENTITY, what root read with `blkid -p -o
    export` before mounting (the media unit does), else from findmnt (which an
    unprivileged user without udev data cannot get: then the round trip identifies it)."""
    resolved = str(mountpoint.resolve())
    if identity is not None:
        return Medium(resolved, *read_identity(identity))
    return Medium(resolved, *_from_findmnt(mountpoint))


def read_identity(path: Path) -> tuple[str, str]:
    """UUID and LABEL out of blkid's export format. The values come from the stick's own
    superblock, so they are bounded, and a UUID is taken only if it looks like one."""
    with path.open("rb") as handle:
        text = handle.read(_IDENTITY_BYTES).decode("utf-8", "replace")
    fields = dict(line.partition("=")[::2] for line in text.splitlines() if "=" in line)
    uuid = fields.get("UUID", "")
    label = "".join(c for c in fields.get("LABEL", "") if c.isprintable())[:64]
    return (uuid if _UUID.fullmatch(uuid) else ""), label


def _from_findmnt(mountpoint: Path) -> tuple[str, str]:
    try:
        result = subprocess.run(["findmnt", "-n", "-o", "UUID,LABEL", "--target",
                                 str(mountpoint)], capture_output=True, text=True, timeout=10)
        fields = result.stdout.split() if result.returncode == 0 else []
    except (OSError, subprocess.TimeoutExpired):
        fields = []
    is_mount = os.path.ismount(mountpoint)
    uuid = fields[0] if is_mount and fields else ""
    label = fields[1] if is_mount and len(fields) > 1 else ""
    return uuid, label
