"""Signed requests: only an authorized signer's detached signature lets a subca through."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from cryptography import x509

from spoolca.keys.openpgp import ApplianceKey
from tests.pki import CA, make_csr, pem

CA_EXTENSION = [(x509.BasicConstraints(ca=True, path_length=None), True)]


def submit(ca: CA, name: str, signer: ApplianceKey | None, *, tamper: bool = False) -> None:
    data = pem(make_csr(f"{name} CA", sans=[], extensions=CA_EXTENSION)[1])
    if signer is not None:
        signature = signer.sign(b"changed" if tamper else data)
        (ca.incoming / "subca" / f"{name}.csr.asc").write_text(signature)
    ca.submit(f"subca/{name}.csr", data)


class TestSignedRequests:
    def test_authorized_signature_issues_and_records_the_signer(self, guarded: CA, signers):
        """Signed by Alice: issued; her fingerprint is in the audit entry; both archived."""
        submit(guarded, "team", signers["alice"])
        guarded.process()
        assert guarded.result("team")["status"] == "issued"
        issued = json.loads(guarded.run("audit", "show", "--json", "--event",
                                        "request.issued").stdout)
        assert issued[-1]["data"]["signer"] == signers["alice"].fingerprint
        import sqlite3

        with sqlite3.connect(guarded.dir / "ca.db") as db:
            assert db.execute("SELECT signer FROM submissions WHERE output_name = 'team'"
                              ).fetchone()[0] == signers["alice"].fingerprint
        assert sorted(os.listdir(guarded.archive)) == ["team.csr", "team.csr.asc"]

    @pytest.mark.parametrize("case,code", [
        ("missing", "request.signature_missing"),
        ("tampered", "request.signature_invalid"),
        ("unknown", "request.signer_unknown"),
        ("unauthorized", "request.signer_not_authorized"),
    ])
    def test_each_failure_has_its_own_code(self, guarded: CA, signers, case, code):
        """No signature, a bad one, Eve's (unknown) and Mallory's (not authorized)."""
        signer = {"missing": None, "tampered": signers["alice"], "unknown": signers["eve"],
                  "unauthorized": signers["mallory"]}[case]
        submit(guarded, "team", signer, tamper=case == "tampered")
        guarded.process()
        result = guarded.result("team")
        assert result["status"] == "rejected"
        assert [r["code"] for r in result["reasons"]] == [code]

    def test_an_expired_signing_key_is_refused_as_expired(self, guarded: CA, expired):
        """python-gnupg says 'signature valid' for it; we read key_status: expired."""
        gpg, fingerprint = expired
        (guarded.dir / "signers.asc").write_text(gpg.export_keys(fingerprint))
        guarded.edit_config("authorized_signers = [", f'authorized_signers = ["{fingerprint}", ')
        data = pem(make_csr("Old CA", sans=[], extensions=CA_EXTENSION)[1])
        signature = gpg.sign(data, keyid=fingerprint, detach=True)
        (guarded.incoming / "subca" / "old.csr.asc").write_text(str(signature))
        guarded.submit("subca/old.csr", data)
        guarded.process()
        assert [r["code"] for r in guarded.result("old")["reasons"]] == [
            "request.signature_expired"]

    def test_a_refused_signature_does_not_condemn_the_csr(self, guarded: CA, signers):
        """The same CSR, sent again with Alice's signature, is issued."""
        data = pem(make_csr("Later CA", sans=[], extensions=CA_EXTENSION)[1])
        guarded.submit("subca/later.csr", data)
        guarded.process()
        assert guarded.result("later")["status"] == "rejected"
        (guarded.incoming / "subca" / "later.csr.asc").write_text(signers["alice"].sign(data))
        guarded.submit("subca/later.csr", data)
        guarded.process()
        assert guarded.result("later")["status"] == "issued"  # the same request, same name

    def test_server_profile_needs_no_signature(self, guarded: CA):
        """Counter-case: require_signature is per profile."""
        guarded.submit("server/www.csr", pem(make_csr("www.sample.com")[1]))
        guarded.process()
        assert guarded.result("www")["status"] == "issued"

    def test_signed_request_from_a_stick(self, guarded: CA, signers, tmp_path: Path):
        """A signed request travels from the stick with its signature and is issued."""
        stick = tmp_path / "stick" / "subca"
        stick.mkdir(parents=True)
        data = pem(make_csr("Stick CA", sans=[], extensions=CA_EXTENSION)[1])
        (stick / "stick.csr").write_bytes(data)
        (stick / "stick.csr.asc").write_text(signers["alice"].sign(data))
        assert guarded.run("media", "ingest", str(stick.parent)).returncode == 0
        guarded.process()
        assert guarded.result("stick")["status"] == "issued"


