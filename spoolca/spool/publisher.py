"""Publishing decided batches: results out, originals archived, each round synced once.

Writing thousands of small files is kernel work plus Python glue between system calls;
done on a thread it fights the deciding thread for the GIL. So a large batch is handed
to a child process (`python -m spoolca.spool.publisher`: its own interpreter, the second
core) while the next batch is decided; a small one, such as the daemon's lone request, is
published inline at once. The child is a helper (spoolca.host.children): it dies with its
parent, so no orphan can archive work/ behind a restarted daemon.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from spoolca.errors import SpoolcaError
from spoolca.host.children import become_helper, read_frame, start_helper, stop_helper, write_frame
from spoolca.spool.outgoing import Outgoing, PublishJob

__all__ = ["CHILD_THRESHOLD", "PublishJob", "Publisher"]

CHILD_THRESHOLD = 64  # results per batch from which the child process pays for itself


class Publisher:
    """Publishes batches in order: at most one in flight, the next waits for it."""

    def __init__(self, outgoing: Outgoing, archive: Path) -> None:
        self._outgoing = outgoing
        self._archive = archive
        self._child: subprocess.Popen[bytes] | None = None
        self._in_flight = False
        self._in_flight_mark = 0
        self.confirmed = 0  # every submission numbered up to this is published and synced

    def submit(self, jobs: Sequence[PublishJob], mark: int = 0) -> None:
        """Publish a batch: behind, in the child, if large or if the child runs already
        (a pass's last, small batches overlap too); else now. MARK: the latest submission
        number recorded before it; confirmed once this batch is out."""
        self.wait()
        if len(jobs) < CHILD_THRESHOLD and self._child is None:  # once started, it overlaps
            self._guard(lambda: self._outgoing.results(self._archive, jobs))
            self.confirm(mark)
            return
        child = self._start_child()
        assert child.stdin is not None
        payload = pickle.dumps((self._outgoing.root, self._archive, list(jobs)),
                               protocol=pickle.HIGHEST_PROTOCOL)
        self._guard(lambda: write_frame(child.stdin, payload))
        self._in_flight, self._in_flight_mark = True, mark

    def confirm(self, mark: int) -> None:
        """Submissions up to MARK are known published (recovery checked them)."""
        self.confirmed = max(self.confirmed, mark)

    def expect(self, results: int) -> None:
        """RESULTS are on their way: if they will publish behind, start the child now, so
        that its start (some 40 ms, most of it importing) overlaps deciding the first
        batch instead of holding up its submission."""
        if results >= CHILD_THRESHOLD:
            self._start_child()

    def wait(self) -> None:
        """Until every submitted batch is published, synced and archived."""
        if not self._in_flight:
            return
        self._in_flight = False
        assert self._child is not None and self._child.stdout is not None
        answer = read_frame(self._child.stdout)
        if answer != b"ok":
            child, self._child = self._child, None
            stop_helper(child)  # a fresh one for the next batch
            detail = answer.decode(errors="replace") if answer else "the publisher process died"
            raise SpoolcaError(f"failed to publish results to {self._outgoing.root}: {detail}; "
                               "they are recorded and will be published again on the next pass")
        self.confirm(self._in_flight_mark)

    def close(self) -> None:
        """Wait for what is in flight, then stop the child (killed: between batches it
        holds nothing unwritten, a batch being answered `ok` only once synced and
        archived). If the wait failed, recovery publishes whatever it left."""
        try:
            self.wait()
        finally:
            if self._child is not None:
                child, self._child = self._child, None
                stop_helper(child)

    def _start_child(self) -> subprocess.Popen[bytes]:
        if self._child is None:
            self._child = start_helper("spoolca.spool.publisher")
        return self._child

    def _guard(self, step: object) -> None:
        try:
            step()  # type: ignore[operator]
        except OSError as exc:
            raise SpoolcaError(f"failed to publish results to {self._outgoing.root}: "
                               f"{exc.strerror or exc}; they are recorded and will be "
                               "published again on the next pass") from None


def _serve(parent: int) -> int:
    """The child: publish each batch the parent sends, answer `ok` or the error."""
    if not become_helper(parent):
        return 1
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while (frame := read_frame(stdin)) is not None:
        outgoing, archive, jobs = pickle.loads(frame)  # noqa: S301 - from our parent only
        try:
            Outgoing(outgoing).results(archive, jobs)
        except OSError as exc:
            write_frame(stdout, f"{exc.strerror or exc} ({exc.filename})".encode())
            continue
        write_frame(stdout, b"ok")
    return 0


if __name__ == "__main__":
    sys.exit(_serve(int(sys.argv[1])))
