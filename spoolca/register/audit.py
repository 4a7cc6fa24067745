"""The signed audit log: checkpoints, export, verification and review.

Every state change is already an entry of the hash chain (spoolca.register.chain), written in the
transaction that made the change. A chain alone cannot reveal a truncated tail, a
rollback to an older disk image or a log rewritten from some point on; what closes
that gap is the checkpoint: `{seq, hash, time}` of the head, signed with the
appliance's OpenPGP key, and carried off the air gap on every stick.

The export (spool/outgoing/audit/ or any folder) holds:

- `log-FIRST-LAST.jsonl`: the entries, one canonical JSON object per line (sorted keys,
  no spaces, UTF-8), each segment written once and never changed;
- `checkpoint-SEQ.json` and `checkpoint-SEQ.json.asc`: the canonical checkpoint and its
  detached, ASCII-armored signature;
- `appliance-key.asc`: the public key, for reference. A verifier must be given the key
  (or its fingerprint) from elsewhere: a key found beside the log proves nothing.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from spoolca.host.fsutil import atomic_write, ensure_dir, exclusive_lock
from spoolca.host.untrusted import loads_bounded
from spoolca.keys.openpgp import ApplianceKey, Keyring, verify_detached
from spoolca.register.chain import GENESIS, body_hash, canonical, entry_text, text_hash
from spoolca.register.records import AuditRow
from spoolca.register.rollback import CHECKPOINT_NAME, latest_exported_checkpoint
from spoolca.register.store import Store, format_time

__all__ = [
    "Damage",
    "checkpoint",
    "checkpoint_body",
    "export",
    "iter_exported",
    "record_export",
    "verify_export",
]

_SEGMENT = re.compile(r"^log-(\d{10})-(\d{10})\.jsonl$")
SEGMENT_ENTRIES = 4096  # at most this many entries a segment: an export's memory is bounded
MAX_LINE = 1 << 20       # no entry spoolca writes comes near a MiB
MAX_DEPTH = 32           # no entry spoolca writes nests deeper than a few levels


def checkpoint_body(store: Store, now: dt.datetime) -> tuple[int, str, bytes] | None:
    """The head's seq, hash and canonical checkpoint to sign, or None if it is signed."""
    seq, head = store.audit_head()
    if seq == 0 or seq == store.latest_checkpoint_seq():
        return None
    return seq, head, canonical({"seq": seq, "hash": head, "time": format_time(now)})


def checkpoint(store: Store, key: ApplianceKey, now: dt.datetime) -> int | None:
    """Sign the head if it moved since the last checkpoint; return its seq (or None).

    Raises AuditSignatureError if gpg cannot sign: the caller stops issuing.
    """
    point = checkpoint_body(store, now)
    if point is None:
        return None
    seq, head, body = point
    store.add_checkpoint(seq, head, body.decode(), key.sign(body))
    return seq


def _line(row: AuditRow) -> bytes:
    """The entry's canonical line, assembled around its stored data: the data is stored
    as it was hashed (canonical), and the entry hashes to its hash only if the stored
    text is canonical. An entry of an older register, stored with spaces, has its data
    serialized again first."""
    data = row.data
    if text_hash(row.seq, row.time, row.event, row.actor, data, row.prev) != row.hash:
        data = canonical(json.loads(data)).decode("utf-8")
    return (entry_text(row.seq, row.time, row.event, row.actor, data, row.prev, row.hash)
            + "\n").encode("utf-8")


def export(store: Store, folder: Path, key: ApplianceKey) -> int:
    """Write what the folder lacks: a new segment, new checkpoints, the public key.

    Returns the seq exported up to. Segments are appended, never rewritten, so an export
    after each batch costs what the batch added, not the whole log. Two processes
    exporting to one folder (the daemon, and a backup or a command meanwhile) take turns
    on the folder's lock: side by side, both would write a segment from the same first
    entry, and the log would hold those entries twice.
    """
    ensure_dir(folder, 0o755)
    with exclusive_lock(folder):
        return _export(store, folder, key)


def _export(store: Store, folder: Path, key: ApplianceKey) -> int:
    have = max((int(m.group(2)) for m in map(_SEGMENT.match, _names(folder)) if m), default=0)
    # Only what a checkpoint signed: a genuine export never ends in an unsigned tail, so
    # an auditor can treat one as forged (entries written since wait for the next seal).
    through = store.latest_checkpoint_seq()
    lines: list[bytes] = []
    first = last = have
    for row in store.audit_entries(after=have):
        if row.seq > through:
            break
        lines.append(_line(row))
        last = row.seq
        if len(lines) == SEGMENT_ENTRIES:  # a pass of 100,000 is not held in memory whole
            atomic_write(folder / f"log-{first + 1:010d}-{last:010d}.jsonl", b"".join(lines))
            lines, first = [], last
    if lines:
        atomic_write(folder / f"log-{first + 1:010d}-{last:010d}.jsonl", b"".join(lines))
    for seq, body, signature in store.checkpoints(after=latest_exported_checkpoint(folder)):
        atomic_write(folder / f"checkpoint-{seq:010d}.json.asc", signature.encode())
        atomic_write(folder / f"checkpoint-{seq:010d}.json", body.encode())
    public = folder / "appliance-key.asc"
    if not public.exists():
        atomic_write(public, key.public_key().encode())
    return last


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def iter_exported(folder: Path) -> Iterator[bytes]:
    """The exported lines, segment after segment, in file-name order."""
    for name in _names(folder):
        if _SEGMENT.match(name):
            with (folder / name).open("rb") as segment:
                yield from segment


