"""The appliance's OpenPGP key (python-gnupg driving the real gpg): sign and verify.

The key signs audit checkpoints so an auditor can check them with plain `gpg --verify`.
It is made by `init` in the state directory's gnupg/ (mode 0700), Ed25519, protected
by the CA passphrase (fed to gpg on a pipe, never on its command line).

Verification never trusts a keyring it is handed: it imports the expected public key
into a fresh temporary home, pins its fingerprint, and requires exactly one good
signature by it. python-gnupg's `valid` alone is not enough: reports of "success" with
no valid signature are a known bug class in GnuPG wrappers (CVE-2020-10759).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import gnupg

from spoolca.errors import SpoolcaError
from spoolca.host.fsutil import atomic_write, ensure_dir, hold_lock, remove_tree
from spoolca.host.memory import wipe

__all__ = [
    "ApplianceKey",
    "AuditSignatureError",
    "Keyring",
    "Verdict",
    "check_home_length",
    "configure_agent",
    "keyring_owner",
    "leave_agent",
    "reap_keyrings",
    "stop_agent",
    "use_agent",
    "verify_detached",
]


# gpg-agent puts its sockets in the gnupg home; sun_path holds 108 bytes with its NUL,
# gpg-agent refuses one more (measured: an 87-byte home fails "socket name ... is too
# long", 86 works), and the longest name it uses is S.gpg-agent.browser.
MAX_HOME_LENGTH = 106 - len("/S.gpg-agent.browser")


def check_home_length(home: Path) -> None:
    """One clear sentence instead of gpg's 'No agent running' for a too-deep directory."""
    length = len(os.fsencode(home.resolve()))
    if length > MAX_HOME_LENGTH:
        raise SpoolcaError(f"the gnupg folder {home} is {length} bytes long; gpg-agent's socket "
                           f"paths allow {MAX_HOME_LENGTH}: choose a state directory with a "
                           "shorter path")


class AuditSignatureError(SpoolcaError):
    """A checkpoint could not be signed: issuance stops until it can (fail closed)."""


def _hardened() -> list[str]:
    """Options for every gpg we run: no gpg.conf read (an `agent-program` line in it would
    run a program of the home's owner's choosing), and the agent named explicitly, the
    one installed beside gpg (whose gpg-agent.conf we write: configure_agent)."""
    gpg = shutil.which("gpg") or "/usr/bin/gpg"
    return ["--no-options", "--agent-program", str(Path(gpg).resolve().parent / "gpg-agent")]


def _gpg(home: Path) -> gnupg.GPG:
    return gnupg.GPG(gnupghome=str(home),
                     options=[*_hardened(), "--pinentry-mode", "loopback"])


def stop_agent(home: Path) -> None:
    """Stop the gpg-agent gpg started for `home`: no agent outlives the command that
    needed it (invariant 13), for the appliance's home and every temporary one."""
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"],
                   capture_output=True, check=False, timeout=30)


# Every process using the appliance's agent holds a shared lock on this file in its home
# while it does; the last one to let go stops the agent.
_AGENT_USERS = "agent-users.lock"


def use_agent(home: Path) -> int:
    """Count this process among the agent's users until `leave_agent`: a command run
    while the daemon signs (a backup, a revocation) must not stop the agent under it."""
    return hold_lock(home / _AGENT_USERS, shared=True)


def leave_agent(home: Path, user: int) -> None:
    """Stop using the agent; stop it too if no other process uses it (invariant 13: the
    last user out stops it, as a crashed user's lock goes with its process)."""
    os.close(user)
    try:
        last = hold_lock(home / _AGENT_USERS)
    except BlockingIOError:
        return  # another process signs with it still, and stops it when it is done
    try:
        stop_agent(home)
    finally:
        os.close(last)


# gpg-agent.conf for the appliance's home. gpg needs an agent for every secret-key
# operation; loopback pinentry lets us hand it the passphrase on a pipe per signature,
# and a cache TTL of 0 means the agent forgets it at once: while the agent runs, another
# process of the same user can ask it to sign only by knowing the passphrase too.
AGENT_CONF = b"default-cache-ttl 0\nmax-cache-ttl 0\nallow-loopback-pinentry\n"


def configure_agent(home: Path) -> None:
    """Write the appliance home's gpg-agent.conf if it differs (before any agent starts)."""
    conf = home / "gpg-agent.conf"
    try:
        current = conf.read_bytes()
    except FileNotFoundError:
        current = b""
    if current != AGENT_CONF:
        atomic_write(conf, AGENT_CONF, 0o600)


