"""Durable before visible, and a register that went back in time (invariant 14).

A power cut can commit a rename without the bytes under it (0-byte results, seen on a
real block device); recovery then compares what is published with the register, not only
that a folder exists. A register that lost committed history (a lost ca.db-wal, an older
copy of ca.db) is found before anything is signed or recorded, with one sentence. The
block-level proof, crash states of a real file system, is tests/test_crash.py."""

from __future__ import annotations

import os
import shutil
import sqlite3
import time
from pathlib import Path

from tests.daemon import NotifySocket, Running, issue_one, serving
from tests.pki import CA, make_csr, pem, wait_for

BEHIND = "lost committed history"


def audit_head(ca: CA) -> int:
    with sqlite3.connect(ca.dir / "ca.db") as db:
        return db.execute("SELECT MAX(seq) FROM audit").fetchone()[0]


def certificates(ca: CA) -> int:
    with sqlite3.connect(ca.dir / "ca.db") as db:
        return db.execute("SELECT COUNT(*) FROM certificates").fetchone()[0]


def killed_daemon(ca: CA, folder: Path, names: list[str]) -> None:
    """The daemon issues NAMES, then dies as in a power cut (SIGKILL: no clean stop)."""
    notify = NotifySocket(folder / "notify.sock")
    running = Running(ca, notify)
    try:
        notify.wait_for("READY=1")
        for name in names:
            issue_one(ca, name)
    finally:
        running.kill()
        notify.close()


class TestRecoveryComparesContents:
    def test_results_left_empty_by_a_power_cut_are_published_again(self, ca: CA, tmp_path):
        """The state a power cut left on ext4 (result.json and cert.pem of 0 bytes under
        their names) after a daemon that died: the next start writes them again, byte for
        byte; results confirmed before it (a clean `process`) are not even reread."""
        ca.submit("server/before.csr", pem(make_csr("before.sample.com")[1]))
        ca.process()
        before = {p.name: p.stat().st_mtime_ns for p in (ca.outgoing / "before").iterdir()}
        killed_daemon(ca, tmp_path, ["cut"])
        folder = ca.outgoing / "cut"
        good = {name: (folder / name).read_bytes() for name in ("result.json", "cert.pem")}
        for name in good:
            os.truncate(folder / name, 0)
        assert ca.run("process").returncode == 0
        assert {name: (folder / name).read_bytes() for name in good} == good
        assert {p.name: p.stat().st_mtime_ns for p in (ca.outgoing / "before").iterdir()} \
            == before
        assert not [p for p in folder.iterdir() if p.name.startswith(".")]

    def test_a_clean_stop_leaves_nothing_to_compare(self, ca: CA, tmp_path):
        """Counter-case of the scope: after a clean stop the mark covers every result,
        so a file damaged later (not by a crash) is left to `backup --verify` and the
        auditors, not rebuilt at every start."""
        with serving(ca, tmp_path):
            issue_one(ca, "clean")
        with sqlite3.connect(ca.dir / "ca.db") as db:
            mark = int(db.execute("SELECT value FROM meta WHERE key = 'published_through'"
                                  ).fetchone()[0])
            last = db.execute("SELECT MAX(id) FROM submissions").fetchone()[0]
        assert mark == last