@dataclass(frozen=True, slots=True)
class Damage:
    """The first thing wrong with an exported log, or a warning (unsigned tail)."""

    seq: int
    kind: str
    message: str


def _check_chain(folder: Path, times: list[str]) -> tuple[list[str], list[Damage]]:
    """Recompute the chain; hashes by seq (index seq - 1), and the first damage. The
    last entry's time is left in `times`."""
    hashes: list[str] = []
    previous = GENESIS
    for number, line in enumerate(iter_exported(folder), start=1):
        try:
            entry = loads_bounded(line, max_bytes=MAX_LINE, max_depth=MAX_DEPTH)
            seq, prev, stated = int(entry["seq"]), entry["prev"], entry["hash"]
            times[:] = [str(entry["time"])]
        except (ValueError, KeyError, TypeError):
            return hashes, [Damage(number, "modified", f"line {number} is not an audit entry")]
        if seq != number:
            kind = "reordered" if seq < number else "deleted"
            return hashes, [Damage(number, kind, f"entry {number} is missing or out of place "
                                   f"(found seq {seq} there)")]
        if prev != previous:
            return hashes, [Damage(seq, "deleted or inserted", f"entry {seq} does not follow "
                                   f"entry {seq - 1} (prev hash differs)")]
        if body_hash(entry) != stated:
            return hashes, [Damage(seq, "modified", f"entry {seq} was changed (its hash does "
                                   "not match its content)")]
        hashes.append(stated)
        previous = stated
    return hashes, []


def _check_checkpoint(body_file: Path, hashes: list[str], keyring: Keyring,
                      fingerprint: str) -> Damage | None:
    body = body_file.read_bytes()
    signature_file = body_file.with_name(body_file.name + ".asc")
    try:
        point = json.loads(body)
        seq, digest = int(point["seq"]), point["hash"]
        signature = signature_file.read_text()
    except (OSError, ValueError, KeyError):
        return Damage(0, "bad signature", f"{body_file.name} or its signature is unreadable")
    problem = verify_detached(body, signature, keyring, fingerprint)
    if problem:
        return Damage(seq, "bad signature", f"checkpoint {seq}: {problem}")
    if seq > len(hashes):
        return Damage(len(hashes) + 1, "truncated", f"the log ends at {len(hashes)}, before "
                      f"the signed checkpoint {seq}")
    if hashes[seq - 1] != digest:
        return Damage(seq, "rewritten", f"entry {seq} is not the one checkpoint {seq} signed")
    return None


@dataclass(frozen=True, slots=True)
class Verification:
    """What `audit verify` found: the first damage (or an unsigned tail), the entries,
    how far a checkpoint by the pinned key signs, and the head to write down."""

    damages: list[Damage]
    entries: int
    signed: int
    head_hash: str
    head_time: str


def verify_export(folder: Path, public_key: str, fingerprint: str,
                  since: Path | None = None, since_head: tuple[int, str] | None = None
                  ) -> Verification:
    """Recompute the chain, check every checkpoint's signature by `fingerprint`, and
    that the log extends what the auditor saw before (`since`, `since_head`). An
    unsigned tail is reported as the only damage, of kind "unsigned tail"."""
    times: list[str] = []
    hashes, damages = _check_chain(folder, times)
    head = (hashes[-1] if hashes else GENESIS, times[0] if times else "")

    def result(found: list[Damage], signed: int = 0) -> Verification:
        return Verification(found, len(hashes), signed, *head)

    if damages:
        return result(damages)
    if since_head is not None and (since_head[0] > len(hashes)
                                   or hashes[since_head[0] - 1] != since_head[1].lower()):
        return result([Damage(since_head[0], "rolled back", f"the log does not hold entry "
                              f"{since_head[0]} with the hash written down before: it was "
                              "truncated, rolled back or rewritten")])
    points = [folder / n for n in _names(folder) if CHECKPOINT_NAME.match(n)]
    if since is not None:
        points.append(since)
    if not points:
        return result([Damage(1, "unsigned tail", "no signed checkpoint at all")])
    signed = 0
    with Keyring(public_key) as keyring:  # one keyring for every checkpoint
        for body_file in points:
            damage = _check_checkpoint(body_file, hashes, keyring, fingerprint)
            if damage:
                return result([damage], signed)
            signed = max(signed, int(json.loads(body_file.read_bytes())["seq"]))
    if signed < len(hashes):
        return result([Damage(signed + 1, "unsigned tail", f"entries {signed + 1} to "
                              f"{len(hashes)} come after the last signed checkpoint")], signed)
    return result([], signed)


def record_export(store: Store, folder: Path, through_seq: int, now: dt.datetime) -> None:
    """An export to a folder of the operator's choosing, in the log it exported."""
    with store.transaction("cli", now) as tx:
        tx.record("audit.exported", {"folder": str(folder), "through_seq": through_seq})
