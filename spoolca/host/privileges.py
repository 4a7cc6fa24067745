"""Root's commands run as the state directory's owner; the little only root may do is
done by a helper that stays root and answers over a socket.

The service user owns the state directory, and with it `spoolca.toml` (which names a
PKCS#11 module to load and the files to read), the gnupg home (whose `gpg.conf` can name
an `agent-program` to run) and every folder a command writes into (a link there leads a
write anywhere). A command that ran as root on it would do all that as root: from the
service user to root in one step. So before it touches the state directory, a command
run as root becomes its owner (setgid, setgroups, setuid), exactly the user the daemon
runs as; whatever the files say, they can do no more than the daemon could.

Root keeps two jobs, done by a helper forked before the switch and asked over a
socketpair only the command holds: decrypting a credential that the installed unit
(`spoolca.service`, root's file) loads for the daemon, when the command needs the key
passphrase and only then; and, for `shares combine|rotate`, installing the unlock secret
where root said on the command line. The helper takes no path and no credential name
from the state directory. It exits when the command does.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import socket
import struct
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from spoolca.errors import SpoolcaError

__all__ = ["Credential", "Helper", "become", "helper", "unit_credentials"]

UNIT = "spoolca.service"
_LOAD = re.compile(r"^(LoadCredential|LoadCredentialEncrypted)=(.*)$")
_HEADER = struct.Struct("!BI")
_MAX_MESSAGE = 1 << 16


@dataclass(frozen=True, slots=True)
class Credential:
    """One credential the unit gives the daemon: where it is, and whether sealed."""

    name: str
    path: Path
    encrypted: bool

    def read(self) -> bytes:
        if not self.encrypted:
            return self.path.read_bytes()
        done = subprocess.run(["systemd-creds", f"--name={self.name}", "decrypt",
                               str(self.path), "-"], capture_output=True, check=False,
                              timeout=60)
        if done.returncode != 0:
            raise SpoolcaError(f"systemd-creds could not decrypt the credential {self.path}: "
                               f"{done.stderr.decode(errors='replace').strip()}")
        return done.stdout


def unit_credentials(unit: str = UNIT) -> dict[str, Credential]:
    """The credentials the installed unit loads (`systemctl cat`: the unit and its drop-ins,
    root's files); none where systemd or the unit is not there."""
    try:
        shown = subprocess.run(["systemctl", "cat", unit], capture_output=True, text=True,
                               timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    found: dict[str, Credential] = {}
    for line in shown.stdout.splitlines() if shown.returncode == 0 else []:
        match = _LOAD.match(line.strip())
        if not match:
            continue
        kind, value = match.groups()
        if not value:  # an empty assignment resets the list (systemd.exec)
            found.clear()
            continue
        name, _, path = value.partition(":")
        encrypted = kind.endswith("Encrypted")
        if name and path.startswith("/"):
            found[name] = Credential(name, Path(path), encrypted)
        elif name and not path and (stored := _in_credstore(name, encrypted)) is not None:
            found[name] = Credential(name, stored, encrypted)
    return found


def _credstores(encrypted: bool) -> list[Path]:
    """Where systemd (252) looks for a credential named without a path, in its order."""
    roots = ("/etc", "/run", "/usr/local/lib", "/usr/lib")
    sealed = [Path(root) / "credstore.encrypted" for root in roots] if encrypted else []
    return [*sealed, *(Path(root) / "credstore" for root in roots)]


def _in_credstore(name: str, encrypted: bool) -> Path | None:
    """The file systemd would load for NAME (root's folders, never the state
    directory's), or None: the unit then starts without it, as a CA with no passphrase
    needs."""
    if "/" in name or name.startswith("."):
        return None
    return next((folder / name for folder in _credstores(encrypted)
                 if (folder / name).is_file()), None)


Handler = Callable[[str, bytes], bytes]


def _send(sock: socket.socket, code: int, payload: bytes) -> None:
    sock.sendall(_HEADER.pack(code, len(payload)) + payload)


def _receive(sock: socket.socket) -> tuple[int, bytes] | None:
    header = _exactly(sock, _HEADER.size)
    if header is None:
        return None
    code, length = _HEADER.unpack(header)
    if length > _MAX_MESSAGE:
        return None
    payload = _exactly(sock, length)
    return None if payload is None else (code, payload)


def _exactly(sock: socket.socket, count: int) -> bytes | None:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            return None
        data += chunk
    return data


_OPERATIONS = ("credential", "install", "install-staged", "read-staged", "remove-staged")


class Helper:
    """The command's end of the socket to the root helper."""

    def __init__(self, sock: socket.socket, pid: int) -> None:
        self._sock, self._pid = sock, pid

    def call(self, operation: str, payload: bytes = b"") -> bytes:
        """Ask root for OPERATION; its answer, or its one sentence as a SpoolcaError."""
        try:
            _send(self._sock, _OPERATIONS.index(operation), payload)
            answer = _receive(self._sock)
        except OSError as exc:
            answer, reason = None, exc.strerror
        else:
            reason = "it stopped"
        if answer is None:
            raise SpoolcaError(f"root's helper did not answer ({reason}): run the command "
                               "again")
        code, data = answer
        if code != 0:
            raise SpoolcaError(data.decode(errors="replace"))
        return data

    def close(self) -> None:
        self._sock.close()
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self._pid, 0)


def _serve(sock: socket.socket, handle: Handler) -> None:
    """The helper's loop: one answer per request until the command closes its end."""
    while (request := _receive(sock)) is not None:
        code, payload = request
        try:
            operation = _OPERATIONS[code]
            _send(sock, 0, handle(operation, payload))
        except (SpoolcaError, OSError, IndexError) as exc:
            _send(sock, 1, str(exc).encode())


_HELPER: list[Helper] = []


def helper() -> Helper | None:
    """The root helper of this process, if it became the state directory's owner."""
    return _HELPER[0] if _HELPER else None


def become(uid: int, gid: int, handle: Handler) -> None:
    """From root to UID:GID (its supplementary groups too), with a root helper that
    answers through HANDLE. Nothing of root's is left in this process after it."""
    from spoolca.host.memory import no_core_dumps

    ours, theirs = socket.socketpair()
    pid = os.fork()
    if pid == 0:  # the helper: root, until the command ends
        code = 0
        try:
            ours.close()
            no_core_dumps()
            _serve(theirs, handle)
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    theirs.close()
    try:
        name = pwd.getpwuid(uid).pw_name
        home = pwd.getpwuid(uid).pw_dir
    except KeyError:
        name, home = "", "/"
    if name:
        os.initgroups(name, gid)
    else:
        os.setgroups([gid])
    os.setgid(gid)
    os.setuid(uid)
    try:
        os.setuid(0)
    except PermissionError:
        pass  # as it must be: root is out of reach from here
    else:
        raise SpoolcaError(f"could not stop being root (user {uid}): refusing to go on")
    os.environ.update({"HOME": home, "USER": name, "LOGNAME": name})
    _HELPER.append(Helper(ours, pid))
