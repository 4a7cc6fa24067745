"""`spoolca import-openssl` and `import-easyrsa` on CA directories made by the real tools
(tests/oldca.py): the index comes back byte for byte, the old revocations are on the next
CRL (judged by openssl), the old certificates still verify, the imported CA keeps issuing,
and every disagreement in the source refuses the import until it is resolved."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from hypothesis import given, settings
from hypothesis import strategies as st

from spoolca.register.openssl_index import IndexFileError, parse_index
from tests.oldca import ORG, easyrsa_pki, flat_ca, run, two_level_ca
from tests.pki import CA, CREATED, make_csr, openssl, pem, spoolca

OLD, NEW = b"the old CA passphrase\n", b"spoolca's new passphrase"


@pytest.fixture
def secrets_dir(tmp_path: Path) -> Path:
    (tmp_path / "old-pw").write_bytes(OLD)
    (tmp_path / "new-pw").write_bytes(NEW)
    return tmp_path


def import_(kind: str, source: Path, place: Path, *extra: str, source_pw: bool = True
            ) -> subprocess.CompletedProcess[str]:
    CREATED.append(place / "state")
    args = ["--source-passphrase-file", str(place / "old-pw")] if source_pw else []
    return spoolca(f"import-{kind}", str(source), "--dir", str(place / "state"),
                   "--passphrase-file", str(place / "new-pw"), *args, *extra)


def imported(kind: str, source: Path, place: Path, *extra: str, source_pw: bool = True) -> CA:
    done = import_(kind, source, place, *extra, source_pw=source_pw)
    assert done.returncode == 0, done.stderr
    return CA(place / "state")


def exported(ca: CA, *args: str) -> bytes:
    done = subprocess.run([*spoolca_cmd(), "--config", str(ca.config), "export-index", *args],
                          capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def spoolca_cmd() -> list[str]:
    import sys

    return [sys.executable, "-m", "spoolca.cli"]


def crl(ca: CA, name: str) -> x509.CertificateRevocationList:
    path = ca.outgoing / "crl" / f"{name}.crl"
    checked = openssl("crl", "-in", str(path), "-inform", "DER", "-noout", "-CAfile",
                      str(ca.outgoing / "ca" / f"{name}.pem"))
    assert "verify OK" in checked.stdout + checked.stderr
    return x509.load_der_x509_crl(path.read_bytes())


def issues_a_new_certificate(ca: CA, subject: str) -> None:
    from spoolca.notation.dn import parse_subject

    name = parse_subject(subject)
    ca.submit("server/new.csr", pem(make_csr(subject.rsplit("CN=", 1)[1], name=name)[1]))
    ca.process()
    assert ca.result("new")["status"] == "issued", ca.result("new")
    openssl("verify", "-CAfile", str(ca.outgoing / "ca" / "ca-chain.pem"),
            str(ca.outgoing / "new" / "cert.pem"))


class TestOpenSSLHowTo:
    def test_the_root_howtos_ca_comes_in_whole(self, secrets_dir: Path):
        source = flat_ca(secrets_dir, secrets_dir / "old-pw")
        original = (source / "index.txt").read_bytes()
        ca = imported("openssl", source, secrets_dir)
        assert exported(ca, "--authority", "root", "--no-updatedb") == original
        updated = shutil.copytree(source, secrets_dir / "updated")
        run("openssl", "ca", "-updatedb", "-config", "./openssl.cnf", "-passin",
            f"file:{secrets_dir / 'old-pw'}", cwd=updated)
        assert exported(ca, "--authority", "root") == (updated / "index.txt").read_bytes()
        listed = {f"{e.serial_number:02X}": e for e in crl(ca, "root")}
        assert set(listed) == {"02", "03"}
        assert listed["02"].extensions.get_extension_for_class(x509.CRLReason).value.reason \
            == x509.ReasonFlags.key_compromise
        assert len(listed["03"].extensions) == 0  # revoked with no reason given
        bundle = secrets_dir / "bundle.pem"
        bundle.write_bytes((ca.outgoing / "ca" / "ca-chain.pem").read_bytes() + openssl(
            "crl", "-in", str(ca.outgoing / "crl" / "root.crl"), "-inform", "DER").stdout
            .encode())
        openssl("verify", "-crl_check", "-CAfile", str(bundle), str(source / "cert-a.pem"))
        refused = openssl("verify", "-crl_check", "-CAfile", str(bundle),
                          str(source / "cert-b.pem"), check=False)
        assert "certificate revoked" in refused.stdout + refused.stderr
        key = (ca.dir / "keys" / "root.key.pem")
        assert key.stat().st_mode & 0o777 == 0o400
        load_pem_private_key(key.read_bytes(), NEW)
        with pytest.raises(ValueError):
            load_pem_private_key(key.read_bytes(), OLD.rstrip())
        config = ca.config.read_text()
        assert 'From the imported CA\'s openssl.cnf' in config and \
            'organizationName = "match"' in config
        issues_a_new_certificate(ca, f"{ORG}/CN=new.sample.com")
        renewed = ca.run("renew", "01")  # its request came with the old CA
        assert renewed.returncode == 0, renewed.stderr

    def test_the_import_is_one_audit_entry_with_what_was_read(self, secrets_dir: Path):
        import hashlib

        source = flat_ca(secrets_dir, secrets_dir / "old-pw")
        ca = imported("openssl", source, secrets_dir)
        shown = json.loads(ca.run("audit", "show", "--json", "--event", "ca.imported").stdout)
        assert len(shown) == 1
        read = shown[0]["data"]["files_read"]
        for name in ("index.txt", "cacert.pem", "private/cakey.pem", "newcerts/04.pem"):
            assert read[name] == hashlib.sha256((source / name).read_bytes()).hexdigest()
        assert ca.run("audit", "export").returncode == 0

    def test_the_intermediate_howtos_ca_copied_elsewhere(self, secrets_dir: Path):
        """Both index files back byte for byte, though each openssl.cnf still names
        /root/ca; CRL numbers continue above the old ones; old and new leaves verify."""
        source = two_level_ca(secrets_dir, secrets_dir / "old-pw")
        ca = imported("openssl", source, secrets_dir)
        assert exported(ca, "--authority", "root", "--no-updatedb") == \
            (source / "index.txt").read_bytes()
        assert exported(ca, "--authority", "intermediate", "--no-updatedb") == \
            (source / "intermediate" / "index.txt").read_bytes()
        old_crl = x509.load_pem_x509_crl(
            (source / "intermediate" / "crl" / "intermediate.crl.pem").read_bytes())
        ours = crl(ca, "intermediate")
        number = ours.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
        assert number > old_crl.extensions.get_extension_for_class(
            x509.CRLNumber).value.crl_number
        assert [f"{e.serial_number:X}" for e in ours] == ["1001"]
        openssl("verify", "-CAfile", str(ca.outgoing / "ca" / "ca-chain.pem"),
                str(source / "intermediate" / "certs" / "www.cert.pem"))
        issues_a_new_certificate(ca, "/C=US/CN=new.example.com")


class TestEasyRSA:
    def test_an_easyrsa_pki_comes_in_whole(self, secrets_dir: Path):
        pki = easyrsa_pki(secrets_dir)
        ca = imported("easyrsa", pki, secrets_dir, source_pw=False)
        assert exported(ca, "--no-updatedb") == (pki / "index.txt").read_bytes()
        revoked = [e for e in crl(ca, "root")]
        assert len(revoked) == 1 and revoked[0].extensions.get_extension_for_class(
            x509.CRLReason).value.reason == x509.ReasonFlags.key_compromise
        openssl("verify", "-CAfile", str(ca.outgoing / "ca" / "ca-chain.pem"),
                str(pki / "issued" / "www.crt"))
        issues_a_new_certificate(ca, "/CN=new.example.com")


class TestDiscrepancies:
    """Nothing is written while the source disagrees with itself; --resolve says how."""

    def refused(self, place: Path, source: Path, *codes: str, extra: tuple[str, ...] = ()
                ) -> str:
        done = import_("openssl", source, place, *extra)
        assert done.returncode == 1 and "nothing was imported" in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
        for code in codes:
            assert code in done.stderr
        assert not (place / "state").exists()
        return done.stderr

    def test_an_index_line_without_its_certificate(self, secrets_dir: Path):
        source = flat_ca(secrets_dir, secrets_dir / "old-pw")
        (source / "newcerts" / "01.pem").unlink()
        (source / "cert-a.pem").unlink()
        said = self.refused(secrets_dir, source, "missing-certificate")
        assert "index.txt line 1 (serial 01)" in said
        ca = imported("openssl", source, secrets_dir, "--resolve", "missing-certificate=skip")
        assert b"\t01\t" not in exported(ca, "--no-updatedb")

    def test_an_unlisted_certificate_and_a_serial_file_behind(self, secrets_dir: Path):
        source = flat_ca(secrets_dir, secrets_dir / "old-pw")
        index = source / "index.txt"
        index.write_text("".join(index.read_text().splitlines(keepends=True)[:-1]))
        (source / "serial").write_text("03\n")
        self.refused(secrets_dir, source, "unlisted-certificate", "serial-behind")
        bad = import_("openssl", source, secrets_dir, "--resolve", "serial-behind=yes",
                      "--resolve", "unlisted-certificate=import")
        assert bad.returncode == 1 and "serial-behind takes ignore" in bad.stderr
        ca = imported("openssl", source, secrets_dir, "--resolve", "serial-behind=ignore",
                      "--resolve", "unlisted-certificate=import")
        assert "\t05\tunknown\t" in exported(ca).decode()

    def test_two_valid_certificates_for_one_subject(self, secrets_dir: Path):
        source = flat_ca(secrets_dir, secrets_dir / "old-pw")
        (source / "index.txt.attr").write_text("unique_subject = no\n")
        run("openssl", "ca", "-batch", "-passin", f"file:{secrets_dir / 'old-pw'}", "-out",
            "cert-a2.pem", "-config", "./openssl.cnf", "-infiles", "req-a.pem", cwd=source)
        self.refused(secrets_dir, source, "duplicate-subject")
        imported("openssl", source, secrets_dir, "--resolve", "duplicate-subject=keep")

    def test_a_key_of_another_ca_cannot_be_resolved(self, secrets_dir: Path):
        source = flat_ca(secrets_dir, secrets_dir / "old-pw")
        run("openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-out", "private/cakey.pem", cwd=source)
        said = self.refused(secrets_dir, source, "key-mismatch")
        assert "does not belong to the root CA certificate" in said

    def test_a_wrong_source_passphrase_is_one_sentence(self, secrets_dir: Path):
        source = flat_ca(secrets_dir, secrets_dir / "old-pw")
        (secrets_dir / "old-pw").write_bytes(b"not it")
        done = import_("openssl", source, secrets_dir)
        assert done.returncode == 1 and "wrong --source-passphrase-file" in done.stderr
        assert not (secrets_dir / "state").exists()


class TestOnlyTheSource:
    """An import reads the source folder's own files and nothing else (invariant 16)."""

    def test_a_link_out_of_the_folder_is_not_read_or_published(self, secrets_dir: Path):
        """certs/x.pem -> a secret outside the folder put the secret's SHA-256 into the
        ca.imported entry, exported on every stick. Now links are not followed; the entry
        lists only files that went into the import."""
        import hashlib

        source = flat_ca(secrets_dir, secrets_dir / "old-pw")
        secret = secrets_dir / "ca-passphrase"
        secret.write_bytes(b"the new CA's passphrase\n")
        (source / "certs").mkdir(exist_ok=True)
        (source / "certs" / "x.pem").symlink_to(secret)
        (source / "elsewhere").symlink_to(secrets_dir, target_is_directory=True)
        (source / "notes.pem").write_text("not a certificate of this CA\n")
        ca = imported("openssl", source, secrets_dir)
        entry = json.loads(ca.run("audit", "show", "--json", "--event", "ca.imported").stdout)
        read = entry[0]["data"]["files_read"]
        assert hashlib.sha256(secret.read_bytes()).hexdigest() not in read.values()
        assert not any(name.startswith(("certs/", "elsewhere/")) for name in read), read
        assert "notes.pem" not in read and "index.txt" in read and "cacert.pem" in read

    def test_openssl_cnf_naming_a_file_outside_is_refused(self, secrets_dir: Path):
        """openssl.cnf may name any path: its database outside the folder is refused with
        one sentence, nothing written."""
        source = flat_ca(secrets_dir, secrets_dir / "old-pw")
        shutil.copy(source / "index.txt", secrets_dir / "outside-index.txt")
        cnf = source / "openssl.cnf"
        text = cnf.read_text()
        database = next(line for line in text.splitlines() if line.startswith("database"))
        cnf.write_text(text.replace(database,
                                    f"database = {secrets_dir / 'outside-index.txt'}"))
        done = import_("openssl", source, secrets_dir)
        assert done.returncode == 1 and "is outside" in done.stderr
        assert "an import reads only the CA folder's own files" in done.stderr
        assert not (secrets_dir / "state").exists()

    def test_an_index_subject_unlike_its_certificate_is_a_discrepancy(self,
                                                                      secrets_dir: Path):
        """A hostile index.txt naming another subject, with a terminal escape in it: the
        import refuses (index-subject-mismatch), the escape shown, never sent raw; resolved,
        the certificate's subject is registered."""
        source = flat_ca(secrets_dir, secrets_dir / "old-pw")
        index = source / "index.txt"
        index.write_text(index.read_text().replace("/CN=a.sample.com",
                                                   "/CN=evil\x1b[2J.sample.com", 1))
        done = import_("openssl", source, secrets_dir)
        assert done.returncode == 1 and "index-subject-mismatch" in done.stderr
        assert "\x1b" not in done.stderr and "\\x1b" in done.stderr
        ca = imported("openssl", source, secrets_dir, "--resolve",
                      "index-subject-mismatch=certificate")
        assert "evil" not in ca.run("list").stdout