class TestRegisterBehind:
    def test_an_idle_daemon_keeps_history_in_ca_db_itself(self, ca: CA, tmp_path):
        """The daemon copies its write-ahead log into ca.db whenever it goes idle: a copy
        of ca.db alone (without ca.db-wal, as a careless file copy takes it) made while
        it idles holds every certificate. (SQLite on its own does so only every 1,000
        pages: the copy would hold none.)"""
        copy = tmp_path / "copy.db"

        def copied_certificates() -> int:
            shutil.copyfile(ca.dir / "ca.db", copy)
            with sqlite3.connect(copy) as db:
                if db.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
                    return 0
                return db.execute("SELECT COUNT(*) FROM certificates").fetchone()[0]

        with serving(ca, tmp_path):
            for name in ("w1", "w2"):
                issue_one(ca, name)
            wait_for(lambda: copied_certificates() == 2, 20, "both in ca.db itself")

    def test_an_older_register_signs_and_records_nothing(self, ca: CA, tmp_path):
        """ca.db put back from before two issuances: `process`, `revoke`, `crl`, `media
        ingest` and the daemon each refuse with one sentence naming the loss and the
        way back; a CSR sent again is not signed a second time; nothing is written."""
        old = tmp_path / "old-ca.db"
        shutil.copy2(ca.dir / "ca.db", old)
        for name in ("o1", "o2"):
            ca.submit(f"server/{name}.csr", pem(make_csr(f"{name}.sample.com")[1]))
        ca.process()
        serial = ca.result("o1")["serial"]
        for suffix in ("", "-wal", "-shm"):
            (ca.dir / f"ca.db{suffix}").unlink(missing_ok=True)
        shutil.copy2(old, ca.dir / "ca.db")
        head = audit_head(ca)
        shutil.copy2(ca.archive / "o1.csr", tmp_path / "again.csr")
        ca.submit("server/again.csr", (tmp_path / "again.csr").read_bytes())
        started = time.monotonic()
        refused = ca.run("process")
        seconds = time.monotonic() - started
        assert refused.returncode == 1 and BEHIND in refused.stderr
        assert "spoolca catch-up" in refused.stderr and "Traceback" not in refused.stderr
        assert seconds < 10, seconds
        for command in (("revoke", serial), ("crl",), ("media", "ingest", str(tmp_path))):
            result = ca.run(*command)
            assert result.returncode == 1 and BEHIND in result.stderr, (command, result)
        notify = NotifySocket(tmp_path / "notify.sock")
        running = Running(ca, notify)
        try:
            wait_for(lambda: any("REFUSING TO ISSUE" in m and BEHIND in m
                                 for m in notify.poll()), 20, "a refusing STATUS")
        finally:
            assert running.stop() == 0
            notify.close()
        assert audit_head(ca) == head and certificates(ca) == 0
        assert not (ca.outgoing / "again").exists()
        assert (ca.incoming / "server" / "again.csr").exists()

    def test_results_the_register_has_no_record_of_are_found(self, ca: CA, tmp_path):
        """A register that lost only its last batch, before that batch's checkpoint was
        exported: the results outgoing/ holds that it does not know give it away."""
        ca.submit("server/kept.csr", pem(make_csr("kept.sample.com")[1]))
        ca.process()
        old = tmp_path / "old-ca.db"
        shutil.copy2(ca.dir / "ca.db", old)
        exported = set((ca.outgoing / "audit").iterdir())
        ca.submit("server/lost.csr", pem(make_csr("lost.sample.com")[1]))
        ca.process()
        for path in set((ca.outgoing / "audit").iterdir()) - exported:
            path.unlink()  # the export had not caught up yet
        for suffix in ("-wal", "-shm"):
            (ca.dir / f"ca.db{suffix}").unlink(missing_ok=True)
        shutil.copy2(old, ca.dir / "ca.db")
        refused = ca.run("process")
        assert refused.returncode == 1
        assert "1 result(s) the register has no record of (lost)" in refused.stderr


def damage(database: Path) -> None:
    """What a failing disk does: garbage over every page but the first."""
    size = database.stat().st_size
    with database.open("r+b") as handle:
        handle.seek(4096)
        handle.write(bytes(range(256)) * ((size - 4096) // 256))


class TestDamagedRegister:
    def test_a_damaged_register_is_one_sentence_and_exit_3(self, ca: CA, tmp_path):
        """Pages of ca.db overwritten: every command says the register is damaged and
        how to restore, exit 3 (which the unit does not restart), never 'this is a bug';
        the daemon stops with 3 at once instead of retrying for ever."""
        ca.submit("server/d.csr", pem(make_csr("d.sample.com")[1]))
        ca.process()
        damage(ca.dir / "ca.db")
        for command in (("process",), ("list",), ("status",), ("audit", "show")):
            result = ca.run(*command)
            assert result.returncode == 3, (command, result.stderr)
            assert "is damaged" in result.stderr and "spoolca restore" in result.stderr
            assert "bug" not in result.stderr and "Traceback" not in result.stderr
        notify = NotifySocket(tmp_path / "notify.sock")
        running = Running(ca, notify)
        try:
            wait_for(lambda: running.process.poll() is not None, 30, "the daemon to stop")
            assert running.stop() == 3
        finally:
            notify.close()
        assert "is damaged" in running.output() and "Traceback" not in running.output()
        unit = (Path(__file__).parent.parent / "systemd" / "spoolca.service").read_text()
        assert "RestartPreventExitStatus=2 3" in unit

    def test_audit_show_refuses_an_entry_changed_in_place(self, ca: CA):
        """A byte of an audit entry changed in the register (SQLite cannot see it): `audit
        show` says the register is damaged instead of showing the changed entry."""
        with sqlite3.connect(ca.dir / "ca.db") as db:
            db.execute("UPDATE audit SET data = replace(data, 'Sample', 'Simple') "
                       "WHERE seq = 1")
        shown = ca.run("audit", "show")
        assert shown.returncode == 3 and "audit entry 1 does not match its hash" in \
            shown.stderr
        assert "Simple" not in shown.stdout
