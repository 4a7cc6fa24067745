"""Small units: DN notation, weak-key maths, key wrapping, passphrases, file writes, codes."""

from __future__ import annotations

import ast
import os
import re
import stat
from pathlib import Path

import pytest
from cryptography.x509.oid import NameOID

from spoolca.errors import KeyStoreError
from spoolca.findings import CODES, Finding
from spoolca.host.fsutil import atomic_write, reveal, stage_folder, write_new
from spoolca.host.untrusted import read_untrusted
from spoolca.keys.algorithms import (
    generate_key,
    load_private_key,
    read_passphrase,
    write_private_key,
)
from spoolca.notation.dn import oneline, parse_subject
from spoolca.x509.weakkeys import fermat_factor, has_roca_fingerprint
from tests.pki import PASSPHRASE
from tests.weak import close_primes_key, roca_key

SOURCE = Path(__file__).resolve().parent.parent / "spoolca"


class TestDistinguishedNames:
    def test_parse_openssl_subject(self):
        """-subj notation with spaces, an escaped slash and a multi-valued RDN."""
        name = parse_subject("/C=US/ST=New York/O=A\\/B Corp/CN=x+OU=y")
        assert oneline(name) == "/C=US/ST=New York/O=A/B Corp/CN=x+OU=y"
        assert name.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "A/B Corp"

    @pytest.mark.parametrize("text", ["C=US/CN=x", "/XX=1", "/CN", "/CN=", "/"])
    def test_malformed_subjects(self, text):
        """Each malformed subject is refused with a reason."""
        with pytest.raises(ValueError):
            parse_subject(text)

    def test_oneline_escapes_like_openssl(self):
        """Bytes outside printable ASCII become \\xHH, as X509_NAME_oneline writes them."""
        assert oneline(parse_subject("/CN=Zürich")) == "/CN=Z\\xC3\\xBCrich"


class TestWeakKeyMaths:
    def test_roca_fingerprint(self):
        """A ROCA-form modulus is detected; an ordinary one is not."""
        assert has_roca_fingerprint(roca_key().public_key().public_numbers().n)
        assert not has_roca_fingerprint(generate_key("rsa-3072").public_key()
                                        .public_numbers().n)

    def test_fermat_finds_close_primes(self):
        """Close primes are recovered; the product of the factors is the modulus."""
        key = close_primes_key()
        n = key.public_key().public_numbers().n
        p, q = fermat_factor(n)
        assert p * q == n and {p, q} == {key.private_numbers().p, key.private_numbers().q}

    def test_fermat_gives_up_on_a_normal_key(self):
        """Counter-case: 100 rounds do not factor a key from the OS generator."""
        assert fermat_factor(generate_key("rsa-3072").public_key().public_numbers().n) is None


class TestKeys:
    def test_written_key_is_0400_and_reloads(self, tmp_path):
        """A CA key is written once, 0400, and unlocks with its passphrase only."""
        key = generate_key("ec-p256")
        path = tmp_path / "k.pem"
        write_private_key(path, key, PASSPHRASE)
        assert stat.S_IMODE(path.stat().st_mode) == 0o400
        loaded = load_private_key(path, PASSPHRASE)
        assert loaded.private_numbers() == key.private_numbers()
        with pytest.raises(KeyStoreError, match="wrong passphrase"):
            load_private_key(path, b"wrong passphrase")
        with pytest.raises(FileExistsError):
            write_private_key(path, key, PASSPHRASE)

    def test_unencrypted_key_needs_no_passphrase(self, tmp_path):
        """--no-passphrase keys are plain PKCS#8."""
        path = tmp_path / "k.pem"
        write_private_key(path, generate_key("ed25519"), None)
        assert b"ENCRYPTED" not in path.read_bytes()
        load_private_key(path, None)

    def test_passphrase_sources(self, tmp_path, monkeypatch):
        """Credential first, then the file; one trailing newline dropped; empty refused."""
        creds = tmp_path / "creds"
        creds.mkdir()
        file = tmp_path / "pass"
        file.write_bytes(b"from-file\n")
        monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
        assert read_passphrase("cred", file) == b"from-file"
        (creds / "cred").write_bytes(b"from-credential")
        monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
        assert read_passphrase("cred", file) == b"from-credential"
        (creds / "cred").write_bytes(b"")
        with pytest.raises(KeyStoreError, match="empty"):
            read_passphrase("cred", file)
        assert read_passphrase("other", None) is None


