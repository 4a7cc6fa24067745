"""The appliance image booted in QEMU, and driven from outside as a person at the machine
would: sticks plugged and pulled (QMP: blockdev-add, device_add usb-storage on an xHCI
controller), and the system observed through the QEMU guest agent over virtio-serial
(the appliance has no network interface). Standard library only.

QEMU emulates the CPU here (TCG): this machine's /dev/kvm runs only PVM guest kernels.
Boot takes ~50 s of QEMU's CPU time, so time is judged by `cpu_seconds()`, not the wall
clock, and every wait polls with a generous deadline.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["Appliance", "Channel"]


class Channel:
    """A QMP or guest-agent socket: one JSON object a line each way; events kept aside."""

    def __init__(self, path: Path, timeout: float) -> None:
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._socket.settimeout(timeout)
        self._socket.connect(str(path))
        self._buffer = b""
        self.events: list[dict[str, Any]] = []

    def _read(self) -> dict[str, Any]:
        while b"\n" not in self._buffer:
            chunk = self._socket.recv(65536)
            if not chunk:
                raise EOFError("the channel closed")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def call(self, command: str, **arguments: Any) -> Any:
        message: dict[str, Any] = {"execute": command}
        if arguments:
            message["arguments"] = arguments
        self._socket.sendall(json.dumps(message).encode() + b"\n")
        while True:
            reply = self._read()
            if "event" in reply:
                self.events.append(reply)
            elif "error" in reply:
                raise RuntimeError(f"{command}: {reply['error']}")
            elif "return" in reply:
                return reply["return"]

    def event(self, name: str, timeout: float, **data: Any) -> dict[str, Any]:
        """The first event NAME whose data has DATA, waiting up to TIMEOUT seconds."""
        deadline = time.monotonic() + timeout
        while True:
            for index, event in enumerate(self.events):
                if event["event"] == name and all(
                        event.get("data", {}).get(k) == v for k, v in data.items()):
                    return self.events.pop(index)
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {name} event {data} in {timeout} s")
            self.events.append(self._read())

    def close(self) -> None:
        self._socket.close()


class Appliance:
    """One VM of the image in IMAGE_DIR (appliance/build's output), its writes kept in a
    throwaway qcow2 overlay in WORK."""

    def __init__(self, image_dir: Path, work: Path) -> None:
        self.image_dir, self.work = image_dir, work
        self.console = work / "console.log"
        self._process: subprocess.Popen[bytes] | None = None
        self._qmp: Channel | None = None

    def boot(self) -> None:
        overlay = self.work / "root.qcow2"
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b",
                        str(self.image_dir / "root.img"), str(overlay)], check=True)
        qmp, agent = self.work / "qmp.sock", self.work / "agent.sock"
        self._process = subprocess.Popen([
            "qemu-system-x86_64", "-accel", "tcg,tb-size=512", "-smp", "1", "-m", "2048",
            "-nodefaults", "-nographic", "-no-reboot",
            "-kernel", str(self.image_dir / "vmlinuz"),
            "-initrd", str(self.image_dir / "initrd.img"),
            "-append", "root=/dev/vda rw console=ttyS0 quiet panic=-1",
            "-drive", f"file={overlay},if=virtio,format=qcow2",
            "-device", "virtio-rng-pci", "-device", "qemu-xhci,id=xhci",
            "-chardev", f"socket,path={agent},server=on,wait=off,id=agent",
            "-device", "virtio-serial", "-device",
            "virtserialport,chardev=agent,name=org.qemu.guest_agent.0",
            "-qmp", f"unix:{qmp},server=on,wait=off",
            "-serial", f"file:{self.console}"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _poll(lambda: qmp.exists(), 60, "QEMU's QMP socket")
        self._qmp = Channel(qmp, 60)
        self._qmp.call("qmp_capabilities")
        _poll(self._agent_answers, 900, "the guest agent after boot")

    def _agent_answers(self) -> bool:
        try:
            self.agent("guest-ping", timeout=5)
            return True
        except (OSError, EOFError, RuntimeError, TimeoutError):
            return False

    def agent(self, command: str, timeout: float = 60, **arguments: Any) -> Any:
        """One guest-agent command (its socket takes one client at a time)."""
        channel = Channel(self.work / "agent.sock", timeout)
        try:
            return channel.call(command, **arguments)
        finally:
            channel.close()

    def sh(self, script: str, timeout: float = 600, check: bool = True
           ) -> subprocess.CompletedProcess[str]:
        """SCRIPT run by /bin/sh in the guest, as root; its exit status and output."""
        started = self.agent("guest-exec", path="/bin/sh", arg=["-c", script],
                             **{"capture-output": True})
        status: dict[str, Any] = {}

        def exited() -> bool:
            status.update(self.agent("guest-exec-status", pid=started["pid"]))
            return bool(status.get("exited"))
        _poll(exited, timeout, f"the guest's command {script!r}")
        done = subprocess.CompletedProcess(
            script, status.get("exitcode", -1),
            base64.b64decode(status.get("out-data", "")).decode(errors="replace"),
            base64.b64decode(status.get("err-data", "")).decode(errors="replace"))
        if check and done.returncode != 0:
            raise AssertionError(f"{script!r} exited {done.returncode}: {done.stderr}")
        return done

    def plug(self, name: str, image: Path) -> None:
        """A USB stick holding IMAGE plugged into the xHCI port, as a person plugs one."""
        assert self._qmp is not None
        self._qmp.call("blockdev-add", **{"node-name": f"{name}-file", "driver": "file",
                                          "filename": str(image)})
        self._qmp.call("blockdev-add", **{"node-name": name, "driver": "raw",
                                          "file": f"{name}-file"})
        self._qmp.call("device_add", driver="usb-storage", id=name, drive=name,
                       bus="xhci.0", removable=True)

    def pull(self, name: str) -> None:
        """The stick NAME pulled out; returns once QEMU has let go of its image."""
        assert self._qmp is not None
        self._qmp.call("device_del", id=name)
        self._qmp.event("DEVICE_DELETED", 60, device=name)
        self._qmp.call("blockdev-del", **{"node-name": name})
        self._qmp.call("blockdev-del", **{"node-name": f"{name}-file"})

    def cpu_seconds(self) -> float:
        """QEMU's CPU time so far (user + system): the emulated machine's own time."""
        assert self._process is not None
        fields = Path(f"/proc/{self._process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def shutdown(self) -> None:
        if self._qmp is not None:
            with contextlib.suppress(OSError, EOFError, RuntimeError):
                self._qmp.call("quit")
            self._qmp.close()
        if self._process is not None:
            try:
                self._process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()


def _poll(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout} s for {what}")
        time.sleep(0.5)
