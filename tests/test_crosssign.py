"""Cross-signing between two real spoolca CAs, and with a root made by openssl: chains
through a cross-certificate verify with openssl and GnuTLS certtool, and only through it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from spoolca.authority.crosssign import raw_subject
from spoolca.x509.issuer import serial_hex
from tests.pki import CA, init_ca, make_csr, openssl, pem

OTHER_ROOT = "/C=US/ST=New York/O=The Sample Company/CN=Sample Root CA 2"
OTHER_INTERMEDIATE = "/C=US/ST=New York/O=The Sample Company/CN=Sample Intermediate CA 2"


@pytest.fixture
def pair(tmp_path: Path) -> tuple[CA, CA]:
    old = init_ca(tmp_path / "old", "--no-passphrase")
    new = init_ca(tmp_path / "new", "--no-passphrase", "--root-subject", OTHER_ROOT,
                  "--intermediate-subject", OTHER_INTERMEDIATE)
    return old, new


def leaf(ca: CA, name: str) -> Path:
    ca.submit(f"server/{name}.csr", pem(make_csr(f"{name}.sample.com")[1]))
    ca.process()
    assert ca.result(name)["status"] == "issued"
    return ca.outgoing / name / "cert.pem"


def cross_sign(issuer: CA, target: Path, *extra: str) -> Path:
    done = issuer.run("ca", "cross-sign", str(target), *extra)
    assert done.returncode == 0, done.stderr
    return Path(done.stdout.split(" in ", 1)[1].split(" (", 1)[0])


def verifies(anchor: Path, untrusted: list[Path], cert: Path, work: Path) -> bool:
    """openssl and certtool agree (asserted) on whether CERT chains to ANCHOR."""
    bundle = work / "untrusted.pem"
    bundle.write_bytes(b"".join(p.read_bytes() for p in untrusted))
    ssl = openssl("verify", "-CAfile", str(anchor), "-untrusted", str(bundle), str(cert),
                  check=False)
    chain = work / "chain.pem"
    chain.write_bytes(cert.read_bytes() + bundle.read_bytes())
    gnutls = subprocess.run(["certtool", "--verify", "--load-ca-certificate", str(anchor),
                             "--infile", str(chain)], capture_output=True, text=True,
                            timeout=60)
    gnutls_ok = "Chain verification output: Verified" in gnutls.stdout
    assert (ssl.returncode == 0) == gnutls_ok, (ssl.stdout + ssl.stderr, gnutls.stdout)
    return gnutls_ok


class TestCrossSigning:
    def test_the_old_root_cross_signs_the_new_and_the_reverse(self, pair: tuple[CA, CA],
                                                             tmp_path: Path):
        old, new = pair
        old_root, new_root = old.outgoing / "ca" / "root.pem", new.outgoing / "ca" / "root.pem"
        cross = cross_sign(old, new_root)
        new_leaf = leaf(new, "newleaf")
        new_inter = new.outgoing / "ca" / "intermediate.pem"
        assert verifies(old_root, [new_inter, cross], new_leaf, tmp_path)
        assert not verifies(old_root, [new_inter], new_leaf, tmp_path)  # only through it
        made = x509.load_pem_x509_certificate(cross.read_bytes())
        target = x509.load_pem_x509_certificate(new_root.read_bytes())
        assert raw_subject(made) == raw_subject(target)
        assert made.extensions.get_extension_for_class(x509.SubjectKeyIdentifier) == \
            target.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        anchor = x509.load_pem_x509_certificate(old_root.read_bytes())
        assert made.not_valid_after_utc <= anchor.not_valid_after_utc
        reverse = cross_sign(new, old_root)  # and the new root vouches for the old
        assert verifies(new_root, [old.outgoing / "ca" / "intermediate.pem", reverse],
                        leaf(old, "oldleaf"), tmp_path)

    def test_a_cross_certificate_is_registered_and_revocable(self, pair: tuple[CA, CA]):
        old, new = pair
        cross = x509.load_pem_x509_certificate(
            cross_sign(old, new.outgoing / "ca" / "root.pem").read_bytes())
        serial = serial_hex(cross.serial_number)
        assert old.run("revoke", serial, "--reason", "cessationOfOperation").returncode == 0
        crl = x509.load_der_x509_crl((old.outgoing / "crl" / "root.crl").read_bytes())
        assert crl.get_revoked_certificate_by_serial_number(cross.serial_number) is not None
        events = old.run("audit", "show", "--event", "ca.cross_signed").stdout
        assert serial in events
        stick = old.dir / "stick"  # the cross-certificate leaves the appliance on a stick
        stick.mkdir()
        assert old.run("media", "export", str(stick)).returncode == 0
        assert (stick / "spoolca-results" / "ca" / f"cross-{serial}.pem").read_bytes() == \
            (old.outgoing / "ca" / f"cross-{serial}.pem").read_bytes()

    def test_what_must_not_be_cross_signed(self, pair: tuple[CA, CA], tmp_path: Path):
        old, new = pair
        own = old.run("ca", "cross-sign", str(old.outgoing / "ca" / "root.pem"))
        assert own.returncode == 1 and "does not cross-sign itself" in own.stderr
        not_ca = old.run("ca", "cross-sign", str(leaf(new, "x")))
        assert not_ca.returncode == 1 and "only a CA certificate" in not_ca.stderr
        forged = bytearray(x509.load_pem_x509_certificate(
            (new.outgoing / "ca" / "root.pem").read_bytes()).public_bytes(Encoding.DER))
        forged[-5] ^= 0x01  # inside the signature
        (tmp_path / "forged.der").write_bytes(bytes(forged))
        refused = old.run("ca", "cross-sign", str(tmp_path / "forged.der"))
        assert refused.returncode == 1 and "does not verify with its own key" in refused.stderr
        assert "Traceback" not in own.stderr + not_ca.stderr + refused.stderr

    def test_a_request_an_external_root_cross_signs(self, pair: tuple[CA, CA],
                                                    tmp_path: Path):
        """Our root's CSR, signed by a root made with openssl: our leaves then verify with
        that root as the only anchor."""
        old, _new = pair
        done = old.run("ca", "cross-request")
        assert done.returncode == 0, done.stderr
        request = old.outgoing / "ca" / "root-cross-request.csr"
        assert "verify OK" in openssl("req", "-in", str(request), "-verify", "-noout"
                                      ).stderr + openssl("req", "-in", str(request), "-verify",
                                                         "-noout").stdout
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                "-nodes", "-keyout", str(tmp_path / "ext.key"), "-out",
                str(tmp_path / "ext.pem"), "-days", "3650", "-subj", "/O=External/CN=Ext Root")
        (tmp_path / "ext.cnf").write_text(
            "[v3]\nbasicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n"
            "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n")
        openssl("x509", "-req", "-in", str(request), "-CA", str(tmp_path / "ext.pem"),
                "-CAkey", str(tmp_path / "ext.key"), "-CAcreateserial", "-days", "1000",
                "-extfile", str(tmp_path / "ext.cnf"), "-extensions", "v3", "-out",
                str(tmp_path / "cross.pem"))
        ours = leaf(old, "ours")
        assert verifies(tmp_path / "ext.pem", [old.outgoing / "ca" / "intermediate.pem",
                                               tmp_path / "cross.pem"], ours, tmp_path)
        assert not verifies(tmp_path / "ext.pem", [old.outgoing / "ca" / "intermediate.pem"],
                            ours, tmp_path)
