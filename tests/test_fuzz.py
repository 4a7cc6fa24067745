"""Property-based fuzzing of every parser of untrusted bytes (invariant 9).

For every input, each parser gives a decision or a finding, never another exception.
The budget per property is SPOOLCA_FUZZ_EXAMPLES (default 150, so the suite stays
fast); `bench/fuzz_campaign.py` runs the same properties with a large budget. Inputs
that once crashed spoolca are kept in tests/vectors/ with the exact codes expected.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from spoolca.config import Config
from spoolca.errors import CSRError
from spoolca.findings import CODES, Finding
from spoolca.host.untrusted import UntrustedJSONError, json_depth, loads_bounded
from spoolca.process.revocations import parse_revocation_body
from spoolca.spool.tree import printable_name, safe_name
from spoolca.x509.csr import load_request
from spoolca.x509.names import domain_allowed, hostname_problem, is_email, parse_ip
from spoolca.x509.policy import Decision, evaluate
from tests.pki import make_csr, make_key, pem, subject

_JSON_VALUES = st.recursive(st.none() | st.booleans() | st.text(max_size=8),
                            lambda inner: st.lists(inner, max_size=4)
                            | st.dictionaries(st.text(max_size=5), inner, max_size=4),
                            max_leaves=30)
EXAMPLES = int(os.environ.get("SPOOLCA_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])
VECTORS = Path(__file__).parent / "vectors"
NOW = dt.datetime(2026, 11, 23, tzinfo=dt.UTC)


def _seeds() -> list[bytes]:
    """Valid requests of every shape the mutations start from."""
    usage = x509.KeyUsage(True, False, True, False, False, False, False, False, False)
    made = [make_csr("www.sample.com")[1],
            make_csr("r.sample.com", key=make_key("rsa-2048"),
                     extensions=[(usage, True)])[1],
            make_csr("e.sample.com", key=make_key("ed25519"),
                     sans=[x509.DNSName("e.sample.com"), x509.RFC822Name("a@sample.com"),
                           x509.UniformResourceIdentifier("https://sample.com/")])[1]]
    return [c.public_bytes(serialization.Encoding.DER) for c in made]


SEEDS = _seeds()


def judge(data: bytes, config: Config, issuer: x509.Certificate) -> list[str]:
    """What spoolca decides for these bytes as a server request: finding codes."""
    try:
        request = load_request(data)
    except CSRError as exc:
        assert exc.code in CODES
        return [exc.code]
    for profile in config.profiles.values():
        decision = evaluate(request, profile, config.policy, issuer, ca_subjects=[issuer.subject])
        assert isinstance(decision, Decision)
    decision = evaluate(request, config.profiles["server"], config.policy, issuer)
    assert all(isinstance(f, Finding) for f in decision.findings)
    return [f.code for f in decision.findings]


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid DER request with bytes flipped, inserted, deleted or cut off."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        action = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "length"]))
        at = draw(st.integers(0, len(data) - 1)) if data else 0
        if action == "flip" and data:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif action == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif action == "delete" and data:
            del data[at:at + draw(st.integers(1, 8))]
        elif action == "truncate":
            data = data[:at]
        elif action == "length" and data:
            data[at] = draw(st.sampled_from([0x00, 0x7F, 0x80, 0x81, 0x84, 0xFF]))
    return bytes(data)


class TestCSRLoader:
    @FUZZ
    @given(data=st.binary(max_size=4096))
    def test_random_bytes(self, data: bytes, config: Config, issuer: x509.Certificate):
        """Any bytes at all: a finding or a decision."""
        judge(data, config, issuer)

    @FUZZ
    @given(data=mutated())
    def test_mutated_der(self, data: bytes, config: Config, issuer: x509.Certificate):
        """Valid DER with a few bytes damaged: a finding or a decision."""
        judge(data, config, issuer)

    @FUZZ
    @given(data=mutated(), before=st.binary(max_size=64), after=st.binary(max_size=64),
           spaces=st.text(alphabet=" \t\r\n", max_size=40))
    def test_mutated_pem(self, data: bytes, before: bytes, after: bytes, spaces: str,
                         config: Config, issuer: x509.Certificate):
        """PEM armour around damaged DER, with junk and whitespace around and inside."""
        import base64

        body = base64.encodebytes(data).replace(b"\n", spaces.encode() or b"\n")
        text = (before + b"-----BEGIN CERTIFICATE REQUEST-----\n" + body +
                b"-----END CERTIFICATE REQUEST-----\n" + after)
        judge(text, config, issuer)

    @FUZZ
    @given(cut=st.integers(0, 10_000))
    def test_every_truncation_of_a_pem_file(self, cut: int, config: Config,
                                            issuer: x509.Certificate):
        """A file cut at any byte (a stick pulled mid-copy)."""
        data = pem(x509.load_der_x509_csr(SEEDS[1]))
        judge(data[: cut % (len(data) + 1)], config, issuer)

    @FUZZ
    @given(rdns=st.lists(st.lists(st.tuples(
        st.sampled_from(["2.5.4.3", "2.5.4.6", "2.5.4.10", "2.5.4.7", "1.2.840.113549.1.9.1"]),
        st.sampled_from([0x13, 0x14, 0x0C, 0x16, 0x1E, 0x01, 0x04, 0x30]),
        st.binary(max_size=24)), min_size=1, max_size=4), max_size=5))
    def test_lax_subjects_signed_as_sent(self, rdns: list, config: Config,
                                         issuer: x509.Certificate):
        """Any subject of string-ish attributes, properly signed (x509.laxcsr): a decision
        or a finding, and a request that loads has a valid signature over what was sent."""
        from spoolca.notation.der import sequence, tlv
        from tests.rawcsr import oid, raw_csr

        name = sequence(*(tlv(0x31, b"".join(sequence(oid(o), tlv(t, v)) for o, t, v in rdn))
                          for rdn in rdns))
        _key, data = raw_csr(name=name)
        judge(data, config, issuer)
        try:
            request = load_request(data)
        except CSRError:
            return
        assert request.signature_valid, (name.hex(), request.repairs)


class TestNames:
    @FUZZ
    @given(value=st.text(min_size=1, max_size=80),
           field=st.sampled_from([NameOID.COMMON_NAME, NameOID.ORGANIZATIONAL_UNIT_NAME,
                                  NameOID.LOCALITY_NAME, NameOID.EMAIL_ADDRESS]))
    def test_any_subject_value(self, value: str, field: x509.ObjectIdentifier, config: Config,
                               issuer: x509.Certificate):
        """Any Unicode in a subject attribute: a decision; unprintable ones refused."""
        try:
            name = subject("client.sample.com", extra=[(field, value)])
            csr = make_csr(None, name=name, sans=[])[1]
        except ValueError:
            assume(False)  # cryptography will not encode it; nobody can send it
        codes = judge(csr.public_bytes(serialization.Encoding.DER), config, issuer)
        if any(ord(c) < 0x20 for c in value):
            assert any(c.startswith("policy.") for c in codes)

    @FUZZ
    @given(text=st.text(max_size=300))
    def test_hostname_and_email_checks(self, text: str):
        """The DNS and e-mail checks take any text; what passes is plain ASCII."""
        problem = hostname_problem(text, allow_wildcards=True)
        if problem is None:
            assert text.isascii() and "\x00" not in text
        if is_email(text):
            assert text.isascii()
        domain_allowed(text, ("sample.com",))

    @FUZZ
    @given(text=st.one_of(st.text(max_size=60), st.ip_addresses().map(str),
                          st.text(alphabet="0123456789abcdefABCDEF.:%", max_size=45)))
    def test_ip_literals_are_what_ipaddress_says(self, text: str):
        """parse_ip skips ipaddress for text that cannot be a literal: never a different
        answer from asking ipaddress itself."""
        try:
            expected = ipaddress.ip_address(text)
        except ValueError:
            expected = None
        assert parse_ip(text) == expected

    @FUZZ
    @given(labels=st.lists(st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-",
                                   min_size=1, max_size=20), min_size=1, max_size=4))
    def test_a_labels(self, labels: list[str]):
        """`xn--` labels are decoded (IDNA2008); the check never raises."""
        hostname_problem(".".join(["xn--" + label for label in labels] + ["com"]),
                         allow_wildcards=False)


class TestRevocationBody:
    @FUZZ
    @given(data=st.binary(max_size=2048))
    def test_random_bytes(self, data: bytes):
        """Any bytes: findings or a (serial, reason, date)."""
        result = parse_revocation_body(data, lambda: NOW)
        assert isinstance(result, list | tuple)

    @FUZZ
    @given(body=st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
            st.sampled_from(["serial", "reason", "invalidity_date", "x"]) | st.text(max_size=5),
            inner, max_size=4), max_leaves=20))
    def test_any_json(self, body: object):
        """Any JSON document, deep or odd: findings or a request, never an exception."""
        data = json.dumps(body).encode()
        result = parse_revocation_body(data, lambda: NOW)
        if isinstance(result, tuple):
            assert isinstance(body, dict) and "serial" in body

    @FUZZ
    @given(depth=st.integers(0, 100_000))
    def test_depth_is_measured_without_recursion(self, depth: int):
        """json_depth is a linear scan: any depth is measured."""
        assert json_depth(b"[" * depth + b"]" * depth) == depth

    @FUZZ
    @given(data=st.one_of(
        st.binary(max_size=300),
        st.lists(st.sampled_from([b"[", b"]", b"{", b"}", b'"', b"\\", b"a", b",", b":"]),
                 max_size=200).map(b"".join),
        _JSON_VALUES.map(lambda v: json.dumps(v).encode())))
    def test_depth_agrees_with_a_byte_by_byte_scan(self, data: bytes):
        """The regular-expression version measures what the plain state machine does, on
        JSON, near-JSON and any bytes (unterminated strings, stray escapes)."""
        assert json_depth(data) == _depth_by_bytes(data)

    @FUZZ
    @given(value=_JSON_VALUES, limit=st.integers(0, 4))
    def test_bounded_loading_refuses_exactly_what_is_too_deep(self, value: object,
                                                              limit: int):
        """Counting brackets first (few brackets: not too deep) changes no answer."""
        data = json.dumps(value).encode()
        if _depth_by_bytes(data) > limit:
            with pytest.raises(UntrustedJSONError, match="nested deeper"):
                loads_bounded(data, max_bytes=1 << 20, max_depth=limit)
        else:
            assert loads_bounded(data, max_bytes=1 << 20, max_depth=limit) == value


def _depth_by_bytes(data: bytes) -> int:
    """The reference: one byte at a time, as json_depth was first written."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in data:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:
                escaped = True
            elif byte == 0x22:
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):
            depth -= 1
    return deepest


