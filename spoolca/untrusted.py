"""Bounded parsing of untrusted JSON: linear in the input, never recursing without end.

json.loads recurses once per nesting level, so a 50,000-deep `[[[...` raises
RecursionError (and costs stack), and its size is the attacker's choice. The depth is
measured first, in one linear pass, and both are bounded before anything is parsed.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["UntrustedJSONError", "json_depth", "loads_bounded"]


class UntrustedJSONError(ValueError):
    """The bytes are not JSON within the bounds given."""


def json_depth(data: bytes) -> int:
    """The deepest nesting of arrays and objects in `data`, in one linear pass."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in data:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return deepest


def loads_bounded(data: bytes, *, max_bytes: int, max_depth: int) -> Any:
    """json.loads, after checking size and depth; UntrustedJSONError (a ValueError) if
    the bytes are too large, too deep, or not JSON."""
    if len(data) > max_bytes:
        raise UntrustedJSONError(f"{len(data)} bytes, more than {max_bytes}")
    if json_depth(data) > max_depth:
        raise UntrustedJSONError(f"nested deeper than {max_depth} levels")
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise UntrustedJSONError(str(exc).split("\n")[0][:200]) from None
