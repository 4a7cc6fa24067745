"""One submission can never stop the CA (invariant 9): each input once seen to break it.

Every test puts the hostile file beside a good request in the same batch: the hostile one
gets its own answer, the good one its certificate, and `process` exits 0 with no
traceback. Each has the counter-case that must still be refused or accepted.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from spoolca.x509.csr import load_request
from tests.pki import CA, COMPANY, make_csr, make_key, openssl, pem, subject
from tests.rawcsr import extension, raw_csr


def codes(ca: CA, name: str) -> list[str]:
    return [r["code"] for r in ca.result(name).get("reasons", [])]


def process_beside_good(ca: CA, relative: str, data: bytes) -> None:
    """Submit `data` and a good server request in one batch; the good one must be issued."""
    ca.submit(relative, data)
    ca.submit("server/good.csr", pem(make_csr("good.sample.com")[1]))
    result = ca.process()
    assert "Traceback" not in result.stderr, result.stderr
    assert ca.result("good")["status"] == "issued"


def spki_of(der: bytes) -> bytes:
    return load_request(der).spki


class TestParserErrorsAreAnswers:
    def test_csr_version_1_is_refused_with_its_own_code(self, ca: CA):
        """Version 1 (openssl still parses it) raised InvalidVersion through the batch."""
        _key, der = raw_csr(name=subject("v1.sample.com"), version=1)
        process_beside_good(ca, "server/v1.der", der)
        assert codes(ca, "v1") == ["csr.version_invalid"]
        assert (ca.archive / "v1.der").read_bytes() == der

    def test_the_same_csr_with_version_0_is_issued(self, ca: CA):
        """Counter-case: the raw builder makes good requests when nothing is wrong."""
        _key, der = raw_csr(name=subject("v0.sample.com"),
                            extensions=[extension("2.5.29.17", x509.SubjectAlternativeName(
                                [x509.DNSName("v0.sample.com")]).public_bytes())])
        ca.submit("server/v0.der", der)
        ca.process()
        assert ca.result("v0")["status"] == "issued"

    def test_duplicated_extension_is_refused(self, ca: CA):
        """Two basicConstraints raised DuplicateExtension through the batch."""
        bc = x509.BasicConstraints(ca=False, path_length=None).public_bytes()
        _key, der = raw_csr(name=subject("dup.sample.com"),
                            extensions=[extension("2.5.29.19", bc, True)] * 2)
        process_beside_good(ca, "server/dup.der", der)
        assert codes(ca, "dup") == ["csr.extension_duplicated"]

    @pytest.mark.parametrize("tag", [0xA3, 0xA5], ids=["x400Address", "ediPartyName"])
    def test_x400_and_edi_party_names_are_refused(self, ca: CA, tag: int):
        """SAN kinds cryptography cannot represent raised UnsupportedGeneralNameType."""
        from spoolca.notation.der import sequence, tlv

        san = sequence(tlv(tag, sequence()))
        _key, der = raw_csr(name=subject("x4.sample.com"), extensions=[
            extension("2.5.29.17", san)])
        process_beside_good(ca, "server/x4.der", der)
        assert codes(ca, "x4") == ["policy.san.type_not_allowed"]

    def test_whitespace_flood_is_answered_in_milliseconds(self, ca: CA):
        """64 KiB of whitespace after BEGIN took 103 s in the PEM regex; now linear."""
        data = b"-----BEGIN CERTIFICATE REQUEST-----" + b" " * (64 * 1024 - 40)
        started = time.perf_counter()
        with pytest.raises(Exception) as caught:
            load_request(data)
        assert time.perf_counter() - started < 1.0
        assert caught.value.code == "csr.unparseable"
        process_beside_good(ca, "server/flood.csr", data)
        assert codes(ca, "flood") == ["csr.unparseable"]

    def test_pem_with_text_around_it_still_parses(self, ca: CA):
        """Counter-case: openssl req -text output (text before and after) is accepted."""
        data = b"Certificate Request:\n  junk\n" + pem(make_csr("t.sample.com")[1]) + b"tail\n"
        ca.submit("server/t.csr", data)
        ca.process()
        assert ca.result("t")["status"] == "issued"

    def test_non_utf8_file_name_is_refused_and_kept(self, ca: CA):
        """bad\\xff.csr raised UnicodeEncodeError in the register and aborted the batch."""
        raw = os.fsencode(ca.incoming / "server") + b"/bad\xff.csr"
        with open(raw, "wb") as handle:
            handle.write(pem(make_csr("bad.sample.com")[1]))
        ca.submit("server/good.csr", pem(make_csr("good.sample.com")[1]))
        result = ca.process()
        assert "Traceback" not in result.stderr
        assert ca.result("good")["status"] == "issued"
        body = ca.result("bad_xff")
        assert body["file"] == "bad\\xff.csr"
        assert [r["code"] for r in body["reasons"]] == ["file.name_invalid"]
        assert os.listdir(ca.incoming / "server") == []
        assert any(name.startswith("bad_xff") for name in os.listdir(ca.archive))


class TestTruthfulFindings:
    def test_valid_sha1_signature_is_weak_but_not_invalid(self, ca: CA, tmp_path):
        """A valid SHA-1 signature was also reported as csr.signature_invalid: false."""
        csr = tmp_path / "sha1.csr"
        openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout",
                str(tmp_path / "k"), "-sha1", "-subj",
                "/C=US/ST=New York/O=The Sample Company/CN=old.sample.com", "-out", str(csr))
        process_beside_good(ca, "server/sha1.csr", csr.read_bytes())
        assert codes(ca, "sha1") == ["csr.signature_hash_weak"]

    def test_a_corrupted_signature_is_still_invalid(self, ca: CA):
        """Counter-case: one flipped bit in the signature is csr.signature_invalid."""
        der = bytearray(make_csr("flip.sample.com")[1].public_bytes(serialization.Encoding.DER))
        der[-5] ^= 0x01
        process_beside_good(ca, "server/flip.der", bytes(der))
        assert codes(ca, "flip") == ["csr.signature_invalid"]


class TestIssuedKeyIsRequestedKey:
    @pytest.mark.parametrize("kind", ["ec-p256", "ec-p384", "rsa-2048", "ed25519"])
    def test_certificate_spki_is_byte_identical(self, ca: CA, kind: str):
        """Invariant 11, for each accepted key type, compared as bytes of both files."""
        csr = make_csr("k.sample.com", key=make_key(kind))[1]
        der = csr.public_bytes(serialization.Encoding.DER)
        ca.submit("server/k.der", der)
        ca.process()
        cert = x509.load_pem_x509_certificate((ca.outgoing / "k" / "cert.pem").read_bytes())
        from spoolca.notation.der import content, read_tlvs

        tbs = content(cert.tbs_certificate_bytes)
        _tag, start, end = read_tlvs(tbs)[6]  # [0] version, serial, sig, issuer, validity, subject
        assert tbs[start:end] == spki_of(der)

    def test_p521_spki_is_byte_identical(self, ca: CA):
        """P-521 too (made by openssl, as a requester would)."""
        csr = make_csr("k.sample.com", key=ec.generate_private_key(ec.SECP521R1()))[1]
        der = csr.public_bytes(serialization.Encoding.DER)
        ca.submit("server/k.der", der)
        ca.process()
        cert = x509.load_pem_x509_certificate((ca.outgoing / "k" / "cert.pem").read_bytes())
        assert cert.public_key().public_bytes(
            serialization.Encoding.DER,
            serialization.PublicFormat.SubjectPublicKeyInfo) == spki_of(der)

    def test_rsa_pss_restricted_key_is_refused(self, ca: CA, tmp_path):
        """An id-RSASSA-PSS key was issued as rsaEncryption with keyEncipherment."""
        key, csr = tmp_path / "pss.key", tmp_path / "pss.csr"
        openssl("genpkey", "-algorithm", "rsa-pss", "-pkeyopt", "rsa_keygen_bits:2048",
                "-out", str(key))
        openssl("req", "-new", "-key", str(key), "-subj",
                "/C=US/ST=New York/O=The Sample Company/CN=pss.sample.com", "-out", str(csr))
        process_beside_good(ca, "server/pss.csr", csr.read_bytes())
        assert codes(ca, "pss") == ["key.type_unsupported"]
        assert "RSASSA-PSS" in ca.result("pss")["reasons"][0]["message"]

    def test_explicit_curve_parameters_are_refused(self, ca: CA, tmp_path):
        """An explicit-parameters EC key would be re-encoded as a named curve: refused."""
        csr = tmp_path / "x.csr"
        openssl("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                "-pkeyopt", "ec_param_enc:explicit", "-nodes", "-keyout", str(tmp_path / "k"),
                "-subj", "/C=US/ST=New York/O=The Sample Company/CN=x.sample.com",
                "-out", str(csr))
        process_beside_good(ca, "server/x.csr", csr.read_bytes())
        assert codes(ca, "x") == ["key.type_unsupported"]


class TestRequestedUsage:
    def test_usage_within_the_profile_is_accepted_with_a_note(self, ca: CA):
        """certtool-style critical keyUsage + serverAuth on a server request: issued."""
        usage = x509.KeyUsage(True, False, False, False, False, False, False, False, False)
        extensions = [(usage, True),
                      (x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), False),
                      (x509.BasicConstraints(ca=False, path_length=None), True)]
        ca.submit("server/u.csr", pem(make_csr("u.sample.com", extensions=extensions)[1]))
        ca.process()
        body = ca.result("u")
        assert body["status"] == "issued"
        assert [n["code"] for n in body["notes"]] == ["note.extensions_overridden"]
        cert = x509.load_pem_x509_certificate((ca.outgoing / "u" / "cert.pem").read_bytes())
        assert cert.extensions.get_extension_for_class(x509.KeyUsage).value == usage

    @pytest.mark.parametrize(("value", "code"), [
        (x509.KeyUsage(True, False, False, False, False, True, False, False, False),
         "csr.extension.key_usage"),
        (x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CODE_SIGNING]),
         "csr.extension.extended_key_usage"),
        (x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE]),
         "csr.extension.extended_key_usage"),
        (x509.BasicConstraints(ca=True, path_length=None), "csr.extension.basic_constraints_ca"),
    ], ids=["keyCertSign", "codeSigning", "anyEKU", "CA:TRUE"])
    def test_asking_for_more_than_the_profile_grants_is_refused(self, ca: CA, value, code):
        """Counter-case: more than the server profile grants is refused, as before."""
        ca.submit("server/m.csr", pem(make_csr("m.sample.com", extensions=[(value, True)])[1]))
        ca.process()
        assert codes(ca, "m") == [code]

    def test_key_encipherment_on_an_ec_server_key_is_refused(self, ca: CA):
        """keyEncipherment is granted to RSA server keys only."""
        usage = x509.KeyUsage(True, False, True, False, False, False, False, False, False)
        ca.submit("server/e.csr", pem(make_csr("e.sample.com", extensions=[(usage, True)])[1]))
        ca.process()
        assert codes(ca, "e") == ["csr.extension.key_usage"]


class TestPolicyGaps:
    def test_ca_subject_compared_case_and_space_insensitively(self, ca: CA):
        """CN `sample  intermediate ca` is the intermediate's name to OpenSSL: refused."""
        name = x509.Name([*(x509.NameAttribute(o, v) for o, v in COMPANY),
                          x509.NameAttribute(NameOID.COMMON_NAME, "sample  intermediate ca")])
        ca.submit("client/s.csr", pem(make_csr(None, name=name, sans=[])[1]))
        ca.process()
        assert "policy.dn.same_as_ca" in codes(ca, "s")

    def test_a_similar_but_different_name_is_issued(self, ca: CA):
        """Counter-case: `sample intermediate ca 2` is another name."""
        name = x509.Name([*(x509.NameAttribute(o, v) for o, v in COMPANY),
                          x509.NameAttribute(NameOID.COMMON_NAME, "sample intermediate ca 2")])
        ca.submit("client/s.csr", pem(make_csr(None, name=name, sans=[])[1]))
        ca.process()
        assert ca.result("s")["status"] == "issued"

    @pytest.mark.parametrize("value", ["admin\x00.x", "admin\u202egpj.exe", "ad\nmin",
                                       "zero\u200bwidth"],
                             ids=["NUL", "RLO", "newline", "zero-width"])
    def test_unprintable_characters_are_refused_in_cn_and_ou(self, ca: CA, value: str):
        """Client CN/OU accepted NUL, U+202E and newline; `admin\\0.x` was issued."""
        for field, oid in (("commonName", NameOID.COMMON_NAME),
                           ("organizationalUnitName", NameOID.ORGANIZATIONAL_UNIT_NAME)):
            cn = value if oid == NameOID.COMMON_NAME else "plain"
            extra = [(NameOID.ORGANIZATIONAL_UNIT_NAME, value)] if field != "commonName" else []
            name = subject(cn, extra=extra)
            ca.submit(f"client/{field}.csr", pem(make_csr(None, name=name, sans=[])[1]))
        ca.process()
        assert "policy.dn.commonName_invalid" in codes(ca, "commonName")
        assert "policy.dn.organizationalUnitName_invalid" in codes(ca, "organizationalUnitName")

    def test_printable_unicode_is_accepted(self, ca: CA):
        """Counter-case: accented and non-Latin letters are printable: issued."""
        name = subject("Zoë Ñandú 山田", extra=[(NameOID.ORGANIZATIONAL_UNIT_NAME, "Réseau")])
        ca.submit("client/u.csr", pem(make_csr(None, name=name, sans=[])[1]))
        ca.process()
        assert ca.result("u")["status"] == "issued"

    def test_invalid_a_label_is_refused(self, ca: CA):
        """xn--zz.com is not a valid A-label (IDNA2008)."""
        ca.submit("server/z.csr", pem(make_csr("z.sample.com", sans=[
            x509.DNSName("z.sample.com"), x509.DNSName("xn--zz.com")])[1]))
        ca.process()
        assert codes(ca, "z") == ["policy.san.dns_invalid"]

    def test_valid_a_label_is_issued(self, ca: CA):
        """Counter-case: xn--bcher-kva.example (bücher) is a valid A-label."""
        ca.submit("server/b.csr", pem(make_csr("xn--bcher-kva.example")[1]))
        ca.process()
        assert ca.result("b")["status"] == "issued"

    def test_same_csr_under_two_profiles_in_one_batch(self, ca: CA):
        """The second submission got the first profile's certificate silently."""
        data = pem(make_csr("both.sample.com")[1])
        ca.submit("client/a-client.csr", data)
        ca.submit("server/b-server.csr", data)
        ca.process()
        assert ca.result("a-client")["status"] == "issued"
        assert ca.result("a-client")["profile"] == "client"
        assert codes(ca, "b-server") == ["request.profile_conflict"]
        assert not (ca.outgoing / "b-server" / "cert.pem").exists()

    def test_same_csr_under_two_profiles_across_batches(self, ca: CA):
        """Later too: one CSR, one decision."""
        data = pem(make_csr("both.sample.com")[1])
        ca.submit("client/first.csr", data)
        ca.process()
        ca.submit("server/second.csr", data)
        ca.process()
        assert codes(ca, "second") == ["request.profile_conflict"]

    def test_same_csr_same_profile_is_still_republished(self, ca: CA):
        """Counter-case: the same CSR in the same profile gets its result again."""
        data = pem(make_csr("again.sample.com")[1])
        ca.submit("server/one.csr", data)
        ca.submit("server/two.csr", data)
        ca.process()
        assert ca.result("one")["serial"] == ca.result("two")["serial"]


