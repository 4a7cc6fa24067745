"""Helper processes of a pass: started from our own modules, tied to their parent, and
talking to it in length-prefixed pickle frames over their standard streams.

A helper dies with its parent (PR_SET_PDEATHSIG), so none outlives a crashed or
restarted daemon. Frames are pickles between our own processes only: nothing read from
the spool or a stick is ever unpickled, only what our child made of it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import signal
import struct
import subprocess
import sys
from typing import IO

from spoolca.host.fsutil import LIBC

__all__ = ["FrameBuffer", "become_helper", "read_frame", "start_helper", "stop_helper",
           "write_frame"]

_FRAME = struct.Struct(">Q")
_PR_SET_PDEATHSIG = 1
_F_SETPIPE_SZ = 1031
PIPE_BYTES = 1 << 20  # what an unprivileged process may ask (fs.pipe-max-size)


def start_helper(module: str) -> subprocess.Popen[bytes]:
    """`python -m MODULE PARENT_PID`, its standard input and output piped to us."""
    return subprocess.Popen([sys.executable, "-m", module, str(os.getpid())],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)


def stop_helper(child: subprocess.Popen[bytes]) -> None:
    """Kill a helper and reap it. Only between its jobs, or when its work is moot: it
    is never asked to finish (a Python exit costs 15 ms a pass), so nothing it holds may
    matter by then."""
    child.kill()
    child.wait()
    for stream in (child.stdin, child.stdout):
        if stream is not None:
            with contextlib.suppress(OSError):  # a frame cut off: it is not read anyway
                stream.close()


def become_helper(parent: int) -> bool:
    """In the child, first: die with PARENT, leave SIGINT to it. False if it is gone."""
    LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before prctl took effect
        return False
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    return True


def widen_pipe(fd: int) -> None:
    """Let a pipe hold a megabyte, so a helper working ahead is not stopped at 64 KiB."""
    with contextlib.suppress(OSError):  # a lower fs.pipe-max-size: the default works too
        fcntl.fcntl(fd, _F_SETPIPE_SZ, PIPE_BYTES)


def write_frame(stream: IO[bytes], payload: bytes) -> None:
    stream.write(_FRAME.pack(len(payload)) + payload)
    stream.flush()


def read_frame(stream: IO[bytes]) -> bytes | None:
    """The next frame, waiting for it; None at the end of the stream."""
    header = stream.read(_FRAME.size)
    if len(header) < _FRAME.size:
        return None
    (length,) = _FRAME.unpack(header)
    payload = stream.read(length)
    return payload if len(payload) == length else None


class FrameBuffer:
    """The frames a helper has sent so far, read without ever waiting for more."""

    def __init__(self, fd: int) -> None:
        os.set_blocking(fd, False)
        self._fd = fd
        self._pending = bytearray()
        self.ended = False  # the helper closed its end (exited, or died)

    def wait(self, seconds: float) -> bool:
        """Until more has arrived (or the helper ended); False after SECONDS of nothing."""
        if self.ended:
            return True
        poller = select.poll()  # not select(): a daemon's descriptor may be over 1023
        poller.register(self._fd, select.POLLIN)
        return bool(poller.poll(seconds * 1000))

    def available(self) -> list[bytes]:
        """Every whole frame that has arrived; [] if none has."""
        while not self.ended:
            try:
                chunk = os.read(self._fd, PIPE_BYTES)
            except BlockingIOError:
                break
            if not chunk:
                self.ended = True
            self._pending += chunk
        frames, start = [], 0
        while len(self._pending) - start >= _FRAME.size:
            (length,) = _FRAME.unpack_from(self._pending, start)
            end = start + _FRAME.size + length
            if end > len(self._pending):
                break
            frames.append(bytes(self._pending[start + _FRAME.size:end]))
            start = end
        del self._pending[:start]
        return frames
