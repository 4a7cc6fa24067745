"""The CRL return trip (issue 29): publication interval and overlap, backdating, one
return window, lapse checks at export and trip close, the emergency re-sign and the
pre-signed series; judged by OpenSSL and by verify-publication."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509

from spoolca.config import load_config
from spoolca.config.text import render_config
from spoolca.errors import ConfigError
from tests.clock import FakeClock
from tests.pki import CA, make_csr, openssl, pem

DAY = dt.timedelta(days=1)


def crl_of(ca: CA, name: str) -> x509.CertificateRevocationList:
    return x509.load_der_x509_crl((ca.outgoing / "crl" / f"{name}.crl").read_bytes())


def schedule(ca: CA) -> dict:
    return json.loads((ca.outgoing / "crl" / "next-update.json").read_text())


def audit_events(ca: CA, event: str) -> list[dict]:
    shown = ca.run("audit", "show", "--event", event, "--json")
    assert shown.returncode == 0, shown.stderr
    return json.loads(shown.stdout)


def export_and_verify(ca: CA, stick: Path, served: Path, env: dict[str, str] | None = None
                      ) -> tuple[int, str]:
    """`media export` to STICK, then verify-publication against SERVED (as on the web
    server); (exit status, its output)."""
    shutil.rmtree(stick, ignore_errors=True)
    stick.mkdir(parents=True)
    exported = ca.run("media", "export", str(stick), env=env)
    assert exported.returncode == 0, exported.stderr
    results = stick / "spoolca-results"
    fingerprint = json.loads((results / "MANIFEST.json").read_text())["appliance_key"]
    checked = ca.run("verify-publication", str(results), "--served", str(served),
                     "--fingerprint", fingerprint, env=env)
    return checked.returncode, checked.stdout + checked.stderr


class TestScheduleSettings:
    def load(self, tmp_path: Path, old: str, new: str):
        path = tmp_path / "spoolca.toml"
        text = render_config()
        assert old in text
        path.write_text(text.replace(old, new, 1))
        return load_config(path)

    def test_interval_plus_overlap_is_the_life_and_the_older_names_still_read(self, tmp_path):
        config = self.load(tmp_path, "crl_publish_interval_days = 20\ncrl_overlap_days = 10",
                           "crl_publish_interval_days = 7\ncrl_overlap_days = 3")
        assert (config.authorities["intermediate"].crl_days,
                config.authorities["intermediate"].crl_refresh_days) == (10, 3)
        older = self.load(tmp_path, "crl_publish_interval_days = 20\ncrl_overlap_days = 10",
                          "crl_days = 30\ncrl_refresh_days = 10")
        assert older.authorities["intermediate"].crl_interval_days == 20

    def test_a_mix_of_names_and_an_empty_window_are_refused(self, tmp_path):
        with pytest.raises(ConfigError) as mixed:
            self.load(tmp_path, "crl_overlap_days = 10", "crl_overlap_days = 10\ncrl_days = 9")
        assert any("use one pair" in p for p in mixed.value.problems)
        with pytest.raises(ConfigError) as empty:
            self.load(tmp_path, "return_margin_days = 2", "return_margin_days = 10")
        assert any("leaves no return window for the intermediate CA" in p
                   for p in empty.value.problems)

    def test_backdating_is_bounded(self, tmp_path):
        with pytest.raises(ConfigError) as caught:
            self.load(tmp_path, "backdate_minutes = 0", "backdate_minutes = -5")
        assert "clock.backdate_minutes: must be an integer from 0 to 1440" in \
            caught.value.problems


class TestIntervalAndBackdating:
    def test_a_crl_lives_interval_plus_overlap_as_openssl_reads_it(self, ca: CA):
        ca.edit_config("crl_publish_interval_days = 20\ncrl_overlap_days = 10",
                       "crl_publish_interval_days = 4\ncrl_overlap_days = 3")
        assert ca.run("crl").returncode == 0
        path = ca.outgoing / "crl" / "intermediate.crl"
        shown = openssl("crl", "-inform", "DER", "-in", str(path), "-noout", "-lastupdate",
                        "-nextupdate").stdout
        dates = dict(line.split("=", 1) for line in shown.splitlines())
        life = dt.datetime.strptime(dates["nextUpdate"], "%b %d %H:%M:%S %Y %Z") - \
            dt.datetime.strptime(dates["lastUpdate"], "%b %d %H:%M:%S %Y %Z")
        assert life == 7 * DAY
        assert schedule(ca)["intermediate"]["next_crl_from"] == \
            (crl_of(ca, "intermediate").next_update_utc - 3 * DAY).strftime("%Y-%m-%dT%H:%M:%SZ")

    @pytest.mark.subprocess
    def test_backdated_by_the_skew_never_below_the_floor(self, ca: CA, tmp_path):
        """notBefore and thisUpdate 10 minutes early; a second CRL a moment later is
        dated at the floor the first left (the time it was made), not 10 minutes back."""
        ca.edit_config("backdate_minutes = 0", "backdate_minutes = 10")
        clock = FakeClock(tmp_path)
        clock.set(dt.timedelta(hours=2))  # the floor (init) is two hours behind
        ca.submit("server/early.csr", pem(make_csr("early.sample.com")[1]))
        made = clock.now()
        assert ca.run("process", env=clock.env).returncode == 0
        cert = x509.load_pem_x509_certificate((ca.outgoing / "early" / "cert.pem").read_bytes())
        skew = made - cert.not_valid_before_utc
        assert dt.timedelta(minutes=9) < skew < dt.timedelta(minutes=11)
        assert cert.not_valid_after_utc - cert.not_valid_before_utc == \
            dt.timedelta(days=375, seconds=-1)  # the life is the profile's, not longer
        clock.set(dt.timedelta(hours=3))  # an hour after the issuance
        assert ca.run("crl", env=clock.env).returncode == 0
        first = crl_of(ca, "intermediate").last_update_utc
        assert dt.timedelta(minutes=9) < clock.now() - first < dt.timedelta(minutes=12)
        assert ca.run("crl", env=clock.env).returncode == 0
        second = crl_of(ca, "intermediate").last_update_utc
        assert second - first >= dt.timedelta(minutes=9)  # the floor, not the skew


class TestReturnWindow:
    def test_trips_inside_the_window_keep_every_crl_fresh(self, ca: CA, tmp_path):
        """Three trips, the clock moved to each window's middle: the served CRLs never
        lapse; each trip's window is in the audit log; verify-publication passes."""
        ca.run("crl")
        clock, served, stick = FakeClock(tmp_path), tmp_path / "www", tmp_path / "stick"
        served.mkdir()
        for _trip in range(3):
            window = schedule(ca)["return_window"]
            opens = dt.datetime.fromisoformat(window["from"])
            closes = dt.datetime.fromisoformat(window["until"])
            moment = opens + (closes - opens) / 2
            clock.set(moment - dt.datetime.now(dt.UTC))
            for crl in served.glob("*.crl"):  # what relying parties hold now is valid
                held = x509.load_der_x509_crl(crl.read_bytes())
                assert held.next_update_utc > clock.now(), f"{crl.name} lapsed"
            confirm = ca.run("clock", "confirm", "--time",
                             clock.now().strftime("%Y-%m-%dT%H:%M:%SZ"), env=clock.env)
            assert confirm.returncode == 0, confirm.stderr
            assert ca.run("crl", env=clock.env).returncode == 0  # what the daemon does
            status, output = export_and_verify(ca, stick, served, clock.env)
            assert status == 0, output
            for crl in (stick / "spoolca-results" / "crl").glob("*.crl"):
                shutil.copy(crl, served / crl.name)
            assert schedule(ca)["return_window"]["until"] > window["until"]
        assert len(audit_events(ca, "crl.return_window")) >= 4

    def test_a_trip_planned_after_the_window_is_refused_and_export_warns(self, ca: CA,
                                                                         tmp_path):
        ca.run("crl")
        late = (dt.datetime.now(dt.UTC) + 60 * DAY).strftime("%Y-%m-%d")
        refused = ca.run("trip", "close", "--next", late)
        assert refused.returncode == 1 and "REFUSED" in refused.stderr
        assert "lapses at" in refused.stderr and not audit_events(ca, "trip.closed")
        stick = tmp_path / "stick"
        stick.mkdir()
        ca.edit_config("trip_interval_days = 0", "trip_interval_days = 60")
        exported = ca.run("media", "export", str(stick))
        assert exported.returncode == 0 and "WARNING: the next trip is planned" in \
            exported.stderr
        report = json.loads((stick / "spoolca-results" / "report.json").read_text())
        assert report["lapse"] and report["lapse"] in report["warnings"]
        accepted = ca.run("trip", "close", "--next", late, "--accept-lapse")
        assert accepted.returncode == 0
        [closed] = audit_events(ca, "trip.closed")
        assert closed["data"]["accepted_lapse"] and closed["data"]["next_trip"].startswith(late)
        soon = (dt.datetime.now(dt.UTC) + 5 * DAY).strftime("%Y-%m-%d")
        assert ca.run("trip", "close", "--next", soon).returncode == 0  # the counter-case
        assert ca.run("trip", "close", "--next", "2020-01-01").returncode == 2