class TestRevocationRequestsAreBounded:
    def test_deep_json_is_refused_without_recursion(self):
        """50,000 nested brackets raised RecursionError in json.loads."""
        import datetime as dt

        from spoolca.process.revocations import parse_revocation_body

        found = parse_revocation_body(b"[" * 50_000, lambda: dt.datetime.now(dt.UTC))
        assert [f.code for f in found] == ["revoke.unparseable"]

    def test_the_documented_format_still_parses(self):
        """Counter-case: the README's example is a request."""
        import datetime as dt

        from spoolca.process.revocations import parse_revocation_body

        body = json.dumps({"serial": "0A1B", "reason": "keyCompromise",
                           "invalidity_date": "2026-01-02"}).encode()
        serial, reason, when = parse_revocation_body(body, lambda: dt.datetime.now(dt.UTC))
        assert (serial, reason, when.year) == ("0A1B", "keyCompromise", 2026)


class TestMove:
    """fsutil.move, which every claim and archive goes through: one atomic step that
    never replaces a file and never follows a link."""

    def test_never_over_an_existing_file(self, tmp_path: Path):
        from spoolca.host.fsutil import move

        (tmp_path / "a.csr").write_bytes(b"new")
        (tmp_path / "b.csr").write_bytes(b"already there")
        with pytest.raises(FileExistsError):
            move(tmp_path / "a.csr", tmp_path / "b.csr")
        assert (tmp_path / "a.csr").read_bytes() == b"new"
        assert (tmp_path / "b.csr").read_bytes() == b"already there"

    def test_a_dangling_link_in_the_way_counts_as_a_file(self, tmp_path: Path):
        from spoolca.host.fsutil import move

        (tmp_path / "a.csr").write_bytes(b"new")
        (tmp_path / "b.csr").symlink_to(tmp_path / "nowhere")
        with pytest.raises(FileExistsError):
            move(tmp_path / "a.csr", tmp_path / "b.csr")
        assert not (tmp_path / "nowhere").exists()

    def test_a_link_is_moved_as_itself(self, tmp_path: Path):
        from spoolca.host.fsutil import move

        (tmp_path / "secret").write_bytes(b"not ours to move")
        (tmp_path / "a.csr").symlink_to(tmp_path / "secret")
        move(tmp_path / "a.csr", tmp_path / "b.csr")
        assert (tmp_path / "b.csr").is_symlink()
        assert (tmp_path / "secret").read_bytes() == b"not ours to move"

    def test_a_vanished_source_is_file_not_found(self, tmp_path: Path):
        from spoolca.host.fsutil import move

        with pytest.raises(FileNotFoundError):
            move(tmp_path / "gone.csr", tmp_path / "b.csr")
        with pytest.raises(FileNotFoundError):  # the claim folder not made yet
            (tmp_path / "a.csr").write_bytes(b"x")
            move(tmp_path / "a.csr", tmp_path / "no-folder" / "a.csr")
