"""`spoolca process` end to end: CSR files in, certificates out, judged by openssl and pkilint."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from tests.pki import CA, make_csr, make_key, openssl, pem

OUTPUT_FILES = {"cert.pem", "cert.crt", "chain.pem", "fullchain.pem", "result.json"}


def lint_pkix(path) -> list[str]:
    """pkilint's own command line, as an independent judge: findings at WARNING or worse."""
    lint = os.path.join(os.path.dirname(sys.executable), "lint_pkix_cert")
    result = subprocess.run([lint, "lint", "-s", "WARNING", str(path)], capture_output=True,
                            text=True, timeout=60)
    return [line for line in result.stdout.splitlines() if "(" in line]


def cert_of(ca: CA, name: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate((ca.outgoing / name / "cert.pem").read_bytes())


class TestIssuance:
    def test_server_request_is_issued_with_all_outputs(self, ca: CA):
        """A matching server CSR yields cert, chain, fullchain, DER copy and result.json."""
        ca.submit("server/www.csr", pem(make_csr("www.sample.com")[1]))
        ca.process()
        folder = ca.outgoing / "www"
        assert {p.name for p in folder.iterdir()} == OUTPUT_FILES
        result = ca.result("www")
        assert result["status"] == "issued"
        assert result["profile"] == "server"
        assert len(result["request_sha256"]) == 64
        cert = cert_of(ca, "www")
        # index.txt's notation: upper-case hex in whole octets (a 127-bit serial whose top
        # octet is 0, one in 128, has 30 digits: zfill(32) made this test fail then).
        assert int(result["serial"], 16) == cert.serial_number
        assert len(result["serial"]) % 2 == 0 and result["serial"] == result["serial"].upper()
        assert not result["serial"].startswith("00")
        assert result["not_after"] == cert.not_valid_after_utc.strftime("%Y-%m-%dT%H:%M:%SZ")
        assert (folder / "cert.crt").read_bytes() == cert.public_bytes(serialization.Encoding.DER)

    def test_openssl_verifies_the_chain_both_ways(self, ca: CA):
        """openssl accepts the certificate with chain.pem, and root + fullchain.pem."""
        ca.submit("server/www.csr", pem(make_csr("www.sample.com")[1]))
        ca.process()
        folder = ca.outgoing / "www"
        openssl("verify", "-CAfile", str(folder / "chain.pem"), str(folder / "cert.pem"))
        openssl("verify", "-CAfile", str(ca.outgoing / "ca" / "root.pem"), "-untrusted",
                str(folder / "fullchain.pem"), str(folder / "cert.pem"))
        openssl("verify", "-CAfile", str(ca.outgoing / "ca" / "ca-chain.pem"),
                "-purpose", "sslserver", str(folder / "cert.pem"))

    def test_openssl_refuses_it_without_the_intermediate(self, ca: CA):
        """Counter-case: the root alone does not verify a leaf (the chain matters)."""
        ca.submit("server/www.csr", pem(make_csr("www.sample.com")[1]))
        ca.process()
        result = openssl("verify", "-CAfile", str(ca.outgoing / "ca" / "root.pem"),
                         str(ca.outgoing / "www" / "cert.pem"), check=False)
        assert result.returncode != 0

    @pytest.mark.parametrize("folder,cn", [("server", "www.sample.com"),
                                           ("client", "alice@sample.com"),
                                           ("client", "Alice Example"),
                                           ("subca", "Sample Team CA")])
    def test_pkilint_finds_no_warning(self, ca: CA, folder: str, cn: str):
        """Every profile's certificates pass lint_pkix_cert at WARNING level."""
        ca.allow_unsigned_subca()
        sans = [] if folder != "server" else None
        ca.submit(f"{folder}/req.csr", pem(make_csr(cn, sans=sans)[1]))
        ca.process()
        assert ca.result("req")["status"] == "issued", ca.result("req")
        assert lint_pkix(ca.outgoing / "req" / "cert.pem") == []

    def test_a_wildcard_is_issued_when_the_profile_allows_it(self, ca: CA):
        """allow_wildcards = true: *.sample.com passes the pre-issuance lint (pkilint's
        PKIX check refused every wildcard) and OpenSSL matches it to a host below."""
        ca.edit_config("allow_wildcards = false", "allow_wildcards = true")
        ca.submit("server/star.csr", pem(make_csr("*.sample.com")[1]))
        ca.process()
        assert ca.result("star")["status"] == "issued", ca.result("star")
        folder = ca.outgoing / "star"
        openssl("verify", "-CAfile", str(folder / "chain.pem"), "-verify_hostname",
                "www.sample.com", str(folder / "cert.pem"))
        assert lint_pkix(folder / "cert.pem") != []  # pkilint alone still says no

    def test_the_linter_passes_a_leftmost_wildcard_only(self, issuer):
        """Counter-case: the lint lets *.example.com through, never a.*.example.com."""
        import datetime as dt

        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec

        from spoolca.x509.lint import CertificateLinter

        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        linter = CertificateLinter()
        found = {}
        for name in ("*.example.com", "a.*.example.com", "*.*.example.com"):
            cert = (x509.CertificateBuilder().subject_name(issuer.subject)
                    .issuer_name(issuer.subject).public_key(key.public_key())
                    .serial_number(x509.random_serial_number()).not_valid_before(now)
                    .not_valid_after(now + dt.timedelta(days=1))
                    .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), False)
                    .sign(key, hashes.SHA256()))
            found[name] = any("invalid_domain_name_syntax" in f.message for f in
                              linter.lint(cert.public_bytes(serialization.Encoding.DER)))
        assert found == {"*.example.com": False, "a.*.example.com": True,
                         "*.*.example.com": True}

    def test_server_extensions(self, ca: CA):
        """Server: CA:FALSE critical, KU digitalSignature only for EC, EKU serverAuth, SKI/AKI."""
        ca.submit("server/www.csr", pem(make_csr("www.sample.com")[1]))
        ca.process()
        ext = cert_of(ca, "www").extensions
        bc = ext.get_extension_for_class(x509.BasicConstraints)
        assert bc.critical and not bc.value.ca
        ku = ext.get_extension_for_class(x509.KeyUsage)
        assert ku.critical and ku.value.digital_signature and not ku.value.key_encipherment
        eku = ext.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert list(eku) == [x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]
        intermediate = x509.load_pem_x509_certificate(
            (ca.outgoing / "ca" / "intermediate.pem").read_bytes())
        aki = ext.get_extension_for_class(x509.AuthorityKeyIdentifier).value
        ski = intermediate.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        assert aki.key_identifier == ski.digest

    def test_rsa_server_key_also_gets_key_encipherment(self, ca: CA):
        """keyEncipherment only where the key can encipher (RSA)."""
        ca.submit("server/rsa.csr", pem(make_csr("rsa.sample.com", key=make_key("rsa-2048"))[1]))
        ca.process()
        ku = cert_of(ca, "rsa").extensions.get_extension_for_class(x509.KeyUsage).value
        assert ku.digital_signature and ku.key_encipherment

    def test_signature_hash_follows_the_ca_key(self, ca: CA):
        """The P-384 intermediate signs with SHA-384, never the library's choice."""
        ca.submit("server/www.csr", pem(make_csr("www.sample.com")[1]))
        ca.process()
        assert cert_of(ca, "www").signature_hash_algorithm.name == "sha384"

    def test_subject_follows_policy_order_and_drops_unnamed_fields(self, ca: CA):
        """localityName (not in policy_match) is dropped, as openssl ca with preserve=no."""
        name = x509.Name([
            x509.NameAttribute(NameOID.COMMON_NAME, "mail.sample.com"),
            x509.NameAttribute(NameOID.LOCALITY_NAME, "Metropolis"),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Mail Server"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "The Sample Company"),
            x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "New York"),
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
        ])
        ca.submit("server/mail.csr", pem(make_csr("mail.sample.com", name=name)[1]))
        ca.process()
        assert cert_of(ca, "mail").subject.rfc4514_string() == (
            "CN=mail.sample.com,OU=Mail Server,O=The Sample Company,ST=New York,C=US")

    def test_subca_is_signed_by_the_root_with_pathlen_zero(self, ca: CA):
        """subca: CA:TRUE pathlen:0, keyCertSign+cRLSign, issued by the root, verifies."""
        ca.allow_unsigned_subca()
        extensions = [(x509.BasicConstraints(ca=True, path_length=None), True)]
        ca.submit("subca/team.csr", pem(make_csr("Sample Team CA", sans=[],
                                                 extensions=extensions)[1]))
        ca.process()
        cert = cert_of(ca, "team")
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        assert bc.ca and bc.path_length == 0
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
        assert ku.key_cert_sign and ku.crl_sign and not ku.digital_signature
        assert "Sample Root CA" in cert.issuer.rfc4514_string()
        openssl("verify", "-CAfile", str(ca.outgoing / "team" / "chain.pem"),
                str(ca.outgoing / "team" / "cert.pem"))

    def test_client_email_cn_becomes_an_email_san(self, ca: CA):
        """client: an e-mail CN is also put in subjectAltName; EKU clientAuth."""
        ca.submit("client/alice.csr", pem(make_csr("alice@sample.com", sans=[])[1]))
        ca.process()
        cert = cert_of(ca, "alice")
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert san.get_values_for_type(x509.RFC822Name) == ["alice@sample.com"]
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert list(eku) == [x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]

    def test_hostname_cn_without_san_becomes_the_san(self, ca: CA):
        """A server CSR with only a hostname CN gets that name as its DNS SAN."""
        ca.submit("server/bare.csr", pem(make_csr("bare.sample.com", sans=[])[1]))
        ca.process()
        san = cert_of(ca, "bare").extensions.get_extension_for_class(x509.SubjectAlternativeName)
        assert san.value.get_values_for_type(x509.DNSName) == ["bare.sample.com"]

    def test_top_level_requests_get_the_default_profile(self, ca: CA):
        """Files directly in incoming/ are server requests (default_profile)."""
        ca.submit("top.csr", pem(make_csr("top.sample.com")[1]))
        ca.process()
        assert ca.result("top")["profile"] == "server"

    def test_der_and_req_files_are_accepted(self, ca: CA):
        """A CSR may arrive as DER (.der) or PEM named .req."""
        _, csr = make_csr("der.sample.com")
        ca.submit("server/der.der", csr.public_bytes(serialization.Encoding.DER))
        ca.submit("server/req.req", pem(make_csr("req.sample.com")[1]))
        ca.process()
        assert ca.result("der")["status"] == "issued"
        assert ca.result("req")["status"] == "issued"