class TestEmergency:
    def test_extend_reissues_the_same_list_with_a_new_next_update(self, ca: CA):
        ca.submit("server/gone.csr", pem(make_csr("gone.sample.com")[1]))
        ca.process()
        serial = ca.result("gone")["serial"]
        assert ca.run("revoke", serial, "--reason", "keyCompromise").returncode == 0
        before = crl_of(ca, "intermediate")
        until = (dt.datetime.now(dt.UTC) + 90 * DAY).replace(microsecond=0)
        extended = ca.run("crl", "--extend", "--until", until.strftime("%Y-%m-%dT%H:%M:%SZ"),
                          "--ca", "intermediate")
        assert extended.returncode == 0, extended.stderr
        after = crl_of(ca, "intermediate")
        number = x509.CRLNumber.oid
        assert after.extensions.get_extension_for_oid(number).value.crl_number > \
            before.extensions.get_extension_for_oid(number).value.crl_number
        assert after.next_update_utc == until and after.last_update_utc >= before.last_update_utc
        assert [r.serial_number for r in after] == [r.serial_number for r in before]
        verified = openssl("crl", "-inform", "DER", "-in",
                           str(ca.outgoing / "crl" / "intermediate.crl"), "-CAfile",
                           str(ca.outgoing / "ca" / "intermediate.pem"), "-noout",
                           check=False)
        assert "verify OK" in verified.stderr + verified.stdout
        [event] = [e for e in audit_events(ca, "crl.published") if e["data"]["extended"]]
        assert event["data"]["next_update"] == until.strftime("%Y-%m-%dT%H:%M:%SZ")
        past = ca.run("crl", "--extend", "--until", "2020-01-01")  # the counter-case
        assert past.returncode != 0 and "must end in the future" in past.stderr

    def test_a_presigned_series_is_verified_and_voided_by_a_newer_crl(self, ca: CA, tmp_path):
        made = ca.run("crl", "--presign", "3", "--ca", "intermediate")
        assert made.returncode == 0, made.stderr
        assert "NONE OF THESE CRLs CAN CARRY A REVOCATION" in made.stderr
        folder = ca.outgoing / "crl-presigned"
        series = sorted(folder.glob("intermediate--from-*.crl"))
        assert len(series) == 3
        crls = [x509.load_der_x509_crl(p.read_bytes()) for p in series]
        numbers = [c.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number
                   for c in crls]
        assert numbers == list(range(numbers[0], numbers[0] + 3))
        starts = [c.last_update_utc for c in crls]
        assert starts[1] - starts[0] == starts[2] - starts[1] == 20 * DAY
        for path in series:  # OpenSSL: the CA signed each; not yet valid is their nature
            checked = openssl("crl", "-inform", "DER", "-in", str(path), "-CAfile",
                              str(ca.outgoing / "ca" / "intermediate.pem"), "-noout",
                              check=False)
            assert "verify OK" in checked.stdout + checked.stderr
        assert "REVOCATION MADE AFTER" in (folder / "README.txt").read_text()
        window = schedule(ca)["return_window"]
        assert window["authority"] == "root" or window["presigned"]
        served = tmp_path / "www"
        served.mkdir()
        status, output = export_and_verify(ca, tmp_path / "stick", served)
        assert status == 0 and output.count("pre-signed, to be served") == 3, output
        [event] = audit_events(ca, "crl.presigned")
        assert event["data"]["numbers"] == numbers
        # A newer CRL (a revocation, a trip) is numbered above the series and voids it.
        assert ca.run("crl", "--ca", "intermediate").returncode == 0
        newest = crl_of(ca, "intermediate")
        assert newest.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number \
            > numbers[-1]
        assert not list(folder.glob("intermediate--from-*.crl"))
        # The counter-case: a series CRL would roll back what is now served.
        shutil.copy(ca.outgoing / "crl" / "intermediate.crl", served / "intermediate.crl")
        stick = tmp_path / "old-stick"
        stick.mkdir()
        shutil.copytree(tmp_path / "stick" / "spoolca-results", stick / "spoolca-results")
        fingerprint = json.loads((stick / "spoolca-results" / "MANIFEST.json").read_text())[
            "appliance_key"]
        replay = ca.run("verify-publication", str(stick / "spoolca-results"), "--served",
                        str(served), "--fingerprint", fingerprint)
        assert replay.returncode == 1 and "rolled back" in replay.stdout