class TestFileNames:
    @FUZZ
    @given(raw=st.binary(min_size=1, max_size=255).filter(
        lambda b: b"/" not in b and b"\x00" not in b and b not in (b".", b"..")))
    def test_any_file_name(self, raw: bytes):
        """Any name a stick can hold renders printable, and NAME is a safe folder name."""
        name = os.fsdecode(raw)
        shown, problem = printable_name(name)
        shown.encode("utf-8")  # storable in SQLite and JSON
        assert all(ord(c) >= 0x20 and ord(c) != 0x7F for c in shown)
        if problem is None:
            assert shown == name
        safe = safe_name(name)
        assert safe and "/" not in safe and not safe.startswith(".") and safe.isascii()
        assert safe not in (".", "..") and len(safe) <= 100


class TestGoldenVectors:
    @pytest.mark.parametrize("vector", sorted(json.loads(
        (VECTORS / "expected.json").read_text())))
    def test_vector(self, vector: str, config: Config, issuer: x509.Certificate):
        """Each input that once crashed or misled spoolca gives exactly its codes."""
        expected = json.loads((VECTORS / "expected.json").read_text())[vector]
        data = (VECTORS / vector).read_bytes()
        if vector.startswith("revoke/"):
            found = [f.code for f in parse_revocation_body(data, lambda: NOW)]
        else:
            found = judge(data, config, issuer)
        assert found == expected


