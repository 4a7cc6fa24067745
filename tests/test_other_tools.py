"""CSRs made by the tools requesters really use are issued (issue: other tools' CSRs).

Each request is made by the real tool with ordinary options (openssl, GnuTLS certtool,
NSS certutil, easy-rsa, Go crypto/x509, Java keytool), issued by `spoolca process`,
judged by `openssl verify`, and its certificate carries the requested key byte for byte.
`.ci/run` installs the tools; outside CI a missing tool skips its test.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from spoolca.notation.der import sequence, tlv
from spoolca.x509.csr import load_request
from tests.pki import CA, openssl
from tests.rawcsr import extension, name_of, raw_csr

SUBJECT = "/C=US/ST=New York/O=The Sample Company/CN={}"
TOOLS = Path(__file__).parent / "tools"


def need(tool: str) -> str:
    """The tool's path; in CI a missing tool fails (it must be installed), else skips."""
    path = shutil.which(tool)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{tool} is not installed; .ci/run must install it")
        pytest.skip(f"{tool} is not installed")
    return path


def run(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(args, capture_output=True, text=True, cwd=cwd, timeout=120,
                            env={**os.environ, **(env or {})})
    assert result.returncode == 0, result.stderr
    return result.stdout


def issue(ca: CA, profile: str, name: str, data: bytes) -> dict:
    """Submit, process, and check the result with openssl and the SPKI bytes."""
    ca.submit(f"{profile}/{name}.csr", data)
    ca.process()
    body = ca.result(name)
    assert body["status"] == "issued", body
    cert_path = ca.outgoing / name / "cert.pem"
    purpose = "sslserver" if profile == "server" else "sslclient"
    openssl("verify", "-CAfile", str(ca.outgoing / "ca" / "ca-chain.pem"), "-purpose", purpose,
            str(cert_path))
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    spki = cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)
    assert spki == load_request(data).spki
    return body


class TestOpenSSL:
    @pytest.mark.parametrize("key", ["rsa:2048", "ec -pkeyopt ec_paramgen_curve:P-384"])
    def test_openssl_req_with_san(self, ca: CA, tmp_path: Path, key: str):
        """openssl req -newkey ... -addext subjectAltName, as the seeds' users do."""
        csr = tmp_path / "o.csr"
        openssl("req", "-new", "-newkey", *key.split(), "-nodes", "-keyout",
                str(tmp_path / "k"), "-subj", SUBJECT.format("openssl.sample.com"),
                "-addext", "subjectAltName=DNS:openssl.sample.com", "-out", str(csr))
        issue(ca, "server", "openssl", csr.read_bytes())


class TestCerttool:
    @pytest.mark.parametrize("key", ["ecdsa", "rsa"])
    def test_certtool_server_request(self, ca: CA, tmp_path: Path, key: str):
        """GnuTLS certtool always sends critical keyUsage, EKU and CA:FALSE: now issued."""
        certtool = need("certtool")
        (tmp_path / "t.cfg").write_text(
            'organization = "The Sample Company"\nstate = "New York"\ncountry = US\n'
            'cn = "certtool.sample.com"\ndns_name = "certtool.sample.com"\n'
            "tls_www_server\nsigning_key\nencryption_key\n")
        run(certtool, "--generate-privkey", "--key-type", key, "--outfile",
            str(tmp_path / "k.pem"))
        run(certtool, "--generate-request", "--load-privkey", str(tmp_path / "k.pem"),
            "--template", str(tmp_path / "t.cfg"), "--outfile", str(tmp_path / "r.csr"))
        body = issue(ca, "server", "certtool", (tmp_path / "r.csr").read_bytes())
        assert [n["code"] for n in body["notes"]] == ["note.extensions_overridden"]

    def test_certtool_code_signing_request_is_refused(self, ca: CA, tmp_path: Path):
        """Counter-case: a certtool template asking for code signing on a server profile."""
        certtool = need("certtool")
        (tmp_path / "t.cfg").write_text(
            'organization = "The Sample Company"\nstate = "New York"\ncountry = US\n'
            'cn = "cs.sample.com"\ndns_name = "cs.sample.com"\ncode_signing_key\n'
            "signing_key\n")
        run(certtool, "--generate-privkey", "--key-type", "ecdsa", "--outfile",
            str(tmp_path / "k.pem"))
        run(certtool, "--generate-request", "--load-privkey", str(tmp_path / "k.pem"),
            "--template", str(tmp_path / "t.cfg"), "--outfile", str(tmp_path / "r.csr"))
        ca.submit("server/cs.csr", (tmp_path / "r.csr").read_bytes())
        ca.process()
        codes = [r["code"] for r in ca.result("cs")["reasons"]]
        assert codes == ["csr.extension.extended_key_usage"]