class TestScope:
    """issuingDistributionPoint (item 6): the root's CRL is an ARL (only CA
    certificates), the issuing CA's covers only end-entity certificates; relying parties
    and pkilint accept both, and a scope the register cannot vouch for is left out."""

    def scope(self, ca: CA, name: str) -> x509.IssuingDistributionPoint | None:
        try:
            found = crl_of(ca, name).extensions.get_extension_for_class(
                x509.IssuingDistributionPoint)
        except x509.ExtensionNotFound:
            return None
        assert found.critical  # RFC 5280 5.2.5
        return found.value

    def test_arl_and_leaf_crl_are_scoped_and_accepted(self, ca: CA):
        for name in ("keep", "gone"):
            ca.submit(f"server/{name}.csr", pem(make_csr(f"{name}.sample.com")[1]))
        ca.process()
        assert ca.run("revoke", ca.result("gone")["serial"]).returncode == 0
        root, leaf = self.scope(ca, "root"), self.scope(ca, "intermediate")
        assert root is not None and root.only_contains_ca_certs
        assert not root.only_contains_user_certs
        assert leaf is not None and leaf.only_contains_user_certs
        assert root.full_name is None and leaf.full_name is None
        chain = str(ca.outgoing / "ca" / "ca-chain.pem")
        bundle = str(ca.outgoing / "crl" / "crl-bundle.pem")
        verdicts = {name: openssl("verify", "-crl_check_all", "-CAfile", chain, "-CRLfile",
                                  bundle, str(ca.outgoing / name / "cert.pem"), check=False)
                    for name in ("keep", "gone")}
        assert verdicts["keep"].returncode == 0
        assert "certificate revoked" in verdicts["gone"].stdout + verdicts["gone"].stderr
        gnutls = shutil.which("certtool")
        if gnutls:
            checked = subprocess.run(
                [gnutls, "--verify", "--load-ca-certificate", chain, "--load-crl",
                 str(ca.outgoing / "crl" / "intermediate.crl.pem"), "--infile",
                 str(ca.outgoing / "gone" / "cert.pem")], capture_output=True, text=True)
            assert checked.returncode == 1 and "revoked" in checked.stdout
        for kind, name in (("ARL", "root"), ("CRL", "intermediate")):
            linted = subprocess.run(
                [str(Path(sys.executable).parent / "lint_crl"), "lint", "-t", kind, "-p",
                 "PKIX", str(ca.outgoing / "crl" / f"{name}.crl.pem")],
                capture_output=True, text=True)
            assert linted.returncode == 0 and not linted.stdout.strip(), linted.stdout

    def test_no_scope_where_the_register_cannot_vouch_for_it(self, ca: CA):
        ca.submit("server/odd.csr", pem(make_csr("odd.sample.com")[1]))
        ca.process()
        assert ca.run("crl").returncode == 0
        assert self.scope(ca, "intermediate") is not None
        with sqlite3.connect(ca.dir / "ca.db") as conn:  # a profile no longer configured
            conn.execute("UPDATE certificates SET profile = 'retired'")
        assert ca.run("crl").returncode == 0
        assert self.scope(ca, "intermediate") is None
        assert self.scope(ca, "root") is not None  # the root still certifies only CAs