def _created(signature: gnupg.Sign) -> bool:
    return bool(signature.data) and getattr(signature, "status", "") == "signature created"


class ApplianceKey:
    """The appliance's signing key, by fingerprint, in its gnupg home."""

    def __init__(self, home: Path, fingerprint: str, passphrase: bytes | None) -> None:
        self.home = home
        self.fingerprint = fingerprint
        self._passphrase = bytearray(passphrase) if passphrase is not None else None
        self._user: int | None = None
        self._closed = False
        if home.is_dir():
            configure_agent(home)
            self._user = use_agent(home)

    def __repr__(self) -> str:  # never show the passphrase
        return f"ApplianceKey({self.fingerprint})"

    @classmethod
    def create(cls, home: Path, passphrase: bytes | None, name: str) -> ApplianceKey:
        check_home_length(home)
        ensure_dir(home, 0o700)
        gpg = _gpg(home)
        params = gpg.gen_key_input(
            key_type="EDDSA", key_curve="ed25519", key_usage="sign", expire_date="0",
            name_real=name, name_email="audit@spoolca.invalid",
            passphrase=passphrase.decode() if passphrase is not None else None,
            no_protection=passphrase is None)
        key = gpg.gen_key(params)
        if not key.fingerprint:
            raise SpoolcaError(f"failed to create the audit signing key in {home}: "
                               f"{getattr(key, 'stderr', '')[-200:]}")
        # gpg asks the agent for the new key's passphrase again to self-sign it, so the
        # no-cache settings apply from the next agent on: this one is stopped now.
        configure_agent(home)
        stop_agent(home)
        return cls(home, str(key.fingerprint), passphrase)

    def sign(self, data: bytes) -> str:
        """A detached, ASCII-armored signature over `data`."""
        signature = self._sign_once(data)
        if not _created(signature):
            # An agent that met a fault (a full disk, say) may stay unusable after the
            # fault clears: start a fresh one and try once more before failing closed.
            stop_agent(self.home)
            signature = self._sign_once(data)
        if not _created(signature):
            detail = " ".join(str(getattr(signature, "stderr", "")).split())[-300:]
            raise AuditSignatureError(f"failed to sign the audit checkpoint with key "
                                      f"{self.fingerprint}: {getattr(signature, 'status', '')}"
                                      f" ({detail})")
        return str(signature)

    def change_passphrase(self, new: bytes) -> ApplianceKey:
        """The same key, protected by NEW from now on (gpg --change-passphrase; both
        passphrases on a pipe, never argv). Returns the key as it now opens."""
        old = self._passphrase or b""
        done = subprocess.run(
            ["gpg", "--homedir", str(self.home), "--batch", "--pinentry-mode", "loopback",
             "--command-fd", "0", "--status-fd", "1", "--change-passphrase", self.fingerprint],
            input=old + b"\n" + new + b"\n", capture_output=True, check=False, timeout=60)
        stop_agent(self.home)
        if done.returncode != 0 or b"SUCCESS keyedit.passwd" not in done.stdout:
            raise SpoolcaError(f"gpg could not change the passphrase of the audit key "
                               f"{self.fingerprint}")
        return ApplianceKey(self.home, self.fingerprint, new)

    def _sign_once(self, data: bytes) -> gnupg.Sign:
        passphrase = self._passphrase.decode() if self._passphrase is not None else None
        return _gpg(self.home).sign(data, keyid=self.fingerprint, detach=True,
                                    passphrase=passphrase)

    def close(self) -> None:
        """Forget the passphrase and stop the agent, unless another process still uses
        it: nothing outlives the last command."""
        if self._closed:  # a second close must not stop an agent others now use
            return
        self._closed = True
        wipe(self._passphrase)
        self._passphrase = None
        if self._user is None:
            stop_agent(self.home)
        else:
            leave_agent(self.home, self._user)

    def __enter__(self) -> ApplianceKey:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def public_key(self) -> str:
        exported: str = _gpg(self.home).export_keys(self.fingerprint)
        if not exported:
            raise SpoolcaError(f"the audit key {self.fingerprint} is not in {self.home}")
        return exported


@dataclass(frozen=True, slots=True)
class Verdict:
    """What one detached signature is: `good`, `expired`, `unknown key` or `bad`; and the
    signed notations it carries (`--sig-notation name=value`: part of what was signed)."""

    kind: str
    fingerprint: str | None
    detail: str
    notations: tuple[tuple[str, str], ...] = ()


