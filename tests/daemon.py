"""Running the real daemon as a subprocess, with a real notify socket to listen on."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from tests.pki import CA, wait_for


class NotifySocket:
    """What systemd would be: an AF_UNIX datagram socket collecting sd_notify messages."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.05)
        self.messages: list[str] = []

    def poll(self) -> list[str]:
        while True:
            try:
                self.messages.extend(self.sock.recv(4096).decode().split("\n"))
            except (TimeoutError, BlockingIOError):
                return self.messages

    def wait_for(self, line: str, timeout: float = 20) -> None:
        wait_for(lambda: line in self.poll(), timeout, f"{line} on the notify socket")

    def close(self) -> None:
        self.sock.close()


STARTED: list[Running] = []  # killed at the end of the test if still running (conftest)


class Running:
    """A `spoolca serve` subprocess; stopped (or killed) by the test, and killed by the
    conftest if a failing test left it running."""

    def __init__(self, ca: CA, notify: NotifySocket | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.log = ca.dir / f"serve-{time.monotonic_ns()}.log"
        full_env = {**os.environ, **(env or {})}
        if notify is not None:
            full_env["NOTIFY_SOCKET"] = str(notify.path)
        self._log_file = self.log.open("wb")
        self.stopped_with: int | None = None  # the exit status, once `serving` stopped it
        self.process = subprocess.Popen(
            [sys.executable, "-m", "spoolca.cli", "--config", str(ca.config), "serve"],
            stdout=self._log_file, stderr=subprocess.STDOUT, env=full_env)
        STARTED.append(self)

    def signal(self, number: int) -> None:
        self.process.send_signal(number)

    def stop(self, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        finally:
            self._log_file.close()

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(timeout=30)
        self._log_file.close()

    def output(self) -> str:
        if not self._log_file.closed:
            self._log_file.flush()
        return self.log.read_text()


@contextlib.contextmanager
def serving(ca: CA, folder: Path) -> Iterator[Running]:
    """The daemon for the block, ready (READY=1 said); stopped after it, its exit status
    then in `stopped_with`."""
    notify = NotifySocket(folder / "notify.sock")
    running = Running(ca, notify)
    try:
        notify.wait_for("READY=1")
        yield running
    finally:
        running.stopped_with = running.stop()
        notify.close()


def issue_one(ca: CA, name: str) -> None:
    """Drop NAME.csr (NAME.sample.com) into a running daemon; wait for its result."""
    from tests.pki import make_csr, pem

    ca.submit(f"server/{name}.csr", pem(make_csr(f"{name}.sample.com")[1]))
    wait_for((ca.outgoing / name / "result.json").exists, 20, f"{name} answered")
