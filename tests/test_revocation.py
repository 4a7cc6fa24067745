"""Revocation, CRLs and renewal: judged by openssl, pkilint's CRL linter and the register."""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import subprocess
import sys

import pytest
from cryptography import x509

from spoolca.config import load_config
from spoolca.errors import ClockError, SpoolcaError
from spoolca.process.session import CASession
from spoolca.register.store import Store
from spoolca.x509.crl import MAX_CRL_NUMBER, REASONS, RevokedEntry, encode_entry, sign_crl
from tests.pki import CA, make_csr, openssl, pem

CRL_DIR = ("spool", "outgoing", "crl")


def issue(ca: CA, name: str, folder: str = "server", **kwargs) -> str:
    cn = kwargs.pop("cn", f"{name}.sample.com")
    ca.submit(f"{folder}/{name}.csr", pem(make_csr(cn, **kwargs)[1]))
    ca.process()
    result = ca.result(name)
    assert result["status"] == "issued", result
    return result["serial"]


def crl(ca: CA, authority: str = "intermediate") -> x509.CertificateRevocationList:
    return x509.load_der_x509_crl(ca.dir.joinpath(*CRL_DIR, f"{authority}.crl").read_bytes())


def db(ca: CA) -> sqlite3.Connection:
    return sqlite3.connect(ca.dir / "ca.db")


class TestRevoke:
    def test_revoked_certificate_is_on_the_crl_with_its_reason(self, ca: CA):
        """keyCompromise with an invalidity date: both entry extensions, CRL number bumped."""
        serial = issue(ca, "bad")
        before = crl(ca).extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
        result = ca.run("revoke", serial, "--reason", "keyCompromise",
                        "--invalidity-date", "2026-01-02T03:04:05Z")
        assert result.returncode == 0, result.stderr
        assert "published intermediate CRL" in result.stdout
        current = crl(ca)
        assert current.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number \
            == before + 1
        entry = current.get_revoked_certificate_by_serial_number(int(serial, 16))
        assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason == \
            x509.ReasonFlags.key_compromise
        assert entry.extensions.get_extension_for_class(x509.InvalidityDate).value \
            .invalidity_date_utc.date().isoformat() == "2026-01-02"

    def test_unspecified_reason_is_not_written(self, ca: CA):
        """RFC 5280 5.3.1: no reasonCode entry extension for unspecified."""
        serial = issue(ca, "plain")
        assert ca.run("revoke", serial).returncode == 0
        entry = crl(ca).get_revoked_certificate_by_serial_number(int(serial, 16))
        assert len(entry.extensions) == 0

    @pytest.mark.parametrize("reason", ["CACompromise", "affiliationChanged", "superseded",
                                        "cessationOfOperation", "privilegeWithdrawn",
                                        "aACompromise"])
    def test_every_reason_by_its_openssl_name(self, ca: CA, reason):
        """Each RFC 5280 reason is accepted by its OpenSSL name and written to the CRL."""
        serial = issue(ca, "r")
        assert ca.run("revoke", serial, "--reason", reason).returncode == 0
        entry = crl(ca).get_revoked_certificate_by_serial_number(int(serial, 16))
        assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason \
            == REASONS[reason]

    def test_hold_and_release(self, ca: CA):
        """certificateHold puts it on the CRL; removeFromCRL takes it off again."""
        serial = issue(ca, "held")
        assert ca.run("revoke", serial, "--reason", "certificateHold").returncode == 0
        assert crl(ca).get_revoked_certificate_by_serial_number(int(serial, 16)) is not None
        assert ca.run("revoke", serial, "--reason", "removeFromCRL").returncode == 0
        assert crl(ca).get_revoked_certificate_by_serial_number(int(serial, 16)) is None
        listing = json.loads(ca.run("list", "--json").stdout)
        assert listing[0]["status"] == "valid"

    @pytest.mark.parametrize("case", ["unknown serial", "already revoked", "bad reason",
                                      "not on hold", "future invalidity"])
    def test_refusals_change_nothing(self, ca: CA, case):
        """Each refusal: exit 1, one sentence, the register and CRL untouched."""
        serial = issue(ca, "x")
        if case == "already revoked":
            ca.run("revoke", serial, "--reason", "superseded")
        before = crl(ca).public_bytes(__import__("cryptography.hazmat.primitives.serialization",
                                                 fromlist=["Encoding"]).Encoding.DER)
        args = {"unknown serial": ["0BAD", "--reason", "superseded"],
                "already revoked": [serial, "--reason", "keyCompromise"],
                "bad reason": [serial, "--reason", "lostIt"],
                "not on hold": [serial, "--reason", "removeFromCRL"],
                "future invalidity": [serial, "--reason", "keyCompromise",
                                      "--invalidity-date", "2999-01-01"]}[case]
        with db(ca) as conn:
            revoked_before = conn.execute("SELECT COUNT(*) FROM certificates WHERE revoked_at "
                                          "IS NOT NULL").fetchone()[0]
        result = ca.run("revoke", *args)
        assert result.returncode == 1
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
        with db(ca) as conn:
            assert conn.execute("SELECT COUNT(*) FROM certificates WHERE revoked_at IS NOT "
                                "NULL").fetchone()[0] == revoked_before
        assert crl(ca).public_bytes(__import__("cryptography.hazmat.primitives.serialization",
                                               fromlist=["Encoding"]).Encoding.DER) == before

    def test_revoked_subca_goes_on_the_roots_crl(self, ca: CA):
        """A subordinate CA is revoked by its issuer, the root."""
        ca.allow_unsigned_subca()
        extension = (x509.BasicConstraints(ca=True, path_length=None), True)
        serial = issue(ca, "team", "subca", cn="Team CA", sans=[], extensions=[extension])
        assert ca.run("revoke", serial, "--reason", "CACompromise").returncode == 0
        assert crl(ca, "root").get_revoked_certificate_by_serial_number(int(serial, 16))
        assert crl(ca).get_revoked_certificate_by_serial_number(int(serial, 16)) is None

    def test_export_index_writes_revocations_as_openssl_does(self, ca: CA, tmp_path):
        """openssl ca -revoke on its own index gives the same line but for the time."""
        serial = issue(ca, "idx")
        assert ca.run("revoke", serial, "--reason", "keyCompromise").returncode == 0
        ours = next(line for line in ca.run("export-index").stdout.splitlines()
                    if line.startswith("R")).split("\t")
        (tmp_path / "index.txt").write_text("")
        cnf = tmp_path / "openssl.cnf"
        cnf.write_text(f"[ca]\ndefault_ca = d\n[d]\ndatabase = {tmp_path}/index.txt\n"
                       f"certificate = {ca.outgoing}/ca/intermediate.pem\n"
                       f"private_key = {ca.dir}/keys/intermediate.key.pem\ndefault_md = sha384\n")
        openssl("ca", "-config", str(cnf), "-revoke", str(ca.outgoing / "idx" / "cert.pem"),
                "-crl_reason", "keyCompromise")
        theirs = (tmp_path / "index.txt").read_text().strip().split("\t")
        assert ours[0] == theirs[0] == "R"
        assert ours[1] == theirs[1] and ours[3:] == theirs[3:]
        assert ours[2].endswith("Z,keyCompromise") and theirs[2].endswith("Z,keyCompromise")
        assert len(ours[2]) == len(theirs[2])


