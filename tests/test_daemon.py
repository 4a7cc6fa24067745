"""`spoolca serve` as a real subprocess: notify protocol, signals, hostile input, crashes."""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import re
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from tests.clock import FakeClock
from tests.daemon import NotifySocket, Running
from tests.pki import CA, make_csr, pem, wait_for

OUTPUT_FILES = {"cert.pem", "cert.crt", "chain.pem", "fullchain.pem", "result.json"}


@pytest.fixture
def notify(tmp_path):
    sock = NotifySocket(tmp_path / "notify.sock")
    yield sock
    sock.close()


@pytest.fixture
def daemon(ca: CA, notify: NotifySocket):
    running = Running(ca, notify)
    notify.wait_for("READY=1")
    yield running
    running.stop()


def result_of(ca: CA, name: str, timeout: float = 20) -> dict:
    path = ca.outgoing / name / "result.json"
    wait_for(path.exists, timeout, f"result {name}")
    return json.loads(path.read_text())


class TestService:
    def test_drop_a_csr_and_the_result_appears(self, ca: CA, notify: NotifySocket):
        """READY=1 before work; the result appears; STOPPING=1 and exit 0 on SIGTERM."""
        running = Running(ca, notify)
        notify.wait_for("READY=1")
        ca.submit("server/live.csr", pem(make_csr("live.sample.com")[1]))
        assert result_of(ca, "live")["status"] == "issued"
        moment = r"\d{4}-\d\d-\d\dT\S*Z"
        wait_for(lambda: any(re.match(rf"STATUS=return stick between {moment} and {moment}; "
                                      r"1 issued", m)
                             for m in notify.poll()), 10, "a STATUS with the return-by date")
        assert running.stop() == 0
        assert "STOPPING=1" in notify.poll()
        assert notify.messages.index("READY=1") < notify.messages.index("STOPPING=1")

    def test_watchdog_pings(self, ca: CA, notify: NotifySocket):
        """With WATCHDOG_USEC set, the worker loop sends WATCHDOG=1."""
        running = Running(ca, notify, env={"WATCHDOG_USEC": "200000"})
        try:
            wait_for(lambda: notify.poll().count("WATCHDOG=1") >= 3, 10, "watchdog pings")
        finally:
            running.stop()

    def test_files_already_waiting_are_taken_at_start(self, ca: CA, notify: NotifySocket):
        """Requests that arrived while the daemon was down are found by the start scan."""
        ca.submit("server/early.csr", pem(make_csr("early.sample.com")[1]))
        os.utime(ca.incoming / "server" / "early.csr", (0, 0))  # long settled
        running = Running(ca, notify)
        try:
            assert result_of(ca, "early")["status"] == "issued"
        finally:
            running.stop()

    def test_second_instance_is_refused(self, ca: CA, daemon: Running):
        """A second daemon on the same state directory says so in one sentence."""
        result = ca.run("serve", timeout=30)
        assert result.returncode == 1
        assert "is already processing" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        assert ca.run("process").returncode == 1  # nor may a one-shot pass run beside it

    def test_a_slowly_written_file_is_not_read_until_complete(self, ca: CA, daemon: Running):
        """A CSR written in chunks, with pauses, is taken only after it is closed."""
        data = pem(make_csr("slow.sample.com")[1])
        path = ca.incoming / "server" / "slow.csr"
        with path.open("wb") as writer:
            for start in range(0, len(data), 64):
                writer.write(data[start:start + 64])
                writer.flush()
                time.sleep(0.05)  # the writer's pace, not a synchronisation
                assert not (ca.outgoing / "slow").exists()
        assert result_of(ca, "slow")["status"] == "issued"

    def test_hostile_inputs_are_rejected_and_the_daemon_lives(self, ca: CA, daemon: Running,
                                                              tmp_path):
        """Garbage, huge, symlink, FIFO, unreadable, a folder named x.csr: all answered."""
        server = ca.incoming / "server"
        target = tmp_path / "passwd"
        target.write_text("root:x:0:0")
        (server / "garbage.csr").write_bytes(os.urandom(300))
        (server / "huge.csr").write_bytes(b"A" * 200_000)
        os.symlink(target, server / "link.csr")
        os.mkfifo(server / "fifo.csr")
        (server / "locked.csr").write_bytes(b"x")
        (server / "locked.csr").chmod(0)
        (server / "folder.csr").mkdir()
        for name in ("garbage", "huge", "link", "fifo", "locked", "folder"):
            assert result_of(ca, name)["status"] == "rejected", name
        ca.submit("server/after.csr", pem(make_csr("after.sample.com")[1]))
        assert result_of(ca, "after")["status"] == "issued"
        assert target.read_text() == "root:x:0:0"
        assert daemon.process.poll() is None

    def test_results_missing_from_outgoing_are_republished_at_start(self, ca: CA,
                                                                   notify: NotifySocket):
        """Recovery: a recorded result whose folder is gone is published again, same serial."""
        running = Running(ca, notify)
        notify.wait_for("READY=1")
        ca.submit("server/gone.csr", pem(make_csr("gone.sample.com")[1]))
        serial = result_of(ca, "gone")["serial"]
        running.stop()
        for path in (ca.outgoing / "gone").iterdir():
            path.unlink()
        (ca.outgoing / "gone").rmdir()
        running = Running(ca, notify)
        try:
            assert result_of(ca, "gone")["serial"] == serial
        finally:
            running.stop()


