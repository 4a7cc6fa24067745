"""Which stick this is (invariant 12): its own secret, else its UUID, else the round trip.

The label cannot say (every stick is labelled SPOOLCA) and neither can the mount path
(every stick is mounted at the same place). A FAT volume ID is no better than a
convenience: its owner chooses it (`mkfs.vfat -i`), and every export's audit log
publishes it. So the first export to a stick writes a random secret onto it
(`.spoolca-stick`, 256 bits); from then on the stick is known by that secret's SHA-256
(the register and the log hold only the digest), and the results its UUID had are moved
to the secret in the same transaction, out of reach of a stick that copies the UUID.
With no UUID either, ingest starts a trip, a random token kept by mount path in the
state directory, and only the export of that same trip gets the results it brought.
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
from spoolca.host.fsutil import Folder, atomic_write, ensure_dir, remove_file
from spoolca.host.untrusted import read_untrusted

__all__ = ["SECRET_FILE", "Medium", "current_trip", "end_trip", "give_secret", "identify",
           "read_identity", "secret_of", "start_trip"]

SECRET_FILE = ".spoolca-stick"  # noqa: S105 (a file name; a dot-name ingest never takes)
_SECRET = re.compile(rb"[0-9a-f]{64}\n?")


@dataclass(frozen=True, slots=True)
class Medium:
    """A stick as the mount describes it. Only the file system UUID identifies it: the
    label is the same on every stick (the udev rule wants SPOOLCA), and every stick is
    mounted at the same path, so neither may ever name whose results to write back."""

    path: str
    uuid: str
    label: str
    trip: str = ""  # with no UUID: the round trip that took its requests (see start_trip)
    secret: str = ""  # the digest of the stick's own secret, if it carries one
    # The secret was given by this very export: what its UUID or trip brought before
    # (its first trip) is its own. A stick that already carried a secret claims nothing
    # by UUID: another stick formatted with the same UUID brings its own requests.
    secret_new: bool = False

    @property
    def key(self) -> str:
        """Whose results these are in the register (media_files.medium)."""
        return f"stick:{self.secret}" if self.secret else self.weak_key

    def described(self) -> dict[str, str]:
        """For the audit log: never the secret, only its digest."""
        return {"uuid": self.uuid, "label": self.label, "path": self.path,
                **({"stick": self.secret} if self.secret else {})}

    @property
    def weak_key(self) -> str:
        """What named the stick before it carried a secret (the first trip, a read-only
        or a wiped stick): its UUID, else its round trip."""
        return f"uuid:{self.uuid}" if self.uuid else f"trip:{self.trip}"


def secret_of(stick: Folder, medium: Medium) -> Medium:
    """MEDIUM with the digest of the secret STICK carries (none if it carries no valid one:
    a hand-made file is simply not a secret of ours)."""
    read = read_untrusted(SECRET_FILE, 128, dir_fd=stick.fd)
    if read.data is None or not _SECRET.fullmatch(read.data):
        return medium
    return dataclasses.replace(medium, secret=_digest(read.data.strip()))


def give_secret(stick: Folder, medium: Medium) -> Medium:
    """Write a new secret onto STICK (its export, the one time it is writable); MEDIUM
    then names it. Whatever had the name before (not a secret of ours) is removed."""
    secret = secrets.token_hex(32).encode()
    stick.remove_tree(SECRET_FILE)
    stick.write(SECRET_FILE, secret + b"\n")
    return dataclasses.replace(medium, secret=_digest(secret), secret_new=True)


def _digest(secret: bytes) -> str:
    return hashlib.sha256(b"spoolca stick secret\0" + secret).hexdigest()[:32]


def _trip_file(config: Config, medium: Medium) -> Path:
    digest = hashlib.sha256(medium.path.encode("utf-8", "surrogateescape")).hexdigest()
    return config.path.parent / "media-trips" / digest[:32]


def start_trip(config: Config, medium: Medium) -> Medium:
    """Ingest of a stick with no UUID: a new round-trip token, kept (by mount path) only
    until the export of the same trip consumes it (invariant 12)."""
    if medium.uuid or medium.secret:
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
        return medium if medium.secret else None
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
