"""Policy as plain function calls: every rule with a passing case and the case that must fail."""

from __future__ import annotations

import dataclasses
import ipaddress
import warnings

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from spoolca.config import Config
from spoolca.notation.dn import parse_subject
from spoolca.x509.csr import load_request
from spoolca.x509.policy import Decision, evaluate
from tests.pki import ROOT_SUBJECT, key_pem, make_csr, make_key, openssl, pem, subject
from tests.weak import close_primes_key, roca_key


def decide(config: Config, issuer: x509.Certificate, csr: x509.CertificateSigningRequest,
           profile: str = "server", **changes: object) -> Decision:
    chosen = config.profiles[profile]
    if changes:
        chosen = dataclasses.replace(chosen, **changes)
    return evaluate(load_request(pem(csr)), chosen, config.policy, issuer,
                    ca_subjects=[parse_subject(ROOT_SUBJECT)])


def codes(decision: Decision) -> list[str]:
    return [f.code for f in decision.findings]


class TestDistinguishedName:
    def test_policy_match_passes(self, config, issuer):
        """C, ST and O equal to the CA's and a CN supplied: accepted."""
        assert decide(config, issuer, make_csr()[1]).accepted

    def test_every_dn_violation_is_reported(self, config, issuer):
        """Wrong C, missing ST, wrong O and no CN: four findings, not the first only."""
        name = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "GB"),
                          x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Other")])
        decision = decide(config, issuer, make_csr(None, name=name,
                                                   sans=[x509.DNSName("a.sample.com")])[1])
        assert codes(decision) == ["policy.dn.countryName_mismatch",
                                   "policy.dn.stateOrProvinceName_missing",
                                   "policy.dn.organizationName_mismatch",
                                   "policy.dn.commonName_missing"]

    def test_string_type_does_not_matter_for_match(self, config, issuer):
        """O as PrintableString in the CSR matches the CA's UTF8String (openssl's pitfall)."""
        name = x509.Name([
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "New York",
                               x509.name._ASN1Type.PrintableString),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "The Sample Company",
                               x509.name._ASN1Type.PrintableString),
            x509.NameAttribute(NameOID.COMMON_NAME, "www.sample.com"),
        ])
        assert decide(config, issuer, make_csr(name=name)[1]).accepted

    def test_common_name_length_limit(self, config, issuer):
        """commonName over 64 characters is refused (seed commonName_max)."""
        long_name = "a" * 60 + ".sample.com"
        with warnings.catch_warnings():  # cryptography warns while building it; we need it
            warnings.simplefilter("ignore")
            name = x509.Name([*subject(None).rdns, x509.RelativeDistinguishedName(
                [x509.NameAttribute(NameOID.COMMON_NAME, long_name, _validate=False)])])
        decision = decide(config, issuer, make_csr(name=name, sans=[x509.DNSName(long_name)])[1])
        assert codes(decision) == ["policy.dn.commonName_too_long"]

    def test_country_must_be_two_letters(self, config, issuer):
        """countryName 'USA' is invalid (exactly two letters)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            name = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "USA", _validate=False),
                              x509.NameAttribute(NameOID.COMMON_NAME, "www.sample.com")])
        assert "policy.dn.countryName_invalid" in codes(decide(config, issuer,
                                                               make_csr(name=name)[1]))

    def test_repeated_common_name_is_refused(self, config, issuer):
        """Two CNs are ambiguous; OU may repeat."""
        name = subject("a.sample.com", extra=[(NameOID.ORGANIZATIONAL_UNIT_NAME, "X"),
                                             (NameOID.ORGANIZATIONAL_UNIT_NAME, "Y"),
                                             (NameOID.COMMON_NAME, "b.sample.com")])
        assert codes(decide(config, issuer, make_csr(name=name,
                                                     sans=[x509.DNSName("a.sample.com")])[1])) \
            == ["policy.dn.commonName_repeated"]

    def test_unnamed_fields_are_dropped_and_email_moves_out(self, config, issuer):
        """localityName and emailAddress leave the issued subject (preserve=no, email_in_dn=no)."""
        name = subject("www.sample.com", extra=[(NameOID.LOCALITY_NAME, "Metropolis"),
                                               (NameOID.EMAIL_ADDRESS, "pm@sample.com")])
        decision = decide(config, issuer, make_csr(name=name)[1])
        assert decision.subject_line == \
            "/C=US/ST=New York/O=The Sample Company/CN=www.sample.com"

    def test_preserve_dn_keeps_them(self, config, issuer):
        """Counter-case: preserve_dn = true keeps localityName in request order."""
        name = subject("www.sample.com", extra=[(NameOID.LOCALITY_NAME, "Metropolis")])
        decision = decide(config, issuer, make_csr(name=name)[1], preserve_dn=True)
        assert "/L=Metropolis/" in decision.subject_line

    def test_subject_equal_to_a_ca_is_refused(self, config, issuer):
        """The seeds' rule: a certificate's CN cannot be a CA's."""
        decision = decide(config, issuer, make_csr("Sample Root CA", sans=[])[1], "client")
        assert "policy.dn.same_as_ca" in codes(decision)

    def test_duplicate_subject_uses_the_register(self, config, issuer):
        """unique_subject asks the register; a hit is a finding naming the serial."""
        request = load_request(pem(make_csr()[1]))
        decision = evaluate(request, config.profiles["server"], config.policy, issuer,
                            subject_in_use=lambda _s: "0ABC")
        assert codes(decision) == ["policy.subject.duplicate"]
        assert "0ABC" in decision.findings[0].message


