"""Profiles are data (issue 28): the shipped certificate types, a profile's own keys over
them, the checks that refuse a type that cannot be right, and the built-in types proven
to issue the same extensions, byte for byte, as when they were code."""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from cryptography import x509

from spoolca.config import load_config
from spoolca.config.certtypes import CommonName, NameForm, shipped_types, type_problems
from spoolca.config.text import render_config
from spoolca.errors import ConfigError
from spoolca.x509.profiles import leaf_extensions
from tests.pki import CA, copy_ca, key_pem, make_csr, make_key, pem, subject
from tests.vectors.profiles.make_profiles import KINDS, cases, expected, keys, the_issuer

pytestmark = pytest.mark.filterwarnings("error")


@pytest.mark.parametrize("kind", KINDS)
def test_the_built_in_types_issue_the_extensions_they_did_as_code(kind: str):
    assert cases(kind) == expected(kind)


def test_a_changed_bit_changes_the_bytes():
    """The counter-case of the golden test: the comparison sees one keyUsage bit."""
    without = replace(shipped_types()["server"], rsa_key_usage=())
    assert cases("server", without) != expected("server")


# ---- Configuration: a profile's own keys over its type, and types that cannot be right.

def _config_with(tmp_path: Path, profiles: str) -> Path:
    path = tmp_path / "spoolca.toml"
    path.write_text(render_config() + profiles)
    return path


def test_a_profile_overrides_its_type(tmp_path: Path):
    config = load_config(_config_with(tmp_path, '''
[profiles.sensor]
kind = "device"
validity_days = 3650
extended_key_usage = ["clientAuth", "1.3.6.1.4.1.99999.1"]
name_forms = ["uri"]
certificate_policies = [{ oid = "1.3.6.1.4.1.99999.2.1", cps = "http://pki.sample.com/cps" }]
'''))
    usage = config.profiles["sensor"].usage
    assert usage.name == "device" and config.profiles["sensor"].validity_days == 3650
    assert usage.extended_key_usage == ("1.3.6.1.5.5.7.3.2", "1.3.6.1.4.1.99999.1")
    assert usage.name_forms == {NameForm.URI} and usage.common_name == CommonName.TEXT
    assert usage.policies[0].cps == "http://pki.sample.com/cps"


def test_types_that_cannot_be_right_are_refused_all_at_once(tmp_path: Path):
    path = _config_with(tmp_path, '''
[profiles.bad-ca]
kind = "subca"
key_usage = ["cRLSign"]
[profiles.bad-leaf]
kind = "server"
key_usage = ["digitalSignature", "keyCertSign"]
[profiles.bad-eku]
kind = "codesigning"
key_usage = ["keyAgreement"]
[profiles.bad-tsa]
kind = "timestamping"
extended_key_usage = ["timeStamping", "serverAuth"]
[profiles.bad-names]
kind = "smime"
name_forms = ["dns"]
[profiles.bad-words]
kind = "client"
extended_key_usage = ["anyExtendedKeyUsage", "walking"]
ocsp_no_check = true
''')
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    said = "\n".join(refused.value.problems)
    for sentence in ("profiles.bad-ca.key_usage: a CA type must have keyCertSign",
                     "profiles.bad-leaf.key_usage: keyCertSign and cRLSign are for CA types",
                     "profiles.bad-eku.extended_key_usage: codeSigning contradicts key_usage",
                     "profiles.bad-tsa.extended_key_usage: timeStamping must be the only",
                     "profiles.bad-names.required_forms: must be among name_forms",
                     "profiles.bad-names.common_name: \"email\" needs email",
                     "profiles.bad-words.extended_key_usage: 'anyExtendedKeyUsage' is neither",
                     "profiles.bad-words.extended_key_usage: 'walking' is neither",
                     "profiles.bad-words.ocsp_no_check: only for an OCSPSigning type"):
        assert sentence in said, said


def test_every_shipped_type_is_right_by_the_same_checks():
    assert {name: type_problems(kind, f"{name}.") for name, kind in shipped_types().items()
            } == {name: [] for name in shipped_types()}


# ---- The shipped types, each judged by the program that relies on it.

