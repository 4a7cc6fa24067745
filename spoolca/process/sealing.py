"""Sealing the audit log: a signed checkpoint of its head, now or behind the next batch.

A checkpoint is a gpg signature (a process start, some 15-25 ms) and a commit. After
each batch of a long pass it is signed on a thread while the next batch is decided, and
stored in that batch's transaction: a signature that failed rolls the batch back, so no
batch is ever committed behind an unsigned one (fail closed, as before). The export to
outgoing/audit/ waits for the end of the pass, or for a segment's worth of entries.
Everywhere else, `seal` signs and exports at once, finishing a checkpoint started behind
first.

The CA session owns the one Sealer it makes; nothing else signs checkpoints.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from spoolca.errors import SpoolcaError
from spoolca.keys.openpgp import ApplianceKey, AuditSignatureError
from spoolca.register.audit import SEGMENT_ENTRIES, checkpoint, checkpoint_body
from spoolca.register.store import Store, Tx
from spoolca.spool.outgoing import Outgoing

__all__ = ["Sealer"]

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class _Behind:
    """A checkpoint being signed on the sealing thread."""

    seq: int
    head: str
    body: bytes
    signature: Future[str]


class Sealer:
    """Signs checkpoints of one register's audit head with the appliance's key."""

    def __init__(self, store: Store, key: Callable[[], ApplianceKey],
                 clock: Callable[[], dt.datetime], outgoing: Outgoing) -> None:
        self._store = store
        self._key = key
        self._clock = clock
        self._outgoing = outgoing
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spoolca-seal")
        self._behind: _Behind | None = None
        self._exported = 0  # the seq exported up to, as far as this session knows
        self.failure: str | None = None  # the last signature that failed, until one works

    def seal(self) -> int | None:
        """Sign the head now (a checkpoint started behind is stored first) and export the
        log; the seq signed, or None if the head was signed already."""
        self.finish(None)
        key = self._key()
        sealed = self._signed(lambda: checkpoint(self._store, key, self._clock()))
        self.export()
        return sealed

    def start_behind(self) -> None:
        """After a batch committed: its checkpoint signed on the sealing thread, and the
        log exported once a segment's worth of signed entries waits, so a long pass is
        not exported all at its end (100,000 entries, some 1.5 s, with nothing to
        overlap)."""
        self.finish(None)
        if self._store.latest_checkpoint_seq() - self._exported >= SEGMENT_ENTRIES:
            self.export()
        key = self._key()
        point = checkpoint_body(self._store, self._clock())
        if point is not None:
            seq, head, body = point
            self._behind = _Behind(seq, head, body, self._thread.submit(key.sign, body))

    def finish(self, tx: Tx | None) -> None:
        """Store the checkpoint signed behind, if any: in TX (the next batch's
        transaction, rolled back with it if the signature failed), or on its own and
        exported. AuditSignatureError if it could not be signed."""
        behind, self._behind = self._behind, None
        if behind is None:
            return
        row = (behind.seq, behind.head, behind.body.decode(),
               self._signed(behind.signature.result))
        if tx is not None:
            tx.add_checkpoint(*row)
            return
        self._store.add_checkpoint(*row)
        self.export()

    def export(self) -> None:
        """Write what outgoing/audit/ lacks of the signed log (a failure is retried: the
        checkpoint is in the register, and the next export catches up)."""
        try:
            self._exported = self._outgoing.audit_log(self._store, self._key())
        except OSError as exc:
            raise SpoolcaError(f"failed to export the audit log to {self._outgoing.audit}: "
                               f"{exc.strerror or exc}; retrying") from None

    @property
    def exported(self) -> int:
        """The seq this session exported the log up to (0: none yet)."""
        return self._exported

    def close(self) -> None:
        """Wait for the sealing thread: the key is closed after it, never under it."""
        self._thread.shutdown(wait=True)

    def _signed(self, sign: Callable[[], _T]) -> _T:
        """SIGN's result; a signature that fails is remembered until one works (the
        session then seals before it signs anything: fail closed)."""
        try:
            signed = sign()
        except AuditSignatureError as exc:
            self.failure = str(exc)
            raise
        self.failure = None
        return signed
