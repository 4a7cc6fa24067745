"""A restore never goes back on a revocation, and a register behind what it published is
caught up from what it published: the exported log (stored as the auditors hold it), each
certificate and CRL verified by our CAs, CRL numbers never reused."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import sqlite3
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from tests.clock import FakeClock
from tests.pki import CA, fingerprint_of, make_csr, pem, spoolca
from tests.test_audit import verify


def crl_number(path: Path) -> int:
    crl = x509.load_der_x509_crl(path.read_bytes())
    return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number


def revoked_serials(path: Path) -> set[str]:
    """The serials a CRL lists, as the register writes them (whole octets, upper case)."""
    from spoolca.x509.issuer import serial_hex

    return {serial_hex(entry.serial_number) for entry in
            x509.load_der_x509_crl(path.read_bytes())}


def issue(ca: CA, *names: str) -> dict[str, str]:
    for name in names:
        ca.submit(f"server/{name}.csr", pem(make_csr(f"{name}.sample.com")[1]))
    ca.process()
    return {name: ca.result(name)["serial"] for name in names}


def register(ca: CA, sql: str, *args):
    with sqlite3.connect(ca.dir / "ca.db") as db:
        return db.execute(sql, args).fetchall()


def put_back(ca: CA, old: Path) -> None:
    """An older copy of ca.db in place of the register (its WAL gone with it)."""
    for suffix in ("", "-wal", "-shm"):
        (ca.dir / f"ca.db{suffix}").unlink(missing_ok=True)
    shutil.copy2(old, ca.dir / "ca.db")


class TestCatchUp:
    def test_an_older_register_is_caught_up_from_outgoing(self, ca: CA, tmp_path):
        """ca.db put back from before two issuances, a revocation and a CRL: `catch-up`
        folds them back (the log as exported, the certificates, the revocation, the CRL
        number); then a CSR sent again is answered, not signed twice, the next CRL lists
        the revocation above every number published, and the log verifies."""
        old = tmp_path / "old.db"
        shutil.copy2(ca.dir / "ca.db", old)
        serials = issue(ca, "c1", "c2")
        assert ca.run("revoke", serials["c1"], "--reason", "keyCompromise").returncode == 0
        published = crl_number(ca.outgoing / "crl" / "intermediate.crl")
        put_back(ca, old)
        assert ca.run("process").returncode == 1
        caught = ca.run("catch-up")
        assert caught.returncode == 0, caught.stderr
        assert "not folded" not in caught.stdout, caught.stdout
        assert register(ca, "SELECT serial, revocation_reason FROM certificates ORDER BY "
                        "serial") == sorted([(serials["c1"], "keyCompromise"),
                                             (serials["c2"], None)])
        ca.submit("server/again.csr", (ca.archive / "c2.csr").read_bytes())
        assert ca.process().returncode == 0
        assert ca.result("again")["serial"] == serials["c2"]
        assert register(ca, "SELECT COUNT(*) FROM certificates") == [(2,)]
        assert ca.run("crl").returncode == 0
        number = crl_number(ca.outgoing / "crl" / "intermediate.crl")
        assert number > published
        assert serials["c1"] in revoked_serials(ca.outgoing / "crl" / "intermediate.crl")
        assert verify(ca, ca.outgoing / "audit").returncode == 0
        caught_up = json.loads(ca.run("audit", "show", "--json", "--event",
                                      "register.caught_up").stdout)
        assert len(caught_up) == 1 and caught_up[0]["data"]["audit_entries"] > 0

    def test_what_does_not_verify_is_not_folded(self, ca: CA, tmp_path):
        """A source holding a certificate signed by another key under our issuer's name,
        a CRL signed by another key revoking a good certificate, and a log with one byte
        changed: none of it is folded, and each is named."""
        serials = issue(ca, "good")
        source = tmp_path / "source"
        shutil.copytree(ca.outgoing, source)
        forger = ec.generate_private_key(ec.SECP256R1())
        issuer = x509.load_pem_x509_certificate((ca.outgoing / "ca" / "intermediate.pem")
                                                .read_bytes())
        fake = (x509.CertificateBuilder().subject_name(issuer.subject)
                .issuer_name(issuer.subject).public_key(forger.public_key()).serial_number(77)
                .not_valid_before(issuer.not_valid_before_utc)
                .not_valid_after(issuer.not_valid_after_utc).sign(forger, hashes.SHA256()))
        (source / "forged").mkdir()
        (source / "forged" / "cert.crt").write_bytes(fake.public_bytes(serialization.Encoding.DER))
        (source / "forged" / "result.json").write_text(json.dumps(
            {"status": "issued", "request_sha256": "0" * 64, "profile": "server"}))
        crl = (x509.CertificateRevocationListBuilder().issuer_name(issuer.subject)
               .last_update(issuer.not_valid_before_utc).next_update(issuer.not_valid_after_utc)
               .add_extension(x509.CRLNumber(999999), critical=False)
               .add_revoked_certificate(x509.RevokedCertificateBuilder()
                                        .serial_number(int(serials["good"], 16))
                                        .revocation_date(issuer.not_valid_before_utc).build())
               .sign(forger, hashes.SHA256()))
        (source / "crl" / "intermediate.crl").write_bytes(
            crl.public_bytes(serialization.Encoding.DER))
        segment = sorted((source / "audit").glob("log-*.jsonl"))[-1]
        segment.write_bytes(segment.read_bytes().replace(b'"good', b'"GOOD', 1))
        caught = ca.run("catch-up", str(source))
        assert caught.returncode == 0, caught.stderr
        assert "forged: its certificate is not signed by this CA" in caught.stdout
        assert "crl/intermediate.crl: not signed by this CA" in caught.stdout
        assert "does not verify by the appliance key" in caught.stdout
        assert register(ca, "SELECT COUNT(*) FROM certificates WHERE revoked_at IS NOT NULL"
                        ) == [(0,)]
        assert register(ca, "SELECT COUNT(*) FROM certificates") == [(1,)]


class TestRestore:
    def _stick(self, ca: CA, folder: Path) -> Path:
        """A stick's export made after the backup, as an operator carries it out."""
        folder.mkdir()
        identity = folder.parent / "identity"
        identity.write_text("UUID=1234-ABCD\nLABEL=SPOOLCA\n")
        made = ca.run("media", "export", str(folder), "--identity", str(identity))
        assert made.returncode == 0, made.stderr
        return folder / "spoolca-results"

    def test_restore_with_catch_up_keeps_every_revocation(self, ca: CA, tmp_path):
        """Backup; then two issued, one revoked, a CRL, a stick export. The backup restored
        with --catch-up from that stick has the revocation, publishes a CRL at once above
        the stick's number, and its exported log verifies and extends the old one."""
        archive = tmp_path / "backup.tar.gz"
        assert ca.run("backup", str(archive)).returncode == 0
        serials = issue(ca, "late1", "late2")
        assert ca.run("revoke", serials["late1"], "--reason", "keyCompromise").returncode == 0
        stick = self._stick(ca, tmp_path / "stick")
        published = crl_number(stick / "crl" / "intermediate.crl")
        target = tmp_path / "r"
        done = spoolca("restore", str(archive), "--dir", str(target), "--fingerprint",
                       fingerprint_of(ca), "--catch-up", str(stick))
        assert done.returncode == 0, done.stderr
        assert "WARNING" not in done.stdout, done.stdout
        assert "caught up from" in done.stdout and "not folded" not in done.stdout
        restored = CA(target)
        assert restored.run("process").returncode == 0  # recovery: the results again
        assert restored.run("crl").returncode == 0  # what the daemon does at its start
        crl = restored.outgoing / "crl" / "intermediate.crl"
        assert crl_number(crl) > published
        assert serials["late1"] in revoked_serials(crl)
        assert verify(restored, restored.outgoing / "audit").returncode == 0
        # The stick carried no result of theirs: known from the log alone, never re-signed.
        assert "not held here" in restored.run("show", serials["late1"]).stdout
        restored.submit("server/again.csr", (ca.archive / "late2.csr").read_bytes())
        assert restored.run("process").returncode == 0
        again = restored.result("again")
        assert again["serial"] == serials["late2"] and again["status"] == "issued"
        assert again["notes"][0]["code"] == "result.certificate_not_held"
        assert not (restored.outgoing / "again" / "cert.pem").exists()
        head = json.loads((stick / "MANIFEST.json").read_text())["audit_head"]
        since = verify(restored, restored.outgoing / "audit", "--since-head",
                       f"{head['seq']}:{head['hash']}")
        assert since.returncode == 0, since.stdout

    def test_a_catch_up_source_older_than_the_backup_is_said_to_be(self, ca: CA, tmp_path):
        """A copy of outgoing/ taken before the backup (found by the model test: a copy
        from an appliance restored without catch-up held no log) cannot say what came
        after the backup: restore says that nothing was folded from its log, and why,
        instead of a quiet "0 audit entries folded". Its counter-case is the test above:
        a stick made after the backup, and no such sentence."""
        old_copy = tmp_path / "old-outgoing"
        shutil.copytree(ca.outgoing, old_copy)
        issue(ca, "later")
        archive = tmp_path / "backup.tar.gz"
        assert ca.run("backup", str(archive)).returncode == 0
        done = spoolca("restore", str(archive), "--dir", str(tmp_path / "r"), "--fingerprint",
                       fingerprint_of(ca), "--catch-up", str(old_copy))
        assert done.returncode == 0, done.stderr
        assert "not folded: the audit log in" in done.stdout
        assert "it is older than what was restored" in done.stdout, done.stdout
        shutil.rmtree(old_copy / "audit")
        again = spoolca("restore", str(archive), "--dir", str(tmp_path / "r2"),
                        "--fingerprint", fingerprint_of(ca), "--catch-up", str(old_copy))
        assert again.returncode == 0 and "is missing: no audit log to fold" in again.stdout

    def test_a_request_answered_again_is_answered_again_after_a_catch_up(self, ca: CA,
                                                                         tmp_path):
        """A CSR sent again under another name was answered with the certificate it
        already had; a catch-up from result folders alone (no log to fold) keeps that
        answer too: the restored appliance publishes it again, and signs nothing twice.
        (The model test found the second answer lost: the certificate was held, so its
        folder was skipped.)"""
        archive = tmp_path / "backup.tar.gz"
        assert ca.run("backup", str(archive)).returncode == 0
        serial = issue(ca, "first")["first"]
        ca.submit("server/again.csr", (ca.archive / "first.csr").read_bytes())
        assert ca.process().returncode == 0 and ca.result("again")["serial"] == serial
        copy = tmp_path / "copy"
        shutil.copytree(ca.outgoing, copy)
        shutil.rmtree(copy / "audit")  # result folders are all the catch-up has
        done = spoolca("restore", str(archive), "--dir", str(tmp_path / "r"),
                       "--fingerprint", fingerprint_of(ca), "--catch-up", str(copy))
        assert done.returncode == 0, done.stderr
        restored = CA(tmp_path / "r")
        assert restored.process().returncode == 0
        for name in ("first", "again"):
            assert restored.result(name)["serial"] == serial, name
        assert register(restored, "SELECT COUNT(*) FROM certificates") == [(1,)]

    def test_a_shorter_log_of_another_history_is_called_two_histories(self, ca: CA,
                                                                       tmp_path):
        """A copy of outgoing/ from an appliance restored without catch-up (a new history
        from an old backup) whose log is no longer than a newer backup's: restoring the
        newer backup with it says "two histories" (before, it said nothing, or "older",
        though the log is not a prefix of ours); the log goes on from the backup's
        history, and the model test relies on the word."""
        older, newer = tmp_path / "b0.tar.gz", tmp_path / "b1.tar.gz"
        assert ca.run("backup", str(older)).returncode == 0
        issue(ca, "n1", "n2", "n3")
        assert ca.run("backup", str(newer)).returncode == 0
        assert spoolca("restore", str(older), "--dir", str(tmp_path / "r1"), "--fingerprint",
                       fingerprint_of(ca)).returncode == 0
        side = CA(tmp_path / "r1")
        assert side.run("crl").returncode == 0 and side.run("audit", "export").returncode == 0
        done = spoolca("restore", str(newer), "--dir", str(tmp_path / "r2"), "--fingerprint",
                       fingerprint_of(ca), "--catch-up", str(side.outgoing))
        assert done.returncode == 0, done.stderr
        assert "two histories" in done.stdout and "older" not in done.stdout, done.stdout

    def test_a_crl_the_parser_chokes_on_is_named_not_fatal(self, ca: CA, tmp_path):
        """A stick's crl/ holding bytes cryptography refuses with InvalidVersion (not a
        ValueError: the golden vector tests/vectors/publication/crl-version-0.der): the
        catch-up names it and folds the rest, instead of stopping on it."""
        archive = tmp_path / "backup.tar.gz"
        assert ca.run("backup", str(archive)).returncode == 0
        serial = issue(ca, "kept")["kept"]
        copy = tmp_path / "copy"
        shutil.copytree(ca.outgoing, copy)
        shutil.rmtree(copy / "audit")
        vector = Path(__file__).parent / "vectors" / "publication" / "crl-version-0.der"
        shutil.copyfile(vector, copy / "crl" / "root.crl")
        done = spoolca("restore", str(archive), "--dir", str(tmp_path / "r"),
                       "--fingerprint", fingerprint_of(ca), "--catch-up", str(copy))
        assert done.returncode == 0, done.stderr
        assert "crl/root.crl: not a readable CRL (InvalidVersion" in done.stdout, done.stdout
        assert register(CA(tmp_path / "r"), "SELECT serial FROM certificates") == [(serial,)]

    def test_restore_ahead_numbers_crls_from_the_guarded_time(self, ca: CA, tmp_path):
        """A restore's CRL numbers restart from the first CRL's time, which the clock
        guard passed, not from the restore's clock: a restore with the clock 400 days
        ahead makes no CRL (refused), and once the clock is right its CRL is numbered
        from the right time. Then a second restore of the same backup, later, numbers
        above the first restore's CRLs (the model test found both going down)."""
        clock = FakeClock(tmp_path)
        archive = tmp_path / "backup.tar.gz"
        assert ca.run("backup", str(archive)).returncode == 0
        clock.set(dt.timedelta(days=400))
        first = tmp_path / "r1"
        done = spoolca("restore", str(archive), "--dir", str(first), "--fingerprint",
                       fingerprint_of(ca), env=clock.env)
        assert done.returncode == 0, done.stderr
        restored = CA(first)
        refused = restored.run("crl", env=clock.env)
        assert refused.returncode == 1 and "no CRL was signed" in refused.stderr
        clock.set(dt.timedelta(0))
        assert restored.run("crl", env=clock.env).returncode == 0
        number = crl_number(restored.outgoing / "crl" / "intermediate.crl")
        today = int(dt.datetime.now(dt.UTC).strftime("%Y%m%d")) * 10 ** 9
        assert today <= number < today + 10 ** 9, number  # today's, not 400 days ahead
        second = tmp_path / "r2"
        assert spoolca("restore", str(archive), "--dir", str(second), "--fingerprint",
                       fingerprint_of(ca)).returncode == 0
        assert CA(second).run("crl").returncode == 0
        assert crl_number(CA(second).outgoing / "crl" / "intermediate.crl") > number

    def test_restore_without_catch_up_warns_and_never_reuses_a_crl_number(self, ca: CA,
                                                                           tmp_path):
        """Counter-case: without --catch-up the revocation made after the backup is lost,
        and restore says so plainly; still the next CRL's number is above every number
        the appliance published meanwhile."""
        archive = tmp_path / "backup.tar.gz"
        assert ca.run("backup", str(archive)).returncode == 0
        serials = issue(ca, "late")
        for _ in range(3):
            assert ca.run("crl").returncode == 0
        assert ca.run("revoke", serials["late"]).returncode == 0
        published = crl_number(ca.outgoing / "crl" / "intermediate.crl")
        target = tmp_path / "r"
        done = spoolca("restore", str(archive), "--dir", str(target), "--fingerprint",
                       fingerprint_of(ca))
        assert done.returncode == 0, done.stderr
        assert "WARNING: anything this appliance issued or revoked after" in done.stdout
        restored = CA(target)
        assert restored.run("crl").returncode == 0
        assert crl_number(restored.outgoing / "crl" / "intermediate.crl") > published