class TestKeys:
    @pytest.mark.parametrize("kind", ["ec-p256", "ec-p384", "rsa-2048", "ed25519"])
    def test_accepted_key_types(self, config, issuer, kind):
        """RSA 2048, P-256, P-384 and Ed25519 are accepted."""
        assert decide(config, issuer, make_csr(key=make_key(kind))[1]).accepted

    @pytest.mark.parametrize("kind,code", [("rsa-1024", "key.rsa_too_small"),
                                           ("rsa-e3", "key.rsa_exponent"),
                                           ("ec-k256", "key.ec_curve_unsupported"),
                                           ("ed448", "key.type_unsupported")])
    def test_refused_key_types(self, config, issuer, kind, code):
        """Small RSA, exponent 3, secp256k1 and Ed448 are refused with their own codes."""
        assert code in codes(decide(config, issuer, make_csr(key=make_key(kind))[1]))

    def test_roca_key_is_refused(self, config, issuer):
        """A modulus with the ROCA fingerprint (CVE-2017-15361) is refused."""
        assert "key.rsa_roca" in codes(decide(config, issuer, make_csr(key=roca_key())[1]))

    def test_close_primes_are_refused(self, config, issuer):
        """A modulus Fermat's method factors at once is refused."""
        assert "key.rsa_fermat" in codes(decide(config, issuer,
                                                make_csr(key=close_primes_key())[1]))

    def test_a_normal_rsa_key_passes_both_weak_key_checks(self, config, issuer):
        """Counter-case: a key from the OS generator has neither flaw."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        decision = decide(config, issuer, make_csr(key=key)[1])
        assert not {"key.rsa_roca", "key.rsa_fermat"} & set(codes(decision))


class TestSignature:
    def test_sha224_is_refused(self, config, issuer):
        """A CSR signed with a hash below SHA-256 is refused."""
        decision = decide(config, issuer, make_csr(algorithm=hashes.SHA224())[1])
        assert codes(decision) == ["csr.signature_hash_weak"]

    @pytest.mark.parametrize("digest", ["-sha1", "-md5"])
    def test_sha1_and_md5_requests_from_openssl_are_refused(self, config, issuer, tmp_path,
                                                            digest):
        """openssl req -sha1 / -md5 (cryptography will not even make one): refused."""
        key = tmp_path / "k.pem"
        key.write_bytes(key_pem(make_key("rsa-2048")))
        result = openssl("req", "-new", digest, "-key", str(key), "-subj",
                         "/C=US/ST=New York/O=The Sample Company/CN=www.sample.com",
                         "-addext", "subjectAltName=DNS:www.sample.com", check=False)
        if result.returncode != 0:
            pytest.skip(f"this openssl refuses to sign with {digest}: {result.stderr[:80]}")
        request = load_request(result.stdout.encode())
        decision = evaluate(request, config.profiles["server"], config.policy, issuer)
        assert "csr.signature_hash_weak" in codes(decision)

    def test_tampered_request_fails_proof_of_possession(self, config, issuer):
        """A request whose signed bytes were altered has an invalid signature."""
        der = bytearray(make_csr("www.sample.com")[1].public_bytes(
            __import__("cryptography.hazmat.primitives.serialization",
                       fromlist=["Encoding"]).Encoding.DER))
        index = der.find(b"www.sample.com")
        der[index] = ord("v")  # still a valid CSR, now for vww.sample.com
        request = load_request(bytes(der))
        decision = evaluate(request, config.profiles["server"], config.policy, issuer)
        assert "csr.signature_invalid" in codes(decision)


class TestExtensions:
    @pytest.mark.parametrize("extension,code", [
        (x509.BasicConstraints(ca=True, path_length=None), "csr.extension.basic_constraints_ca"),
        (x509.KeyUsage(True, False, False, False, False, True, True, False, False),
         "csr.extension.key_usage"),
        (x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.CODE_SIGNING]),
         "csr.extension.extended_key_usage"),
        (x509.NameConstraints([x509.DNSName("sample.com")], None),
         "csr.extension.name_constraints"),
    ])
    def test_ca_managed_extensions_are_refused_on_leaf_profiles(self, config, issuer, extension,
                                                                code):
        """The CSR never decides CA-managed extensions: each is its own finding."""
        critical = isinstance(extension, x509.BasicConstraints | x509.NameConstraints)
        decision = decide(config, issuer, make_csr(extensions=[(extension, critical)])[1])
        assert codes(decision) == [code]

    def test_seed_v3_req_extensions_are_harmless(self, config, issuer):
        """The seeds' v3_req (CA:FALSE, SKI) is accepted and ignored."""
        key = make_key()
        extensions = [(x509.BasicConstraints(ca=False, path_length=None), False),
                      (x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)]
        assert decide(config, issuer, make_csr(key=key, extensions=extensions)[1]).accepted

    def test_unknown_critical_extension_is_refused(self, config, issuer):
        """A critical extension we do not understand is refused, a non-critical one ignored."""
        oid = x509.ObjectIdentifier("1.3.6.1.4.1.99999.1")
        unknown = x509.UnrecognizedExtension(oid, b"\x05\x00")
        assert codes(decide(config, issuer, make_csr(extensions=[(unknown, True)])[1])) == \
            ["csr.extension.unsupported_critical"]
        assert decide(config, issuer, make_csr(extensions=[(unknown, False)])[1]).accepted

    def test_subca_may_ask_to_be_a_ca(self, config, issuer):
        """Counter-case: basicConstraints CA:TRUE is what a subca request is for."""
        extension = (x509.BasicConstraints(ca=True, path_length=0), True)
        assert decide(config, issuer, make_csr("Team CA", sans=[], extensions=[extension])[1],
                      "subca").accepted