PROFILES = '''
[profiles.mail]
kind = "smime"
[profiles.signing]
kind = "codesigning"
[profiles.responder]
kind = "ocsp"
[profiles.tsa]
kind = "timestamping"
[profiles.device]
kind = "device"
'''


def run(*command: str, cwd: Path, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=60,
                          input=stdin.decode() if stdin else None)


def device_csr(serial: str | None, key=None, sans=()) -> bytes:
    """A device's request: the company's subject, "Sensor SERIAL", and its serialNumber."""
    name = list(subject(f"Sensor {serial}"))
    if serial is not None:
        name.append(x509.NameAttribute(x509.NameOID.SERIAL_NUMBER, serial))
    return pem(make_csr(None, key=key, name=x509.Name(name), sans=list(sans))[1])


@dataclass
class Issued:
    cert: Path
    key: Path


@pytest.fixture(scope="module")
def shop(_ca_template: Path, tmp_path_factory: pytest.TempPathFactory
         ) -> tuple[CA, dict[str, Issued], Path]:
    """One CA with a profile of each type, and a certificate of each, issued in one pass:
    (the CA, the certificates by name, a work folder)."""
    ca = copy_ca(_ca_template, tmp_path_factory.mktemp("types") / "ca")
    ca.config.write_text(ca.config.read_text() + PROFILES)
    work = ca.dir.parent
    asked = {"mail": ("alice@sample.com", [x509.RFC822Name("alice@sample.com")]),
             "signing": ("Sample Release Signing", []),
             "responder": ("Sample OCSP Responder", []),
             "tsa": ("Sample Time Stamping", []),
             "server": ("www.sample.com", None)}
    made = {}
    for profile, (cn, sans) in asked.items():
        key, csr = make_csr(cn, sans=sans)
        ca.submit(f"{profile}/{profile}.csr", pem(csr))
        (work / f"{profile}.key").write_bytes(key_pem(key))
        made[profile] = Issued(ca.outgoing / profile / "cert.pem", work / f"{profile}.key")
    key = make_key()
    ca.submit("device/device.csr", device_csr("0001", key, [x509.UniformResourceIdentifier(
        "https://devices.sample.com/0001")]))
    (work / "device.key").write_bytes(key_pem(key))
    made["device"] = Issued(ca.outgoing / "device" / "cert.pem", work / "device.key")
    ca.process()
    for name in made:
        assert ca.result(name)["status"] == "issued", ca.result(name)
    return ca, made, work


def _chain(ca: CA) -> str:
    return str(ca.outgoing / "ca" / "ca-chain.pem")


def test_smime_signs_mail_that_openssl_cms_verifies(shop):
    ca, made, work = shop
    (work / "message.txt").write_text("Meet at noon.\n")
    for name, verifies in (("mail", True), ("server", False)):  # a TLS certificate: refused
        signed = run("openssl", "cms", "-sign", "-in", "message.txt", "-signer",
                     str(made[name].cert), "-inkey", str(made[name].key), "-out",
                     f"{name}.p7m", cwd=work)
        assert signed.returncode == 0, signed.stderr
        verified = run("openssl", "cms", "-verify", "-in", f"{name}.p7m", "-CAfile", _chain(ca),
                       "-purpose", "smimesign", "-out", "/dev/null", cwd=work)
        assert (verified.returncode == 0) is verifies, verified.stderr
        if not verifies:
            assert "unsuitable certificate purpose" in verified.stderr


def _windows_program() -> Path:
    """A real PE executable to sign: the launcher pip vendors (distlib's t64.exe), present
    wherever pip is, so the test needs no Windows tool chain."""
    import pip

    return Path(pip.__file__).parent / "_vendor" / "distlib" / "t64.exe"


@pytest.mark.skipif(shutil.which("osslsigncode") is None,
                    reason="osslsigncode: .ci/run installs it")