def _notations(status: str) -> tuple[tuple[str, str], ...]:
    """NOTATION_NAME / NOTATION_DATA pairs from gpg's status lines."""
    found, name = [], None
    for line in status.splitlines():
        key, _, value = line.removeprefix("[GNUPG:] ").partition(" ")
        if key == "NOTATION_NAME":
            name = value
        elif key == "NOTATION_DATA" and name is not None:
            found.append((name, value))
            name = None
    return tuple(found)


def _verdict(result: gnupg.Verify) -> Verdict:
    """The one judgement of a python-gnupg result, for audit and request signatures alike.

    Good means exactly one signature, valid, with no problem at all: an expired or revoked
    key still reads status 'signature valid' (gpg sends VALIDSIG after EXPKEYSIG), and only
    key_status and problems tell.
    """
    troubles = [result.status or "", getattr(result, "key_status", "") or ""]
    troubles += [str(p.get("status", "")) for p in getattr(result, "problems", [])]
    detail = " | ".join(t for t in troubles if t).lower() or "no signature"
    infos = list(getattr(result, "sig_info", {}).values())
    good = [i for i in infos if i.get("status") == "signature valid"]
    if "expired" in detail:
        return Verdict("expired", None, detail)
    if "no public key" in detail:
        return Verdict("unknown key", None, f"{detail}, key {result.key_id}")
    if not result.valid or len(infos) != 1 or len(good) != 1 or \
            getattr(result, "key_status", None) or getattr(result, "problems", None):
        return Verdict("bad", None, detail)
    return Verdict("good", str(good[0].get("pubkey_fingerprint") or result.fingerprint).upper(),
                   detail, _notations(getattr(result, "stderr", "") or ""))


_KEYRING_PREFIX = "spoolca-keyring-"


def keyring_owner(state: Path) -> str:
    """A short tag for the keyrings of one state directory."""
    return hashlib.sha256(os.fsencode(state.resolve())).hexdigest()[:8]


def reap_keyrings(owner: str) -> int:
    """Stop the agents of, and remove, keyrings a killed process of `owner` left in the
    temporary directory (a SIGKILL skips every cleanup). Only for a process that holds
    the state directory's instance lock: no live keyring of that owner exists then."""
    reaped = 0
    for home in Path(tempfile.gettempdir()).glob(f"{_KEYRING_PREFIX}{owner}-*"):
        if home.is_dir() and not home.is_symlink():
            stop_agent(home)
            remove_tree(home)
            reaped += 1
    return reaped


class Keyring:
    """Public keys imported into a fresh temporary gnupg home: the only keys a check
    trusts. Made once and reused for many signatures."""

    def __init__(self, armored: str, owner: str = "") -> None:
        # `owner` names whose keyring this is (a state directory's digest): a keyring a
        # killed process left behind is found by it and reaped (reap_keyrings).
        self._home = Path(tempfile.mkdtemp(prefix=f"{_KEYRING_PREFIX}{owner}-"))
        # A key or signature dated after this host's clock is not refused for it: the
        # clock of an air-gapped host may be behind (the clock guard owns time; a key
        # check that fails only then made a restore "not by the given key").
        self._gpg = gnupg.GPG(gnupghome=str(self._home),
                              options=[*_hardened(), "--ignore-time-conflict",
                                       "--ignore-valid-from"])
        self.fingerprints = {str(f).upper() for f in self._gpg.import_keys(armored).fingerprints}

    def verify(self, data: bytes, signature: bytes) -> Verdict:
        signature_file = self._home / "signature"
        atomic_write(signature_file, signature, durable=False)
        return _verdict(self._gpg.verify_data(str(signature_file), data))

    def close(self) -> None:
        stop_agent(self._home)
        remove_tree(self._home)

    def __enter__(self) -> Keyring:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def verify_detached(data: bytes, signature: str, keyring: Keyring,
                    fingerprint: str) -> str | None:
    """None if `signature` is exactly one good signature over `data` by `fingerprint`
    (which must be in `keyring`); otherwise what is wrong with it."""
    if fingerprint.upper() not in keyring.fingerprints:
        return f"the given key is not {fingerprint}"
    verdict = keyring.verify(data, signature.encode())
    if verdict.kind != "good":
        return f"not exactly one good signature ({verdict.detail})"
    if verdict.fingerprint != fingerprint.upper():
        return f"signed by {verdict.fingerprint}, not by {fingerprint}"
    return None
