"""`spoolca init`: the ceremony's outputs, their protection, and what it refuses."""

from __future__ import annotations

import json
import os
import sqlite3
import stat

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from spoolca.register.chain import GENESIS, entry_hash
from tests.pki import (
    CA,
    CREATED,
    PASSPHRASE,
    ROOT_SUBJECT,
    init_ca,
    openssl,
    spoolca,
)


@pytest.fixture
def passphrase_file(tmp_path):
    path = tmp_path / "passphrase"
    path.write_bytes(PASSPHRASE + b"\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def encrypted_ca(tmp_path, passphrase_file, templates) -> CA:
    """A copy of the process's encrypted CA, its configuration naming passphrase_file."""
    return templates.encrypted(tmp_path, secret_name=passphrase_file.name)


def load(ca: CA, name: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate((ca.outgoing / "ca" / f"{name}.pem").read_bytes())


class TestCeremony:
    def test_layout(self, encrypted_ca: CA):
        """Config, register, keys, gnupg and the spool tree, with CA files published."""
        ca = encrypted_ca
        for path in ("spoolca.toml", "ca.db", "keys/root.key.pem", "keys/intermediate.key.pem",
                     "gnupg", "spool/incoming/server", "spool/incoming/client",
                     "spool/incoming/subca", "spool/work", "spool/archive",
                     "spool/outgoing/crl", "spool/outgoing/audit"):
            assert (ca.dir / path).exists(), path
        assert sorted(os.listdir(ca.outgoing / "ca")) == [
            "ca-chain.pem", "intermediate.crt", "intermediate.pem", "root.crt", "root.pem"]

    def test_config_paths_are_relative(self, encrypted_ca: CA, tmp_path):
        """The directory can be moved: no absolute state path in spoolca.toml."""
        text = encrypted_ca.config.read_text()
        assert str(encrypted_ca.dir) not in text
        assert 'database = "ca.db"' in text

    def test_keys_are_private_and_encrypted(self, encrypted_ca: CA, passphrase_file):
        """Keys: mode 0400 in a 0700 folder, PBES2 with 600,000 rounds, openssl can open them."""
        keys = encrypted_ca.dir / "keys"
        assert stat.S_IMODE(keys.stat().st_mode) == 0o700
        for name in ("root", "intermediate"):
            path = keys / f"{name}.key.pem"
            assert stat.S_IMODE(path.stat().st_mode) == 0o400
            assert path.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
            parsed = openssl("asn1parse", "-in", str(path)).stdout
            assert "PBKDF2" in parsed and ":0927C0" in parsed  # 600000 rounds
            openssl("pkey", "-in", str(path), "-passin", f"file:{passphrase_file}", "-noout")

    def test_wrong_passphrase_does_not_open_the_key(self, encrypted_ca: CA, tmp_path):
        """Counter-case: openssl refuses the key with another passphrase."""
        wrong = tmp_path / "wrong"
        wrong.write_text("not the passphrase")
        result = openssl("pkey", "-in", str(encrypted_ca.dir / "keys" / "root.key.pem"),
                         "-passin", f"file:{wrong}", "-noout", check=False)
        assert result.returncode != 0

    def test_root_and_intermediate_extensions(self, encrypted_ca: CA):
        """Root: CA critical, keyCertSign+cRLSign critical, SKI. Intermediate: pathlen 0, AKI."""
        root, inter = load(encrypted_ca, "root"), load(encrypted_ca, "intermediate")
        for cert in (root, inter):
            bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
            ku = cert.extensions.get_extension_for_class(x509.KeyUsage)
            assert bc.critical and bc.value.ca
            assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign
            assert not ku.value.digital_signature
            cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        assert root.extensions.get_extension_for_class(x509.BasicConstraints).value \
            .path_length is None
        assert inter.extensions.get_extension_for_class(x509.BasicConstraints).value \
            .path_length == 0
        aki = inter.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
        ski = root.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        assert aki.key_identifier == ski.digest
        assert root.subject.rfc4514_string() == \
            "CN=Sample Root CA,O=The Sample Company,ST=New York,C=US"

    def test_validity_defaults(self, encrypted_ca: CA):
        """Root 20 years, intermediate 10."""
        root, inter = load(encrypted_ca, "root"), load(encrypted_ca, "intermediate")
        assert (root.not_valid_after_utc - root.not_valid_before_utc).days == 7305
        assert (inter.not_valid_after_utc - inter.not_valid_before_utc).days == 3653

    def test_openssl_verifies_the_ca_chain(self, encrypted_ca: CA):
        """The intermediate chains to the root for openssl."""
        folder = encrypted_ca.outgoing / "ca"
        openssl("verify", "-CAfile", str(folder / "root.pem"), str(folder / "intermediate.pem"))
        der = (folder / "root.crt").read_bytes()
        assert der == load(encrypted_ca, "root").public_bytes(serialization.Encoding.DER)

    def test_ceremony_is_the_first_audit_entry(self, encrypted_ca: CA):
        """The audit chain starts at the genesis hash with ca.initialized, no secret in it."""
        with sqlite3.connect(encrypted_ca.dir / "ca.db") as db:
            rows = db.execute("SELECT seq, time, event, actor, data, prev, hash FROM audit "
                              "ORDER BY seq").fetchall()
        seq, time, event, actor, data, prev, digest = rows[0]
        assert (seq, event, prev) == (1, "ca.initialized", GENESIS)
        assert digest == entry_hash(seq, time, event, actor, json.loads(data), prev)
        assert PASSPHRASE.decode() not in data and "PRIVATE" not in data
        assert json.loads(data)["keys_encrypted"] is True

    @pytest.mark.parametrize("key_type,algorithm", [("ec-p256", "sha256"),
                                                    ("rsa-3072", "sha256"),
                                                    ("ed25519", None)])
    def test_other_key_types(self, tmp_path, key_type, algorithm):
        """Each --key-type makes a CA that signs with the hash its key requires."""
        ca = init_ca(tmp_path / "k", "--no-passphrase", "--key-type", key_type)
        root = load(ca, "root")
        assert (root.signature_hash_algorithm.name if root.signature_hash_algorithm
                else None) == algorithm
        openssl("verify", "-CAfile", str(ca.outgoing / "ca" / "root.pem"),
                str(ca.outgoing / "ca" / "intermediate.pem"))

    def test_default_intermediate_subject_follows_the_root(self, tmp_path):
        """Without --intermediate-subject: the root's C/ST/O, 'Root' becomes 'Intermediate'."""
        CREATED.append(tmp_path / "ca")
        result = spoolca("init", "--dir", str(tmp_path / "ca"), "--root-subject",
                         ROOT_SUBJECT, "--no-passphrase")
        assert result.returncode == 0, result.stderr
        inter = load(CA(tmp_path / "ca"), "intermediate")
        assert inter.subject.rfc4514_string() == \
            "CN=Sample Intermediate CA,O=The Sample Company,ST=New York,C=US"


class TestRefusals:
    def test_refuses_an_existing_ca(self, encrypted_ca: CA, passphrase_file):
        """A second init on the same directory changes nothing and says why."""
        before = (encrypted_ca.dir / "keys" / "root.key.pem").read_bytes()
        result = spoolca("init", "--dir", str(encrypted_ca.dir), "--passphrase-file",
                         str(passphrase_file))
        assert result.returncode == 1
        assert "already holds a CA" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        assert (encrypted_ca.dir / "keys" / "root.key.pem").read_bytes() == before

    def test_contradictory_flags(self, tmp_path, passphrase_file):
        """--passphrase-file with --no-passphrase is a usage error (exit 2)."""
        result = spoolca("init", "--dir", str(tmp_path / "ca"), "--no-passphrase",
                         "--passphrase-file", str(passphrase_file))
        assert result.returncode == 2 and "contradict" in result.stderr
        assert not (tmp_path / "ca").exists()

    def test_no_terminal_and_no_passphrase_option(self, tmp_path):
        """Without a TTY, init will not invent a passphrase: exit 2, nothing created."""
        result = spoolca("init", "--dir", str(tmp_path / "ca"), stdin=b"")
        assert result.returncode == 2 and "--passphrase-file" in result.stderr
        assert not (tmp_path / "ca").exists()

    def test_short_passphrase(self, tmp_path):
        """A passphrase under 8 characters is refused."""
        short = tmp_path / "short"
        short.write_text("abc\n")
        result = spoolca("init", "--dir", str(tmp_path / "ca"), "--passphrase-file", str(short))
        assert result.returncode == 2 and "at least 8" in result.stderr

    def test_state_directory_too_deep_for_gpg(self, tmp_path):
        """gpg-agent's socket must fit a Unix socket path: a too-deep --dir is refused
        in one sentence before anything is created."""
        deep = tmp_path / ("d" * 60) / ("e" * 60)
        result = spoolca("init", "--dir", str(deep), "--no-passphrase")
        assert result.returncode == 1 and "choose a state directory" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and not deep.exists()

    def test_bad_subject(self, tmp_path):
        """A malformed DN is named in one sentence."""
        result = spoolca("init", "--dir", str(tmp_path / "ca"), "--no-passphrase",
                         "--root-subject", "/C=US/XX=bad/CN=Root")
        assert result.returncode == 2 and "XX=bad" in result.stderr
        assert "Traceback" not in result.stderr


class TestPassphraseAtRunTime:
    def test_process_reads_the_configured_passphrase_file(self, encrypted_ca: CA):
        """The file named at init is used to unlock the keys at run time."""
        from tests.pki import make_csr, pem

        encrypted_ca.submit("server/www.csr", pem(make_csr("www.sample.com")[1]))
        encrypted_ca.process()
        assert encrypted_ca.result("www")["status"] == "issued"

    def test_systemd_credential_is_preferred(self, encrypted_ca: CA, tmp_path):
        """$CREDENTIALS_DIRECTORY/spoolca-ca-passphrase unlocks the keys (systemd)."""
        from tests.pki import make_csr, pem

        encrypted_ca.edit_config('\nfile = "', '\n# file = "')
        credentials = tmp_path / "creds"
        credentials.mkdir()
        (credentials / "spoolca-ca-passphrase").write_bytes(PASSPHRASE)
        encrypted_ca.submit("server/www.csr", pem(make_csr("www.sample.com")[1]))
        result = encrypted_ca.run("process", env={"CREDENTIALS_DIRECTORY": str(credentials)})
        assert result.returncode == 0, result.stderr
        assert encrypted_ca.result("www")["status"] == "issued"

    def test_missing_passphrase_is_one_clear_sentence(self, encrypted_ca: CA):
        """No credential, no file: exit 1, one sentence, the request waits in incoming/
        (keys are unlocked before anything is claimed)."""
        from tests.pki import make_csr, pem

        encrypted_ca.edit_config('\nfile = "', '\n# file = "')
        encrypted_ca.submit("server/www.csr", pem(make_csr("www.sample.com")[1]))
        result = encrypted_ca.run("process")
        assert result.returncode == 1
        assert result.stderr.strip().startswith("spoolca: the CA key")
        assert "no passphrase was found" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        assert (encrypted_ca.incoming / "server" / "www.csr").exists()

    def test_wrong_passphrase_is_refused(self, encrypted_ca: CA, passphrase_file):
        """A wrong passphrase: exit 1 naming the key, never printing the passphrase."""
        from tests.pki import make_csr, pem

        passphrase_file.write_text("an entirely wrong passphrase\n")
        encrypted_ca.submit("server/www.csr", pem(make_csr("www.sample.com")[1]))
        result = encrypted_ca.run("process")
        assert result.returncode == 1
        assert "wrong passphrase" in result.stderr
        assert "entirely wrong" not in result.stderr + result.stdout


class TestURLs:
    def test_the_ceremony_writes_the_urls_into_certificates_and_config(self, tmp_path):
        """The root's URLs go into the intermediate certificate, the intermediate's into
        every leaf; both into spoolca.toml. Counter-case: https is refused before anything
        is made (relying parties fetch CRLs over plain HTTP)."""
        from cryptography import x509

        from tests.pki import init_ca, make_csr, pem, spoolca

        base = "http://pki.example.com"
        ca = init_ca(tmp_path / "ca", "--no-passphrase", "--root-crl-url", f"{base}/root.crl",
                     "--root-issuer-url", f"{base}/root.crt", "--intermediate-crl-url",
                     f"{base}/intermediate.crl", "--intermediate-issuer-url",
                     f"{base}/intermediate.crt")
        inter = x509.load_pem_x509_certificate((ca.outgoing / "ca" / "intermediate.pem")
                                               .read_bytes())
        points = inter.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
        assert points[0].full_name[0].value == f"{base}/root.crl"
        ca.submit("server/www.csr", pem(make_csr("www.sample.com")[1]))
        ca.process()
        leaf = x509.load_pem_x509_certificate((ca.outgoing / "www" / "cert.pem").read_bytes())
        points = leaf.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
        assert points[0].full_name[0].value == f"{base}/intermediate.crl"
        assert f'issuer_url = "{base}/intermediate.crt"' in ca.config.read_text()
        refused = spoolca("init", "--dir", str(tmp_path / "no"), "--no-passphrase",
                          "--root-crl-url", "https://pki.example.com/root.crl")
        assert refused.returncode == 2 and "must be an http:// URL" in refused.stderr
        assert not (tmp_path / "no").exists()
