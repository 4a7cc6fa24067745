"""The one exception family: expected failures carry one sentence and an exit status.

Third-party exceptions are wrapped once, at the boundary of the module that calls the
library, so the command line never shows a traceback for a problem the user can fix.
"""

from __future__ import annotations

__all__ = [
    "AlreadyInitializedError",
    "CSRError",
    "ClockError",
    "ConfigError",
    "KeyStoreError",
    "NotFoundError",
    "SpoolcaError",
    "StoreError",
    "UsageError",
]


class SpoolcaError(Exception):
    """Root of every error spoolca expects; `str()` is one sentence for the operator."""

    exit_code = 1


class UsageError(SpoolcaError):
    """The command line asks for something contradictory or impossible."""

    exit_code = 2


class ConfigError(SpoolcaError):
    """The configuration is missing or invalid; every problem is listed at once."""

    exit_code = 2

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        listed = "; ".join(problems)
        super().__init__(f"invalid configuration {path}: {listed}")


class AlreadyInitializedError(SpoolcaError):
    """`init` refuses to touch a directory that already holds a CA."""


class KeyStoreError(SpoolcaError):
    """A CA key cannot be created, read or unlocked."""


class StoreError(SpoolcaError):
    """The register (SQLite) is missing, locked or inconsistent."""


class NotFoundError(SpoolcaError):
    """A serial or request named on the command line is not in the register."""


class ClockError(SpoolcaError):
    """The host clock cannot be trusted for issuance (invariant 8: clock guard)."""


class CSRError(SpoolcaError):
    """A submitted file is not a usable certificate signing request.

    `code` is the stable finding code that goes into result.json.
    """

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(message)
