"""The audit hash chain's canonical form, shared by the writer and every verifier.

An entry is `{seq, time, event, actor, data, prev, hash}`; `hash` is the SHA-256 (hex)
of the entry without `hash`, serialized as JSON with sorted keys, no insignificant
whitespace, UTF-8 (non-ASCII kept as is). `prev` is the previous entry's hash, and
GENESIS for seq 1. An auditor can recompute it with `json.dumps(..., sort_keys=True,
separators=(",", ":"), ensure_ascii=False)` and `hashlib.sha256`.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

__all__ = ["GENESIS", "body_hash", "canonical", "entry_hash", "entry_text", "stored_hash_holds",
           "text_hash"]

GENESIS = "0" * 64


def canonical(value: Any) -> bytes:
    """The one serialization that is hashed."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")


def body_hash(entry: dict[str, Any]) -> str:
    """The hash an entry read back from anywhere must carry, by the definition: the entry
    without its own top-level `hash`, canonical, hashed. Never a cut of the line's bytes:
    an entry's data may hold a `hash` of its own (a backup's audit head), or anything a
    requester put in a field that reaches the log."""
    return hashlib.sha256(canonical({key: value for key, value in entry.items()
                                     if key != "hash"})).hexdigest()


def entry_hash(seq: int, time: str, event: str, actor: str, data: dict[str, Any],
               prev: str) -> str:
    """The hash of one entry, chaining it to `prev`."""
    return text_hash(seq, time, event, actor, canonical(data).decode("utf-8"), prev)


def text_hash(seq: int, time: str, event: str, actor: str, data_text: str, prev: str) -> str:
    """entry_hash of an entry whose DATA_TEXT is canonical(data) already."""
    return hashlib.sha256(entry_text(seq, time, event, actor, data_text, prev)
                          .encode("utf-8")).hexdigest()


def entry_text(seq: int, time: str, event: str, actor: str, data_text: str, prev: str,
               digest: str | None = None) -> str:
    """canonical() of an entry (with its hash, if DIGEST is given) whose DATA_TEXT is
    canonical(data): assembled in sorted key order instead of serialized again, so an
    entry's data is serialized once when it is written and never when it is exported.
    `_string` is the encoder json.dumps(ensure_ascii=False) uses for a str."""
    middle = f',"hash":{_string(digest)}' if digest is not None else ""
    return (f'{{"actor":{_string(actor)},"data":{data_text},"event":{_string(event)}'
            f'{middle},"prev":{_string(prev)},"seq":{int(seq)},"time":{_string(time)}}}')


_string = json.encoder.encode_basestring


def stored_hash_holds(seq: int, time: str, event: str, actor: str, data_text: str,
                      prev: str, digest: str) -> bool:
    """Whether an entry as the register stores it hashes to DIGEST. Its data is stored
    canonical (the hash is over that text); a register written before that stored it with
    spaces, so that is made canonical first."""
    if text_hash(seq, time, event, actor, data_text, prev) == digest:
        return True
    try:
        data = json.loads(data_text)
    except ValueError:
        return False
    return entry_hash(seq, time, event, actor, data, prev) == digest
