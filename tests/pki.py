"""Test helpers: real keys and CSRs, as a requester would make them, and a CA on disk."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import NameOID

COMPANY = [
    (NameOID.COUNTRY_NAME, "US"),
    (NameOID.STATE_OR_PROVINCE_NAME, "New York"),
    (NameOID.ORGANIZATION_NAME, "The Sample Company"),
]
ROOT_SUBJECT = "/C=US/ST=New York/O=The Sample Company/CN=Sample Root CA"
INTERMEDIATE_SUBJECT = "/C=US/ST=New York/O=The Sample Company/CN=Sample Intermediate CA"
PASSPHRASE = b"correct horse battery staple"


def make_key(kind: str = "ec-p256"):
    makers = {
        "ec-p256": lambda: ec.generate_private_key(ec.SECP256R1()),
        "ec-p384": lambda: ec.generate_private_key(ec.SECP384R1()),
        "ec-k256": lambda: ec.generate_private_key(ec.SECP256K1()),
        "rsa-2048": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "rsa-1024": lambda: rsa.generate_private_key(public_exponent=65537, key_size=1024),
        "rsa-e3": lambda: rsa.generate_private_key(public_exponent=3, key_size=2048),
        "ed25519": ed25519.Ed25519PrivateKey.generate,
        "ed448": ed448.Ed448PrivateKey.generate,
    }
    return makers[kind]()


def subject(cn: str | None = "www.sample.com", *, company: bool = True,
            extra: Sequence[tuple[x509.ObjectIdentifier, str]] = ()) -> x509.Name:
    attributes = list(COMPANY) if company else []
    attributes += list(extra)
    if cn is not None:
        attributes.append((NameOID.COMMON_NAME, cn))
    return x509.Name([x509.NameAttribute(oid, value) for oid, value in attributes])


def make_csr(cn: str | None = "www.sample.com", *, key=None, name: x509.Name | None = None,
             sans: Sequence[x509.GeneralName] | None = None,
             extensions: Sequence[tuple[x509.ExtensionType, bool]] = (),
             algorithm: hashes.HashAlgorithm | None = None, company: bool = True
             ) -> tuple[object, x509.CertificateSigningRequest]:
    """A key and its signed CSR; SAN defaults to the CN (a DNS name)."""
    key = key or make_key()
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        name or subject(cn, company=company))
    if sans is None and cn is not None:
        sans = [x509.DNSName(cn)]
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
    for value, critical in extensions:
        builder = builder.add_extension(value, critical=critical)
    if algorithm is None and not isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey):
        algorithm = hashes.SHA256()
    return key, builder.sign(key, algorithm)


def pem(csr: x509.CertificateSigningRequest) -> bytes:
    return csr.public_bytes(serialization.Encoding.PEM)


def key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


# Off for tests marked `subprocess` (conftest.py): their commands get a process each.
IN_PROCESS = {"on": True}


def spoolca(*args: str, env: dict[str, str] | None = None, stdin: bytes | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the real command line: in this process where that is the same (see
    tests/inprocess.py), else in a subprocess."""
    from tests.inprocess import needs_subprocess, run_in_process

    if IN_PROCESS["on"] and not needs_subprocess(args, env):
        return run_in_process(args, env, stdin, timeout)
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "spoolca.cli", *args], capture_output=True,
                          text=True, env=full_env, timeout=timeout,
                          input=stdin.decode() if stdin is not None else None)


def openssl(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", *args], capture_output=True, text=True, check=check,
                          timeout=60)