class TestRejection:
    def test_rejected_request_keeps_its_file_and_gets_every_reason(self, ca: CA):
        """A CSR failing three rules gets all three reasons; the original is archived."""
        name = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "GB"),
                          x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Another Company"),
                          x509.NameAttribute(NameOID.COMMON_NAME, "www.another.example")])
        data = pem(make_csr("www.another.example", name=name)[1])
        ca.submit("server/bad.csr", data)
        result = ca.process()
        assert "rejected bad.csr" in result.stdout
        body = ca.result("bad")
        assert body["status"] == "rejected"
        codes = [r["code"] for r in body["reasons"]]
        assert codes == ["policy.dn.countryName_mismatch",
                         "policy.dn.stateOrProvinceName_missing",
                         "policy.dn.organizationName_mismatch"]
        assert all(r["message"] for r in body["reasons"])
        assert (ca.archive / "bad.csr").read_bytes() == data
        assert not (ca.outgoing / "bad" / "cert.pem").exists()

    def test_hostile_files_are_rejected_and_nothing_is_lost(self, ca: CA, tmp_path):
        """Garbage, empty, huge, symlink, FIFO, directory, wrong folder: each rejected, kept."""
        secret = tmp_path / "secret.txt"
        secret.write_text("do not read me")
        incoming = ca.incoming / "server"
        (incoming / "garbage.csr").write_bytes(b"\x00\xffnot a csr")
        (incoming / "empty.csr").write_bytes(b"")
        (incoming / "huge.csr").write_bytes(b"A" * (64 * 1024 + 1))
        os.symlink(secret, incoming / "link.csr")
        os.mkfifo(incoming / "fifo.csr")
        (incoming / "folder.csr").mkdir()
        (incoming / "notes.txt").write_text("hello")
        ca.submit("nosuchprofile/x.csr", pem(make_csr("x.sample.com")[1]))
        ca.process()
        expected = {"garbage": "csr.unparseable", "empty": "file.empty",
                    "huge": "file.too_large", "link": "file.not_regular",
                    "fifo": "file.not_regular", "folder": "file.not_regular",
                    "notes.txt": "file.extension_unsupported", "x": "file.unknown_profile"}
        for name, code in expected.items():
            codes = [r["code"] for r in ca.result(name)["reasons"]]
            assert code in codes, (name, codes)
        assert os.path.islink(ca.archive / "link.csr")  # moved, never followed
        assert secret.read_text() == "do not read me"
        assert sorted(os.listdir(ca.incoming / "server")) == []
        assert len(os.listdir(ca.archive)) == len(expected)

    def test_in_progress_files_are_left_alone(self, ca: CA):
        """Dotfiles, *.part and *.tmp are still being written: not taken."""
        for name in (".hidden.csr", "upload.csr.part", "upload.csr.tmp"):
            (ca.incoming / "server" / name).write_bytes(pem(make_csr("p.sample.com")[1]))
        ca.process()
        assert sorted(os.listdir(ca.incoming / "server")) == [
            ".hidden.csr", "upload.csr.part", "upload.csr.tmp"]

    def test_duplicate_subject_is_refused_with_a_clear_reason(self, ca: CA):
        """unique_subject: a second valid certificate for the same subject is refused."""
        ca.submit("server/first.csr", pem(make_csr("dup.sample.com")[1]))
        ca.process()
        ca.submit("server/second.csr", pem(make_csr("dup.sample.com")[1]))
        ca.process()
        reason = ca.result("second")["reasons"][0]
        assert reason["code"] == "policy.subject.duplicate"
        assert ca.result("first")["serial"] in reason["message"]

    def test_duplicate_subject_within_one_batch_is_refused(self, ca: CA):
        """Two new CSRs for one subject in the same pass: exactly one is issued."""
        ca.submit("server/a.csr", pem(make_csr("twin.sample.com")[1]))
        ca.submit("server/b.csr", pem(make_csr("twin.sample.com")[1]))
        ca.process()
        statuses = sorted([ca.result("a")["status"], ca.result("b")["status"]])
        assert statuses == ["issued", "rejected"]

    def test_unique_subject_off_allows_a_second_certificate(self, ca: CA):
        """Counter-case: with unique_subject = false the same subject is issued twice."""
        ca.edit_config("unique_subject = true\nrenew_before_days = 30",
                       "unique_subject = false\nrenew_before_days = 30")
        ca.submit("server/first.csr", pem(make_csr("dup.sample.com")[1]))
        ca.submit("server/second.csr", pem(make_csr("dup.sample.com")[1]))
        ca.process()
        assert ca.result("second")["status"] == "issued"

    def test_lint_refuses_a_bad_certificate_and_the_ca_key_is_not_used(self, ca: CA):
        """A config mistake that makes an invalid URI: pkilint stops it before signing."""
        ca.edit_config('[authorities.intermediate]\nkey = "keys/intermediate.key.pem"\n'
                       'crl_url = ""',
                       '[authorities.intermediate]\nkey = "keys/intermediate.key.pem"\n'
                       'crl_url = "http://exa mple.com/i.crl"')
        ca.submit("server/www.csr", pem(make_csr("www.sample.com")[1]))
        ca.process()
        reasons = ca.result("www")["reasons"]
        assert reasons[0]["code"] == "lint.error"
        assert "invalid_uri_syntax" in reasons[0]["message"]
        with sqlite3.connect(ca.dir / "ca.db") as db:
            assert db.execute("SELECT COUNT(*) FROM certificates").fetchone()[0] == 0