class TestNames:
    def test_server_needs_a_name(self, config, issuer):
        """A server request with a non-hostname CN and no SAN names nothing certifiable."""
        decision = decide(config, issuer, make_csr("My Server", sans=[])[1])
        assert codes(decision) == ["policy.cn.not_a_hostname", "policy.san.missing"]

    @pytest.mark.parametrize("name", ["localhost", "-bad.sample.com", "a..sample.com",
                                      "bücher.sample.com", "under_score.sample.com"])
    def test_invalid_hostnames(self, config, issuer, name):
        """Single labels, leading hyphens, empty labels, U-labels, underscores: invalid."""
        general = x509.DNSName._init_without_validation(name)
        decision = decide(config, issuer, make_csr("www.sample.com", sans=[general])[1])
        assert "policy.san.dns_invalid" in codes(decision)

    def test_allowed_domains_admit_subdomains_only(self, config, issuer):
        """allowed_domains = [sample.com]: api.sample.com passes, sample.org does not."""
        csr = make_csr("api.sample.com", sans=[x509.DNSName("api.sample.com"),
                                               x509.DNSName("www.sample.org")])[1]
        decision = decide(config, issuer, csr, allowed_domains=("sample.com",))
        assert codes(decision) == ["policy.san.dns_not_allowed"]
        assert "www.sample.org" in decision.findings[0].message

    def test_wildcards_only_when_allowed(self, config, issuer):
        """*.sample.com is refused by default and accepted with allow_wildcards."""
        csr = make_csr("www.sample.com", sans=[x509.DNSName("*.sample.com")])[1]
        assert codes(decide(config, issuer, csr)) == ["policy.san.wildcard_not_allowed"]
        assert decide(config, issuer, csr, allow_wildcards=True).accepted

    def test_ip_addresses_only_when_allowed(self, config, issuer):
        """An IP SAN is refused by default and issued with allow_ip."""
        csr = make_csr("www.sample.com", sans=[x509.DNSName("www.sample.com"),
                                               x509.IPAddress(ipaddress.ip_address("10.1.2.3"))])[1]
        assert codes(decide(config, issuer, csr)) == ["policy.san.ip_not_allowed"]
        decision = decide(config, issuer, csr, allow_ip=True)
        assert x509.IPAddress(ipaddress.ip_address("10.1.2.3")) in decision.names

    def test_server_profile_does_not_issue_email_names(self, config, issuer):
        """An rfc822Name on a server request is refused."""
        csr = make_csr("www.sample.com", sans=[x509.DNSName("www.sample.com"),
                                               x509.RFC822Name("a@sample.com")])[1]
        assert codes(decide(config, issuer, csr)) == ["policy.san.type_not_allowed"]

    def test_client_takes_a_name_or_an_email(self, config, issuer):
        """client: 'Alice Example' is fine; a malformed e-mail CN is refused."""
        assert decide(config, issuer, make_csr("Alice Example", sans=[])[1], "client").accepted
        bad = decide(config, issuer, make_csr("alice@@sample", sans=[])[1], "client")
        assert codes(bad) == ["policy.cn.invalid_email"]
