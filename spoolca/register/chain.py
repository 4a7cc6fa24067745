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

__all__ = ["GENESIS", "canonical", "entry_hash"]

GENESIS = "0" * 64


def canonical(value: Any) -> bytes:
    """The one serialization that is hashed."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")


def entry_hash(seq: int, time: str, event: str, actor: str, data: dict[str, Any],
               prev: str) -> str:
    """The hash of one entry, chaining it to `prev`."""
    body = {"seq": seq, "time": time, "event": event, "actor": actor, "data": data,
            "prev": prev}
    return hashlib.sha256(canonical(body)).hexdigest()
