"""Revocation requests have the request lifecycle (invariant 10): claimed, answered exactly
once, recovered after a crash as revocations, never replayed."""

from __future__ import annotations

import json
import shutil
import sqlite3

import pytest
from cryptography import x509

from spoolca.keys.openpgp import ApplianceKey
from tests.pki import CA, make_csr, pem


@pytest.fixture
def revoking(guarded: CA, signers) -> CA:
    """Alice may revoke; www.sample.com is issued."""
    guarded.edit_config("revokers = []", f'revokers = ["{signers["alice"].fingerprint}"]')
    guarded.submit("server/www.csr", pem(make_csr("www.sample.com")[1]))
    guarded.process()
    return guarded


def drop(ca: CA, relative: str, body: dict | bytes, signer: ApplianceKey | None) -> bytes:
    """A (signed) revocation request written into incoming/ as a requester's stick would."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    target = ca.incoming / relative
    target.parent.mkdir(exist_ok=True)
    if signer is not None:
        (target.parent / f"{target.name}.asc").write_text(signer.sign(data))
    ca.submit(relative, data)
    return data


def events(ca: CA, event: str) -> list[dict]:
    return json.loads(ca.run("audit", "show", "--json", "--event", event).stdout)


def state(ca: CA, serial: str) -> tuple[str | None, str | None]:
    with sqlite3.connect(ca.dir / "ca.db") as db:
        return db.execute("SELECT revoked_at, revocation_reason FROM certificates "
                          "WHERE serial = ?", (serial,)).fetchone()


def on_crl(ca: CA, serial: str) -> bool:
    crl = x509.load_der_x509_crl((ca.outgoing / "crl" / "intermediate.crl").read_bytes())
    return crl.get_revoked_certificate_by_serial_number(int(serial, 16)) is not None


class TestNamesAndFolders:
    @pytest.mark.parametrize("relative", ["revoke/LOST.JSON", "revoke/lost.Json",
                                          "REVOKE/LOST.JSON"])
    def test_any_case_is_a_revocation_request(self, revoking: CA, signers, relative: str):
        """FAT shows 8.3 names in upper case: LOST.JSON was never answered."""
        serial = revoking.result("www")["serial"]
        drop(revoking, relative, {"serial": serial, "reason": "keyCompromise"},
             signers["alice"])
        revoking.process()
        assert revoking.result("LOST" if "LOST" in relative else "lost")["status"] == "revoked"
        assert state(revoking, serial)[1] == "keyCompromise"
        assert on_crl(revoking, serial)

    def test_a_file_that_is_not_a_request_is_answered(self, revoking: CA, signers):
        """kc.txt in revoke/ waited forever; now it is refused, kept, and the cert valid."""
        serial = revoking.result("www")["serial"]
        drop(revoking, "revoke/kc.txt", {"serial": serial}, signers["alice"])
        revoking.process()
        body = revoking.result("kc.txt")
        assert body["status"] == "rejected"
        assert [r["code"] for r in body["reasons"]] == ["file.extension_unsupported"]
        assert state(revoking, serial) == (None, None)
        assert list((revoking.incoming / "revoke").iterdir()) == []


class TestNoReplay:
    def test_a_lifted_hold_stays_lifted_when_the_old_stick_comes_back(self, revoking: CA,
                                                                      signers):
        """A signed certificateHold brought back after removeFromCRL held it again."""
        serial = revoking.result("www")["serial"]
        body = {"serial": serial, "reason": "certificateHold"}
        drop(revoking, "revoke/hold.json", body, signers["alice"])
        revoking.process()
        assert state(revoking, serial)[1] == "certificateHold"
        assert revoking.run("revoke", serial, "--reason", "removeFromCRL").returncode == 0
        assert state(revoking, serial) == (None, None)
        drop(revoking, "revoke/hold.json", body, signers["alice"])  # the same stick again
        revoking.process()
        again = revoking.result("hold")  # the same request keeps its folder
        assert again["status"] == "revoked" and again["serial"] == serial  # what it was
        assert state(revoking, serial) == (None, None)                   # not applied
        assert not on_crl(revoking, serial)
        assert len(events(revoking, "certificate.revoked")) == 1
        assert events(revoking, "request.republished")[-1]["data"]["serial"] == serial

    def test_changed_line_endings_are_the_same_request(self, revoking: CA, signers):
        """A text-mode signature verifies over LF and CRLF alike: the same signed hold with
        CRLF was "new bytes" and held the certificate again after removeFromCRL. Now it is
        the same request (its canonical text), answered as before, not applied."""
        from tests.test_authorization import ra_sign

        serial = revoking.result("www")["serial"]
        body = json.dumps({"serial": serial, "reason": "certificateHold"}, indent=1).encode()
        signature = ra_sign(signers["alice"], body, textmode=True)
        (revoking.incoming / "revoke").mkdir(exist_ok=True)
        (revoking.incoming / "revoke" / "hold.json.asc").write_text(signature)
        revoking.submit("revoke/hold.json", body)
        revoking.process()
        assert state(revoking, serial)[1] == "certificateHold"
        assert revoking.run("revoke", serial, "--reason", "removeFromCRL").returncode == 0
        (revoking.incoming / "revoke" / "crlf.json.asc").write_text(signature)
        revoking.submit("revoke/crlf.json", body.replace(b"\n", b"\r\n"))
        revoking.process()
        again = revoking.result("crlf")
        assert again["status"] == "revoked" and again["request_sha256"] == \
            revoking.result("hold")["request_sha256"]
        assert state(revoking, serial) == (None, None)  # not held again
        assert len(events(revoking, "certificate.revoked")) == 1

    def test_a_new_request_id_is_a_new_request(self, revoking: CA, signers):
        """Counter-case: the documented way to ask again is a fresh request_id."""
        serial = revoking.result("www")["serial"]
        drop(revoking, "revoke/hold.json", {"serial": serial, "reason": "certificateHold"},
             signers["alice"])
        revoking.process()
        revoking.run("revoke", serial, "--reason", "removeFromCRL")
        drop(revoking, "revoke/hold.json", {"serial": serial, "reason": "certificateHold",
                                            "request_id": "second hold"}, signers["alice"])
        revoking.process()
        assert state(revoking, serial)[1] == "certificateHold"
        assert len(events(revoking, "certificate.revoked")) == 2


class TestCrashes:
    def test_a_claimed_revocation_is_recovered_as_a_revocation(self, revoking: CA, signers):
        """Killed after the claim: it was later rejected as a CSR and the cert stayed
        valid. Now the next pass revokes."""
        serial = revoking.result("www")["serial"]
        data = drop(revoking, "revoke/lost.json", {"serial": serial,
                                                   "reason": "keyCompromise"},
                    signers["alice"])
        claim = revoking.dir / "spool" / "work" / "claim-0000000000000001-aaaaaa" / "revoke"
        claim.mkdir(parents=True)
        for name in ("lost.json", "lost.json.asc"):
            shutil.move(revoking.incoming / "revoke" / name, claim / name)
        revoking.process()
        body = revoking.result("lost")
        assert body["status"] == "revoked" and body["profile"] == "revoke"
        assert state(revoking, serial)[1] == "keyCompromise"
        assert (revoking.archive / "lost.json").read_bytes() == data
        assert list((revoking.dir / "spool" / "work").iterdir()) == []

    def test_a_claim_cut_between_its_renames_keeps_the_signature(self, revoking: CA,
                                                                  signers):
        """Killed between the claim's two renames (the signature goes first): the
        signature was in the claim round, the request still in incoming/. It was answered
        "unsigned" (request.signature_missing) and the signature stayed in work/ for ever
        (seen by the kill -9 test). Now recovery puts the signature back beside its
        request, and the pair is revoked."""
        serial = revoking.result("www")["serial"]
        drop(revoking, "revoke/cut.json", {"serial": serial, "reason": "superseded"},
             signers["alice"])
        claim = revoking.dir / "spool" / "work" / "claim-0000000000000001-bbbbbb" / "revoke"
        claim.mkdir(parents=True)
        shutil.move(revoking.incoming / "revoke" / "cut.json.asc", claim / "cut.json.asc")
        revoking.process()
        body = revoking.result("cut")
        assert body["status"] == "revoked", body
        assert state(revoking, serial)[1] == "superseded"
        assert (revoking.archive / "cut.json.asc").exists()
        assert list((revoking.dir / "spool" / "work").iterdir()) == []

    def test_committed_but_not_published_is_finished_not_redecided(self, revoking: CA,
                                                                   signers):
        """Killed between the commit and the publication: the register's answer is
        published as what it was (revoked, not rejected), the file archived, nothing
        recorded twice."""
        serial = revoking.result("www")["serial"]
        drop(revoking, "revoke/lost.json", {"serial": serial, "reason": "keyCompromise"},
             signers["alice"])
        revoking.process()
        first = revoking.result("lost")
        with sqlite3.connect(revoking.dir / "ca.db") as db:
            claim = db.execute("SELECT claim FROM submissions WHERE output_name = 'lost'"
                               ).fetchone()[0]
        # Put the world back as a crash after COMMIT would have left it.
        folder = revoking.dir / "spool" / "work" / claim / "revoke"
        folder.mkdir(parents=True)
        shutil.move(revoking.archive / "lost.json", folder / "lost.json")
        shutil.move(revoking.archive / "lost.json.asc", folder / "lost.json.asc")
        shutil.rmtree(revoking.outgoing / "lost")
        revoking.process()
        assert revoking.result("lost") == first
        assert (revoking.archive / "lost.json").exists()
        assert list((revoking.dir / "spool" / "work").iterdir()) == []
        assert len(events(revoking, "certificate.revoked")) == 1
        assert events(revoking, "request.republished") == []
        with sqlite3.connect(revoking.dir / "ca.db") as db:
            assert db.execute("SELECT COUNT(*) FROM submissions WHERE profile = 'revoke'"
                              ).fetchone()[0] == 1


class TestScopedUnlock:
    def test_exports_unlock_the_audit_key_only(self, ca: CA, tmp_path):
        """media export and audit export decrypted both CA keys; they need neither, and
        work with the CA key files gone."""
        keys = ca.dir / "keys"
        shutil.move(keys, tmp_path / "keys-away")
        stick = tmp_path / "stick"
        stick.mkdir()
        assert ca.run("media", "export", str(stick)).returncode == 0
        assert ca.run("audit", "export").returncode == 0
        unlocked = events(ca, "key.unlocked")
        assert unlocked and all("authorities" not in e["data"] for e in unlocked[-2:])
        assert all(e["data"].get("audit_key") for e in unlocked[-2:])

    def test_issuing_unlocks_only_the_issuing_ca(self, ca: CA):
        """Counter-case: a server request unlocks the intermediate, never the root."""
        ca.submit("server/x.csr", pem(make_csr("x.sample.com")[1]))
        ca.process()
        opened = [e["data"].get("authorities") for e in events(ca, "key.unlocked")]
        assert ["intermediate"] in opened and ["root"] not in opened


class TestFromAStick:
    def test_ingest_waits_for_revocation_answers(self, revoking: CA, signers, tmp_path):
        """`media ingest --wait` waits for the daemon to answer revocation requests too."""
        from tests.daemon import NotifySocket, Running

        serial = revoking.result("www")["serial"]
        stick = tmp_path / "stick" / "REVOKE"
        stick.mkdir(parents=True)
        body = json.dumps({"serial": serial, "reason": "superseded"}).encode()
        (stick / "RETIRE.JSON").write_bytes(body)
        (stick / "RETIRE.JSON.ASC").write_text(signers["alice"].sign(body))
        notify = NotifySocket(tmp_path / "notify.sock")
        running = Running(revoking, notify)
        try:
            notify.wait_for("READY=1")
            result = revoking.run("media", "ingest", "--wait", "60", str(stick.parent))
            assert result.returncode == 0, result.stdout + result.stderr
            assert "all 1 request(s) answered" in result.stdout
        finally:
            assert running.stop() == 0
            notify.close()
        assert state(revoking, serial)[1] == "superseded"


class TestKilledDaemonLeftovers:
    def test_a_killed_daemons_keyring_and_agent_are_reaped(self, revoking: CA, signers,
                                                            tmp_path):
        """SIGKILL skips every cleanup: the signers' temporary keyring and its gpg-agent
        stayed. The next process to hold the state directory's lock reaps them."""
        import glob
        import tempfile

        from spoolca.keys.openpgp import keyring_owner
        from tests.daemon import NotifySocket, Running
        from tests.pki import wait_for

        serial = revoking.result("www")["serial"]
        pattern = f"{tempfile.gettempdir()}/spoolca-keyring-{keyring_owner(revoking.dir)}-*"
        notify = NotifySocket(tmp_path / "notify.sock")
        running = Running(revoking, notify)
        try:
            notify.wait_for("READY=1")
            drop(revoking, "revoke/gone.json", {"serial": serial}, signers["alice"])
            wait_for((revoking.outgoing / "gone" / "result.json").exists, 30, "answered")
            running.kill()
        finally:
            notify.close()
        assert glob.glob(pattern), "the killed daemon's keyring is still there"
        assert revoking.run("process").returncode == 0
        assert glob.glob(pattern) == []
