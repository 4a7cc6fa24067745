"""A process that runs spoolca commands one after another, for a caller that needs the
process to differ from its own: a wrong wall clock (tests/clock.py's preloaded shim)
holds for a process from its start, so the stateful model's commands could not run in
the test process, and starting an interpreter per command was most of the model's time.

`CommandServer(env)` starts `python -m tests.cliserver` with ENV; `run(argv)` sends one
command and returns what `subprocess.run` would have (tests/inprocess.py runs it there).
The protocol runs over copies of the server's standard streams, which are then pointed
at /dev/null: whatever a command's own children print cannot reach the protocol.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from collections.abc import Mapping, Sequence
from typing import IO

from spoolca.host.children import read_frame, write_frame

__all__ = ["CommandServer"]

def _send(stream: IO[bytes], value: object) -> None:
    write_frame(stream, pickle.dumps(value))


def _receive(stream: IO[bytes]) -> object:
    """The next value (spoolca.host.children's frames, as its helpers use)."""
    frame = read_frame(stream)
    if frame is None:
        raise EOFError("the command server ended")
    return pickle.loads(frame)


class CommandServer:
    """One server process, started with ENV added to this process's environment."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "tests.cliserver"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, env={**os.environ, **env},
            cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

    def run(self, argv: Sequence[str], env: Mapping[str, str] | None = None,
            stdin: bytes | None = None, timeout: float = 120
            ) -> subprocess.CompletedProcess[str]:
        assert self._process.stdin is not None and self._process.stdout is not None
        _send(self._process.stdin, (list(argv), dict(env or {}), stdin, timeout))
        code, out, err = _receive(self._process.stdout)  # type: ignore[misc]
        return subprocess.CompletedProcess(["spoolca", *argv], code, out, err)

    def close(self) -> None:
        if self._process.stdin is not None:
            self._process.stdin.close()
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        if self._process.stdout is not None:
            self._process.stdout.close()


def _serve() -> int:
    requests = os.fdopen(os.dup(0), "rb")
    answers = os.fdopen(os.dup(1), "wb")
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    from tests.inprocess import run_in_process

    while True:
        try:
            argv, env, stdin, timeout = _receive(requests)  # type: ignore[misc]
        except EOFError:
            return 0
        done = run_in_process(argv, env, stdin, timeout)
        _send(answers, (done.returncode, done.stdout, done.stderr))


if __name__ == "__main__":
    sys.exit(_serve())