def test_a_crl_a_wrong_clock_dated_ahead_is_cured_by_a_higher_number(ca: CA, tmp_path):
    """A clock 3 days ahead (within the guard's ceiling) dates a CRL that relying parties
    refuse until then; once the clock is repaired, the next CRL (a higher number, dated
    right) may replace it on the web server. A served CRL dated in the past is never
    replaced by an earlier-dated one (tests/test_publication.py)."""
    clock = FakeClock(tmp_path)
    clock.set(3 * DAY)
    assert ca.run("crl", env=clock.env).returncode == 0
    served = tmp_path / "www"
    served.mkdir()
    shutil.copy(ca.outgoing / "crl" / "intermediate.crl", served / "intermediate.crl")
    clock.set(dt.timedelta(0))
    repaired = ca.run("clock", "confirm", "--repair", "--time",
                      clock.now().strftime("%Y-%m-%dT%H:%M:%SZ"), env=clock.env)
    assert repaired.returncode == 0, repaired.stderr
    assert ca.run("crl", env=clock.env).returncode == 0
    status, output = export_and_verify(ca, tmp_path / "stick", served)
    assert status == 0, output


def test_a_crl_is_published_where_the_certificates_it_covers_say(tmp_path):
    """The intermediate certificate names the root CRL's URL (cRLDistributionPoints);
    the manifest's URL for root.crl must be that one: after the root's crl_url is
    changed in the configuration, verify-publication refuses to publish it elsewhere,
    where relying parties would never look."""
    from tests.pki import init_ca

    ca = init_ca(tmp_path / "ca", "--no-passphrase", "--root-crl-url",
                 "http://pki.sample.com/root.crl",
                 "--intermediate-crl-url", "http://pki.sample.com/intermediate.crl")
    (tmp_path / "www").mkdir()
    status, output = export_and_verify(ca, tmp_path / "stick", tmp_path / "www")
    assert status == 0 and "for http://pki.sample.com/root.crl" in output, output
    ca.edit_config('crl_url = "http://pki.sample.com/root.crl"',
                   'crl_url = "http://crl.sample.com/root.crl"')
    assert ca.run("crl").returncode == 0
    status, output = export_and_verify(ca, tmp_path / "stick", tmp_path / "www")
    assert status == 1, output
    assert "root.crl: to be published at http://crl.sample.com/root.crl, but " \
        "intermediate.pem names http://pki.sample.com/root.crl" in output
