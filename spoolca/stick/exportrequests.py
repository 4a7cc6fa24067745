"""The media unit's export, composed by the daemon: the unit that reads hostile sticks
holds no key and no unlock secret (issue 25, item 3).

The media unit (`media export --through-daemon`) asks with a small file, and copies what
comes back to the stick:

    spool/exports/requests/ID.json   {"medium": {...}}: which stick (written whole)
    spool/exports/ID/                the export, composed and signed, renamed in whole
    spool/exports/ID.failed          or one sentence, if it could not be made

The daemon reads a request as what it is, input from a unit that handles hostile media:
bounded, every field checked, the ID only ever 32 hex digits. An export nobody collected
(the unit killed on the way) is removed after an hour.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import re
import secrets
import time
from collections.abc import Callable
from pathlib import Path

from spoolca.config import Config
from spoolca.errors import SpoolcaError
from spoolca.host.fsutil import (
    SHARED_DIR,
    Folder,
    atomic_write,
    ensure_dir,
    move,
    remove_file,
    remove_tree,
    sync_filesystem,
)
from spoolca.host.untrusted import UntrustedJSONError, loads_bounded, read_untrusted
from spoolca.keys.openpgp import ApplianceKey
from spoolca.register.store import Store
from spoolca.stick.composing import compose
from spoolca.stick.medium import Medium

__all__ = ["collect", "exports_dir", "pending", "request_export", "serve"]

_ID = re.compile(r"[0-9a-f]{32}")
_HEX = re.compile(r"[0-9a-f]{0,32}")
_UUID = re.compile(r"[0-9A-Za-z-]{0,64}")
_REQUEST_BYTES = 8192
_ABANDONED_SECONDS = 3600


def exports_dir(config: Config) -> Path:
    return config.spool_dir / "exports"


def request_export(config: Config, medium: Medium | None, seen: Medium) -> str:
    """Ask the daemon for MEDIUM's export (None: the CA's public files only; SEEN: the
    stick as found, for the report); its ID."""
    request_id = secrets.token_hex(16)
    requests = ensure_dir(exports_dir(config) / "requests", SHARED_DIR)
    body = {"medium": dataclasses.asdict(medium) if medium else None,
            "seen": dataclasses.asdict(seen)}
    atomic_write(requests / f"{request_id}.json", json.dumps(body).encode())
    return request_id


def collect(config: Config, request_id: str, seconds: float) -> Path:
    """The folder the daemon composed for REQUEST_ID, once it is there; one sentence if
    it failed or the deadline passed (the request is withdrawn then)."""
    top = exports_dir(config)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if (top / request_id).is_dir():
            return top / request_id
        failed = top / f"{request_id}.failed"
        if failed.exists():
            reason = failed.read_text(errors="replace")[:500]
            remove_file(failed)
            raise SpoolcaError(f"the daemon could not compose the export: {reason}")
        time.sleep(0.1)
    remove_file(top / "requests" / f"{request_id}.json")
    raise SpoolcaError(f"the daemon did not compose the export within {seconds:.0f} s; is "
                       "it running and issuing? (systemctl status spoolca): plug the stick "
                       "in again once it is")


def pending(config: Config) -> list[str]:
    """IDs of requests waiting, oldest name first (anything else there is ignored)."""
    try:
        names = os.listdir(exports_dir(config) / "requests")
    except FileNotFoundError:
        return []
    return sorted(n[:-5] for n in names if n.endswith(".json") and _ID.fullmatch(n[:-5]))


def serve(config: Config, store: Store, key: ApplianceKey, now: dt.datetime,
          heartbeat: Callable[[], None] = lambda: None) -> int:
    """Compose every pending export (the daemon's turn); how many were made."""
    top = exports_dir(config)
    made = 0
    for request_id in pending(config):
        request = top / "requests" / f"{request_id}.json"
        staging = top / f".{request_id}.part"
        try:
            medium, seen = _mediums(request)
            remove_tree(staging)
            ensure_dir(staging, SHARED_DIR)
            with Folder.open(staging) as folder:
                compose(config, store, key, medium, seen, now, folder, heartbeat=heartbeat)
            sync_filesystem([staging])
            move(staging, top / request_id)
            made += 1
        except (SpoolcaError, ValueError) as exc:  # about this request: its answer
            remove_tree(staging)
            atomic_write(top / f"{request_id}.failed", str(exc).encode())
        remove_file(request)
    _remove_abandoned(top)
    return made


def _mediums(request: Path) -> tuple[Medium | None, Medium]:
    """(whose results, the stick as found) from a request, every field checked."""
    read = read_untrusted(request, _REQUEST_BYTES)
    if read.data is None:
        raise ValueError(f"the export request is {read.problem}: {read.detail}")
    try:
        body = loads_bounded(read.data, max_bytes=_REQUEST_BYTES, max_depth=3)
    except UntrustedJSONError as exc:
        raise ValueError(f"the export request is not JSON ({exc})") from None
    if not isinstance(body, dict):
        raise ValueError("the export request names no stick")
    seen = _medium(body.get("seen"))
    if seen is None:
        raise ValueError("the export request names no stick")
    return _medium(body.get("medium")), seen


def _medium(fields: object) -> Medium | None:
    if fields is None:
        return None
    if not isinstance(fields, dict) or set(fields) != {f.name for f in
                                                       dataclasses.fields(Medium)}:
        raise ValueError("the export request names no stick")
    secret_new = fields.pop("secret_new")
    values = {k: v for k, v in fields.items() if isinstance(v, str) and len(v) <= 4096}
    checks = {"uuid": _UUID, "trip": _HEX, "secret": _HEX}
    if len(values) != len(fields) or not isinstance(secret_new, bool) or \
            any(not p.fullmatch(values[k]) for k, p in checks.items()):
        raise ValueError("the export request's stick is not one spoolca describes")
    return Medium(**values, secret_new=secret_new)


def _remove_abandoned(top: Path) -> None:
    """Exports a killed media unit never collected, after an hour."""
    cutoff = time.time() - _ABANDONED_SECONDS
    for entry in os.scandir(top):
        name = entry.name.removeprefix(".").removesuffix(".part").removesuffix(".failed")
        if _ID.fullmatch(name) and entry.stat(follow_symlinks=False).st_mtime < cutoff:
            remove_tree(Path(entry.path))