def test_code_signing_signs_what_osslsigncode_verifies(shop):
    """Authenticode on a real PE (osslsigncode 2.5, Debian 12's, signs only PE/CAB/MSI)."""
    ca, made, work = shop
    for name, verifies in (("signing", True), ("server", False)):
        signed = run("osslsigncode", "sign", "-certs", str(made[name].cert), "-key",
                     str(made[name].key), "-in", str(_windows_program()), "-out",
                     f"{name}-signed.exe", cwd=work)
        assert signed.returncode == 0, signed.stdout + signed.stderr
        verified = run("osslsigncode", "verify", "-in", f"{name}-signed.exe", "-CAfile",
                       _chain(ca), cwd=work)
        assert (verified.returncode == 0) is verifies, verified.stdout + verified.stderr
    tls = run("openssl", "verify", "-purpose", "sslserver", "-CAfile", _chain(ca),
              str(made["signing"].cert), cwd=work)  # and the reverse: not a TLS server
    assert tls.returncode != 0 and "unsuitable certificate purpose" in tls.stdout + tls.stderr


def test_a_delegated_ocsp_responder_answers_what_openssl_ocsp_trusts(shop):
    ca, made, work = shop
    index = ca.run("export-index", "--authority", "intermediate", "--no-updatedb")
    assert index.returncode == 0, index.stderr
    (work / "index.txt").write_text(index.stdout)
    issuer = str(ca.outgoing / "ca" / "intermediate.pem")
    asked = run("openssl", "ocsp", "-issuer", issuer, "-cert", str(made["server"].cert),
                "-reqout", "request.der", "-no_nonce", cwd=work)
    assert asked.returncode == 0, asked.stderr
    for name, trusted in (("responder", True), ("server", False)):
        answered = run("openssl", "ocsp", "-index", "index.txt", "-CA", issuer, "-rsigner",
                       str(made[name].cert), "-rkey", str(made[name].key), "-reqin",
                       "request.der", "-respout", f"{name}.der", cwd=work)
        assert answered.returncode == 0, answered.stderr
        checked = run("openssl", "ocsp", "-respin", f"{name}.der", "-issuer", issuer, "-cert",
                      str(made["server"].cert), "-CAfile", _chain(ca), "-no_nonce", cwd=work)
        said = checked.stdout + checked.stderr
        assert ("Response verify OK" in said and ": good" in said) is trusted, said
    noted = x509.load_pem_x509_certificate(made["responder"].cert.read_bytes())
    assert noted.extensions.get_extension_for_class(x509.OCSPNoCheck)


TSA_CNF = """\
[ tsa ]
default_tsa = tsa_config
[ tsa_config ]
serial = {work}/tsaserial
crypto_device = builtin
default_policy = 1.3.6.1.4.1.99999.3.1
digests = sha256
signer_digest = sha256
accuracy = secs:1
ess_cert_id_alg = sha256
"""


def test_time_stamping_stamps_what_openssl_ts_verifies(shop):
    ca, made, work = shop
    (work / "tsa.cnf").write_text(TSA_CNF.format(work=work))
    (work / "tsaserial").write_text("01\n")
    (work / "contract.txt").write_text("signed on the day\n")
    assert run("openssl", "ts", "-query", "-data", "contract.txt", "-sha256", "-cert", "-out",
               "query.tsq", cwd=work).returncode == 0
    stamping = x509.load_pem_x509_certificate(made["tsa"].cert.read_bytes())
    assert stamping.extensions.get_extension_for_class(x509.ExtendedKeyUsage).critical
    for name, stamps in (("tsa", True), ("signing", False)):
        replied = run("openssl", "ts", "-reply", "-config", "tsa.cnf", "-queryfile",
                      "query.tsq", "-signer", str(made[name].cert), "-inkey",
                      str(made[name].key), "-out", f"{name}.tsr", cwd=work)
        if not stamps:  # OpenSSL refuses a signer without the critical timeStamping EKU
            assert replied.returncode != 0 and "invalid signer certificate purpose" in \
                replied.stderr, replied.stderr
            continue
        assert replied.returncode == 0, replied.stderr
        verified = run("openssl", "ts", "-verify", "-data", "contract.txt", "-in",
                       f"{name}.tsr", "-CAfile", _chain(ca), cwd=work)
        assert "Verification: OK" in verified.stdout, verified.stdout + verified.stderr


@pytest.mark.skipif(shutil.which("pki") is None, reason="strongSwan's pki (Debian "
                    "strongswan-pki, which .ci/run installs) is not installed")
