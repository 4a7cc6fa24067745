"""`spoolca ca renew`: a CA's new certificate for its same key. Judged by `openssl
verify` across the renewal: what was issued before and after verifies against the new
CA files; the guards refuse a child that would outlive its parent."""

from __future__ import annotations

import subprocess
from pathlib import Path

from cryptography import x509

from tests.daemon import NotifySocket, Running
from tests.pki import CA, init_ca, make_csr, pem


def verify(ca: CA, leaf: Path) -> subprocess.CompletedProcess[str]:
    folder = ca.outgoing / "ca"
    return subprocess.run(["openssl", "verify", "-purpose", "sslserver", "-CAfile",
                           str(folder / "root.pem"), "-untrusted",
                           str(folder / "intermediate.pem"), str(leaf)],
                          capture_output=True, text=True)


def cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


class TestRenewal:
    def test_intermediate_then_root_old_and_new_leaves_verify(self, ca: CA):
        ca.submit("server/before.csr", pem(make_csr("before.sample.com")[1]))
        ca.process()
        old_inter = cert(ca.outgoing / "ca" / "intermediate.pem")
        renewed = ca.run("ca", "renew", "intermediate")  # 3653 days from now: later
        assert renewed.returncode == 0, renewed.stderr
        new_inter = cert(ca.outgoing / "ca" / "intermediate.pem")
        assert new_inter.serial_number != old_inter.serial_number
        assert new_inter.public_key() == old_inter.public_key()
        assert new_inter.subject == old_inter.subject
        ca.submit("server/after.csr", pem(make_csr("after.sample.com")[1]))
        ca.process()
        for name in ("before", "after"):
            checked = verify(ca, ca.outgoing / name / "cert.pem")
            assert checked.returncode == 0, checked.stdout + checked.stderr
        assert ca.run("ca", "renew", "root", "--days", "9000").returncode == 0
        for name in ("before", "after"):
            assert verify(ca, ca.outgoing / name / "cert.pem").returncode == 0
        crl = subprocess.run(["openssl", "crl", "-in", str(ca.outgoing / "crl" /
                                                         "intermediate.crl.pem"),
                              "-CAfile", str(ca.outgoing / "ca" / "ca-chain.pem"), "-noout"],
                             capture_output=True, text=True)
        assert "verify OK" in crl.stdout + crl.stderr
        events = ca.run("audit", "show", "--event", "ca.renewed").stdout
        assert events.count("ca.renewed") == 2

    def test_guards(self, tmp_path: Path):
        """A child never outlives its parent; a CA's life is capped; never under a
        running daemon. Each refusal is one sentence and changes nothing."""
        ca = init_ca(tmp_path / "short", "--no-passphrase", "--root-days", "3000",
                     "--intermediate-days", "1000")
        before = (ca.outgoing / "ca" / "ca-chain.pem").read_bytes()
        for args, says in ((("intermediate", "--days", "3700"), "at most"),
                           (("intermediate", "--days", "3500"), "outlive the root"),
                           (("root", "--days", "30"), "before the intermediate"),
                           (("intermediate", "--days", "10"), "a renewal must end later")):
            refused = ca.run("ca", "renew", *args)
            assert refused.returncode == 1 and says in refused.stderr, refused.stderr
            assert "Traceback" not in refused.stderr
        assert (ca.outgoing / "ca" / "ca-chain.pem").read_bytes() == before
        notify = NotifySocket(tmp_path / "notify.sock")
        running = Running(ca, notify)
        try:
            notify.wait_for("READY=1")
            busy = ca.run("ca", "renew", "intermediate", "--days", "2000")
            assert busy.returncode != 0 and "Traceback" not in busy.stderr
        finally:
            running.stop()
            notify.close()
        assert (ca.outgoing / "ca" / "ca-chain.pem").read_bytes() == before
        assert ca.run("ca", "renew", "intermediate", "--days", "2000").returncode == 0