class TestCRLsAreJudgedByOthers:
    def test_openssl_verifies_the_crls_and_uses_them(self, ca: CA):
        """openssl crl -verify accepts both; verify -crl_check refuses the revoked, accepts
        the good one."""
        good, bad = issue(ca, "good"), issue(ca, "bad")
        assert good != bad
        ca.run("revoke", bad, "--reason", "keyCompromise")
        folder = ca.dir.joinpath(*CRL_DIR)
        chain = ca.outgoing / "ca" / "ca-chain.pem"
        for name in ("root", "intermediate"):
            openssl("crl", "-in", str(folder / f"{name}.crl"), "-inform", "DER", "-CAfile",
                    str(chain), "-noout", "-verify")
        bundle = ca.dir / "bundle.pem"
        bundle.write_bytes(chain.read_bytes() + (folder / "intermediate.crl.pem").read_bytes()
                           + (folder / "root.crl.pem").read_bytes())
        openssl("verify", "-crl_check_all", "-CAfile", str(bundle),
                str(ca.outgoing / "good" / "cert.pem"))
        refused = openssl("verify", "-crl_check_all", "-CAfile", str(bundle),
                          str(ca.outgoing / "bad" / "cert.pem"), check=False)
        assert refused.returncode != 0 and "certificate revoked" in refused.stdout + \
            refused.stderr

    def test_pkilint_crl_linter_finds_nothing(self, ca: CA):
        """lint_crl -t CRL -p PKIX: no warning on either CRL, with entries of every shape."""
        for name, reason in (("a", "keyCompromise"), ("b", "unspecified"), ("c", "superseded")):
            ca.run("revoke", issue(ca, name), "--reason", reason,
                   *(["--invalidity-date", "2026-01-01"] if name == "a" else []))
        lint = os.path.join(os.path.dirname(sys.executable), "lint_crl")
        for name in ("root", "intermediate"):
            result = subprocess.run([lint, "lint", "-t", "CRL", "-p", "PKIX", "-s", "WARNING",
                                     str(ca.dir.joinpath(*CRL_DIR, f"{name}.crl"))],
                                    capture_output=True, text=True, timeout=60)
            assert [line for line in result.stdout.splitlines() if "(" in line] == []


