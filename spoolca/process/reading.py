"""Stage 1, reading: a claimed file's bytes and detached signature, its request parsed and
its proof of possession checked.

Checking a request's self-signature is the costliest step of reading (80 us for P-256,
an eighth of what a request costs this process), and it needs nothing from the
register. So a pass of many requests has them read ahead by a helper process
(`python -m spoolca.process.reading`, spoolca.host.children) on the second core while this
one decides, signs and records: it sends back, in claim order, each file's bytes, the
request's DER and whether its self-signature verified, and this process only parses that
DER again (25 us). The first batch is read here while the helper starts; it is given
the rest, faster at reading than this process at deciding, so what it was given is
waited for, not read twice. Nothing depends on it: if it fails, or is silent for 10 s,
everything left is read here. Invariant 9 holds on both sides: whatever reading one
file raises in the helper makes it be read here, where it becomes that file's answer.
"""

from __future__ import annotations

import os
import pickle
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from spoolca.errors import CSRError
from spoolca.findings import Finding
from spoolca.host.children import (
    FrameBuffer,
    become_helper,
    read_frame,
    start_helper,
    stop_helper,
    widen_pipe,
    write_frame,
)
from spoolca.host.untrusted import read_untrusted
from spoolca.log import get_logger
from spoolca.process.items import FileRead, Prepared, ReadJob
from spoolca.spool.tree import REQUEST_SUFFIXES, Claimed
from spoolca.x509.csr import Request, checked_request, load_request, request_sha256

__all__ = ["READ_AHEAD_FROM", "FileRead", "ReadAhead", "ReadJob", "job_of", "prepare",
           "read_file"]

READ_AHEAD_FROM = 64  # requests in a pass from which the helper pays for its start
HELPER_SILENCE_SECONDS = 10.0  # a helper this long without a frame is taken as hung
_CHUNK = 16  # files a frame: the helper's answers arrive every 2-3 ms

_log = get_logger(__name__)


def job_of(claimed: Claimed, limit: int) -> ReadJob:
    signature = str(claimed.signature) if claimed.signature is not None else None
    return ReadJob(str(claimed.path), signature, limit,
                   claimed.file_name.lower().endswith(REQUEST_SUFFIXES))


def read_file(job: ReadJob) -> tuple[FileRead, Request | None]:
    """Read, parse and verify one file, here or in the helper (which sends the FileRead
    only: a parsed request does not cross processes)."""
    read = read_untrusted(job.path, job.limit)
    if read.problem is not None or not job.parse:
        return FileRead(read.data, read.problem, read.detail), None
    signature = read_untrusted(job.signature, job.limit).data \
        if job.signature is not None else None
    assert read.data is not None
    try:
        request = load_request(read.data)
    except CSRError as exc:
        return FileRead(read.data, signature=signature, refusal=(exc.code, str(exc))), None
    return FileRead(read.data, signature=signature, der=request.der,
                    signature_valid=request.signature_valid), request


def prepare(claimed: Claimed, limit: int, ahead: ReadAhead | None,
            quarantined: frozenset[str] = frozenset()) -> Prepared:
    """A claimed file read (by the helper, if it was given to it) and judged as a file:
    its name, its size and type, its armour and syntax. Policy comes after. QUARANTINED:
    the SHA-256 of files that stopped the service (process.quarantine), answered so
    without being parsed again."""
    if claimed.quarantined or quarantined:
        early = read_untrusted(claimed.path, limit)
        digest = request_sha256(early.data or b"")
        if claimed.quarantined or digest in quarantined:
            return Prepared(claimed, digest, None, Finding.quarantined(claimed.file_name),
                            submission_only=True, file_sha256=digest)
    if claimed.name_problem is not None:
        return Prepared(claimed, request_sha256(os.fsencode(claimed.path.name)), None,
                        Finding("file.name_invalid", f"{claimed.file_name}: "
                                f"{claimed.name_problem}"), submission_only=True)
    read = ahead.take(claimed.path) if ahead is not None else None
    request = None
    if read is None:
        read, request = read_file(job_of(claimed, limit))
    file_sha256 = request_sha256(read.data or b"")
    if read.problem is not None:
        what = read.problem.split(".")[-1].replace("_", " ")
        return Prepared(claimed, file_sha256, None, Finding(
            read.problem, f"{claimed.file_name}: {what} ({read.detail})"),
            submission_only=True, file_sha256=file_sha256)
    if not claimed.file_name.lower().endswith(REQUEST_SUFFIXES):
        return Prepared(claimed, file_sha256, None, Finding(
            "file.extension_unsupported", f"{claimed.file_name}: name a request "
            "*.csr, *.pem, *.req or *.der"), submission_only=True, file_sha256=file_sha256)
    try:
        if read.refusal is not None:
            raise CSRError(*read.refusal)
        assert read.der is not None
        request = request or checked_request(read.der, read.signature_valid)
    except CSRError as exc:
        return Prepared(claimed, file_sha256, None,
                        Finding(exc.code, f"{claimed.file_name}: {exc}"),
                        submission_only=False, file_sha256=file_sha256, data=read.data,
                        signature=read.signature)
    return Prepared(claimed, request.sha256, request, None, submission_only=False,
                    file_sha256=file_sha256, data=read.data, signature=read.signature)


