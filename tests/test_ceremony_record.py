"""The ceremony record: plain text for the binder, signed by the appliance key, every
output's SHA-256 in it, carried out on the stick. Judged with the real gpg."""

from __future__ import annotations

import hashlib
import re
import subprocess
from pathlib import Path

from spoolca.openpgp import Keyring, verify_detached
from tests.pki import init_ca
from tests.test_audit import fingerprint_of


def test_init_writes_a_signed_record_of_every_output(tmp_path: Path):
    secret = tmp_path / "pw"
    secret.write_bytes(b"ceremony passphrase")
    ca = init_ca(tmp_path / "ca", "--passphrase-file", str(secret))
    records = sorted((ca.dir / "ceremony").glob("*-init.txt"))
    assert len(records) == 1
    text = records[0].read_bytes()
    assert b"Event:     init" in text and b"cryptography" in text and b"GnuPG" in text
    listed = re.findall(rb"^  ([0-9a-f]{64})  (\S+)$", text, re.MULTILINE)
    assert {name.decode() for _, name in listed} >= {"keys/root.key.pem", "spoolca.toml",
                                                     "spool/outgoing/ca/root.pem"}
    for digest, name in listed:
        assert hashlib.sha256((ca.dir / name.decode()).read_bytes()).hexdigest() == \
            digest.decode()
    public = (ca.outgoing / "audit" / "appliance-key.asc").read_text()
    signature = Path(f"{records[0]}.asc").read_text()
    with Keyring(public) as keyring:
        assert verify_detached(text, signature, keyring, fingerprint_of(ca)) is None
        forged = text.replace(b"keys at rest: encrypted", b"keys at rest: NOT encrypted")
        assert verify_detached(forged, signature, keyring, fingerprint_of(ca)) is not None
    stick = tmp_path / "stick"
    stick.mkdir()
    assert ca.run("media", "export", str(stick)).returncode == 0
    carried = stick / "spoolca-results" / "ceremony" / records[0].name
    assert carried.read_bytes() == text
    sums = subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"],
                          cwd=stick / "spoolca-results", capture_output=True, text=True)
    assert sums.returncode == 0 and f"ceremony/{records[0].name}" in (
        stick / "spoolca-results" / "SHA256SUMS").read_text()