class TestNSS:
    @pytest.mark.parametrize("key", [("-k", "ec", "-q", "nistp256"), ("-k", "rsa", "-g", "2048")],
                             ids=["ec", "rsa"])
    def test_certutil_request(self, ca: CA, tmp_path: Path, key: tuple[str, ...]):
        """NSS certutil -R with a SAN, ASCII output with its header line."""
        certutil = need("certutil")
        db = tmp_path / "nss"
        db.mkdir()
        run(certutil, "-N", "-d", f"sql:{db}", "--empty-password")
        (tmp_path / "noise").write_bytes(os.urandom(64))
        run(certutil, "-R", "-d", f"sql:{db}", "-s",
            "CN=nss.sample.com,O=The Sample Company,ST=New York,C=US", *key,
            "-z", str(tmp_path / "noise"), "--extSAN", "dns:nss.sample.com", "-a",
            "-o", str(tmp_path / "r.csr"))
        issue(ca, "server", "nss", (tmp_path / "r.csr").read_bytes())


class TestEasyRSA:
    def test_easyrsa_gen_req(self, ca: CA, tmp_path: Path):
        """easyrsa gen-req in org mode (the OpenVPN how-to), for a client certificate."""
        source = Path("/usr/share/easy-rsa")
        if not source.is_dir():
            need("easyrsa")  # fails in CI, skips elsewhere
        home = tmp_path / "easy-rsa"
        shutil.copytree(source, home)
        run("./easyrsa", "init-pki", cwd=home)
        run("./easyrsa", "--batch", "--dn-mode=org", "--req-c=US", "--req-st=New York",
            "--req-city=NYC", "--req-org=The Sample Company", "--req-email=vpn@sample.com",
            "--req-ou=IT", "--req-cn=vpn-client", "gen-req", "vpn-client", "nopass", cwd=home)
        data = (home / "pki" / "reqs" / "vpn-client.req").read_bytes()
        issue(ca, "client", "vpn-client", data)


class TestGo:
    @pytest.mark.parametrize("key", ["ec", "rsa"])
    def test_go_crypto_x509_request(self, ca: CA, tmp_path: Path, key: str):
        """x509.CreateCertificateRequest with DNSNames, from a real Go program."""
        go = need("go")
        env = {"HOME": str(tmp_path), "GOCACHE": str(tmp_path / "cache"),
               "GOPATH": str(tmp_path / "path"), "GO111MODULE": "off"}
        data = run(go, "run", str(TOOLS / "gocsr.go"), "-cn", "go.sample.com", "-dns",
                   "go.sample.com", "-key", key, env=env)
        issue(ca, "server", "go", data.encode())


class TestKeytool:
    def test_keytool_certreq_with_usage_extensions(self, ca: CA, tmp_path: Path):
        """keytool -certreq -ext SAN, EKU and KU: the usages the profile grants anyway."""
        keytool = need("keytool")
        store = tmp_path / "ks.p12"
        run(keytool, "-genkeypair", "-keyalg", "EC", "-groupname", "secp256r1", "-alias", "a",
            "-keystore", str(store), "-storetype", "PKCS12", "-storepass", "changeit",
            "-dname", "CN=keytool.sample.com, O=The Sample Company, ST=New York, C=US")
        run(keytool, "-certreq", "-alias", "a", "-keystore", str(store), "-storepass",
            "changeit", "-ext", "SAN=dns:keytool.sample.com", "-ext", "EKU=serverAuth",
            "-ext", "KU=digitalSignature", "-file", str(tmp_path / "r.csr"))
        body = issue(ca, "server", "keytool", (tmp_path / "r.csr").read_bytes())
        assert [n["code"] for n in body["notes"]] == ["note.extensions_overridden"]