class TestRevocationRequests:
    @pytest.fixture
    def revoking(self, guarded: CA, signers) -> CA:
        guarded.edit_config("revokers = []", f'revokers = ["{signers["alice"].fingerprint}"]')
        guarded.submit("server/www.csr", pem(make_csr("www.sample.com")[1]))
        guarded.process()
        return guarded

    def _drop(self, ca: CA, name: str, body: dict, signer: ApplianceKey | None) -> None:
        data = json.dumps(body).encode()
        folder = ca.incoming / "revoke"
        folder.mkdir(exist_ok=True)
        if signer is not None:
            (folder / f"{name}.json.asc").write_text(signer.sign(data))
        ca.submit(f"revoke/{name}.json", data)

    def test_a_signed_request_revokes_and_remakes_the_crl(self, revoking: CA, signers):
        """Alice asks: the certificate is revoked, on the CRL, and the result says so."""
        serial = revoking.result("www")["serial"]
        self._drop(revoking, "lost-key", {"serial": serial, "reason": "keyCompromise",
                                          "invalidity_date": "2026-01-01"}, signers["alice"])
        revoking.process()
        result = revoking.result("lost-key")
        assert result["status"] == "revoked" and result["serial"] == serial
        crl = x509.load_der_x509_crl((revoking.outgoing / "crl" / "intermediate.crl")
                                     .read_bytes())
        assert crl.get_revoked_certificate_by_serial_number(int(serial, 16)) is not None
        events = json.loads(revoking.run("audit", "show", "--json", "--event",
                                         "certificate.revoked").stdout)
        assert events[-1]["data"]["requested_by"] == signers["alice"].fingerprint

    @pytest.mark.parametrize("case,code", [
        ("unsigned", "request.signature_missing"),
        ("mallory", "request.signer_not_authorized"),
        ("unknown serial", "revoke.unknown_serial"),
        ("bad reason", "revoke.reason_invalid"),
        ("not json", "revoke.unparseable"),
    ])
    def test_refused_requests_revoke_nothing(self, revoking: CA, signers, case, code):
        """Each refusal has its code; the certificate stays valid."""
        serial = revoking.result("www")["serial"]
        body = {"serial": "0BAD" if case == "unknown serial" else serial,
                "reason": "lostIt" if case == "bad reason" else "keyCompromise"}
        signer = {"unsigned": None, "mallory": signers["mallory"]}.get(case, signers["alice"])
        if case == "not json":
            folder = revoking.incoming / "revoke"
            folder.mkdir(exist_ok=True)
            (folder / "r.json.asc").write_text(signers["alice"].sign(b"{oops"))
            revoking.submit("revoke/r.json", b"{oops")
        else:
            self._drop(revoking, "r", body, signer)
        revoking.process()
        result = revoking.result("r")
        assert result["status"] == "rejected"
        assert code in [r["code"] for r in result["reasons"]]
        listing = json.loads(revoking.run("list", "--json").stdout)
        assert listing[0]["status"] == "valid"


class TestWholeStick:
    def test_a_mixed_stick_gets_every_right_outcome(self, guarded: CA, signers, tmp_path):
        """On one stick: a request signed by Alice, one by Eve (unknown), one with a bad
        signature, a signed revocation, and a hostile symlink. Ingest, process, export:
        each outcome is right and the manifest verifies."""
        guarded.edit_config("revokers = []", f'revokers = ["{signers["alice"].fingerprint}"]')
        guarded.submit("server/old.csr", pem(make_csr("old.sample.com")[1]))
        guarded.process()
        old = guarded.result("old")["serial"]
        stick = tmp_path / "stick"
        (stick / "subca").mkdir(parents=True)
        (stick / "revoke").mkdir()
        for name, signer, tamper in (("good", "alice", False), ("eve", "eve", False),
                                     ("forged", "alice", True)):
            data = pem(make_csr(f"{name} CA", sans=[], extensions=CA_EXTENSION)[1])
            (stick / "subca" / f"{name}.csr").write_bytes(data)
            (stick / "subca" / f"{name}.csr.asc").write_text(
                signers[signer].sign(b"x" if tamper else data))
        body = json.dumps({"serial": old, "reason": "superseded"}).encode()
        (stick / "revoke" / "retire.json").write_bytes(body)
        (stick / "revoke" / "retire.json.asc").write_text(signers["alice"].sign(body))
        os.symlink("/etc/passwd", stick / "subca" / "passwd.csr")
        assert guarded.run("media", "ingest", str(stick)).returncode == 0
        guarded.process()
        assert guarded.run("media", "export", str(stick)).returncode == 0
        results = stick / "spoolca-results" / "results"
        outcome = {p.name: json.loads((p / "result.json").read_text()) for p in results.iterdir()}
        assert outcome["good"]["status"] == "issued"
        assert outcome["eve"]["reasons"][0]["code"] == "request.signer_unknown"
        assert outcome["forged"]["reasons"][0]["code"] == "request.signature_invalid"
        assert outcome["retire"]["status"] == "revoked"
        assert "passwd" not in outcome
        import subprocess

        sums = subprocess.run(["sha256sum", "--strict", "-c", "SHA256SUMS"],
                              cwd=stick / "spoolca-results", capture_output=True, text=True)
        assert sums.returncode == 0, sums.stdout