class TestExactlyOnce:
    def test_same_csr_twice_is_republished_not_reissued(self, ca: CA):
        """The same request again (even as DER, under another name) gets the same certificate."""
        _, csr = make_csr("once.sample.com")
        ca.submit("server/once.csr", pem(csr))
        ca.process()
        ca.submit("server/again.der", csr.public_bytes(serialization.Encoding.DER))
        ca.process()
        first, again = ca.result("once"), ca.result("again")
        assert again["serial"] == first["serial"]
        assert again["request_sha256"] == first["request_sha256"]
        assert (ca.outgoing / "again" / "cert.pem").read_bytes() == \
            (ca.outgoing / "once" / "cert.pem").read_bytes()
        listing = json.loads(ca.run("list", "--json").stdout)
        assert len(listing) == 1

    def test_same_csr_twice_in_one_batch_gets_one_certificate(self, ca: CA):
        """Two copies in one pass: one certificate, both names answered."""
        data = pem(make_csr("pair.sample.com")[1])
        ca.submit("server/one.csr", data)
        ca.submit("server/two.csr", data)
        ca.process()
        assert ca.result("one")["serial"] == ca.result("two")["serial"]
        assert len(json.loads(ca.run("list", "--json").stdout)) == 1

    def test_a_different_request_never_overwrites_a_result(self, ca: CA):
        """Same file name, different CSR: the second result goes to NAME-2."""
        ca.submit("server/web.csr", pem(make_csr("web1.sample.com")[1]))
        ca.process()
        before = (ca.outgoing / "web" / "result.json").read_bytes()
        ca.submit("server/web.csr", pem(make_csr("web2.sample.com")[1]))
        ca.process()
        assert (ca.outgoing / "web" / "result.json").read_bytes() == before
        assert ca.result("web-2")["status"] == "issued"
        assert sorted(os.listdir(ca.archive)) == ["web-2.csr", "web.csr"]

    def test_reserved_names_do_not_clobber_ca_files(self, ca: CA):
        """A request named ca.csr must not write into outgoing/ca/."""
        before = (ca.outgoing / "ca" / "root.pem").read_bytes()
        ca.submit("server/ca.csr", pem(make_csr("ca.sample.com")[1]))
        ca.process()
        assert (ca.outgoing / "ca" / "root.pem").read_bytes() == before
        assert ca.result("ca-2")["status"] == "issued"

    def test_a_rejected_csr_stays_rejected(self, ca: CA):
        """Invariant 1: one terminal result per request, even after a config change."""
        data = pem(make_csr("late.sample.com", sans=[x509.DNSName("10.0.0.1.x"),
                                                     x509.IPAddress(__import__(
                                                         "ipaddress").ip_address("10.0.0.1"))])[1])
        ca.submit("server/ip.csr", data)
        ca.process()
        assert ca.result("ip")["status"] == "rejected"
        ca.edit_config("allow_ip = false", "allow_ip = true")
        ca.submit("server/ip2.csr", data)
        ca.process()
        assert ca.result("ip2")["status"] == "rejected"

    @pytest.mark.parametrize("claim", ["claim-0000018a2b3c4d5e-abcdef", None],
                             ids=["claim round", "before claim rounds"])
    def test_work_left_by_a_crash_is_finished(self, ca: CA, claim):
        """A file claimed into work/ by a process that died is processed on the next pass,
        in the claim-round layout and in the layout of the first release (work/PROFILE/)."""
        work = ca.dir / "spool" / "work"
        folder = (work / claim if claim else work) / "server"
        folder.mkdir(parents=True)
        (folder / "crashed.csr").write_bytes(pem(make_csr("crash.sample.com")[1]))
        ca.process()
        assert ca.result("crashed")["status"] == "issued"
        assert os.listdir(work) == []