def test_the_kept_howto_config_is_the_seeds():
    """tests/root-howto-openssl.cnf is the seed how-to's block, byte for byte."""
    from tests.oldca import HOWTO_CNF, SEED, howto_cnf

    if not SEED.exists():
        pytest.skip(f"{SEED} is not beside this checkout")
    assert HOWTO_CNF.read_text() == howto_cnf()


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_index_parser_refuses_any_bytes_in_one_way(data: bytes):
    """index.txt comes from another program's directory: any bytes are entries or one
    IndexFileError, never another exception."""
    with contextlib.suppress(IndexFileError):
        parse_index(data)


_FIELD = st.text(alphabet="VRE0123456789ABCDEFZ,/=:unknowkeyTime", max_size=20)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(_FIELD, min_size=5, max_size=7), max_size=5))
def test_index_parser_on_index_shaped_lines(lines: list[list[str]]):
    data = "".join("\t".join(fields) + "\n" for fields in lines).encode()
    try:
        entries = parse_index(data)
    except IndexFileError:
        return
    assert len(entries) == len(lines)


@pytest.mark.skipif(not Path("/usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so").exists()
                    and not Path("/usr/lib/aarch64-linux-gnu/engines-3/pkcs11.so").exists(),
                    reason="OpenSSL's pkcs11 engine is not installed (.ci/run installs it)")
