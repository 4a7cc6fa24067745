"""Why the service refuses to sign right now: a value, not four loose strings.

Each kind is a condition the operator must fix (or that fixes itself, and is retried):
the register behind what was published, the clock outside its guard, a CA key that does
not open, an audit checkpoint that cannot be signed. Requests wait in incoming/ while
any holds; STATUS= shows the first in that order (the one to fix first).
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Refusal", "Refusals"]


class Refusal(StrEnum):
    """The kinds, in the order STATUS= shows them."""

    REGISTER = "register"  # behind what was published: `spoolca catch-up` first
    CLOCK = "clock"        # the clock guard refuses the time
    KEY = "key"            # a CA key does not open (passphrase, PIN, token missing)
    SEAL = "seal"          # an audit checkpoint cannot be signed


class Refusals:
    """The refusals that hold now, each with its one sentence."""

    def __init__(self) -> None:
        self._why: dict[Refusal, str] = {}

    def hold(self, kind: Refusal, sentence: str) -> bool:
        """KIND holds, for SENTENCE; True if that is news (to be logged once)."""
        news = self._why.get(kind) != sentence
        self._why[kind] = sentence
        return news

    def lift(self, kind: Refusal) -> str:
        """KIND holds no more; the sentence it had, if it held."""
        return self._why.pop(kind, "")

    def __contains__(self, kind: object) -> bool:
        return kind in self._why

    def __bool__(self) -> bool:
        return bool(self._why)

    def shown(self) -> str:
        """The sentence STATUS= shows: the first kind that holds, in Refusal's order."""
        return next((self._why[kind] for kind in Refusal if kind in self._why), "")
