"""Subordinate CA constraints: a subca profile's nameConstraints, path length and purposes
are in the certificate, and path validators outside spoolca enforce them: a leaf the
subordinate signs outside its names is refused by `openssl verify` (and GnuTLS)."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from ipaddress import ip_address
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from tests.pki import CA, make_csr, make_key, pem

CONSTRAINTS = """require_signature = false
permitted_dns = ["team.sample.com"]
excluded_ip = ["0.0.0.0/0", "::/0"]
purposes = ["serverAuth"]
path_length = 0"""


def issued_subca(ca: CA) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    ca.edit_config("require_signature = true", CONSTRAINTS)
    key = make_key()
    csr = make_csr("Team CA", key=key, sans=[],
                   extensions=[(x509.BasicConstraints(ca=True, path_length=None), True)])[1]
    ca.submit("subca/team.csr", pem(csr))
    ca.process()
    assert ca.result("team")["status"] == "issued", ca.result("team")
    return x509.load_pem_x509_certificate((ca.outgoing / "team" / "cert.pem").read_bytes()), key


def leaf(subca: x509.Certificate, subca_key: ec.EllipticCurvePrivateKey, name: str,
         folder: Path, extra: list[x509.GeneralName] | None = None,
         label: str | None = None) -> Path:
    """What the subordinate's holder signs on their own: a server certificate for NAME
    (and the EXTRA names)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(subca.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name), *(extra or [])]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                subca_key.public_key()), critical=False)
            .sign(subca_key, hashes.SHA256()))
    path = folder / f"{label or name}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def openssl_verify(ca: CA, subca: Path, target: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", "verify", "-purpose", "sslserver", "-CAfile",
                           str(ca.outgoing / "ca" / "root.pem"), "-untrusted", str(subca),
                           str(target)], capture_output=True, text=True)


class TestSubordinateConstraints:
    def test_the_subordinate_carries_its_constraints(self, ca: CA):
        subca, _key = issued_subca(ca)
        names = subca.extensions.get_extension_for_class(x509.NameConstraints)
        assert names.critical
        assert names.value.permitted_subtrees == [
            x509.DNSName("team.sample.com"), x509.RFC822Name("nothing.invalid"),
            x509.UniformResourceIdentifier("nothing.invalid")]  # e-mail and URIs shut
        assert len(names.value.excluded_subtrees) == 2  # every IP address (as configured)
        assert subca.extensions.get_extension_for_class(x509.BasicConstraints
                                                        ).value.path_length == 0
        assert list(subca.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value) \
            == [ExtendedKeyUsageOID.SERVER_AUTH]

    def test_validators_refuse_a_leaf_outside_them(self, ca: CA, tmp_path: Path):
        """Inside: www.team.sample.com verifies; outside: www.sample.com is refused by
        openssl (permitted subtree violation) and by GnuTLS certtool."""
        subca, key = issued_subca(ca)
        chain = ca.outgoing / "team" / "cert.pem"
        inside = leaf(subca, key, "www.team.sample.com", tmp_path)
        outside = leaf(subca, key, "www.sample.com", tmp_path)
        good = openssl_verify(ca, chain, inside)
        assert good.returncode == 0, good.stdout + good.stderr
        bad = openssl_verify(ca, chain, outside)
        assert bad.returncode != 0 and "subtree violation" in bad.stdout + bad.stderr
        bundle = tmp_path / "bundle.pem"
        for target, ok in ((inside, True), (outside, False)):
            bundle.write_bytes(target.read_bytes() + chain.read_bytes())
            gnutls = subprocess.run(["certtool", "--verify", "--load-ca-certificate",
                                     str(ca.outgoing / "ca" / "root.pem"), "--infile",
                                     str(bundle)], capture_output=True, text=True)
            assert (gnutls.returncode == 0) is ok, gnutls.stdout[-800:]

    def test_a_dns_constrained_subordinate_certifies_no_other_name_form(self, ca: CA,
                                                                       tmp_path: Path):
        """permitted_dns alone (no excluded_ip): an IP address, an e-mail address or a URI
        outside it was certified by OpenSSL, GnuTLS and cryptography. Now every other form
        is shut: OpenSSL refuses all three, GnuTLS the IP address and the e-mail address
        (it does not process URI constraints at all); a name inside still verifies."""
        ca.edit_config("require_signature = true", "require_signature = false\n"
                       'permitted_dns = ["team.sample.com"]')
        key = make_key()
        csr = make_csr("Team CA", key=key, sans=[],
                       extensions=[(x509.BasicConstraints(ca=True, path_length=None), True)])[1]
        ca.submit("subca/team.csr", pem(csr))
        ca.process()
        subca = x509.load_pem_x509_certificate((ca.outgoing / "team" / "cert.pem").read_bytes())
        chain = ca.outgoing / "team" / "cert.pem"
        judged = {}
        for label, extra in (("inside", []), ("ip", [x509.IPAddress(ip_address("8.8.8.8"))]),
                             ("email", [x509.RFC822Name("a@evil.example")]),
                             ("uri", [x509.UniformResourceIdentifier("https://evil.example/")])):
            target = leaf(subca, key, "www.team.sample.com", tmp_path, extra, label)
            bundle = tmp_path / f"{label}-bundle.pem"
            bundle.write_bytes(target.read_bytes() + chain.read_bytes())
            gnutls = subprocess.run(["certtool", "--verify", "--load-ca-certificate",
                                     str(ca.outgoing / "ca" / "root.pem"), "--infile",
                                     str(bundle)], capture_output=True, text=True)
            judged[label] = (openssl_verify(ca, chain, target).returncode == 0,
                             gnutls.returncode == 0)
        assert judged == {"inside": (True, True), "ip": (False, False),
                          "email": (False, False), "uri": (False, True)}, judged

    def test_pkilint_finds_a_technically_constrained_ca_complete(self, ca: CA,
                                                                  tmp_path: Path):
        """With permitted_dirname (BR 7.1.2.5.2 wants a directoryName), pkilint's CA/B
        linter for a constrained TLS CA reports no incomplete_name_constraints; without
        it, it does (the counter-case)."""
        for dirname, complete in (('"/C=US/O=The Sample Company"', True), (None, False)):
            target = CA(tmp_path / f"c{int(complete)}")
            import shutil

            shutil.copytree(ca.dir, target.dir, ignore=shutil.ignore_patterns("S.*"))
            extra = f"\npermitted_dirname = {dirname}" if dirname else ""
            target.edit_config("require_signature = true", "require_signature = false\n"
                               'permitted_dns = ["team.sample.com"]\n'
                               f'purposes = ["serverAuth"]{extra}')
            csr = make_csr("Team CA", sans=[], extensions=[
                (x509.BasicConstraints(ca=True, path_length=None), True)])[1]
            target.submit("subca/team.csr", pem(csr))
            target.process()
            linted = subprocess.run(
                [str(Path(sys.executable).with_name("lint_cabf_serverauth_cert")), "lint",
                 "-t", "EXTERNAL-CONSTRAINED-TLS-CA", str(target.outgoing / "team" / "cert.pem")],
                capture_output=True, text=True)
            found = "incomplete_name_constraints" in linted.stdout
            assert found is not complete, linted.stdout

    def test_constraints_belong_to_subca_profiles_only(self, ca: CA):
        """Counter-case: a server profile that names permitted_dns is a configuration error."""
        ca.edit_config('kind = "server"', 'kind = "server"\npermitted_dns = ["x.com"]')
        refused = ca.run("list")
        assert refused.returncode == 2 and "only a CA profile constrains" in refused.stderr