JS = TOOLS / "js"


def node_tool(script: str, *args: str) -> bytes:
    """A CSR made by SCRIPT (tests/tools/js) with the library it names, under node."""
    node = need("node")
    if not (JS / "node_modules").is_dir():
        if os.environ.get("CI"):
            pytest.fail("tests/tools/js/node_modules is missing; .ci/run must npm ci")
        pytest.skip("npm ci --prefix tests/tools/js has not been run")
    return run(node, str(JS / script), *args).encode()


def pem_body(pem: bytes) -> bytes:
    """The DER inside one PEM block (cryptography will not load a lax request)."""
    lines = pem.decode().strip().splitlines()
    return base64.b64decode("".join(lines[1:-1]))


def reencoded(body: dict) -> list[str]:
    return [n["message"] for n in body.get("notes", []) if n["code"] == "note.subject_reencoded"]


class TestLaxSubjects:
    """node-forge, PKI.js and Latin-1 tools encode the subject laxly; OpenSSL takes it."""

    def test_node_forge_client_request_with_an_email_cn(self, ca: CA):
        """forge writes `alice@sample.com` as a PrintableString (`@` is not one)."""
        data = node_tool("forge.js", "alice@sample.com")
        body = issue(ca, "client", "forge", data)
        assert any("PrintableString" in note for note in reencoded(body)), body
        cert = x509.load_pem_x509_certificate((ca.outgoing / "forge" / "cert.pem").read_bytes())
        assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == \
            "alice@sample.com"

    def test_pkijs_server_request_with_one_unsorted_rdn(self, ca: CA):
        """PKI.js's example puts C, ST, O and CN in one RDN, not in DER order."""
        data = node_tool("pkijs.mjs", "pkijs.sample.com")
        body = issue(ca, "server", "pkijs", data)
        assert any("DER order" in note for note in reencoded(body)), body

    def test_a_latin1_t61string_subject(self, ca: CA):
        """An old tool's T61String `Zürich`: issued as the UTF-8 it means."""
        name = name_of(("2.5.4.6", 0x13, b"US"), ("2.5.4.8", 0x13, b"New York"),
                       ("2.5.4.7", 0x14, "Zürich".encode("latin-1")),
                       ("2.5.4.10", 0x13, b"The Sample Company"),
                       ("2.5.4.3", 0x13, b"t61.sample.com"))
        _key, data = raw_csr(name=name, extensions=[
            extension("2.5.29.17", sequence(tlv(0x82, b"t61.sample.com")))])
        body = issue(ca, "server", "t61", data)
        assert any("T61String" in note for note in reencoded(body)), body
        cert = x509.load_pem_x509_certificate((ca.outgoing / "t61" / "cert.pem").read_bytes())
        localities = cert.subject.get_attributes_for_oid(NameOID.LOCALITY_NAME)
        assert [a.value for a in localities] in ([], ["Zürich"]), cert.subject

    def test_a_lax_subject_with_a_changed_byte_is_refused(self, ca: CA):
        """The repair never launders a signature: the bytes as sent must verify."""
        data = bytearray(pem_body(node_tool("forge.js", "bob@sample.com")))
        at = bytes(data).index(b"bob@sample.com")
        data[at] = ord("x")  # xob@sample.com, the signature is over bob's
        ca.submit("client/tampered.csr", bytes(data))
        ca.process()
        body = ca.result("tampered")
        assert body["status"] == "rejected"
        assert "csr.signature_invalid" in [r["code"] for r in body["reasons"]], body

    def test_a_subject_that_is_not_der_is_refused_in_one_sentence(self, ca: CA):
        """A BOOLEAN where a string belongs: one sentence naming the subject, no debug."""
        name = name_of(("2.5.4.3", 0x01, b"\xff"))
        _key, data = raw_csr(name=name)
        ca.submit("server/garbled.csr", data)
        ca.process()
        body = ca.result("garbled")
        assert body["status"] == "rejected"
        (reason,) = [r for r in body["reasons"] if r["code"] == "csr.unparseable"]
        assert "subject" in reason["message"] and "openssl req" in reason["message"], reason
        assert "ParseError" not in reason["message"] and "kind:" not in reason["message"]
