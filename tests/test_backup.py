"""Backup and restore: one signed archive, taken while the daemon issues; the drill; a
restore that trusts nothing before the signature (pinned) and every hash check out."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
import threading
from pathlib import Path

import pytest

from tests.daemon import NotifySocket, Running
from tests.pki import CA, fingerprint_of, make_csr, pem, spoolca, wait_for


@pytest.fixture
def archive(ca: CA, tmp_path: Path) -> Path:
    """Taken while the daemon runs and issues (SQLite's online backup)."""
    notify = NotifySocket(tmp_path / "notify.sock")
    running = Running(ca, notify)
    try:
        notify.wait_for("READY=1")
        for i in range(20):
            ca.submit(f"server/b{i}.csr", pem(make_csr(f"b{i}.sample.com")[1]))
        destination = tmp_path / "backup.tar.gz"
        made = ca.run("backup", str(destination))
        assert made.returncode == 0, made.stderr
        wait_for(lambda: all((ca.outgoing / f"b{i}" / "result.json").exists()
                             for i in range(20)), 60, "every request answered")
        assert running.stop() == 0
    finally:
        notify.close()
    return destination


def restore(archive: Path, target: Path, fingerprint: str):
    return spoolca("restore", str(archive), "--dir", str(target), "--fingerprint", fingerprint)


def rewritten(archive: Path, target: Path, change) -> Path:
    """A copy of ARCHIVE with CHANGE(name, data) -> (name, data) or None applied to each
    member (its manifest and signature as they were)."""
    buffer = io.BytesIO()
    with tarfile.open(archive, "r:gz") as source, tarfile.open(fileobj=buffer, mode="w") as out:
        for member in source:
            data = source.extractfile(member).read()
            changed = change(member.name, data)
            if changed is None:
                continue
            name, data = changed
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), member.mode
            out.addfile(info, io.BytesIO(data))
    target.write_bytes(gzip.compress(buffer.getvalue()))
    return target


class TestBackup:
    def test_the_drill_restores_checks_and_removes(self, ca: CA, archive: Path):
        drilled = spoolca("backup", "--verify", str(archive), "--fingerprint",
                          fingerprint_of(ca))
        assert drilled.returncode == 0, drilled.stderr
        assert "restores and checks out" in drilled.stdout
        assert "audit log of" in drilled.stdout and "signed entries intact" in drilled.stdout

    def test_restored_appliance_republishes_issues_and_revokes(self, ca: CA, archive: Path,
                                                              tmp_path: Path):
        target = tmp_path / "r"  # gpg-agent's socket paths must fit in 107 bytes
        done = restore(archive, target, fingerprint_of(ca))
        assert done.returncode == 0, done.stderr
        assert oct((target / "keys" / "root.key.pem").stat().st_mode & 0o777) == "0o400"
        restored = CA(target)
        restored.process()  # recovery publishes again what the register holds
        taken = [p.name for p in (target / "spool" / "outgoing").iterdir()
                 if (p / "cert.pem").exists()]
        for name in taken:
            assert (target / "spool" / "outgoing" / name / "cert.pem").read_bytes() == \
                (ca.outgoing / name / "cert.pem").read_bytes()
        restored.submit("server/after.csr", pem(make_csr("after.sample.com")[1]))
        restored.process()
        serial = restored.result("after")["serial"]
        assert restored.run("revoke", serial).returncode == 0
        verify = spoolca("audit", "verify", "--dir", str(target / "spool" / "outgoing" / "audit"),
                         "--fingerprint", fingerprint_of(ca), "--allow-unsigned-tail")
        assert verify.returncode == 0, verify.stdout + verify.stderr

    def test_a_folder_gets_a_new_dated_archive_and_a_file_is_never_replaced(
            self, ca: CA, tmp_path: Path):
        """DEST a folder: spoolca-TIME.tar.gz in it, which the drill accepts; DEST an
        existing file: refused (the counter-case), the file untouched."""
        folder = tmp_path / "backups"
        folder.mkdir()
        assert ca.run("backup", str(folder)).returncode == 0
        made = list(folder.glob("spoolca-*.tar.gz"))
        assert len(made) == 1
        assert ca.run("backup", "--verify", str(made[0]), "--fingerprint",
                      fingerprint_of(ca)).returncode == 0
        before = made[0].read_bytes()
        again = ca.run("backup", str(made[0]))
        assert again.returncode == 2 and "never replaces a file" in again.stderr
        assert made[0].read_bytes() == before

    def test_gpgs_lock_files_are_not_state(self, ca: CA, tmp_path: Path):
        """gpg makes pubring.kbx.lock while it reads the keyring and removes it after:
        listed then gone, it failed a backup taken beside the daemon (CI saw it). Locks
        are not archived; the keyring itself is."""
        (ca.dir / "gnupg" / "pubring.kbx.lock").write_text("1234\n")
        destination = tmp_path / "b.tar.gz"
        assert ca.run("backup", str(destination)).returncode == 0
        with tarfile.open(destination) as tar:
            names = tar.getnames()
        assert not [n for n in names if n.endswith(".lock")]
        assert [n for n in names if n.endswith("gnupg/pubring.kbx")]

    def test_wrong_fingerprint_refused(self, archive: Path, tmp_path: Path):
        done = restore(archive, tmp_path / "new", "A" * 40)
        assert done.returncode == 1 and "signature does not check out" in done.stderr
        assert not (tmp_path / "new").exists()

    def test_a_damaged_file_is_refused_before_anything_is_written(self, ca: CA, archive: Path,
                                                                  tmp_path: Path):
        def flip(name: str, data: bytes):
            return (name, data[:-1] + bytes([data[-1] ^ 1])) if name == "ca.db" else (name, data)

        damaged = rewritten(archive, tmp_path / "damaged.tar.gz", flip)
        done = restore(damaged, tmp_path / "new", fingerprint_of(ca))
        assert done.returncode == 1 and "ca.db is damaged" in done.stderr
        assert not (tmp_path / "new").exists() and "Traceback" not in done.stderr
        drill = spoolca("backup", "--verify", str(damaged), "--fingerprint", fingerprint_of(ca))
        assert drill.returncode == 1

    def test_a_path_outside_the_state_directory_is_refused(self, ca: CA, archive: Path,
                                                           tmp_path: Path):
        def escape(name: str, data: bytes):
            return ("../escaped.toml", data) if name == "spoolca.toml" else (name, data)

        hostile = rewritten(archive, tmp_path / "hostile.tar.gz", escape)
        done = restore(hostile, tmp_path / "deep" / "new", fingerprint_of(ca))
        assert done.returncode == 1
        assert not (tmp_path / "deep").exists() and not (tmp_path / "escaped.toml").exists()

    def test_a_target_too_deep_for_gpg_agent_is_refused(self, ca: CA, archive: Path,
                                                         tmp_path: Path):
        """Counter-case: gpg-agent could not bind its sockets there ("No agent running"
        on the first signature): one sentence before anything is written."""
        deep = tmp_path / ("d" * 60) / "new"
        done = restore(archive, deep, fingerprint_of(ca))
        assert done.returncode == 1 and "shorter path" in done.stderr
        assert not deep.exists()

    def test_a_missing_file_and_a_busy_target_are_refused(self, ca: CA, archive: Path,
                                                          tmp_path: Path):
        dropped = rewritten(archive, tmp_path / "short.tar.gz",
                            lambda n, d: None if n.startswith("keys/") else (n, d))
        assert "missing" in restore(dropped, tmp_path / "new", fingerprint_of(ca)).stderr
        busy = tmp_path / "busy"
        busy.mkdir()
        (busy / "something").write_text("")
        assert "not empty" in restore(archive, busy, fingerprint_of(ca)).stderr
        again = ca.run("backup", str(archive))
        assert again.returncode == 2 and "never replaces" in again.stderr


