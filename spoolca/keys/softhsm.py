"""A throwaway SoftHSM2 token, for a rehearsed ceremony (and the tests).

A rehearsal must not touch the real HSM, so it gets a token of its own in its
temporary folder. softhsm2-util asks for the PINs on a terminal and refuses a pipe, and
a PIN on its command line would show in `ps`: it is given a pseudo-terminal instead.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from pathlib import Path

from spoolca.errors import KeyStoreError
from spoolca.host.fsutil import PRIVATE_DIR, ensure_dir, write_new

__all__ = ["make_token", "softhsm_module"]

_MODULES = (
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
)


def softhsm_module() -> Path:
    """SoftHSM2's PKCS#11 library on this machine."""
    for candidate in _MODULES:
        if Path(candidate).is_file():
            return Path(candidate)
    raise KeyStoreError("SoftHSM2 is not installed (Debian: apt-get install softhsm2); a "
                        "rehearsal of a token ceremony needs it")


def make_token(place: Path, label: str, pin: bytes) -> Path:
    """A new SoftHSM2 token labelled `label` with user PIN `pin`, stored under `place`;
    returns its configuration file (give it to SoftHSM2 as SOFTHSM2_CONF)."""
    tool = shutil.which("softhsm2-util")
    if tool is None:
        raise KeyStoreError("softhsm2-util is not installed (Debian: apt-get install softhsm2)")
    tokens = ensure_dir(place / "tokens", PRIVATE_DIR)
    conf = place / "softhsm2.conf"
    write_new(conf, f"directories.tokendir = {tokens}\nobjectstore.backend = file\n"
                    "log.level = ERROR\n".encode(), 0o600)
    so_pin = secrets.token_hex(16).encode()  # nobody needs it: the token is thrown away
    master, terminal = os.openpty()
    try:
        child = subprocess.Popen(
            [tool, "--init-token", "--free", "--label", label], stdin=terminal,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            env={**os.environ, "SOFTHSM2_CONF": str(conf)})
        os.close(terminal)
        terminal = -1
        os.write(master, b"\n".join((so_pin, so_pin, pin, pin)) + b"\n")
        output, _ = child.communicate(timeout=60)
    finally:
        os.close(master)
        if terminal >= 0:
            os.close(terminal)
    if child.returncode != 0:
        last = output.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise KeyStoreError(f"softhsm2-util failed to make the token {label!r}: {last[0]}")
    return conf
