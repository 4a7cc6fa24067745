"""`spoolca backup`, `restore` and the restore drill.

The archive (tar, gzip) holds MANIFEST.json (every file's SHA-256, size and mode, the
audit head the register was at, the appliance key's fingerprint), its detached signature
by the appliance key, that key's public half, and the files under their paths relative
to the state directory. A restore trusts nothing in it before the signature is checked
against the fingerprint the operator gives and every file against the manifest: an
archive is untrusted input, read once as a stream (what is checked is what is written),
and nothing takes the target's name until all of it checks out.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import tempfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any, BinaryIO

from spoolca import __version__
from spoolca.config import Config
from spoolca.errors import SpoolcaError
from spoolca.host.fsutil import (
    atomic_write_stream,
    ensure_dir,
    fsync_dir,
    move,
    remove_empty_dirs,
    remove_tree,
    sync_filesystem,
)
from spoolca.keys.openpgp import ApplianceKey, Keyring, check_home_length, verify_detached
from spoolca.register.store import Store

__all__ = ["FORMAT", "Manifest", "make_backup", "read_manifest", "restore"]

FORMAT = "spoolca-backup/1"
MANIFEST, SIGNATURE, PUBLIC_KEY = "MANIFEST.json", "MANIFEST.json.asc", "appliance-key.asc"
_MAX_MANIFEST = 16 << 20
_MODES = {0o400, 0o600, 0o644}  # what a restored file may be; anything else becomes 0600
_SKIPPED = ("S.", ".#", "random_seed")  # gpg-agent sockets and locks: not state
_SKIPPED_SUFFIXES = (".lock",)  # gpg's dotlocks (pubring.kbx.lock): come and go as it runs


class BackupError(SpoolcaError):
    """The archive cannot be made, or cannot be trusted: one sentence saying why."""


@dataclass(frozen=True, slots=True)
class Manifest:
    body: dict[str, Any]
    raw: bytes

    @property
    def files(self) -> dict[str, dict[str, Any]]:
        files: dict[str, dict[str, Any]] = self.body["files"]
        return files

    @property
    def config_name(self) -> str:
        """The configuration: the one .toml file at the top of the state directory."""
        names = [name for name in self.files if name.endswith(".toml") and "/" not in name]
        if len(names) != 1:
            raise BackupError("the archive holds no single configuration file at its top")
        return names[0]


def _relative(config: Config, path: Path, what: str) -> str:
    base = config.path.parent
    try:
        return path.resolve().relative_to(base.resolve()).as_posix()
    except ValueError:
        raise BackupError(f"{what} ({path}) is outside the state directory {base}: a "
                          "backup holds the state directory only; move it in and name it "
                          "with a relative path") from None


def _state_files(config: Config) -> dict[str, Path]:
    """Archive name -> file on disk, for everything but the register."""
    found = {_relative(config, config.path, "the configuration"): config.path}
    for folder, what in ((config.keys_dir, "[paths] keys"), (config.gnupg_dir, "[paths] gnupg")):
        prefix = _relative(config, folder, what)
        for path in sorted(folder.rglob("*")):
            if path.is_file() and not path.is_symlink() and not path.name.startswith(
                    _SKIPPED) and not path.name.endswith(_SKIPPED_SUFFIXES):
                found[f"{prefix}/{path.relative_to(folder).as_posix()}"] = path
    keyring = config.signers_keyring
    if keyring is not None and keyring.is_file():
        found[_relative(config, keyring, "[signers] keyring")] = keyring
    return found


def _digest(handle: BinaryIO) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    while chunk := handle.read(1 << 20):
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


def make_backup(config: Config, store: Store, key: ApplianceKey, destination: Path,
                made_at: str) -> Manifest:
    """The archive at DESTINATION; the register is snapshotted while others may write."""
    files = _state_files(config)
    database = _relative(config, config.database, "[paths] database")
    with tempfile.TemporaryDirectory(prefix="spoolca-backup-") as scratch:
        snapshot = Path(scratch) / "register.db"
        store.snapshot(snapshot)
        files[database] = snapshot
        copy = Store(snapshot)
        seq, head = copy.audit_head()
        copy.close()
        entries = {}
        for name, path in files.items():
            with path.open("rb") as handle:
                sha256, size = _digest(handle)
            mode = (config.database if name == database else path).stat().st_mode & 0o777
            entries[name] = {"sha256": sha256, "size": size,
                             "mode": mode if mode in _MODES else 0o600}
        body = {"format": FORMAT, "made_at": made_at, "spoolca": __version__,
                "appliance_key": key.fingerprint, "audit_head": {"seq": seq, "hash": head},
                "database": database, "files": entries,
                "gnupg": _relative(config, config.gnupg_dir, "[paths] gnupg")}
        raw = (json.dumps(body, indent=2, sort_keys=True) + "\n").encode()
        signature = key.sign(raw).encode()

        def fill(handle: BinaryIO) -> None:
            with tarfile.open(fileobj=handle, mode="w:gz") as tar:
                for name, data in ((MANIFEST, raw), (SIGNATURE, signature),
                                   (PUBLIC_KEY, key.public_key().encode())):
                    _add_bytes(tar, name, data)
                for name, path in files.items():
                    info = tar.gettarinfo(str(path), arcname=name)
                    info.uid = info.gid = 0
                    info.uname = info.gname = ""
                    info.mode = int(entries[name]["mode"])  # type: ignore[call-overload]
                    with path.open("rb") as source:
                        tar.addfile(info, source)

        atomic_write_stream(destination, fill, 0o600)
    return Manifest(body, raw)


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o644
    tar.addfile(info, io.BytesIO(data))


def _safe_name(name: str) -> bool:
    path = PurePosixPath(name)
    return bool(name) and not path.is_absolute() and ".." not in path.parts and \
        path.as_posix() == name


def _bounded(handle: IO[bytes], size: int, what: str, archive: Path) -> bytes:
    data = handle.read(size + 1)
    if len(data) > size:
        raise BackupError(f"{archive}: {what} is too large")
    return data


def _manifest(archive: Path, tar: tarfile.TarFile, fingerprint: str) -> Manifest:
    """The first three members, the manifest, its signature and the public key: the
    signature checked by FINGERPRINT before any other member is looked at."""
    found: dict[str, bytes] = {}
    for expected in (MANIFEST, SIGNATURE, PUBLIC_KEY):
        member = tar.next()
        if member is None or member.name != expected or not member.isfile() or \
                member.size > _MAX_MANIFEST:
            raise BackupError(f"{archive} does not begin with a signed manifest: not a "
                              "spoolca backup")
        handle = tar.extractfile(member)
        found[expected] = _bounded(handle, _MAX_MANIFEST, expected, archive) if handle else b""
    with Keyring(found[PUBLIC_KEY].decode("utf-8", "replace")) as keyring:
        problem = verify_detached(found[MANIFEST], found[SIGNATURE].decode("utf-8", "replace"),
                                  keyring, fingerprint)
    if problem:
        raise BackupError(f"{archive}: the manifest's signature does not check out: {problem}")
    try:
        body = json.loads(found[MANIFEST])
    except ValueError:
        raise BackupError(f"{archive}: the manifest is not JSON") from None
    if body.get("format") != FORMAT:
        raise BackupError(f"{archive}: format {body.get('format')!r}, this spoolca reads {FORMAT}")
    if not all(_safe_name(name) for name in body["files"]):
        raise BackupError(f"{archive}: the manifest names a path outside the state directory")
    return Manifest(body, found[MANIFEST])


@contextmanager
def _opened(archive: Path) -> Iterator[tarfile.TarFile]:
    """The archive read once, front to back (a stream: nothing is read twice, so what is
    checked is what is extracted)."""
    try:
        with archive.open("rb") as raw, tarfile.open(fileobj=raw, mode="r|gz") as tar:
            yield tar
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise BackupError(f"{archive} is not a readable backup archive ({exc})") from None


def read_manifest(archive: Path, fingerprint: str) -> Manifest:
    """The manifest, once its signature is one good signature by FINGERPRINT."""
    with _opened(archive) as tar:
        return _manifest(archive, tar, fingerprint)


def restore(archive: Path, target: Path, fingerprint: str) -> Manifest:
    """Into TARGET (new or empty), in one read of the archive: the manifest's signature
    checked first, then each member hashed as it is written into a staging folder beside
    TARGET, which takes TARGET's name only once every file checked out. Anything else (a
    member the manifest does not list, twice, not a regular file, larger than listed, or
    one missing) stops it at once and leaves nothing behind."""
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise BackupError(f"{target} is not empty: restore into a new directory")
    staging = target.parent / f".{target.name}.restoring"
    missing = [p for p in (target.parent, *target.parent.parents) if not p.exists()]
    with _opened(archive) as tar:
        manifest = _manifest(archive, tar, fingerprint)
        manifest.config_name  # noqa: B018  (refused here, before anything is written, if none)
        check_home_length(target.absolute() / str(manifest.body.get("gnupg", "gnupg")))
        remove_tree(staging)
        ensure_dir(staging, 0o700)
        try:
            _extract(archive, tar, manifest, staging)
        except BaseException:
            remove_tree(staging)
            remove_empty_dirs(missing)  # and the folders made on the way: nothing left
            raise
    remove_empty_dirs([target])  # empty, as checked
    move(staging, target)
    sync_filesystem([target])  # the folders made on the way, too (invariant 14)
    fsync_dir(target.resolve().parent)
    return manifest


def _extract(archive: Path, tar: tarfile.TarFile, manifest: Manifest, staging: Path) -> None:
    expected, seen = manifest.files, set()
    while (member := tar.next()) is not None:  # on from the manifest: a stream, read once
        entry = expected.get(member.name)
        if entry is None or not member.isfile() or member.name in seen or \
                member.size != entry["size"]:
            raise BackupError(f"{archive}: {member.name!r} is not what the manifest lists "
                              "(extra, repeated, not a regular file, or another size)")
        seen.add(member.name)
        source = tar.extractfile(member)
        path = staging / member.name
        ensure_dir(path.parent, 0o700)
        digest = hashlib.sha256()

        def fill(out: BinaryIO, src: IO[bytes] | None = source, hashed: Any = digest) -> None:
            while src is not None and (chunk := src.read(1 << 20)):
                hashed.update(chunk)
                out.write(chunk)

        atomic_write_stream(path, fill, int(entry["mode"]))
        if digest.hexdigest() != entry["sha256"]:
            raise BackupError(f"{archive}: {member.name} is damaged (its SHA-256 is not the "
                              "manifest's)")
    missing = sorted(set(expected) - seen)
    if missing:
        raise BackupError(f"{archive}: {len(missing)} file(s) missing, {missing[0]} first")
