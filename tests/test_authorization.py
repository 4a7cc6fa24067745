"""Signed requests: only an authorized signer's detached signature lets a subca through."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from cryptography import x509

from spoolca.openpgp import ApplianceKey
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
