"""The audit log and its checkpoints, read back: the Store's reading half of the log
(Tx.record writes it). A mixin so that all SQL stays in the register package while the
Store itself stays one screenful of concepts."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

from spoolca.register.chain import GENESIS
from spoolca.register.records import AuditRow, CheckpointRow

__all__ = ["AuditReads"]


class AuditReads:
    """Queries of the `audit` and `checkpoints` tables over the Store's connection."""

    _conn: sqlite3.Connection

    def audit_entries(self, after: int = 0) -> Iterator[AuditRow]:
        rows = self._conn.execute(
            "SELECT seq, time, event, actor, data, prev, hash FROM audit WHERE seq > ? "
            "ORDER BY seq", (after,))
        return map(AuditRow._make, rows)

    def latest_events(self, event: str, limit: int = 20) -> list[AuditRow]:
        """The newest entries of one kind, newest first (read back from the log's end)."""
        rows = self._conn.execute(
            "SELECT seq, time, event, actor, data, prev, hash FROM audit WHERE event = ? "
            "ORDER BY seq DESC LIMIT ?", (event, limit))
        return [AuditRow._make(row) for row in rows]

    def event_counts(self, after: int = 0) -> dict[str, int]:
        """How many entries of each kind the log holds after seq AFTER (for the report)."""
        rows = self._conn.execute(
            "SELECT event, COUNT(*) FROM audit WHERE seq > ? GROUP BY event", (after,))
        return dict(rows.fetchall())

    def audit_head(self) -> tuple[int, str]:
        row = self._conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1"
                                 ).fetchone()
        return (row[0], row[1]) if row else (0, GENESIS)

    def audit_hash(self, seq: int) -> str | None:
        row = self._conn.execute("SELECT hash FROM audit WHERE seq = ?", (seq,)).fetchone()
        return row[0] if row else None

    def latest_checkpoint_seq(self) -> int:
        row = self._conn.execute("SELECT MAX(seq) FROM checkpoints").fetchone()
        return row[0] or 0

    def checkpoints(self, after: int = 0) -> list[CheckpointRow]:
        rows = self._conn.execute("SELECT seq, body, signature FROM checkpoints WHERE seq > ? "
                                  "ORDER BY seq", (after,))
        return [CheckpointRow._make(row) for row in rows]