class TestReload:
    def test_broken_configuration_is_refused_and_the_old_one_stays(self, ca: CA,
                                                                   daemon: Running,
                                                                   notify: NotifySocket):
        """SIGHUP with an invalid file: one clear log line, RELOADING then READY, old rules."""
        ca.edit_config('lint = "pkix"', 'lint = "sometimes"')
        daemon.signal(signal.SIGHUP)
        wait_for(lambda: "configuration reload refused" in daemon.output(), 10, "refusal")
        assert "RELOADING=1" in notify.poll()
        assert any(m.startswith("MONOTONIC_USEC=") for m in notify.messages)
        ca.submit("server/still.csr", pem(make_csr("still.sample.com")[1]))
        assert result_of(ca, "still")["status"] == "issued"

    def test_good_configuration_is_applied(self, ca: CA, daemon: Running):
        """SIGHUP with validity_days = 30 for server: the next certificate has 30 days."""
        ca.edit_config("validity_days = 375        # capped", "validity_days = 30        # capped")
        daemon.signal(signal.SIGHUP)
        wait_for(lambda: "configuration reloaded" in daemon.output(), 10, "reload")
        ca.submit("server/short.csr", pem(make_csr("short.sample.com")[1]))
        result = result_of(ca, "short")
        from spoolca.register.store import parse_time

        life = parse_time(result["not_after"]) - parse_time(result["not_before"])
        assert life == dt.timedelta(days=30, seconds=-1)  # both ends count (RFC 5280)


    def test_spoolca_reload_waits_and_tells_the_truth(self, ca: CA, daemon: Running):
        """`spoolca reload` (the unit's ExecReload=) returns after the daemon answered:
        exit 0 when applied, 1 with the reason when refused."""
        ca.edit_config("validity_days = 375        # capped", "validity_days = 30        # capped")
        applied = ca.run("reload", "--timeout", "30")
        assert applied.returncode == 0 and applied.stdout.startswith("reloaded:"), applied
        ca.edit_config('lint = "pkix"', 'lint = "sometimes"')
        refused = ca.run("reload", "--timeout", "30")
        assert refused.returncode == 1 and refused.stdout.startswith("refused:"), refused
        assert "lint" in refused.stdout
        ca.submit("server/short.csr", pem(make_csr("short.sample.com")[1]))
        from spoolca.register.store import parse_time

        result = result_of(ca, "short")  # the applied file is in force, not the refused one
        life = parse_time(result["not_after"]) - parse_time(result["not_before"])
        assert life == dt.timedelta(days=30, seconds=-1)

    def test_reload_without_a_daemon_says_so(self, ca: CA):
        """Counter-case: nothing to reload: exit 1, one sentence."""
        result = ca.run("reload", "--timeout", "2")
        assert result.returncode == 1 and "no spoolca daemon is running" in result.stderr


