"""`spoolca ca rekey intermediate`: a new generation under a new key, judged by openssl
and certtool across generations; the older generation keeps its CRL until its last leaf
ends, and every file keeps the name its certificates point to."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from tests.pki import CA, copy_ca, init_ca, make_csr, openssl, pem
from tests.templates import Templates

SECRET = b"rekey passphrase 1"


@pytest.fixture
def rekeyed(tmp_path: Path, templates: Templates) -> CA:
    """Two leaves of the first generation, a rekey, a leaf of the second: made once per
    test process, copied per test."""
    return templates.encrypted(tmp_path, SECRET, kind="rekeyed", populate=_rekey)


def _rekey(ca: CA) -> None:
    for name in ("old1", "old2"):
        issue(ca, name)
    done = ca.run("ca", "rekey", "intermediate")
    assert done.returncode == 0, done.stderr
    issue(ca, "new1")


def issue(ca: CA, name: str) -> x509.Certificate:
    ca.submit(f"server/{name}.csr", pem(make_csr(f"{name}.sample.com")[1]))
    ca.process()
    assert ca.result(name)["status"] == "issued", ca.result(name)
    return x509.load_pem_x509_certificate((ca.outgoing / name / "cert.pem").read_bytes())


def aki(cert: x509.Certificate) -> bytes:
    return cert.extensions.get_extension_for_class(
        x509.AuthorityKeyIdentifier).value.key_identifier


def verified(anchor: Path, cert: Path, *crls: Path) -> str:
    bundle = anchor.parent.parent.parent / "bundle.pem"
    bundle.write_bytes(anchor.read_bytes() + b"".join(
        openssl("crl", "-in", str(c), "-inform", "DER").stdout.encode() for c in crls))
    done = openssl("verify", *(["-crl_check_all"] if crls else []), "-CAfile", str(bundle),
                   str(cert), check=False)
    return (done.stdout + done.stderr).strip()


class TestRekey:
    def test_every_generation_verifies_with_its_own_chain(self, rekeyed: CA):
        ca, out = rekeyed, rekeyed.outgoing
        old = x509.load_pem_x509_certificate((out / "old1" / "cert.pem").read_bytes())
        new = x509.load_pem_x509_certificate((out / "new1" / "cert.pem").read_bytes())
        assert aki(old) != aki(new) and old.issuer == new.issuer  # same name, new key
        for name, chain in (("old1", "old1/chain.pem"), ("old1", "ca/ca-chain-g1.pem"),
                            ("new1", "new1/chain.pem"), ("new1", "ca/ca-chain.pem")):
            assert verified(out / chain, out / name / "cert.pem").endswith(": OK"), chain
        for name in ("old1", "new1"):  # one CAfile for every generation
            assert verified(out / "ca" / "ca-bundle.pem", out / name / "cert.pem"
                            ).endswith(": OK")
        # ca-chain.pem is the generation that issues now: an older leaf needs its own
        assert not verified(out / "ca" / "ca-chain.pem", out / "old1" / "cert.pem"
                            ).endswith(": OK")
        gnutls = subprocess.run(
            ["certtool", "--verify", "--load-ca-certificate", str(out / "ca" / "root.pem"),
             "--infile", str(out / "old1" / "fullchain.pem")], capture_output=True, text=True,
            timeout=60)
        assert "Chain verification output: Verified" in gnutls.stdout
        key = ca.dir / "keys" / "intermediate-g2.key.pem"
        assert key.stat().st_mode & 0o777 == 0o400
        load_pem_private_key(key.read_bytes(), SECRET)
        shown = json.loads(ca.run("audit", "show", "--json", "--event", "ca.rekeyed").stdout)
        assert shown[0]["data"]["new"] == "intermediate-g2"

    def test_each_generation_publishes_its_own_crl(self, rekeyed: CA):
        ca, out = rekeyed, rekeyed.outgoing
        serials = {c["subject"].rsplit("=", 1)[1]: c["serial"]
                   for c in json.loads(ca.run("list", "--json").stdout)}
        for name in ("old2.sample.com", "new1.sample.com"):
            assert ca.run("revoke", serials[name], "--reason", "keyCompromise"
                          ).returncode == 0
        crl_dir = out / "crl"
        for crl, issuer in (("intermediate.crl", "intermediate-g1.pem"),
                            ("intermediate-g2.crl", "intermediate.pem")):
            checked = openssl("crl", "-in", str(crl_dir / crl), "-inform", "DER", "-noout",
                              "-CAfile", str(out / "ca" / issuer))
            assert "verify OK" in checked.stdout + checked.stderr, crl
        listed = {name: {f"{e.serial_number:032X}" for e in x509.load_der_x509_crl(
            (crl_dir / name).read_bytes())} for name in ("intermediate.crl",
                                                          "intermediate-g2.crl")}
        assert listed == {"intermediate.crl": {serials["old2.sample.com"]},
                          "intermediate-g2.crl": {serials["new1.sample.com"]}}
        crls = [crl_dir / "root.crl", crl_dir / "intermediate.crl",
                crl_dir / "intermediate-g2.crl"]
        chains = {"old1": "ca-chain-g1.pem", "old2": "ca-chain-g1.pem",
                  "new1": "ca-chain.pem"}
        said = {name: verified(out / "ca" / chain, out / name / "cert.pem", *crls)
                for name, chain in chains.items()}
        assert said["old1"].endswith(": OK")
        assert "certificate revoked" in said["old2"] and "certificate revoked" in said["new1"]
        assert ca.run("crl").returncode == 0
        schedule = json.loads((crl_dir / "next-update.json").read_text())
        assert {"root", "intermediate", "intermediate-g2"} <= set(schedule)
        stick = ca.dir / "stick"  # every generation's files leave on the stick
        stick.mkdir()
        assert ca.run("media", "export", str(stick)).returncode == 0
        carried = stick / "spoolca-results"
        for name in ("ca/ca-chain-g1.pem", "ca/intermediate-g1.pem", "ca/ca-bundle.pem",
                     "crl/intermediate.crl", "crl/intermediate-g2.crl"):
            assert (carried / name).is_file(), name

    def test_the_older_generation_stops_once_its_last_leaf_has_ended(self, rekeyed: CA):
        with sqlite3.connect(rekeyed.dir / "ca.db") as db:
            db.execute("UPDATE meta SET value = '2000-01-01T00:00:00Z' "
                       "WHERE key = 'last_leaf.intermediate'")
        assert rekeyed.run("crl").returncode == 0
        schedule = json.loads((rekeyed.outgoing / "crl" / "next-update.json").read_text())
        assert "intermediate" not in schedule and "intermediate-g2" in schedule

    def test_renewing_an_older_leaf_moves_it_to_the_new_generation(self, rekeyed: CA):
        old = x509.load_pem_x509_certificate(
            (rekeyed.outgoing / "old1" / "cert.pem").read_bytes())
        new = x509.load_pem_x509_certificate(
            (rekeyed.outgoing / "new1" / "cert.pem").read_bytes())
        done = rekeyed.run("renew", f"{old.serial_number:032X}")
        assert done.returncode == 0, done.stderr
        folder = Path(done.stdout.strip().rsplit(": ", 1)[1])
        renewed = x509.load_pem_x509_certificate((folder / "cert.pem").read_bytes())
        assert aki(renewed) == aki(new)

    def test_guards(self, tmp_path: Path):
        ca = init_ca(tmp_path / "short", "--no-passphrase", "--root-days", "100")
        long = ca.run("ca", "rekey", "intermediate", "--days", "3000")
        assert long.returncode == 1 and "would outlive the root" in long.stderr
        too_long = ca.run("ca", "rekey", "intermediate", "--days", "4000")
        assert too_long.returncode == 1 and "longer than the intermediate CA may live" in \
            too_long.stderr
        ca.edit_config("max_days = 3660", "max_days = 30")  # the configured cap
        capped = ca.run("ca", "rekey", "intermediate", "--days", "60")
        assert capped.returncode == 1 and "[authorities.intermediate] max_days" in \
            capped.stderr
        assert not (ca.dir / "keys" / "intermediate-g2.key.pem").exists()


def test_check_profiles_judges_the_generation_that_issues_now(rekeyed: CA, _ca_template: Path,
                                                              tmp_path: Path):
    """After a rekey, a profile's specimen carries the new generation's URLs (-g2), as its
    certificates do; the counter-case, a CA never rekeyed, the configured ones."""
    ca = copy_ca(_ca_template, tmp_path / "plain")
    url = 'crl_url = "http://pki.sample.com/intermediate.crl"\nissuer_url = ""'
    for each, expected in ((rekeyed, "issued by intermediate-g2, CRL at "
                            "http://pki.sample.com/intermediate-g2.crl"),
                           (ca, "issued by intermediate, CRL at "
                            "http://pki.sample.com/intermediate.crl")):
        each.edit_config('crl_url = ""\nissuer_url = ""', url)
        checked = each.run("policy", "check-profiles")
        assert checked.returncode == 0, checked.stdout + checked.stderr
        server = next(line for line in checked.stdout.splitlines() if line.startswith("server:"))
        assert expected in server, server
