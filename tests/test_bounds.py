"""Work per request is bounded like bytes are, and a request that stops the service is
set aside with an answer (invariant 9): one stick can never wedge the daemon."""

from __future__ import annotations

import json
import sqlite3

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from spoolca.spool.tree import Spool
from tests.pki import CA, COMPANY, make_csr, pem


def many_names(count: int, cn: str = "many.sample.com") -> bytes:
    """A request naming COUNT hosts, as DER: 6,000 short names fit in 57 KiB, under the
    64 KiB request limit (the issue's stick)."""
    sans = [x509.DNSName(cn)] + [x509.DNSName(f"{i:x}.s.co") for i in range(count - 1)]
    return make_csr(cn, sans=sans)[1].public_bytes(serialization.Encoding.DER)


class TestCaps:
    def test_six_thousand_names_are_refused_before_any_work(self, ca: CA):
        """The issue's stick: 57 KiB CSRs naming 6,000 hosts each took seconds to build,
        lint and sign. Now each is refused by the policy, every one answered; 100 names
        (the default cap) are issued and 101 refused."""
        for index in range(3):
            ca.submit(f"server/big{index}.der", many_names(6000, f"big{index}.sample.com"))
        ca.submit("server/hundred.der", many_names(100, "hundred.sample.com"))
        ca.submit("server/one-more.der", many_names(101, "onemore.sample.com"))
        ca.process()
        for index in range(3):
            result = ca.result(f"big{index}")
            assert [r["code"] for r in result["reasons"]] == ["policy.san.too_many"]
            assert "6000 subjectAltNames" in result["reasons"][0]["message"]
        assert ca.result("hundred")["status"] == "issued"
        assert [r["code"] for r in ca.result("one-more")["reasons"]] == ["policy.san.too_many"]

    def test_a_subject_of_forty_attributes_is_refused(self, ca: CA):
        """The subject is bounded too ([policy] max_subject_attributes, default 32)."""
        name = x509.Name([x509.NameAttribute(oid, value) for oid, value in COMPANY]
                         + [x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, f"u{i}")
                            for i in range(40)]
                         + [x509.NameAttribute(NameOID.COMMON_NAME, "wide.sample.com")])
        ca.submit("server/wide.csr", pem(make_csr("wide.sample.com", name=name)[1]))
        ca.process()
        assert [r["code"] for r in ca.result("wide")["reasons"]] == \
            ["policy.dn.too_many_attributes"]

    def test_the_caps_are_configurable(self, ca: CA):
        """A factory profile of limits: [policy] max_san_entries raised, 500 names issue."""
        ca.edit_config("max_san_entries = 100", "max_san_entries = 600")
        ca.submit("server/factory.der", many_names(500, "factory.sample.com"))
        ca.process()
        assert ca.result("factory")["status"] == "issued"


class TestQuarantine:
    def crashed_round(self, ca: CA, tries: int, alone: int) -> str:
        """A claim round in work/ as a crash leaves it, with the tries recovery counted
        (the state a service that keeps dying on one request is in)."""
        for name in ("poison", "good"):
            ca.submit(f"server/{name}.csr", pem(make_csr(f"{name}.sample.com")[1]))
        spool = Spool(ca.dir / "spool")
        claim = spool.new_claim()
        for name in ("poison", "good"):
            assert spool.claim(ca.incoming / "server" / f"{name}.csr", "server", claim)
        with sqlite3.connect(ca.dir / "ca.db") as db:
            db.execute("INSERT INTO meta VALUES (?, ?)", (f"tries:{claim}", str(tries)))
            db.execute("INSERT INTO meta VALUES (?, ?)",
                       (f"tries:{claim}/server/poison.csr", str(alone)))
        return claim

    def test_a_request_that_keeps_stopping_the_service_is_quarantined(self, ca: CA):
        """A round already tried whole, its request already tried alone twice: that one
        is answered request.quarantined without being parsed, archived; the others in
        the round are issued; the same bytes sent again get the same answer."""
        self.crashed_round(ca, tries=1, alone=2)
        ca.process()
        poison = ca.result("poison")
        assert [r["code"] for r in poison["reasons"]] == ["request.quarantined"]
        assert (ca.archive / "poison.csr").exists()
        assert ca.result("good")["status"] == "issued"
        events = ca.run("audit", "show", "--event", "request.quarantined").stdout
        assert "poison.csr" in events
        ca.submit("server/again.csr", (ca.archive / "poison.csr").read_bytes())
        ca.process()
        assert [r["code"] for r in ca.result("again")["reasons"]] == ["request.quarantined"]
        with sqlite3.connect(ca.dir / "ca.db") as db:
            left = db.execute("SELECT COUNT(*) FROM meta WHERE key LIKE 'tries:%'").fetchone()
        assert left == (0,)  # answered: nothing left counting

    def test_a_round_that_failed_once_is_retried_whole(self, ca: CA):
        """Counter-case: a round recovery has not tried yet is answered as usual, the
        request that was to be quarantined included."""
        self.crashed_round(ca, tries=0, alone=2)
        ca.process()
        assert ca.result("poison")["status"] == "issued"
        assert ca.result("good")["status"] == "issued"


class TestQuarantinedRevocation:
    """The same for a revocation request (each is answered on its own, with gpg): one that
    keeps stopping the service is answered request.quarantined and nothing is revoked.
    Found by the kill -9 campaign, where a quarantined revocation request was applied."""

    def crashed_round(self, ca: CA, signers, serial: str, tries: int) -> None:
        ca.edit_config("revokers = []", f'revokers = ["{signers["alice"].fingerprint}"]')
        body = json.dumps({"serial": serial, "reason": "keyCompromise"}).encode()
        folder = ca.incoming / "revoke"
        folder.mkdir(exist_ok=True)
        (folder / "poison.json.asc").write_text(signers["alice"].sign(body))
        (folder / "poison.json").write_bytes(body)
        spool = Spool(ca.dir / "spool")
        claim = spool.new_claim()
        assert spool.claim(folder / "poison.json", "revoke", claim)
        with sqlite3.connect(ca.dir / "ca.db") as db:
            db.execute("INSERT INTO meta VALUES (?, ?)", (f"tries:{claim}", str(tries)))
            db.execute("INSERT INTO meta VALUES (?, ?)",
                       (f"tries:{claim}/revoke/poison.json", "2"))

    def issued(self, ca: CA) -> str:
        ca.submit("server/target.csr", pem(make_csr("target.sample.com")[1]))
        ca.process()
        return ca.result("target")["serial"]

    def test_it_is_answered_and_nothing_is_revoked(self, guarded: CA, signers):
        serial = self.issued(guarded)
        self.crashed_round(guarded, signers, serial, tries=1)
        guarded.process()
        answer = guarded.result("poison")
        assert [r["code"] for r in answer["reasons"]] == ["request.quarantined"]
        with sqlite3.connect(guarded.dir / "ca.db") as db:
            revoked = db.execute("SELECT revoked_at FROM certificates WHERE serial = ?",
                                 (serial,)).fetchone()
        assert revoked == (None,)

    def test_counter_case_a_round_not_yet_retried_whole_revokes(self, guarded: CA, signers):
        serial = self.issued(guarded)
        self.crashed_round(guarded, signers, serial, tries=0)
        guarded.process()
        assert guarded.result("poison")["status"] == "revoked"