class TestCrashes:
    def test_kill_nine_over_csrs_and_revocations(self, guarded: CA, signers,
                                                notify: NotifySocket):
        """460 CSRs and 40 signed revocation requests in one stream, SIGKILL at 22 random
        instants: exactly one answer each, every certificate in its final state, each
        revocation applied once, and nothing answered twice as 're-published'."""
        ca = guarded
        ca.edit_config("revokers = []", f'revokers = ["{signers["alice"].fingerprint}"]')
        count, revocations, kills = 460, 40, 22
        for i in range(revocations):
            ca.submit(f"server/pre{i:03d}.csr", pem(make_csr(f"pre{i:03d}.sample.com")[1]))
        ca.process()
        reasons = ["keyCompromise", "superseded", "certificateHold", "cessationOfOperation"]
        wanted = {}
        (ca.incoming / "revoke").mkdir(exist_ok=True)
        for i in range(revocations):
            serial = ca.result(f"pre{i:03d}")["serial"]
            wanted[f"r{i:03d}"] = (serial, reasons[i % len(reasons)])
            body = json.dumps({"serial": serial, "reason": reasons[i % len(reasons)]}).encode()
            (ca.incoming / "revoke" / f".r{i:03d}.json.asc").write_text(
                signers["alice"].sign(body))
            (ca.incoming / "revoke" / f".r{i:03d}.json").write_bytes(body)
        names = []
        for i in range(count):
            ca.submit(f"server/h{i:03d}.csr", pem(make_csr(f"h{i:03d}.sample.com")[1]))
            names.append(f"h{i:03d}")
        for i in range(revocations):  # each request appears whole, its signature first
            folder = ca.incoming / "revoke"
            os.rename(folder / f".r{i:03d}.json.asc", folder / f"r{i:03d}.json.asc")
            os.rename(folder / f".r{i:03d}.json", folder / f"r{i:03d}.json")
        chaos = random.Random(os.getpid())
        for _ in range(kills):
            running = Running(ca)
            time.sleep(chaos.uniform(0.05, 0.8))  # a random instant to crash at
            running.kill()
        # The pre-issued CSRs, the new ones, and each revocation request with its .asc.
        archived = revocations + count + 2 * revocations
        running = Running(ca, notify)
        try:
            wait_for(lambda: not any((ca.incoming / "server").iterdir())
                     and not any((ca.incoming / "revoke").iterdir())
                     and not any((ca.dir / "spool" / "work").iterdir())
                     and len(os.listdir(ca.archive)) == archived, 180,
                     "all processed")
        finally:
            assert running.stop() == 0
        with sqlite3.connect(ca.dir / "ca.db") as db:
            serials = [row[0] for row in db.execute("SELECT serial FROM certificates")]
            requests = db.execute("SELECT COUNT(*), COUNT(DISTINCT serial) FROM requests "
                                  "WHERE status = 'issued'").fetchone()
            final = dict(db.execute("SELECT serial, revocation_reason FROM certificates"))
            counted = dict(db.execute("SELECT event, COUNT(*) FROM audit GROUP BY event"))
        results = {name: json.loads((ca.outgoing / name / "result.json").read_text())
                   for name in [*names, *wanted]}
        # A request that was being answered alone at three of the kills is what a request
        # that crashes the service looks like: answered request.quarantined, by design
        # (invariant 9), a CSR or a revocation request alike. Rare, and only under load;
        # any other answer is a failure.
        def is_quarantined(name: str) -> bool:
            reasons = results[name].get("reasons") or []
            return [r["code"] for r in reasons] == ["request.quarantined"]

        quarantined = {n for n in results if is_quarantined(n)}
        unissued = {n for n in names if results[n]["status"] != "issued"}
        assert unissued <= quarantined and len(quarantined) <= 2, quarantined
        # (a kill between a quarantine's entry and its answer may count one twice)
        assert len(quarantined) <= counted.get("request.quarantined", 0) <= 2
        issued = count + revocations - len(unissued)
        assert len(serials) == len(set(serials)) == issued
        assert requests == (issued, issued)
        applied = {n: w for n, w in wanted.items() if n not in quarantined}
        for name, (serial, reason) in applied.items():
            assert (results[name]["status"], results[name]["serial"]) == ("revoked", serial)
            assert final[serial] == reason
        assert sum(1 for r in final.values() if r) == len(applied)
        assert counted.get("certificate.revoked") == len(applied)
        assert counted.get("request.republished", 0) == 0
        for entry in list(os.scandir(ca.outgoing)):
            assert not entry.name.startswith("."), f"partial output {entry.name}"
            if entry.name not in ("ca", "crl", "audit") and entry.name.startswith("h"):
                # A quarantined request (killed under twice) is answered by result.json alone.
                whole = {"result.json"} if entry.name in quarantined else OUTPUT_FILES
                assert set(os.listdir(entry.path)) == whole, entry.name

    def test_rescans_never_redecide_a_batch_being_published(self, ca: CA,
                                                            notify: NotifySocket):
        """A rescan every second while 1,000 requests are published behind: no request is
        decided twice (the rescan once re-ran recovery beside the publisher)."""
        ca.edit_config("rescan_seconds = 30", "rescan_seconds = 1")
        running = Running(ca, notify)
        try:
            notify.wait_for("READY=1")
            for i in range(1000):
                ca.submit(f"server/b{i:04d}.csr", pem(make_csr(f"b{i:04d}.sample.com")[1]))
            wait_for(lambda: len(os.listdir(ca.archive)) == 1000
                     and not any((ca.dir / "spool" / "work").iterdir()), 180, "all answered")
        finally:
            assert running.stop() == 0
        with sqlite3.connect(ca.dir / "ca.db") as db:
            counted = dict(db.execute("SELECT event, COUNT(*) FROM audit GROUP BY event"))
        assert counted.get("request.issued") == 1000
        assert counted.get("request.republished", 0) == 0
        assert "Traceback" not in running.output()