def test_strongswan_verifies_an_ipsec_peer_and_refuses_a_revoked_one(ca: CA):
    """strongSwan's own X.509 and CRL parsers judge an IPsec peer certificate: `pki
    --verify` with the chain and our CRL accepts it; the counter-case, a peer revoked
    and on the CRL, is refused."""
    ca.config.write_text(ca.config.read_text() + '[profiles.vpn]\nkind = "ipsec"\n')
    for name in ("gw1", "gw2"):
        ca.submit(f"vpn/{name}.csr", pem(make_csr(f"{name}.sample.com")[1]))
    ca.process()
    serials = {name: ca.result(name)["serial"] for name in ("gw1", "gw2")}
    assert ca.run("revoke", serials["gw2"], "--reason", "keyCompromise").returncode == 0
    issued = x509.load_pem_x509_certificate((ca.outgoing / "gw1" / "cert.pem").read_bytes())
    purposes = issued.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert x509.ObjectIdentifier("1.3.6.1.5.5.7.3.17") in purposes  # id-kp-ipsecIKE
    chain = ("--cacert", str(ca.outgoing / "ca" / "root.pem"),
             "--cacert", str(ca.outgoing / "ca" / "intermediate.pem"),
             "--crl", str(ca.outgoing / "crl" / "intermediate.crl"))
    good = run("pki", "--verify", "--in", str(ca.outgoing / "gw1" / "cert.pem"), *chain,
               cwd=ca.dir)
    assert good.returncode == 0 and "certificate trusted" in good.stdout, good.stdout
    assert "certificate status is good" in good.stderr, good.stderr  # the CRL was read
    revoked = run("pki", "--verify", "--in", str(ca.outgoing / "gw2" / "cert.pem"), *chain,
                  cwd=ca.dir)
    assert revoked.returncode != 0 and "certificate untrusted" in revoked.stdout
    assert "certificate was revoked" in revoked.stderr, revoked.stderr


def test_a_device_identity_carries_its_uri_serial_number_and_a_long_life(shop):
    ca, made, work = shop
    device = x509.load_pem_x509_certificate(made["device"].cert.read_bytes())
    serial = device.subject.get_attributes_for_oid(x509.NameOID.SERIAL_NUMBER)
    assert [a.value for a in serial] == ["0001"]
    names = device.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.UniformResourceIdentifier) == ["https://devices.sample.com/0001"]
    life = device.not_valid_after_utc - device.not_valid_before_utc
    chain_end = x509.load_pem_x509_certificate(
        (ca.outgoing / "ca" / "intermediate.pem").read_bytes()).not_valid_after_utc
    assert life.days > 1000 or device.not_valid_after_utc == chain_end
    client = run("openssl", "verify", "-purpose", "sslclient", "-CAfile", _chain(ca),
                 str(made["device"].cert), cwd=work)
    assert client.returncode == 0, client.stdout + client.stderr


def test_a_request_a_type_cannot_carry_is_refused_with_its_reason(ca: CA):
    """An S/MIME request naming a DNS name, and one with no mailbox at all."""
    ca.config.write_text(ca.config.read_text() + PROFILES)
    ca.submit("mail/dns.csr", pem(make_csr("alice@sample.com", sans=[
        x509.RFC822Name("alice@sample.com"), x509.DNSName("www.sample.com")])[1]))
    ca.submit("mail/nobody.csr", pem(make_csr("Alice", sans=[])[1]))
    ca.process()
    codes = {name: [r["code"] for r in ca.result(name)["reasons"]] for name in ("dns", "nobody")}
    assert codes == {"dns": ["policy.san.type_not_allowed"], "nobody": ["policy.san.missing"]}
    assert "at least one e-mail address" in ca.result("nobody")["reasons"][0]["message"]