class TestEntryEncoding:
    @pytest.mark.parametrize("reason", ["unspecified", "keyCompromise", "certificateHold",
                                        "aACompromise"])
    def test_stored_entries_match_what_cryptography_reads(self, reason):
        """An entry encoded once at revocation, put in a CRL of its own and read back by
        cryptography, has the same serial, date, reason and invalidity date."""
        moment = dt.datetime(2051, 3, 4, 5, 6, 7, tzinfo=dt.UTC)  # GeneralizedTime era
        entry = RevokedEntry(0x7F00AB, moment, reason, moment - dt.timedelta(days=1))
        read = crl_of(encode_entry(entry)).get_revoked_certificate_by_serial_number(0x7F00AB)
        assert read is not None
        assert read.revocation_date_utc == moment
        reasons = [e.value.reason for e in read.extensions if isinstance(e.value, x509.CRLReason)]
        assert reasons == ([] if reason == "unspecified" else [REASONS[reason]])
        invalidity = read.extensions.get_extension_for_class(x509.InvalidityDate).value
        assert invalidity.invalidity_date_utc == moment - dt.timedelta(days=1)


def crl_of(entry: bytes) -> x509.CertificateRevocationList:
    """A minimal signed v2 CRL (RFC 5280 5.1) holding one stored entry, for reading back."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    from spoolca.notation import der
    from tests.pki import subject

    key = ec.generate_private_key(ec.SECP256R1())
    algorithm = der.sequence(bytes.fromhex("06082a8648ce3d040302"))  # ecdsa-with-SHA256
    now = dt.datetime(2051, 3, 5, tzinfo=dt.UTC)
    tbs = der.sequence(der.integer(1), algorithm, subject("Test CA").public_bytes(),
                       der.time(now), der.sequence(entry))
    signature = key.sign(tbs, ec.ECDSA(hashes.SHA256()))
    return x509.load_der_x509_crl(der.sequence(tbs, algorithm, der.tlv(0x03, b"\0" + signature)))


def refresh(config, moment: dt.datetime):
    """The intermediate's CRL made in-process with the clock reading `moment`."""
    store = Store(config.database)
    try:
        with CASession(config, store, clock=lambda: moment) as session:
            return session.refresh_crls(["intermediate"])
    finally:
        store.close()


class TestCRLNumbers:
    def test_a_clock_set_back_publishes_no_crl(self, ca: CA):
        """A CRL older than the last one (it would be expired, or replace a newer one)
        is refused by the clock guard; nothing is recorded or written."""
        config = load_config(ca.config)
        later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)
        assert refresh(config, later)[0].number == 2  # init made #1
        published = (ca.outgoing / "crl" / "intermediate.crl").read_bytes()
        with pytest.raises(ClockError, match="earlier than"):
            refresh(config, later - dt.timedelta(days=100))
        assert (ca.outgoing / "crl" / "intermediate.crl").read_bytes() == published
        assert refresh(config, later + dt.timedelta(seconds=5))[0].number == 3

    def test_crl_number_limit(self, ca: CA):
        """2^159 and above is refused (RFC 5280 5.2.3; the library does not check)."""
        config = load_config(ca.config)
        store = Store(config.database)
        try:
            with CASession(config, store) as session:
                authority = session.preflight(
                    "CRL", ["intermediate"]).authorities["intermediate"]
        finally:
            store.close()
        now = dt.datetime.now(dt.UTC)
        entries = [encode_entry(RevokedEntry(5, now, "keyCompromise"))]
        signed = x509.load_der_x509_crl(sign_crl(
            authority, entries, number=MAX_CRL_NUMBER, this_update=now,
            next_update=now + dt.timedelta(days=1), linter=None))
        assert signed.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number \
            == MAX_CRL_NUMBER
        with pytest.raises(SpoolcaError, match="outside"):
            sign_crl(authority, entries, number=MAX_CRL_NUMBER + 1, this_update=now,
                     next_update=now + dt.timedelta(days=1), linter=None)

    def test_crl_command_and_validity(self, ca: CA):
        """spoolca crl remakes both; nextUpdate = thisUpdate + interval + overlap (30 and
        180 days); the return window closes the margin (2 days) before the first lapse."""
        result = ca.run("crl")
        assert result.returncode == 0 and result.stdout.count("published") == 2
        for name, days in (("intermediate", 30), ("root", 180)):
            current = crl(ca, name)
            assert (current.next_update_utc - current.last_update_utc).days == days
        schedule = json.loads(ca.dir.joinpath(*CRL_DIR, "next-update.json").read_text())
        lapse = schedule["intermediate"]["next_update"]
        window = schedule["return_window"]
        assert window["lapses_at"] == lapse and window["authority"] == "intermediate"
        assert dt.datetime.fromisoformat(lapse) - dt.datetime.fromisoformat(
            schedule["return_by"]) == dt.timedelta(days=2) == dt.timedelta(
            days=window["margin_days"])
        assert window["from"] == schedule["intermediate"]["next_crl_from"]