class TestEveryReasonTrue:
    """Issue 25 item 10: every reason is true and said once; nothing dropped unsaid."""

    def test_a_dsa_request_is_refused_for_its_key_not_its_signature(self, ca: CA, tmp_path):
        """A correctly self-signed DSA request (Windows CSRs can be): openssl verifies it."""
        openssl("genpkey", "-genparam", "-algorithm", "DSA", "-pkeyopt", "dsa_paramgen_bits:2048",
                "-out", str(tmp_path / "p"))
        openssl("req", "-new", "-newkey", f"dsa:{tmp_path / 'p'}", "-nodes", "-keyout",
                str(tmp_path / "k"), "-subj", "/C=US/ST=New York/O=The Sample Company/"
                "CN=dsa.sample.com", "-out", str(tmp_path / "r.csr"))
        openssl("req", "-verify", "-noout", "-in", str(tmp_path / "r.csr"))
        ca.submit("server/dsa.csr", (tmp_path / "r.csr").read_bytes())
        ca.process()
        codes = [r["code"] for r in ca.result("dsa")["reasons"]]
        assert "key.type_unsupported" in codes
        assert "csr.signature_invalid" not in codes, codes

    def test_a_dsa_request_with_a_changed_byte_is_still_called_altered(self, ca: CA,
                                                                       tmp_path):
        openssl("genpkey", "-genparam", "-algorithm", "DSA", "-pkeyopt", "dsa_paramgen_bits:2048",
                "-out", str(tmp_path / "p"))
        openssl("req", "-new", "-newkey", f"dsa:{tmp_path / 'p'}", "-nodes", "-keyout",
                str(tmp_path / "k"), "-subj", "/C=US/ST=New York/O=The Sample Company/"
                "CN=dsa.sample.com", "-outform", "DER", "-out", str(tmp_path / "r.der"))
        data = bytearray((tmp_path / "r.der").read_bytes())
        at = bytes(data).index(b"dsa.sample.com")
        data[at] = ord("x")
        ca.submit("server/dsa2.csr", bytes(data))
        ca.process()
        codes = [r["code"] for r in ca.result("dsa2")["reasons"]]
        assert "csr.signature_invalid" in codes and "key.type_unsupported" in codes, codes

    def test_no_reason_is_given_twice(self, ca: CA):
        """An IP as CN and in the SAN, on a profile without IPs: one reason, not two."""
        import ipaddress

        _key, csr = make_csr("10.0.0.1", sans=[x509.IPAddress(ipaddress.ip_address("10.0.0.1"))])
        ca.submit("server/ip.csr", pem(csr))
        ca.process()
        reasons = [(r["code"], r["message"]) for r in ca.result("ip")["reasons"]]
        assert reasons, reasons
        assert len(reasons) == len(set(reasons)), reasons

    def test_must_staple_asked_is_noted_as_left_out(self, ca: CA, tmp_path):
        """openssl req -addext tlsfeature=status_request: issued without it, and said so."""
        openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", str(tmp_path / "k"), "-subj", "/C=US/ST=New York/"
                "O=The Sample Company/CN=staple.sample.com", "-addext",
                "subjectAltName=DNS:staple.sample.com", "-addext", "tlsfeature=status_request",
                "-out", str(tmp_path / "r.csr"))
        ca.submit("server/staple.csr", (tmp_path / "r.csr").read_bytes())
        ca.process()
        body = ca.result("staple")
        assert body["status"] == "issued", body
        notes = {n["code"]: n["message"] for n in body.get("notes", [])}
        assert "must-staple" in notes.get("note.extension_left_out", ""), body
        cert = x509.load_pem_x509_certificate((ca.outgoing / "staple" / "cert.pem").read_bytes())
        assert x509.TLSFeature not in [e.value.__class__ for e in cert.extensions]

    def test_an_unknown_noncritical_extension_is_noted_as_left_out(self, ca: CA, tmp_path):
        openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", str(tmp_path / "k"), "-subj", "/C=US/ST=New York/"
                "O=The Sample Company/CN=odd.sample.com", "-addext",
                "subjectAltName=DNS:odd.sample.com", "-addext", "1.2.3.4=ASN1:NULL",
                "-out", str(tmp_path / "r.csr"))
        ca.submit("server/odd.csr", (tmp_path / "r.csr").read_bytes())
        ca.process()
        body = ca.result("odd")
        assert body["status"] == "issued", body
        notes = {n["code"]: n["message"] for n in body.get("notes", [])}
        assert "1.2.3.4" in notes.get("note.extension_left_out", ""), body


