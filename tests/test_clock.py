"""Time in both directions (invariant 15): the clock guard has a floor and a ceiling, a
refusal moves neither, and a wrong clock never leaves the CA unable to sign once the
clock is right again, at most after an audited confirmation. The real command line and
daemon run with a wrong system clock (libfaketime), gpg included."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
import time

from cryptography import x509

from spoolca.register.clock import ClockGuard
from spoolca.register.records import format_time
from tests.clock import FakeClock
from tests.daemon import NotifySocket, Running
from tests.pki import CA, make_csr, pem, wait_for
from tests.test_audit import verify
from tests.test_daemon import result_of

YEARS_3 = dt.timedelta(days=3 * 365)


def floor(ca: CA) -> str:
    with sqlite3.connect(ca.dir / "ca.db") as db:
        return db.execute("SELECT value FROM meta WHERE key = 'clock_floor'").fetchone()[0]


def entries(ca: CA, event: str) -> list[dict]:
    with sqlite3.connect(ca.dir / "ca.db") as db:
        rows = db.execute("SELECT time, data FROM audit WHERE event = ? ORDER BY seq",
                          (event,)).fetchall()
    return [{"time": time_, **json.loads(data)} for time_, data in rows]


def latest_dates(ca: CA) -> tuple[str, str]:
    """The latest certificate notBefore and CRL thisUpdate the register holds."""
    with sqlite3.connect(ca.dir / "ca.db") as db:
        return (db.execute("SELECT MAX(not_before) FROM certificates").fetchone()[0] or "",
                db.execute("SELECT MAX(this_update) FROM crls").fetchone()[0])


def typed(clock: FakeClock) -> str:
    """What an operator reads off a trusted clock (the right time, as the fake one is)."""
    return clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")


class TestCeiling:
    def test_a_run_three_years_ahead_signs_nothing_and_leaves_no_trace(self, ca: CA,
                                                                        tmp_path):
        """The issue's repro: `process` and `crl` with the clock 3 years ahead are refused
        (one sentence, exit 1); the request waits; the floor does not move; back at the
        right time, it is issued at once. No certificate or CRL is dated ahead."""
        clock = FakeClock(tmp_path)
        before = floor(ca)
        ca.submit("server/ahead.csr", pem(make_csr("ahead.sample.com")[1]))
        clock.set(YEARS_3)
        result = ca.run("process", env=clock.env)
        assert result.returncode == 1
        assert "more than 7 days after" in result.stderr and "clock confirm" in result.stderr
        assert "Traceback" not in result.stderr
        crl = ca.run("crl", env=clock.env)
        assert crl.returncode == 1 and "no CRL was signed" in crl.stderr
        assert (ca.incoming / "server" / "ahead.csr").exists()
        assert floor(ca) == before
        assert all(value <= format_time(dt.datetime.now(dt.UTC)) for value in latest_dates(ca))
        clock.set(dt.timedelta(0))
        assert ca.run("process", env=clock.env).returncode == 0
        assert ca.result("ahead")["status"] == "issued"
        assert ca.result("ahead")["not_before"] <= format_time(dt.datetime.now(dt.UTC))

    def test_a_daemon_started_past_the_intermediates_end_locks_nothing(self, ca: CA,
                                                                        tmp_path):
        """Started with the clock past the intermediate's end: it signs nothing, says so,
        and what it records meanwhile (start, key unlocked, stop) is marked and does not
        move the floor; back at the right time the CA issues."""
        clock = FakeClock(tmp_path)
        before = floor(ca)
        clock.set(dt.timedelta(days=11 * 366))
        notify = NotifySocket(tmp_path / "notify.sock")
        running = Running(ca, notify, env=clock.env)
        try:
            notify.wait_for("READY=1")
            ca.submit("server/late.csr", pem(make_csr("late.sample.com")[1]))
            wait_for(lambda: any("REFUSING TO ISSUE" in m and "clock confirm" in m
                                 for m in notify.poll()), 20, "a refusing STATUS")
        finally:
            assert running.stop() == 0
            notify.close()
        assert floor(ca) == before
        started = entries(ca, "service.started")[-1]
        assert started["time"] > before and "clock_untrusted" in started
        assert "clock_untrusted" in entries(ca, "service.stopped")[-1]
        clock.set(dt.timedelta(0))
        assert ca.run("process", env=clock.env).returncode == 0
        assert ca.result("late")["status"] == "issued"
        assert verify(ca, ca.outgoing / "audit").returncode == 0

    def test_a_clock_set_forward_under_a_running_daemon_is_refused(self, ca: CA, tmp_path):
        """The daemon measured what elapsed itself: a jump of 10 days in a minute is not
        time passing. Set right again, it issues without anyone confirming anything."""
        clock = FakeClock(tmp_path)
        notify = NotifySocket(tmp_path / "notify.sock")
        running = Running(ca, notify, env=clock.env)
        try:
            notify.wait_for("READY=1")
            clock.set(dt.timedelta(days=10))
            ca.submit("server/jump.csr", pem(make_csr("jump.sample.com")[1]))
            wait_for(lambda: any("REFUSING TO ISSUE" in m for m in notify.poll()), 20,
                     "a refusing STATUS")
            assert not (ca.outgoing / "jump").exists()
            clock.set(dt.timedelta(0))
            assert result_of(ca, "jump", timeout=30)["status"] == "issued"
        finally:
            assert running.stop() == 0
            notify.close()

    def test_elapsed_time_measured_in_process_extends_the_ceiling(self):
        """A guard that trusted a time 20 days ago (by its boot clock) trusts now; a
        fresh guard (a restart) does not: it needs the operator's confirmation."""
        now = dt.datetime.now(dt.UTC)
        floor_text = format_time(now - dt.timedelta(days=20))
        fresh = ClockGuard(7)
        assert fresh.problem(now, floor_text).kind == "ahead"
        seen = ClockGuard(7, (now - dt.timedelta(days=20),
                              time.clock_gettime(time.CLOCK_BOOTTIME) - 20 * 86400))
        assert seen.problem(now, floor_text) is None
        assert seen.problem(now + dt.timedelta(days=8), floor_text).kind == "ahead"