def wait_for(condition: Callable[[], object], timeout: float = 20.0, what: str = "") -> object:
    """Poll with a deadline instead of sleeping a fixed time."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or condition}")
        time.sleep(0.02)


@dataclass
class CA:
    """A CA made by the real `spoolca init`, with paths to its spool."""

    dir: Path

    def __post_init__(self) -> None:
        """gpg-agent's sockets live in DIR/gnupg, so its length is bounded; pytest's
        numbered base directory grows (pytest-95 here, pytest-134 on CI), so a test's
        path must fit with two digits to spare or it fails only on another machine."""
        from spoolca.keys.openpgp import MAX_HOME_LENGTH

        home = str(Path(self.dir) / "gnupg")
        assert len(home) + 2 <= MAX_HOME_LENGTH, f"shorten this test's CA path: {home}"

    @property
    def config(self) -> Path:
        return self.dir / "spoolca.toml"

    @property
    def incoming(self) -> Path:
        return self.dir / "spool" / "incoming"

    @property
    def outgoing(self) -> Path:
        return self.dir / "spool" / "outgoing"

    @property
    def archive(self) -> Path:
        return self.dir / "spool" / "archive"

    def run(self, *args: str, **kwargs) -> subprocess.CompletedProcess[str]:
        return spoolca("--config", str(self.config), *args, **kwargs)

    def submit(self, relative: str, data: bytes) -> Path:
        """Write then rename into incoming/, as the README tells producers to."""
        target = self.incoming / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = target.with_name(f".{target.name}.part")
        temp.write_bytes(data)
        temp.rename(target)
        return target

    def process(self) -> subprocess.CompletedProcess[str]:
        result = self.run("process")
        assert result.returncode == 0, result.stderr
        return result

    def edit_config(self, old: str, new: str) -> None:
        text = self.config.read_text()
        assert old in text, old
        self.config.write_text(text.replace(old, new, 1))

    def allow_unsigned_subca(self) -> None:
        """Tests of other things than authorization: subca without signed requests."""
        self.edit_config("require_signature = true", "require_signature = false")

    def result(self, name: str) -> dict:
        import json

        return json.loads((self.outgoing / name / "result.json").read_text())


CREATED: list[Path] = []  # CA directories whose gpg-agent the test fixtures stop


def copy_ca(source: Path, target: Path) -> CA:
    """A CA of its own for a test: a copy of SOURCE (not its gpg-agent's sockets)."""
    shutil.copytree(source, target, symlinks=True, ignore=shutil.ignore_patterns("S.*"))
    CREATED.append(target)
    return CA(target)


def init_ca(directory: Path, *extra: str) -> CA:
    CREATED.append(directory)
    result = spoolca("init", "--dir", str(directory), "--root-subject", ROOT_SUBJECT,
                     "--intermediate-subject", INTERMEDIATE_SUBJECT, *extra)
    assert result.returncode == 0, result.stderr
    return CA(directory)


def fingerprint_of(ca: CA) -> str:
    """The appliance key's fingerprint, as init printed it for the auditors."""
    import sqlite3

    with sqlite3.connect(ca.dir / "ca.db") as db:
        return db.execute("SELECT value FROM meta WHERE key = 'audit_key_fingerprint'"
                          ).fetchone()[0]


# gpg-agent calibrates the S2K count of a protected key to this machine (~256 million bytes
# hashed here: 0.55 s of CPU per signature, which with a cache TTL of 0 is paid by every
# audit seal). Test CAs made once and copied many times are re-protected with the
# smallest count gpg allows; tests/test_secrets.py checks that init's own key keeps the
# calibrated count.
CHEAP_S2K_COUNT = 65536


def cheapen_audit_key(ca: CA, passphrase: bytes) -> None:
    """Re-protect CA's audit key (same PASSPHRASE) with CHEAP_S2K_COUNT: each of its
    signatures then costs ~15 ms instead of ~0.55 s, what copying a CA is for."""
    from spoolca.keys.openpgp import AGENT_CONF, ApplianceKey, stop_agent

    home = ca.dir / "gnupg"
    key = ApplianceKey(home, fingerprint_of(ca), passphrase)  # writes its agent conf
    stop_agent(home)
    (home / "gpg-agent.conf").write_bytes(AGENT_CONF + f"s2k-count {CHEAP_S2K_COUNT}\n".encode())
    try:
        key.change_passphrase(passphrase).close()
    finally:
        key.close()
        (home / "gpg-agent.conf").write_bytes(AGENT_CONF)
        stop_agent(home)


def issue_tls_parties(ca: CA, keys: Path, server: tuple[str, str]
                      ) -> dict[str, tuple[Path, Path]]:
    """A server certificate (SERVER: its name and CN) and client certificates for alice
    and bob, issued in one pass: each (fullchain.pem, its key in KEYS)."""
    made = {}
    for folder, name, cn in (("server", *server), ("client", "alice", "alice"),
                             ("client", "bob", "bob")):
        key, csr = make_csr(cn, sans=None if folder == "server" else [])
        ca.submit(f"{folder}/{name}.csr", pem(csr))
        (keys / f"{name}.key").write_bytes(key_pem(key))
        made[name] = (ca.outgoing / name / "fullchain.pem", keys / f"{name}.key")
    ca.process()
    for name in made:
        assert ca.result(name)["status"] == "issued", ca.result(name)
    return made