def test_a_device_without_its_serial_number_is_refused(ca: CA):
    """The device type requires serialNumber in the subject; a profile may not make it
    optional, and may drop the requirement by saying so (subject_requires = [])."""
    ca.config.write_text(ca.config.read_text() + PROFILES +
                         '[profiles.lab]\nkind = "device"\nsubject_requires = []\n')
    ca.submit("device/nameless.csr", device_csr(None))
    ca.submit("lab/bench.csr", device_csr(None))
    ca.process()
    reasons = ca.result("nameless")["reasons"]
    assert ca.result("nameless")["status"] == "rejected" and "serialNumber" in str(reasons)
    assert ca.result("bench")["status"] == "issued", ca.result("bench")
    path = _config_with(ca.dir.parent, '[profiles.loose]\nkind = "device"\n'
                        '[profiles.loose.dn]\nserialNumber = "optional"\ncommonName = "supplied"\n')
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    assert "profiles.loose.dn.serialNumber: the type requires it" in str(refused.value.problems)


def test_a_profile_naming_its_key_types_takes_only_those(ca: CA):
    ca.config.write_text(ca.config.read_text() + '\n[profiles.line7]\nkind = "device"\n'
                         'key_types = ["ec-p384"]\n')
    ca.submit("line7/p384.csr", device_csr("1", make_key("ec-p384")))
    ca.submit("line7/p256.csr", device_csr("2", make_key("ec-p256")))
    ca.process()
    assert ca.result("p384")["status"] == "issued", ca.result("p384")
    assert [r["code"] for r in ca.result("p256")["reasons"]] == ["key.type_not_in_profile"]


def test_a_ca_profile_s_own_key_usage_is_what_its_certificate_carries():
    """key_usage is data for CA types too (an OCSP-signing CA adds digitalSignature); the
    counter-case: the shipped subca's stays keyCertSign and cRLSign only."""
    issuer = the_issuer()
    subca = shipped_types()["subca"]
    signing = replace(subca, key_usage=("keyCertSign", "cRLSign", "digitalSignature"))
    public = keys()["ec-p256"].public_key()  # type: ignore[attr-defined]
    for usage, digital_signature in ((signing, True), (subca, False)):
        carried = dict((type(v), v) for v, _critical in
                       leaf_extensions(usage, public, [], issuer))[x509.KeyUsage]
        assert carried.key_cert_sign and carried.crl_sign
        assert carried.digital_signature is digital_signature


# ---- Profiles checked before they are used, and linted by the rules they claim.

BR_MAIL = '''
[profiles.br-mail]
kind = "smime"
validity_days = 730
allowed_domains = ["sample.com"]
certificate_policies = [{ oid = "2.23.140.1.5.1.3" }]   # CA/B S/MIME mailbox, strict
[profiles.br-mail.dn]
commonName = "supplied"    # a mailbox-validated subject names the mailbox only
emailAddress = "optional"
[profiles.br-mail-long]
kind = "smime"
allowed_domains = ["sample.com"]
certificate_policies = [{ oid = "2.23.140.1.5.1.3" }]   # the type's 825 days: the maximum
[profiles.br-mail-long.dn]
commonName = "supplied"
[profiles.br-mail-company]
kind = "smime"
validity_days = 730
allowed_domains = ["sample.com"]
certificate_policies = [{ oid = "2.23.140.1.5.1.3" }]   # and [policy.dn]'s company names
'''


def _with_urls(ca: CA) -> None:
    """The intermediate's CRL and certificate URLs, which the CA/B rules require."""
    text = ca.config.read_text()
    urls = 'crl_url = "http://pki.sample.com/intermediate.crl"\n' \
           'issuer_url = "http://pki.sample.com/intermediate.crt"'
    assert text.count('crl_url = ""\nissuer_url = ""') == 1, "the intermediate's URL lines"
    ca.config.write_text(text.replace('crl_url = ""\nissuer_url = ""', urls))


def test_check_profiles_passes_the_shipped_types_and_names_each_rulebook(ca: CA):
    ca.config.write_text(ca.config.read_text() + PROFILES)
    _with_urls(ca)
    checked = ca.run("policy", "check-profiles")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    lines = checked.stdout.splitlines()
    for name in ("server", "client", "subca", "mail", "signing", "responder", "tsa", "device"):
        assert any(line.startswith(f"{name}: ok (") and line.endswith("; linted as pkix)")
                   for line in lines), checked.stdout


