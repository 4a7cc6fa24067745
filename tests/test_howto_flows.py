"""The OpenSSL how-tos' own flows (../shared/seeds/), done the spoolca way: their CSR with
ST=California and L=, made by the real `openssl req`; their policy_loose as the documented
recipe from the configuration template; their "revoke, then re-sign" as renew, then revoke;
superseded certificates marked in `list`."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.pki import CA

HOWTO_SUBJECT = "/C=US/ST=California/L=Mountain View/O=Alice Ltd/CN=www.example.com"


def openssl_csr(tmp_path: Path, subject: str) -> bytes:
    """A CSR as the intermediate how-to makes one: `openssl req -new` on a fresh key."""
    key, csr = tmp_path / "www.key.pem", tmp_path / "www.csr.pem"
    subprocess.run(["openssl", "req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    str(key), "-subj", subject, "-addext", "subjectAltName=DNS:www.example.com",
                    "-out", str(csr)], check=True, capture_output=True)
    return csr.read_bytes()


def subject_of(ca: CA, name: str) -> str:
    return subprocess.run(["openssl", "x509", "-noout", "-subject", "-nameopt", "compat", "-in",
                           str(ca.outgoing / name / "cert.pem")], capture_output=True,
                          text=True, check=True).stdout.strip()


def loose_recipe(ca: CA) -> None:
    """Uncomment the template's [profiles.server.dn] recipe, exactly as the file has it."""
    lines = ca.config.read_text().splitlines(keepends=True)
    start = lines.index("# [profiles.server.dn]\n")
    end = next(i for i in range(start, len(lines)) if not lines[i].startswith("# "))
    lines[start:end] = [line[2:] for line in lines[start:end]]
    ca.config.write_text("".join(lines))


class TestTheHowtosCSR:
    def test_refused_by_the_default_policy_with_every_reason(self, ca: CA, tmp_path: Path):
        """The counter-case: ST and O differ from the CA's, as policy_strict refuses too."""
        ca.submit("server/www.csr", openssl_csr(tmp_path, HOWTO_SUBJECT))
        ca.process()
        codes = sorted(r["code"] for r in ca.result("www")["reasons"])
        assert codes == ["policy.dn.organizationName_mismatch",
                         "policy.dn.stateOrProvinceName_mismatch"]

    def test_issued_under_the_policy_loose_recipe_with_its_locality(self, ca: CA,
                                                                    tmp_path: Path):
        loose_recipe(ca)
        assert ca.run("status").returncode == 0  # the configuration loads
        ca.submit("server/www.csr", openssl_csr(tmp_path, HOWTO_SUBJECT))
        ca.process()
        assert ca.result("www")["status"] == "issued", ca.result("www")
        assert subject_of(ca, "www") == f"subject={HOWTO_SUBJECT}"
        assert "notes" not in ca.result("www")

    def test_a_field_the_profile_does_not_name_is_dropped_and_said(self, ca: CA,
                                                                    tmp_path: Path):
        """Under the default policy a matching request with L= is issued without it, and
        result.json says so (it was silent)."""
        ca.submit("server/www.csr", openssl_csr(
            tmp_path, "/C=US/ST=New York/L=Mountain View/O=The Sample Company/CN=w.sample.com"))
        ca.process()
        result = ca.result("www")
        assert result["status"] == "issued", result
        assert "L=" not in subject_of(ca, "www")
        notes = {n["code"]: n["message"] for n in result["notes"]}
        assert "localityName='Mountain View'" in notes["note.dn_field_dropped"]


class TestReSign:
    def test_renew_then_revoke_is_the_howtos_re_sign(self, ca: CA, tmp_path: Path):
        """The how-to revokes, then re-signs the same CSR. Here the order is renew (the
        re-sign), then revoke the old one: `list` marks it superseded meanwhile."""
        ca.submit("server/www.csr", openssl_csr(
            tmp_path, "/C=US/ST=New York/O=The Sample Company/CN=w.sample.com"))
        ca.process()
        old = ca.result("www")["serial"]
        renewed = ca.run("renew", old)
        assert renewed.returncode == 0, renewed.stderr
        new = ca.result("www")["serial"]
        assert new != old
        listing = ca.run("list").stdout
        line = next(row for row in listing.splitlines() if row.startswith(old))
        assert line.endswith(f"(superseded by {new})")
        assert "superseded" not in next(r for r in listing.splitlines() if r.startswith(new))
        assert ca.run("revoke", old, "--reason", "superseded").returncode == 0
        statuses = {r["serial"]: r["status"] for r in json.loads(ca.run("list", "--json").stdout)}
        assert statuses == {old: "revoked", new: "valid"}

    def test_revoke_first_then_the_same_csr_is_refused_with_what_to_do(self, ca: CA,
                                                                       tmp_path: Path):
        """The counter-case: the how-to's order. The revoked certificate's CSR is not
        signed again (its key may be compromised); the reason says a new key is needed."""
        csr = openssl_csr(tmp_path, "/C=US/ST=New York/O=The Sample Company/CN=w.sample.com")
        ca.submit("server/www.csr", csr)
        ca.process()
        assert ca.run("revoke", ca.result("www")["serial"]).returncode == 0
        ca.submit("server/again.csr", csr)
        ca.process()
        assert [r["code"] for r in ca.result("again")["reasons"]] == [
            "request.certificate_revoked"]
