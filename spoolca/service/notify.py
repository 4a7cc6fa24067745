"""The systemd notify protocol (sd_notify(3)) without a dependency: one datagram each.

READY=1, STATUS=, WATCHDOG=1, STOPPING=1, RELOADING=1 with MONOTONIC_USEC are plain
`KEY=value` lines sent to the AF_UNIX socket named by $NOTIFY_SOCKET (a leading `@`
means the abstract namespace). Without $NOTIFY_SOCKET every call is a no-op.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time

__all__ = ["Notifier"]


class Notifier:
    """Sends state changes to the service manager, if there is one."""

    def __init__(self) -> None:
        address = os.environ.get("NOTIFY_SOCKET", "")
        self._address = "\0" + address[1:] if address.startswith("@") else address
        usec = os.environ.get("WATCHDOG_USEC", "")
        pid = os.environ.get("WATCHDOG_PID", "")
        watched = usec.isdigit() and (not pid or pid == str(os.getpid()))
        # Ping at half the timeout, as sd_watchdog_enabled(3) recommends.
        self.watchdog_interval = int(usec) / 2_000_000 if watched else None
        self._last_status = ""
        self._last_ping = -1.0

    def send(self, *fields: str) -> None:
        if not self._address:
            return
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock, \
                contextlib.suppress(OSError):  # the manager is gone or busy; work goes on
            # MSG_DONTWAIT: a datagram socket whose reader stalls would block the sender,
            # and a stalled manager must never stall the CA. The message is dropped.
            sock.sendto("\n".join(fields).encode(), socket.MSG_DONTWAIT, self._address)

    def ready(self, status: str) -> None:
        self._last_status = status
        self.send("READY=1", f"STATUS={status}")

    def status(self, status: str) -> None:
        """STATUS=, sent only when it changed."""
        if status != self._last_status:
            self._last_status = status
            self.send(f"STATUS={status}")

    def watchdog(self) -> None:
        """WATCHDOG=1: the worker is alive. Called per request and per result in long work
        as well as each turn, so sent at most once a second."""
        if self.watchdog_interval is not None and time.monotonic() - self._last_ping >= 1.0:
            self._last_ping = time.monotonic()
            self.send("WATCHDOG=1")

    def reloading(self) -> None:
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.send("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self) -> None:
        self.send("STOPPING=1")