def test_check_profiles_finds_what_only_the_issuing_ca_can_tell(ca: CA):
    """The counter-case: a life the CA does not have, and a profile claiming the CA/B
    S/MIME rules it breaks (no CRL or issuer URL, validity at the maximum), every problem
    at once, exit 1; nothing is issued or recorded."""
    ca.config.write_text(ca.config.read_text() + BR_MAIL +
                         '[profiles.forever]\nkind = "device"\nvalidity_days = 40000\n')
    checked = ca.run("policy", "check-profiles")
    assert checked.returncode == 1, checked.stdout + checked.stderr
    said = checked.stdout
    assert "profiles.forever.validity_days: 40000 days, longer than intermediate's whole " \
        "life" in said
    for code in ("cabf.smime.crldp_extension_missing", "cabf.aia_extension_missing"):
        assert f"profiles.br-mail.specimen (ec-p256 key): lint.warning: pkilint {code}" in said
    assert "cabf.smime.certificate_validity_period_at_maximum" in said
    assert said.count("certificate_validity_period_at_maximum") == 1  # br-mail-long only
    assert "profiles.br-mail-company.specimen (ec-p256 key): lint.error: pkilint " \
        "cabf.smime.prohibited_attribute" in said  # a mailbox subject names no company
    assert checked.stderr == ""


def test_a_certificate_claiming_the_cabf_smime_rules_is_linted_by_them(ca: CA):
    """Pre-issuance lint picks pkilint's CA/B S/MIME validators by the profile's policy
    OID: a certificate that breaks them is refused with their finding, one that keeps
    them is issued, and pkilint's own S/MIME command finds nothing in it."""
    ca.config.write_text(ca.config.read_text() + BR_MAIL)
    _with_urls(ca)
    for profile, name in (("br-mail", "alice"), ("br-mail-long", "bob"),
                          ("br-mail-company", "carol")):
        ca.submit(f"{profile}/{name}.csr", pem(make_csr(
            f"{name}@sample.com", sans=[x509.RFC822Name(f"{name}@sample.com")],
            company=profile == "br-mail-company")[1]))
    ca.process()
    assert ca.result("alice")["status"] == "issued", ca.result("alice")
    for name, code in (("bob", "cabf.smime.certificate_validity_period_at_maximum"),
                       ("carol", "cabf.smime.prohibited_attribute")):
        reasons = ca.result(name)["reasons"]
        assert ca.result(name)["status"] == "rejected"
        assert any(code in r["message"] for r in reasons), reasons
    linted = run(str(Path(sys.executable).parent / "lint_cabf_smime_cert"), "lint", "-d",
                 "-s", "WARNING", "--document-format", "PEM",
                 str(ca.outgoing / "alice" / "cert.pem"), cwd=ca.dir)
    assert linted.returncode == 0 and linted.stdout.strip() == "", linted.stdout + linted.stderr


def test_check_profiles_notes_a_crl_life_beyond_the_cabf_bounds(ca: CA):
    """A profile claiming the CA/B TLS rules under a CA whose CRLs live 30 days (the BRs
    allow 10), and a root whose CRLs live 400 days (12 months): each a note, exit 0; the
    counter-case, 7 + 3 days, no note."""
    _with_urls(ca)
    ca.config.write_text(ca.config.read_text() + '''
[profiles.br-web]
kind = "server"
validity_days = 200
certificate_policies = [{ oid = "2.23.140.1.2.1" }]   # CA/B TLS, domain validated
''')
    ca.edit_config("crl_publish_interval_days = 150", "crl_publish_interval_days = 370")
    checked = ca.run("policy", "check-profiles")
    assert "the intermediate CA's CRLs live 30 days" in checked.stdout, checked.stdout
    assert "the root CA's CRLs live 400 days" in checked.stdout
    ca.edit_config("crl_publish_interval_days = 20\ncrl_overlap_days = 10",
                   "crl_publish_interval_days = 7\ncrl_overlap_days = 3")
    ca.edit_config("crl_publish_interval_days = 370", "crl_publish_interval_days = 150")
    checked = ca.run("policy", "check-profiles")
    assert "CRLs live" not in checked.stdout, checked.stdout