class TestSpoolNames:
    @settings(max_examples=max(3, EXAMPLES // 50), deadline=None, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(names=st.lists(st.binary(min_size=1, max_size=60).filter(
        lambda b: b"/" not in b and b"\x00" not in b and not b.startswith(b".")
        and not b.endswith((b".tmp", b".part", b".asc", b".sig"))),
        min_size=1, max_size=12, unique_by=lambda b: b.lower()))
    def test_every_file_under_any_name_is_answered(self, names: list[bytes], ca):
        """Files under arbitrary byte names, in one pass: each answered, each archived."""
        folder = os.fsencode(ca.incoming / "server")
        before = len(os.listdir(ca.archive))
        for raw in names:
            with open(folder + b"/" + raw, "wb") as handle:
                handle.write(pem(make_csr(None, name=subject("n"), sans=[])[1]))
        result = ca.run("process")
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr
        assert os.listdir(folder) == []
        assert len(os.listdir(ca.archive)) - before == len(names)


def _published() -> tuple[bytes, bytes]:
    """A CA certificate (PEM) and a CRL it signed (DER), as an export carries them."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Fuzz CA")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1).not_valid_before(NOW)
            .not_valid_after(NOW + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
            .sign(key, hashes.SHA256()))
    crl = (x509.CertificateRevocationListBuilder().issuer_name(name).last_update(NOW)
           .next_update(NOW + dt.timedelta(days=30)).add_extension(x509.CRLNumber(7), False)
           .sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM),
            crl.public_bytes(serialization.Encoding.DER))


class TestPublishedCRL:
    """verify-publication reads CRLs from a stick and from the web server's folder: any
    bytes there are refused or judged, never a crash (the manifest itself is parsed only
    once its signature verified)."""

    CA_PEM, CRL_DER = _published()

    def _check(self, tmp: Path, new: bytes, served: bytes) -> list[str]:
        import hashlib

        from spoolca.stick.publication import check_manifest

        for folder, files in (("crl", {"fuzz.crl": new}), ("ca", {"fuzz.pem": self.CA_PEM}),
                              ("served", {"fuzz.crl": served})):
            (tmp / folder).mkdir(exist_ok=True)
            for name, data in files.items():
                (tmp / folder / name).write_bytes(data)
        entry = {"authority": "fuzz", "file": "fuzz.crl", "issuer": "CN=Fuzz CA",
                 "issuer_file": "fuzz.pem",
                 "issuer_certificate_sha256": hashlib.sha256(self.CA_PEM).hexdigest(),
                 "number": 7, "this_update": "2026-11-23T00:00:00Z",
                 "next_update": "2026-12-23T00:00:00Z",
                 "sha256": hashlib.sha256(new).hexdigest(), "url": ""}
        checked = check_manifest(tmp, tmp / "served", NOW,
                                 {"crls": [entry], "crl_bundle_sha256": None})
        assert len(checked.good) + len(checked.refused) == 1
        return checked.refused

    @FUZZ
    @given(data=st.binary(max_size=2048), served=st.booleans())
    def test_random_bytes_as_the_new_or_the_served_crl(self, data: bytes, served: bool,
                                                        tmp_path: Path):
        tmp = tmp_path / os.urandom(4).hex()
        tmp.mkdir()
        if served:  # what is served is not a CRL: the genuine one replaces it
            assert self._check(tmp, self.CRL_DER, data) == []
        else:
            assert self._check(tmp, data, self.CRL_DER) or data == self.CRL_DER

    @FUZZ
    @given(cut=st.integers(0, 2000), flip=st.integers(0, 7))
    def test_every_damaged_crl_is_refused(self, cut: int, flip: int, tmp_path: Path):
        """Every flipped bit is refused, but one that changes no signed byte: the
        signature BIT STRING's unused-bits octet 0 -> 1, which the parser accepts when the
        signature's last bit is 0 (half the keys), leaving the same TBS and signature."""
        damaged = bytearray(self.CRL_DER)
        damaged[cut % len(damaged)] ^= 1 << flip
        tmp = tmp_path / os.urandom(4).hex()
        tmp.mkdir()
        if not self._check(tmp, bytes(damaged), b""):
            same, genuine = (x509.load_der_x509_crl(bytes(d)) for d in (damaged, self.CRL_DER))
            assert (same.tbs_certlist_bytes, same.signature) == \
                (genuine.tbs_certlist_bytes, genuine.signature)

    @pytest.mark.parametrize("vector", sorted(p.name for p in (VECTORS / "publication").glob(
        "*.der")))
    def test_golden_vector(self, vector: str, tmp_path: Path):
        refused = self._check(tmp_path, (VECTORS / "publication" / vector).read_bytes(), b"")
        assert refused and "not a readable CRL (InvalidVersion" in refused[0], refused