class TestSecrets:
    def test_passphrase_never_reaches_the_log_or_the_spool(self, tmp_path):
        """An encrypted CA served from a passphrase file: not a byte of it is logged."""
        from tests.pki import PASSPHRASE, init_ca

        secret = tmp_path / "passphrase"
        secret.write_bytes(PASSPHRASE)
        ca = init_ca(tmp_path / "ca", "--passphrase-file", str(secret))
        notify = NotifySocket(tmp_path / "notify.sock")
        running = Running(ca, notify)
        try:
            notify.wait_for("READY=1")
            ca.submit("server/s.csr", pem(make_csr("s.sample.com")[1]))
            assert result_of(ca, "s")["status"] == "issued"
        finally:
            running.stop()
            notify.close()
        assert PASSPHRASE.decode() not in running.output()
        assert "PRIVATE KEY" not in running.output()
        for path in (ca.dir / "spool").rglob("*"):
            if path.is_file():
                assert PASSPHRASE not in path.read_bytes(), path


class TestClockGuard:
    def test_daemon_refuses_while_the_clock_is_behind_and_says_why(self, ca: CA,
                                                                   notify: NotifySocket,
                                                                   tmp_path):
        """The system clock set back a day (behind the latest recorded time): requests
        wait in incoming/, STATUS says REFUSING TO ISSUE; once the clock is right again,
        they are issued."""
        clock = FakeClock(tmp_path)
        clock.set(-dt.timedelta(days=1))
        running = Running(ca, notify, env=clock.env)
        try:
            notify.wait_for("READY=1")
            ca.submit("server/wait.csr", pem(make_csr("wait.sample.com")[1]))
            wait_for(lambda: any("REFUSING TO ISSUE" in m for m in notify.poll()), 20,
                     "a refusing STATUS")
            assert (ca.incoming / "server" / "wait.csr").exists()
            assert "the latest time the register recorded" in running.output()
            clock.set(dt.timedelta(0))  # the operator fixes the clock
            assert result_of(ca, "wait", timeout=30)["status"] == "issued"
        finally:
            running.stop()