class TestFiles:
    def test_read_untrusted_refuses_what_is_not_a_regular_file(self, tmp_path):
        """Symlink, FIFO, directory and oversize are refused unread, with the kind named."""
        target = tmp_path / "target"
        target.write_text("secret")
        os.symlink(target, tmp_path / "link")
        os.mkfifo(tmp_path / "fifo")
        (tmp_path / "dir").mkdir()
        (tmp_path / "big").write_bytes(b"x" * 11)
        assert read_untrusted(tmp_path / "link", 10).detail == "a symbolic link"
        assert read_untrusted(tmp_path / "fifo", 10).detail == "a FIFO"
        assert read_untrusted(tmp_path / "dir", 10).detail == "a directory"
        assert read_untrusted(tmp_path / "big", 10).problem == "file.too_large"
        assert read_untrusted(target, 10).data == b"secret"

    def test_atomic_write_sets_the_mode_and_leaves_no_temp(self, tmp_path):
        """The file gets exactly the mode asked, whatever the umask; no temp file remains."""
        old = os.umask(0o077)
        try:
            atomic_write(tmp_path / "f", b"data", 0o644)
        finally:
            os.umask(old)
        assert stat.S_IMODE((tmp_path / "f").stat().st_mode) == 0o644
        assert os.listdir(tmp_path) == ["f"]

    def test_write_new_never_follows_a_planted_symlink(self, tmp_path):
        """A symlink where a key is to be written is refused, the target untouched."""
        victim = tmp_path / "victim"
        victim.write_text("keep")
        os.symlink(victim, tmp_path / "key.pem")
        with pytest.raises(FileExistsError):
            write_new(tmp_path / "key.pem", b"key")
        assert victim.read_text() == "keep"

    def test_a_staged_folder_appears_whole_only_when_revealed(self, tmp_path):
        """Staged, a result folder holds its bytes under a dot-name and is invisible;
        revealed, it appears in one rename; staged again over it, its files are replaced
        only when revealed."""
        folder = tmp_path / "out"
        staged = stage_folder(folder, {"a": b"1", "b": b"2"})
        assert not folder.exists() and [p.name.startswith(".") for p in tmp_path.iterdir()] \
            == [True]
        reveal(staged)
        assert sorted(os.listdir(tmp_path)) == ["out"]
        again = stage_folder(folder, {"a": b"1", "b": b"3"})
        assert (folder / "b").read_bytes() == b"2"  # not yet
        reveal(again)
        assert (folder / "b").read_bytes() == b"3"
        assert sorted(os.listdir(folder)) == ["a", "b"]


class TestFindingCodes:
    def test_unlisted_code_is_refused(self):
        """A finding with a code not in the list is a programming error."""
        with pytest.raises(ValueError):
            Finding("policy.made_up", "x")

    def test_every_literal_code_in_the_source_is_listed(self):
        """Every Finding("...") and CSRError("...") code written in spoolca/ is in CODES."""
        pattern = re.compile(r"^[a-z]+\.[a-z_.A-Z]+$")
        found = set()
        for path in SOURCE.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Call) and getattr(node.func, "id", "") in (
                        "Finding", "CSRError") and node.args and isinstance(
                        node.args[0], ast.Constant) and pattern.match(str(node.args[0].value)):
                    found.add(node.args[0].value)
        assert found, "the scan found no codes: it is broken"
        assert found - set(CODES) == set()

    def test_codes_are_dotted_lower_case(self):
        """Stable codes: dotted, starting with a lower-case family name."""
        assert all(re.match(r"^[a-z]+(\.[A-Za-z_0-9]+)+$", code) for code in CODES)


def test_keys_never_in_spool(tmp_path):
    """No PEM private key anywhere under a spool after a run (invariant 6)."""
    from tests.pki import init_ca, make_csr, pem

    ca = init_ca(tmp_path / "ca", "--no-passphrase")
    ca.submit("server/www.csr", pem(make_csr("www.sample.com")[1]))
    ca.process()
    for path in (ca.dir / "spool").rglob("*"):
        if path.is_file():
            assert b"PRIVATE KEY" not in path.read_bytes(), path