def ra_sign(signer: ApplianceKey, data: bytes, *, notation: str | None = None,
            textmode: bool = False) -> str:
    """What an RA runs with its own gpg: a detached signature, with a signed notation
    (`--sig-notation profile@spoolca=PROFILE`) and in text mode if asked."""
    import subprocess

    args = ["gpg", "--homedir", str(signer.home), "--batch", "--armor", "--detach-sign",
            "-u", signer.fingerprint, "-o", "-"]
    args += ["--sig-notation", notation] if notation else []
    args += ["--textmode"] if textmode else []
    return subprocess.run(args, input=data, capture_output=True, check=True).stdout.decode()


class TestSignatureBindsTheProfile:
    """A signature authorizes bytes, not a folder: a request signed for one profile and
    moved into another is not issued under it when its signer may sign both."""

    @pytest.fixture
    def both(self, guarded: CA, signers) -> CA:
        """Alice may sign subca requests (guarded) and client requests too."""
        text = guarded.config.read_text()
        client = text.index("[profiles.client]")
        end = text.index("[profiles.subca]")
        guarded.config.write_text(
            text[:end].replace("[profiles.client]", "[profiles.client]\nrequire_signature = "
                               f'true\nauthorized_signers = ["{signers["alice"].fingerprint}"]',
                               1) + text[end:] if client < end else text)
        return guarded

    def moved(self, ca: CA, folder: str, signature: str, *, subca: bool) -> str:
        csr = make_csr("Team CA" if subca else "alice@sample.com", sans=[],
                       extensions=CA_EXTENSION if subca else ())[1]
        (ca.incoming / folder).mkdir(exist_ok=True)
        data = pem(csr)
        (ca.incoming / folder / "req.csr.asc").write_text(signature(data))
        ca.submit(f"{folder}/req.csr", data)
        ca.process()
        return ca.result("req")

    def test_a_client_request_moved_into_subca_is_refused(self, both: CA, signers):
        """Signed for client (notation), dropped into subca/: refused, named."""
        result = self.moved(both, "subca", lambda d: ra_sign(
            signers["alice"], d, notation="profile@spoolca=client"), subca=True)
        assert [r["code"] for r in result["reasons"]] == ["request.signature_profile_mismatch"]
        assert "names the profile 'client'" in result["reasons"][0]["message"]

    def test_a_signature_that_names_no_profile_is_refused_for_a_two_profile_signer(
            self, both: CA, signers):
        """Counter-move: subca -> client, signed with no notation by a signer of both."""
        result = self.moved(both, "client", lambda d: ra_sign(signers["alice"], d),
                            subca=False)
        assert [r["code"] for r in result["reasons"]] == ["request.signature_profile_mismatch"]
        assert "gpg --sig-notation profile@spoolca=client" in result["reasons"][0]["message"]

    def test_the_profile_named_in_the_signature_is_issued(self, both: CA, signers):
        result = self.moved(both, "subca", lambda d: ra_sign(
            signers["alice"], d, notation="profile@spoolca=subca"), subca=True)
        assert result["status"] == "issued", result

    def test_a_signer_of_one_profile_need_not_name_it(self, guarded: CA, signers):
        """Unchanged for the common case: Alice signs subca requests only."""
        result = self.moved(guarded, "subca", lambda d: ra_sign(signers["alice"], d),
                            subca=True)
        assert result["status"] == "issued", result