class TestCRLRefresh:
    def _number(self, ca: CA) -> int:
        with sqlite3.connect(ca.dir / "ca.db") as db:
            return db.execute("SELECT MAX(number) FROM crls WHERE authority = 'intermediate'"
                              ).fetchone()[0]

    def test_a_crl_near_its_end_is_remade(self, ca: CA, daemon: Running,
                                          notify: NotifySocket):
        """When nextUpdate - crl_refresh_days has come, the daemon publishes the next CRL."""
        before = self._number(ca)
        with sqlite3.connect(ca.dir / "ca.db") as db:
            db.execute("UPDATE crls SET next_update = ? WHERE authority = 'intermediate' AND "
                       "number = ?", (time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                    time.gmtime(time.time() + 86400)), before))
        wait_for(lambda: self._number(ca) == before + 1, 20, "a new intermediate CRL")
        wait_for(lambda: any(f"intermediate #{before + 1} until" in m for m in notify.poll()),
                 10, "STATUS naming the new CRL")

    def test_a_revocation_recorded_without_the_key_is_published_by_the_daemon(self, tmp_path):
        """revoke where no passphrase is at hand: recorded, and the daemon makes the CRL."""
        from tests.pki import PASSPHRASE, init_ca

        secret = tmp_path / "passphrase"
        secret.write_bytes(PASSPHRASE)
        ca = init_ca(tmp_path / "ca", "--passphrase-file", str(secret))
        ca.edit_config("\nfile = \"", "\n# file = \"")
        credentials = tmp_path / "credentials"
        credentials.mkdir()
        (credentials / "spoolca-ca-passphrase").write_bytes(PASSPHRASE)
        notify = NotifySocket(tmp_path / "notify.sock")
        running = Running(ca, notify, env={"CREDENTIALS_DIRECTORY": str(credentials)})
        try:
            notify.wait_for("READY=1")
            ca.submit("server/r.csr", pem(make_csr("r.sample.com")[1]))
            serial = result_of(ca, "r")["serial"]
            before = self._number(ca)
            result = ca.run("revoke", serial, "--reason", "keyCompromise")
            assert result.returncode == 0 and "the daemon remakes it" in result.stdout
            wait_for(lambda: self._number(ca) == before + 1, 20, "the daemon's CRL")
        finally:
            running.stop()
            notify.close()


class TestLintWorkers:
    def test_lint_workers_do_not_outlive_a_killed_daemon(self, ca: CA, notify: NotifySocket):
        """pkilint runs in spawned worker processes; SIGKILL the daemon and they exit on
        their own (they would otherwise wait forever on their queue)."""
        running = Running(ca, notify)
        notify.wait_for("READY=1")
        ca.submit("server/w.csr", pem(make_csr("w.sample.com")[1]))
        assert result_of(ca, "w")["status"] == "issued"

        def alive(pid: int) -> bool:
            try:
                return b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                return False

        def workers() -> list[int]:
            found = []
            for entry in filter(str.isdigit, os.listdir("/proc")):
                try:
                    stat = Path(f"/proc/{entry}/stat").read_text()
                except OSError:
                    continue
                if int(stat.rsplit(")", 1)[1].split()[1]) == running.process.pid \
                        and alive(int(entry)):
                    found.append(int(entry))
            return found

        children = wait_for(workers, 20, "the lint workers")
        running.kill()
        wait_for(lambda: not any(alive(pid) for pid in children), 20, "the workers gone")
