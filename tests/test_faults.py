"""Faults that are not about one request never stop the CA, and lose or duplicate nothing.

Real faults, not simulated ones: a read-only bind mount over outgoing/, and a state
directory on a small tmpfs that is filled up. Both need root (mount); CI runs as root.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon import NotifySocket, Running
from tests.pki import CA, make_csr, pem, wait_for
from tests.rawcsr import raw_csr
from tests.test_daemon import result_of

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="mounting needs root")


def mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True, timeout=30)


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """`folder` mounted read-only over itself (root is not stopped by file modes)."""
    mount("--bind", str(folder), str(folder))
    try:
        mount("-o", "remount,ro,bind", str(folder))
        yield
    finally:
        subprocess.run(["umount", str(folder)], check=False, capture_output=True)


@pytest.fixture
def small_ca(ca: CA, tmp_path: Path) -> Iterator[CA]:
    """The test's CA with its register (ca.db) on its own 24 MiB tmpfs, so the disk under
    SQLite can be filled while the spool and gpg's home keep their room."""
    mountpoint = tmp_path / "small"
    mountpoint.mkdir()
    mount("-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mountpoint))
    try:
        shutil.copy2(ca.dir / "ca.db", mountpoint / "ca.db")
        ca.edit_config('database = "ca.db"', f'database = "{mountpoint / "ca.db"}"')
        yield ca
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False, capture_output=True)


def fill(folder: Path) -> Path:
    """Fill the file system under `folder` to the last byte; returns the filler file."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 20, 4096, 1):
            with contextlib.suppress(OSError):
                while os.write(fd, b"\0" * size):
                    pass
    finally:
        os.close(fd)
    return filler


def certificates(ca: CA, database: Path | None = None) -> int:
    with sqlite3.connect(database or ca.dir / "ca.db") as db:
        return db.execute("SELECT count(*) FROM certificates").fetchone()[0]


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[NotifySocket]:
    sock = NotifySocket(tmp_path / "notify.sock")
    yield sock
    sock.close()


class TestReadOnlySpool:
    def test_serve_starts_reports_and_recovers(self, ca: CA, notify: NotifySocket):
        """A read-only outgoing/ stopped serve at start; now READY, FAULT in STATUS=, and
        the request waiting is answered once the spool is writable again."""
        ca.submit("server/wait.csr", pem(make_csr("wait.sample.com")[1]))
        os.utime(ca.incoming / "server" / "wait.csr", (0, 0))
        with read_only(ca.outgoing):
            running = Running(ca, notify)
            notify.wait_for("READY=1")
            wait_for(lambda: any("FAULT:" in m for m in notify.poll()), 20, "FAULT in STATUS")
            assert running.process.poll() is None
        assert result_of(ca, "wait", timeout=90)["status"] == "issued"
        wait_for(lambda: "fault cleared" in running.output(), 10, "the fault cleared")
        assert running.stop() == 0
        assert "Traceback" not in running.output()
        assert certificates(ca) == 1

    def test_a_read_only_stick_is_told_it_is_read_only(self, ca: CA, tmp_path: Path):
        """An export to a stick mounted read-only (or write-protected) says so, not "free
        space on it"."""
        stick = tmp_path / "stick"
        stick.mkdir()
        with read_only(stick):
            result = ca.run("media", "export", str(stick))
        assert result.returncode == 1 and "the stick is read-only" in result.stderr
        assert "free space" not in result.stderr

    def test_process_says_one_sentence(self, ca: CA):
        """`process` on a read-only spool: exit 1, one line on stderr, no traceback."""
        ca.submit("server/ro.csr", pem(make_csr("ro.sample.com")[1]))
        with read_only(ca.outgoing):
            result = ca.run("process")
        assert result.returncode == 1
        assert "Traceback" not in result.stderr
        assert result.stderr.strip().splitlines()[-1].startswith("spoolca: ")
        ca.process()  # counter-case: once writable, the request is answered
        assert ca.result("ro")["status"] == "issued"


class TestFullDisk:
    def test_full_disk_during_the_commit(self, small_ca: CA, tmp_path: Path,
                                         notify: NotifySocket):
        """sqlite3 'database or disk is full' exited serve 1; now the batch rolls back,
        FAULT is shown in STATUS=, it is retried with backoff, and the request is issued
        exactly once when space returns."""
        ca, database = small_ca, tmp_path / "small" / "ca.db"
        running = Running(ca, notify)
        try:
            notify.wait_for("READY=1")
            ca.submit("server/first.csr", pem(make_csr("first.sample.com")[1]))
            assert result_of(ca, "first")["status"] == "issued"
            with sqlite3.connect(database) as db:  # the next commit must grow the WAL
                db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            filler = fill(database.parent)
            ca.submit("server/full.csr", pem(make_csr("full.sample.com")[1]))
            wait_for(lambda: any("FAULT:" in m for m in notify.poll()), 30, "FAULT in STATUS")
            assert running.process.poll() is None
            assert "database or disk is full" in running.output()
            # While the disk stays full, recovery is retried and never says it cleared
            # (it needed no write, so it passed, and STATUS= flapped to "cleared").
            wait_for(lambda: running.output().count('"fault; retrying"') >= 3, 60,
                     "three retries")
            assert "fault cleared" not in running.output()
            filler.unlink()
            try:
                answered = result_of(ca, "full", timeout=150)
            except AssertionError as exc:
                raise AssertionError(f"{exc}; the daemon said:\n{running.output()[-4000:]}"
                                     ) from None
            assert answered["status"] == "issued"
        finally:
            assert running.stop() == 0
        assert certificates(ca, database) == 2
        assert "Traceback" not in running.output()
        assert (ca.archive / "full.csr").exists()


class TestPoisonToTheDaemon:
    def test_poison_files_are_answered_and_the_daemon_goes_on(self, ca: CA,
                                                             notify: NotifySocket):
        """Version 1, a whitespace flood, a non-UTF-8 name: answered, then a good one issued."""
        running = Running(ca, notify)
        try:
            notify.wait_for("READY=1")
            from tests.pki import subject

            ca.submit("server/v1.der", raw_csr(name=subject("v1.sample.com"), version=1)[1])
            ca.submit("server/flood.csr", b"-----BEGIN CERTIFICATE REQUEST-----" +
                      b"\n" * 65000)
            raw = os.fsencode(ca.incoming / "server") + b"/.bad\xff.csr.part"
            with open(raw, "wb") as handle:
                handle.write(pem(make_csr("x.sample.com")[1]))
            os.rename(raw, raw.replace(b"/.bad", b"/bad").removesuffix(b".part"))
            assert result_of(ca, "v1")["reasons"][0]["code"] == "csr.version_invalid"
            assert result_of(ca, "flood")["reasons"][0]["code"] == "csr.unparseable"
            assert result_of(ca, "bad_xff")["reasons"][0]["code"] == "file.name_invalid"
            ca.submit("server/after.csr", pem(make_csr("after.sample.com")[1]))
            assert result_of(ca, "after")["status"] == "issued"
            assert running.process.poll() is None
        finally:
            assert running.stop() == 0
        assert "Traceback" not in running.output()