class ReadAhead:
    """The helper reading a pass's requests ahead, and what it has sent so far.

    A file the helper was given is waited for (it reads faster than this process
    decides, so the wait is short, and reading it here as well would only keep both in
    step); any other file is read here. Only a file asked for and not there yet makes
    this side take what has arrived, so what waits here is at most the pipe's megabyte:
    the helper is held back by the pipe, not by memory."""

    def __init__(self, jobs: Sequence[ReadJob]) -> None:
        self._child = start_helper("spoolca.process.reading")
        assert self._child.stdout is not None
        self._frames = FrameBuffer(self._child.stdout.fileno())
        self._given = {job.path for job in jobs}
        self._arrived: dict[str, FileRead | None] = {}
        self._failed = False
        # Sent from a thread: the helper reads its jobs once it has started (some 40 ms
        # of imports), and a pass of 100,000 does not fit in the pipe.
        self._sender = threading.Thread(target=self._send, args=(pickle.dumps(list(jobs)),),
                                        name="spoolca-read-ahead", daemon=True)
        self._sender.start()

    def take(self, path: Path) -> FileRead | None:
        """What the helper read of PATH; None: read it here (not given to the helper, or
        the helper could not read it, or failed)."""
        key = str(path)
        if key not in self._given:
            return None
        while key not in self._arrived and not self._failed:
            if not self._frames.wait(HELPER_SILENCE_SECONDS):
                self._fail(f"nothing from it in {HELPER_SILENCE_SECONDS} s")
            self._receive()
        self._given.discard(key)
        return self._arrived.pop(key, None)

    def close(self) -> None:
        """Stop the helper: it only reads, so nothing of it needs to finish."""
        self._child.kill()  # first: a send still under way fails at once
        self._sender.join()
        stop_helper(self._child)
        self._arrived.clear()

    def _send(self, payload: bytes) -> None:
        assert self._child.stdin is not None
        try:
            write_frame(self._child.stdin, payload)
            self._child.stdin.close()
        except (OSError, ValueError):
            pass  # the helper is gone (or was stopped): everything is read here

    def _receive(self) -> None:
        try:
            for frame in self._frames.available():
                self._arrived.update(pickle.loads(frame))  # noqa: S301 - from our helper
        except Exception as exc:  # a broken helper is no fault of a request's
            self._fail(f"{type(exc).__name__}: {exc}")
            return
        if self._frames.ended:  # done, or died: what it never sent is read here
            self._fail(f"it stopped (status {self._child.wait()})")

    def _fail(self, why: str) -> None:
        """Nothing more will come from the helper: a warning if something it was given
        never came (not when it finished its work and exited)."""
        if not self._failed and not self._given <= self._arrived.keys():
            _log.warning("the read-ahead helper failed; reading here", reason=why)
        self._failed = True


def _serve(parent: int) -> int:
    """The helper: read every job sent, answer in chunks, in order."""
    if not become_helper(parent):
        return 1
    out = sys.stdout.buffer
    widen_pipe(out.fileno())
    frame = read_frame(sys.stdin.buffer)
    if frame is None:
        return 0
    chunk: list[tuple[str, FileRead | None]] = []
    try:
        for job in pickle.loads(frame):  # noqa: S301 - from our parent only
            chunk.append((job.path, _read_or_none(job)))
            if len(chunk) == _CHUNK:
                write_frame(out, pickle.dumps(chunk))
                chunk = []
        if chunk:
            write_frame(out, pickle.dumps(chunk))
    except OSError:  # the parent stopped listening (its pass is over): never a traceback
        return 0
    return 0


def _read_or_none(job: ReadJob) -> FileRead | None:
    try:
        return read_file(job)[0]
    except Exception:  # read again by the parent, where it becomes the file's answer
        return None


if __name__ == "__main__":
    # Served by the module under its own name, not __main__: the parent unpickles what
    # it sends as spoolca.process.reading.FileRead.
    from spoolca.process.reading import _serve as serve

    sys.exit(serve(int(sys.argv[1])))