class TestOneRead:
    """Restore verifies exactly what it extracts: the archive is read once, as a stream,
    the manifest's signature checked before any other member is looked at."""

    def test_a_restore_reads_the_archive_once(self, ca: CA, archive: Path, tmp_path: Path):
        """Given as a FIFO (a stream that can be read only once), it restores: the old
        restore read the archive three times by name, so a file swapped between the
        checks and the extraction was restored under the signed manifest's names."""
        fifo = tmp_path / "archive.fifo"
        os.mkfifo(fifo)
        data = archive.read_bytes()

        def feed() -> None:
            with fifo.open("wb") as pipe:
                pipe.write(data)

        writer = threading.Thread(target=feed, daemon=True)
        writer.start()
        done = restore(fifo, tmp_path / "new", fingerprint_of(ca))
        writer.join(timeout=60)
        assert done.returncode == 0, done.stderr
        assert (tmp_path / "new" / "ca.db").exists()

    def test_members_past_the_manifest_are_refused_at_the_first(self, ca: CA, archive: Path,
                                                               tmp_path: Path):
        """20,000 empty members the manifest does not list: refused at the first, in a
        moment (the old restore walked them all before checking the signed manifest:
        400,000 took 110 s), nothing written."""
        def flood(name: str, data: bytes):
            return (name, data)

        hostile = tmp_path / "flood.tar.gz"
        buffer = io.BytesIO()
        with tarfile.open(archive, "r:gz") as source, \
                tarfile.open(fileobj=buffer, mode="w") as out:
            for index, member in enumerate(source):
                if index == 3:
                    for junk in range(20000):
                        out.addfile(tarfile.TarInfo(f"junk-{junk}"), io.BytesIO(b""))
                data = source.extractfile(member).read()
                info = tarfile.TarInfo(member.name)
                info.size, info.mode = len(data), member.mode
                out.addfile(info, io.BytesIO(data))
        hostile.write_bytes(gzip.compress(buffer.getvalue()))
        done = restore(hostile, tmp_path / "new", fingerprint_of(ca))
        assert done.returncode == 1 and "'junk-0' is not what the manifest lists" in done.stderr
        assert not (tmp_path / "new").exists() and not (tmp_path / ".new.restoring").exists()

    def test_a_manifest_not_first_is_refused(self, ca: CA, archive: Path, tmp_path: Path):
        """Counter-case: the same members with a file ahead of the signed manifest."""
        buffer = io.BytesIO()
        with tarfile.open(archive, "r:gz") as source, \
                tarfile.open(fileobj=buffer, mode="w") as out:
            members = [(m, source.extractfile(m).read()) for m in source]
            for member, data in [*members[3:4], *members[:3], *members[4:]]:
                info = tarfile.TarInfo(member.name)
                info.size, info.mode = len(data), member.mode
                out.addfile(info, io.BytesIO(data))
        reordered = tmp_path / "reordered.tar.gz"
        reordered.write_bytes(gzip.compress(buffer.getvalue()))
        done = restore(reordered, tmp_path / "new", fingerprint_of(ca))
        assert done.returncode == 1 and "does not begin with a signed manifest" in done.stderr