class TestRenewal:
    def _age(self, ca: CA, serial: str, days_left: int) -> None:
        """Move a certificate's end closer (the register is what the rules read)."""
        end = dt.datetime.now(dt.UTC) + dt.timedelta(days=days_left)
        with db(ca) as conn:
            conn.execute("UPDATE certificates SET not_after = ? WHERE serial = ?",
                         (end.strftime("%Y-%m-%dT%H:%M:%SZ"), serial))

    def test_same_csr_outside_the_window_is_republished(self, ca: CA):
        """Far from its end, the same CSR again gets the same certificate."""
        data = pem(make_csr("keep.sample.com")[1])
        ca.submit("server/keep.csr", data)
        ca.process()
        ca.submit("server/keep-again.csr", data)
        ca.process()
        assert ca.result("keep-again")["serial"] == ca.result("keep")["serial"]

    def test_same_csr_inside_the_window_is_renewed(self, ca: CA):
        """Within renew_before_days: a new certificate; the old one is marked superseded."""
        data = pem(make_csr("renew.sample.com")[1])
        ca.submit("server/renew.csr", data)
        ca.process()
        old = ca.result("renew")["serial"]
        self._age(ca, old, 10)
        ca.submit("server/renew.csr", data)
        ca.process()
        new = ca.result("renew")["serial"]
        assert new != old
        with db(ca) as conn:
            assert conn.execute("SELECT superseded_by FROM certificates WHERE serial = ?",
                                (old,)).fetchone()[0] == new
            assert conn.execute("SELECT COUNT(*) FROM requests").fetchone()[0] == 1
        ca.submit("server/renew-again.csr", data)  # the renewed request now re-publishes
        ca.process()
        assert ca.result("renew-again")["serial"] == new

    def test_new_csr_for_the_subject_inside_the_window_is_a_renewal(self, ca: CA):
        """unique_subject never blocks a legitimate renewal; outside the window it does."""
        old = issue(ca, "svc")
        ca.submit("server/svc-early.csr", pem(make_csr("svc.sample.com")[1]))
        ca.process()
        early = ca.result("svc-early")
        assert early["status"] == "rejected" and "renew it within 30 days" in \
            early["reasons"][0]["message"]
        self._age(ca, old, 5)
        ca.submit("server/svc-new.csr", pem(make_csr("svc.sample.com")[1]))
        ca.process()
        assert ca.result("svc-new")["status"] == "issued"

    def test_revoke_superseded(self, ca: CA):
        """revoke_superseded = true: the old certificate goes on the CRL as superseded."""
        ca.edit_config("revoke_superseded = false", "revoke_superseded = true")
        old = issue(ca, "rot")
        self._age(ca, old, 3)
        ca.submit("server/rot2.csr", pem(make_csr("rot.sample.com")[1]))
        ca.process()
        ca.run("crl")
        entry = crl(ca).get_revoked_certificate_by_serial_number(int(old, 16))
        assert entry.extensions.get_extension_for_class(x509.CRLReason).value.reason == \
            x509.ReasonFlags.superseded

    def test_renew_command(self, ca: CA):
        """spoolca renew SERIAL re-signs the stored request; renewing it twice is refused."""
        old = issue(ca, "op")
        result = ca.run("renew", old)
        assert result.returncode == 0, result.stderr
        new = ca.result("op")["serial"]
        assert new != old and f"renewed {old} as {new}" in result.stdout
        openssl("verify", "-CAfile", str(ca.outgoing / "op" / "chain.pem"),
                str(ca.outgoing / "op" / "cert.pem"))
        again = ca.run("renew", old)
        assert again.returncode == 1 and f"already renewed by {new}" in again.stderr
        assert f"Superseded by:   {new}" in ca.run("show", old).stdout

    def test_revoked_certificate_is_not_renewed_by_its_csr(self, ca: CA):
        """Counter-case: a revoked certificate's CSR again is refused: a new key is needed."""
        data = pem(make_csr("gone.sample.com")[1])
        ca.submit("server/gone.csr", data)
        ca.process()
        ca.run("revoke", ca.result("gone")["serial"], "--reason", "keyCompromise")
        ca.submit("server/gone2.csr", data)
        ca.process()
        assert [r["code"] for r in ca.result("gone2")["reasons"]] == [
            "request.certificate_revoked"]
        assert ca.run("renew", ca.result("gone")["serial"]).returncode == 1