class TestConfirm:
    def test_a_long_idle_is_confirmed_once_and_recorded(self, ca: CA, tmp_path):
        """The appliance was off 30 days: refused until the operator confirms the time
        read off a trusted clock; a typed time 2 hours off is refused and records nothing;
        once confirmed, the request is issued and the confirmation is in the log."""
        clock = FakeClock(tmp_path)
        clock.set(dt.timedelta(days=30))
        ca.submit("server/idle.csr", pem(make_csr("idle.sample.com")[1]))
        assert ca.run("process", env=clock.env).returncode == 1
        status = ca.run("clock", "status", env=clock.env)
        assert status.returncode == 1 and "more than 7 days after" in status.stdout
        assert "WARNING: signing is refused: the clock reads" in \
            ca.run("status", env=clock.env).stdout
        wrong = (clock.now() - dt.timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%SZ")
        refused = ca.run("clock", "confirm", "--time", wrong, env=clock.env)
        assert refused.returncode == 1 and "nothing was recorded" in refused.stderr
        assert entries(ca, "clock.confirmed") == []
        done = ca.run("clock", "confirm", "--time", typed(clock), env=clock.env)
        assert done.returncode == 0, done.stderr
        assert ca.run("clock", "status", env=clock.env).returncode == 0
        assert ca.run("process", env=clock.env).returncode == 0
        assert ca.result("idle")["status"] == "issued"
        confirmed = entries(ca, "clock.confirmed")
        assert len(confirmed) == 1
        gap = dt.datetime.fromisoformat(confirmed[0]["clock"][:19]) - \
            dt.datetime.fromisoformat(confirmed[0]["typed"][:19])
        assert dt.timedelta(0) <= gap < dt.timedelta(minutes=1)  # typed, then read (load)
        again = ca.run("clock", "confirm", "--time", typed(clock), env=clock.env)
        assert again.returncode == 0 and "nothing to confirm" in again.stdout
        assert len(entries(ca, "clock.confirmed")) == 1

    def test_a_floor_a_wrong_clock_raised_is_repaired_on_the_record(self, ca: CA, tmp_path):
        """A CA that once signed with its clock 3 years ahead (a ceiling set far off):
        back at the right time it refuses; `clock confirm` lists what is dated ahead and
        asks for --repair; with it, the floor goes back, recorded, and the CA issues and
        publishes a CRL whose number is above the one dated ahead."""
        clock = FakeClock(tmp_path)
        ca.edit_config("max_forward_days = 7", "max_forward_days = 5000")
        clock.set(YEARS_3)
        ca.submit("server/future.csr", pem(make_csr("future.sample.com")[1]))
        assert ca.run("process", env=clock.env).returncode == 0
        assert ca.run("crl", env=clock.env).returncode == 0
        future_crl = x509.load_der_x509_crl((ca.outgoing / "crl" / "intermediate.crl")
                                            .read_bytes())
        ca.edit_config("max_forward_days = 5000", "max_forward_days = 7")
        clock.set(dt.timedelta(0))
        ca.submit("server/now.csr", pem(make_csr("now.sample.com")[1]))
        refused = ca.run("process", env=clock.env)
        assert refused.returncode == 1 and "earlier than" in refused.stderr
        listed = ca.run("clock", "confirm", "--time", typed(clock), env=clock.env)
        assert listed.returncode == 1 and "1 certificate(s)" in listed.stderr
        assert "--repair" in listed.stderr and entries(ca, "clock.repaired") == []
        done = ca.run("clock", "confirm", "--time", typed(clock), "--repair", env=clock.env)
        assert done.returncode == 0, done.stderr
        repaired = entries(ca, "clock.repaired")
        assert repaired[0]["dated_ahead"]["certificates"] == 1
        assert ca.run("process", env=clock.env).returncode == 0
        assert ca.result("now")["status"] == "issued"
        assert ca.run("crl", env=clock.env).returncode == 0
        crl = x509.load_der_x509_crl((ca.outgoing / "crl" / "intermediate.crl").read_bytes())
        number = x509.CRLNumber
        assert crl.extensions.get_extension_for_class(number).value.crl_number > \
            future_crl.extensions.get_extension_for_class(number).value.crl_number
        assert crl.last_update_utc < future_crl.last_update_utc
        assert verify(ca, ca.outgoing / "audit").returncode == 0
