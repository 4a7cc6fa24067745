"""The ceremony record: plain text for the binder, signed by the appliance key, every
output's SHA-256 in it, carried out on the stick. Judged with the real gpg."""

from __future__ import annotations

import hashlib
import re
import subprocess
from pathlib import Path

from spoolca.keys.openpgp import Keyring, verify_detached
from tests.pki import fingerprint_of, init_ca


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


def test_a_ceremony_file_is_rehearsed_then_run(tmp_path: Path):
    """The same reviewed file: --rehearse makes a marked throwaway CA elsewhere and
    touches nothing it names; run for real it makes the CA and the shares it declares.
    Counter-case: an unknown key is refused before anything is made."""
    import shutil

    from spoolca.keys.openpgp import stop_agent
    from tests.pki import CREATED, spoolca

    (tmp_path / "pw").write_bytes(b"the real passphrase")
    ceremony = tmp_path / "ceremony.toml"
    ceremony.write_text(
        (Path(__file__).parent.parent / "config" / "ceremony.toml").read_text()
        .replace("/var/lib/spoolca", str(tmp_path / "ca"))
        .replace("/root/ca-passphrase", str(tmp_path / "pw"))
        .replace("/media/custodians", str(tmp_path / "custodians"))
        .replace('key_type = "ec-p384"', 'key_type = "ec-p256"'))
    rehearsal = spoolca("init", "--ceremony", str(ceremony), "--rehearse")
    assert rehearsal.returncode == 0, rehearsal.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ceremony.toml", "pw"]
    place = Path(re.search(r"REHEARSAL: throwaway keys in (\S+);", rehearsal.stdout).group(1))
    record = next((place / "ceremony").glob("*-init-rehearsal.txt")).read_text()
    stop_agent(place / "gnupg")
    shutil.rmtree(place.parent)  # the rehearsal's temporary directory
    assert "REHEARSAL: throwaway keys" in record and "3-of-5: alice, bob" in record
    real = spoolca("init", "--ceremony", str(ceremony))
    assert real.returncode == 0, real.stderr
    CREATED.append(tmp_path / "ca")
    assert len(list((tmp_path / "custodians").glob("*.share.txt"))) == 5
    assert "REHEARSAL" not in next((tmp_path / "ca" / "ceremony").glob("*-init.txt")
                                   ).read_text()
    ceremony.write_text(ceremony.read_text().replace("[shares]", "[shares]\nquorum = 2"))
    refused = spoolca("init", "--ceremony", str(ceremony), "--rehearse")
    assert refused.returncode == 2 and "shares.quorum: unknown key" in refused.stderr
