"""The one exception family: expected failures carry one sentence and an exit status.

Third-party exceptions are wrapped once, at the boundary of the module that calls the
library, so the command line never shows a traceback for a problem the user can fix.
"""

from __future__ import annotations

__all__ = [
    "AlreadyInitializedError",
    "AlreadyRevokedError",
    "CSRError",
    "ClockError",
    "ConfigError",
    "InternalError",
    "KeyStoreError",
    "NotFoundError",
    "NotOnHoldError",
    "RegisterBehindError",
    "RegisterDamagedError",
    "RevocationError",
    "SpoolcaError",
    "StoreError",
    "UsageError",
]


class SpoolcaError(Exception):
    """Root of every error spoolca expects; `str()` is one sentence for the operator."""

    exit_code = 1


class InternalError(Exception):
    """A promise of our own code broken (a signature that does not verify, an audit event
    not in the catalogue): a bug, never the user's to fix. Deliberately not a SpoolcaError,
    so the command line shows it as a bug with where its traceback was kept, and a request
    it happens on gets request.internal_error."""


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


class RegisterBehindError(StoreError):
    """The register went back in time: the appliance published what it no longer holds
    (a lost ca.db-wal, an older copy of ca.db). Nothing is signed until it is caught up
    (invariant 14): signing now would fork the history relying parties already have."""


class RegisterDamagedError(StoreError):
    """The register's file is damaged (SQLite finds its pages malformed, or an audit
    entry no longer matches its hash): a failing disk, not a passing fault. Exit status
    3, which the unit does not restart: the operator restores a backup."""

    exit_code = 3


class NotFoundError(SpoolcaError):
    """A serial or request named on the command line is not in the register."""

    def __init__(self, message: str, *, serial: str | None = None) -> None:
        self.serial = serial
        super().__init__(message)


class ClockError(SpoolcaError):
    """The host clock cannot be trusted for signing (invariant 8: clock guard).

    `floor` is the latest time the register recorded (or a CA's notBefore), `now` what
    the clock reads, `action` what was refused (issuance, a CRL, a revocation)."""

    def __init__(self, message: str, *, floor: str | None = None, now: str | None = None,
                 action: str = "signing") -> None:
        self.floor, self.now, self.action = floor, now, action
        super().__init__(message)


class RevocationError(SpoolcaError):
    """A revocation the register refuses; nothing was changed."""

    def __init__(self, message: str, *, serial: str) -> None:
        self.serial = serial
        super().__init__(message)


class AlreadyRevokedError(RevocationError):
    """The certificate is already revoked (other than on hold)."""

    def __init__(self, serial: str, reason: str, revoked_at: str) -> None:
        self.reason, self.revoked_at = reason, revoked_at
        super().__init__(f"certificate {serial} is already revoked ({reason}, {revoked_at})",
                         serial=serial)


class NotOnHoldError(RevocationError):
    """removeFromCRL was asked for a certificate that is not on hold."""

    def __init__(self, serial: str) -> None:
        super().__init__(f"certificate {serial} is not on hold; removeFromCRL only lifts a "
                         "certificateHold", serial=serial)


class UntakeableError(SpoolcaError):
    """A file in incoming/ the service may not move (a folder root made, a file it may
    not read): not a fault of the machine, not a request's answer; said until it can."""

    def __init__(self, path: object, message: str) -> None:
        super().__init__(message)
        self.path = path


class CSRError(SpoolcaError):
    """A submitted file is not a usable certificate signing request.

    `code` is the stable finding code that goes into result.json.
    """

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(message)