def test_a_ca_whose_key_is_in_a_token_keeps_it_there(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch):
    """openssl.cnf names the key by a pkcs11: URI: the key stays in its token (whose PIN
    is then spoolca's unlock secret), the index comes back byte for byte, and the token
    signs the next CRL and the new intermediate."""
    from spoolca.keys.softhsm import make_token, softhsm_module
    from tests.oldca import token_flat_ca

    pin = b"old token pin"
    monkeypatch.setenv("SOFTHSM2_CONF", str(make_token(tmp_path / "hsm", "oldca", pin)))
    source = token_flat_ca(tmp_path, pin)
    (tmp_path / "new-pw").write_bytes(pin)  # the PIN is the unlock secret
    CREATED.append(tmp_path / "state")
    done = spoolca("import-openssl", str(source), "--dir", str(tmp_path / "state"),
                   "--passphrase-file", str(tmp_path / "new-pw"), "--pkcs11-module",
                   str(softhsm_module()))
    assert done.returncode == 0, done.stderr
    ca = CA(tmp_path / "state")
    assert not (ca.dir / "keys" / "root.key.pem").exists()
    assert 'key_label = "rootkey"' in ca.config.read_text()
    assert exported(ca, "--authority", "root", "--no-updatedb") == \
        (source / "index.txt").read_bytes()
    assert [f"{e.serial_number:02X}" for e in crl(ca, "root")] == ["02"]
    openssl("verify", "-CAfile", str(ca.outgoing / "ca" / "ca-chain.pem"),
            str(source / "cert-a.pem"))
    issues_a_new_certificate(ca, f"{ORG}/CN=new.sample.com")
    no_module = spoolca("import-openssl", str(source), "--dir", str(tmp_path / "again"),
                        "--passphrase-file", str(tmp_path / "new-pw"))
    assert no_module.returncode == 1 and "give --pkcs11-module" in no_module.stderr


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_openssl_cnf_reader_takes_any_text(text: str):
    """openssl.cnf comes from the old CA's directory: any text is sections of values."""
    from spoolca.authority.importing.source import _parse_cnf

    sections = _parse_cnf(text)
    assert "" in sections and all(isinstance(v, dict) for v in sections.values())


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=120) | st.text(max_size=40).map(lambda t: f"token=a;pin-value={t}"))
def test_a_key_uri_is_read_without_surprises(text: str):
    from spoolca.authority.importing.source import SourceCA, token_uri

    ca = SourceCA("root", Path("."), None, Path("pkcs11:" + text), Path("."), [], {}, {},
                  None)  # type: ignore[arg-type]
    found = token_uri(ca)
    assert found is not None and "pin-value" not in found and "pin-source" not in found
