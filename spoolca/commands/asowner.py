"""Before a command touches the state directory: as its owner, never as root over a
directory another user can change (spoolca.host.privileges says why).

- Run by root on a state directory another user owns (the README's set-up: the service
  user's): the command becomes that user, with root's helper for the unit's credential
  and for `shares --install|--credential`.
- Run by root on a state directory root owns: refused, in one sentence, if the directory,
  the configuration, the gnupg home or the PKCS#11 module (or a folder above them) can be
  changed by another user.
- Commands that make a new state directory (`init`, the imports, `restore`, `demo`) run
  as whoever runs them: the directory is theirs, and the README has root chown it after.
"""

from __future__ import annotations

import argparse
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from spoolca.commands.common import config_path
from spoolca.errors import SpoolcaError, UsageError

if TYPE_CHECKING:
    from spoolca.keys.installed import SecretTarget

__all__ = ["become_owner", "state_directory"]

_OWN_DIRECTORY = frozenset({"init", "import-openssl", "import-easyrsa", "restore", "demo"})


def state_directory(args: argparse.Namespace) -> os.stat_result | None:
    """The state directory root runs ARGS' command on (whose owner it becomes, unless that
    is root); None when not root, for a command that makes a new one, or when it is
    missing (the command then says so)."""
    if os.geteuid() != 0 or args.command in _OWN_DIRECTORY:
        return None
    try:
        return os.stat(config_path(args).parent)
    except OSError:
        return None


def become_owner(args: argparse.Namespace) -> None:
    """Make this process safe to run ARGS' command on its state directory (see above)."""
    info = state_directory(args)
    if info is None:
        return
    if info.st_uid == 0:
        _refuse_shared(config_path(args))
        return
    from spoolca.host.privileges import become, unit_credentials

    credentials = unit_credentials()
    target = _secret_target(args)

    def handle(operation: str, payload: bytes) -> bytes:
        if operation == "credential":
            credential = credentials.get(payload.decode(errors="replace"))
            return credential.read() if credential else b""
        if target is None:
            raise SpoolcaError("this command names no place for the unlock secret")
        return target.handle(operation, payload)

    become(info.st_uid, info.st_gid, handle)


def _secret_target(args: argparse.Namespace) -> SecretTarget | None:
    install, credential = getattr(args, "install", None), getattr(args, "credential", None)
    if not (install or credential):
        return None
    from spoolca.keys.installed import target_of

    return target_of(install, credential)


def _refuse_shared(path: Path) -> None:
    """Root over a root-owned state directory: only if no other user can change what
    root will read, load or run from it."""
    from spoolca.config import load_config
    from spoolca.errors import ConfigError

    try:
        config = load_config(path)
    except ConfigError:
        return  # the command reports it, as for anyone
    places = [path.parent, path, config.gnupg_dir, *_files(config.gnupg_dir)]
    module = [config.pkcs11_module] if config.pkcs11_module else []
    for place, with_parents in [*((p, False) for p in places), *((m, True) for m in module)]:
        problem = _changeable(place, with_parents)
        if problem:
            raise UsageError(f"{problem}; root does not run spoolca over what another user "
                             "can change (it could run their code as root): make it "
                             "root's alone (chown root, chmod go-w), or give the state "
                             "directory to the service user and run spoolca as root there: "
                             "it then runs as that user")


def _files(folder: Path) -> list[Path]:
    try:
        return [folder / name for name in os.listdir(folder)
                if name.endswith(".conf") or name == "gpg.conf"]
    except OSError:
        return []


def _changeable(place: Path, with_parents: bool) -> str | None:
    """Who else could change PLACE (or, WITH_PARENTS, a folder above it), in words."""
    chain = [place, *place.parents] if with_parents else [place]
    for item in chain:
        try:
            info = os.lstat(item)
        except FileNotFoundError:
            continue
        if info.st_uid != 0:
            return f"{item} belongs to user {info.st_uid}, not root"
        sticky = stat.S_ISDIR(info.st_mode) and info.st_mode & stat.S_ISVTX
        if info.st_mode & 0o022 and not sticky and not stat.S_ISLNK(info.st_mode):
            return f"{item} can be changed by its group or by anyone (mode " \
                   f"{stat.S_IMODE(info.st_mode):04o})"
    return None