class TestReconsider:
    """A rejection is not forever when the policy was the reason (issue 26)."""

    def test_a_request_rejected_by_policy_is_decided_again_after_the_change(self, ca: CA):
        _key, csr = make_csr("www.other.example")
        ca.edit_config('[profiles.server]', '[profiles.server]\nallowed_domains = ["sample.com"]')
        ca.submit("server/www.csr", pem(csr))
        ca.process()
        assert ca.result("www")["status"] == "rejected"
        ca.submit("server/again.csr", pem(csr))  # the same CSR again: the same answer
        ca.process()
        again = ca.result("again")
        assert again["status"] == "rejected"
        assert [n["code"] for n in again["notes"]] == ["note.earlier_answer"], again
        assert "spoolca reconsider again" in again["notes"][0]["message"]
        ca.edit_config('allowed_domains = ["sample.com"]', 'allowed_domains = []')
        done = ca.run("reconsider", "www")
        assert done.returncode == 0, done.stderr
        ca.process()
        issued = [json.loads(p.read_text()) for p in ca.outgoing.glob("*/result.json")]
        assert [r["status"] for r in issued if r["request_sha256"] ==
                again["request_sha256"]].count("issued") == 1
        assert ca.result("www")["status"] == "issued"  # its own folder: the new answer
        shown = ca.run("audit", "show")
        assert "request.reconsidered" in shown.stdout, shown.stdout

    def test_an_issued_request_is_not_decided_twice(self, ca: CA):
        """Counter-case: only rejections; an issued request is renewed."""
        ca.submit("server/ok.csr", pem(make_csr("ok.sample.com")[1]))
        ca.process()
        done = ca.run("reconsider", "ok")
        assert done.returncode != 0 and "only a rejected request" in done.stderr
        assert done.stderr.count("\n") == 1
