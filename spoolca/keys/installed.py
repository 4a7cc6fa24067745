"""Where the unlock secret is installed for the service: a root-only file (`--install
FILE`) or a systemd-creds encrypted credential (`--credential FILE`), and the `.next`
beside it that a rotation stages before any key changes.

Root names the place on the command line; when the command runs as the state
directory's owner (spoolca.host.privileges), root's helper does these steps, and only these.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from spoolca.errors import UsageError
from spoolca.host.fsutil import atomic_write, remove_file

__all__ = ["SecretTarget", "ThroughRoot", "placed", "target_of"]


@dataclass(frozen=True, slots=True)
class SecretTarget:
    path: Path
    credential: str | None  # the credential's name; None: a plain root-only file

    @property
    def staged(self) -> Path:
        return Path(f"{self.path}.next")

    def shown(self) -> str:
        return f"the encrypted credential {self.path}" if self.credential else \
            f"{self.path} (mode 0400)"

    def install(self, secret: bytes, *, staged: bool = False) -> str:
        """SECRET at the place (or its .next); never printed, never in argv."""
        path = self.staged if staged else self.path
        if self.credential is None:
            atomic_write(path, secret, 0o400)
            return self.shown()
        done = subprocess.run(["systemd-creds", "encrypt", f"--name={self.credential}", "-",
                               str(path)], input=secret, capture_output=True, check=False)
        if done.returncode != 0:
            raise UsageError(f"systemd-creds could not encrypt the credential: "
                             f"{done.stderr.decode(errors='replace').strip()}")
        return self.shown()

    def read_staged(self) -> bytes | None:
        """An interrupted rotation's new secret, if there is one."""
        if not self.staged.exists():
            return None
        if self.credential is None:
            return self.staged.read_bytes()
        done = subprocess.run(["systemd-creds", "decrypt", f"--name={self.credential}",
                               str(self.staged), "-"], capture_output=True, check=False)
        if done.returncode != 0:
            raise UsageError(f"{self.staged} (an interrupted rotation's secret) cannot be "
                             "decrypted")
        return done.stdout

    def remove_staged(self) -> None:
        remove_file(self.staged)

    def handle(self, operation: str, payload: bytes) -> bytes:
        """One step asked of root's helper (spoolca.host.privileges)."""
        if operation == "install":
            return self.install(payload).encode()
        if operation == "install-staged":
            return self.install(payload, staged=True).encode()
        if operation == "read-staged":
            staged = self.read_staged()
            return b"" if staged is None else b"+" + staged
        self.remove_staged()
        return b""


def target_of(install: str | None, credential: str | None) -> SecretTarget:
    """The place root named: `--install FILE` or `--credential FILE` (its name the one the
    installed unit loads from that file, else the file's own name, as systemd-creds
    names it)."""
    from spoolca.host.privileges import unit_credentials

    if bool(install) == bool(credential):
        raise UsageError("name where the secret goes: --install FILE or --credential FILE")
    if install:
        return SecretTarget(Path(install), None)
    path = Path(str(credential))
    named = [c.name for c in unit_credentials().values() if c.path == path.absolute()]
    return SecretTarget(path, named[0] if named else path.name)


class ThroughRoot:
    """The same steps, asked of root's helper by a command that runs as the owner."""

    def __init__(self, target: SecretTarget) -> None:
        from spoolca.host.privileges import helper

        found = helper()
        assert found is not None
        self._helper, self._target = found, target

    @property
    def staged(self) -> Path:
        return self._target.staged

    def shown(self) -> str:
        return self._target.shown()

    def install(self, secret: bytes, *, staged: bool = False) -> str:
        return self._helper.call("install-staged" if staged else "install", secret).decode()

    def read_staged(self) -> bytes | None:
        answer = self._helper.call("read-staged")
        return answer[1:] if answer else None

    def remove_staged(self) -> None:
        self._helper.call("remove-staged")


def placed(install: str | None, credential: str | None) -> SecretTarget | ThroughRoot:
    """Where this command installs the secret: itself, or through root's helper."""
    from spoolca.host.privileges import helper

    target = target_of(install, credential)
    return ThroughRoot(target) if helper() is not None else target
