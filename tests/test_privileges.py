"""Root's commands over a state directory another user owns run as that user (issue 25,
item 3): what the service user can write (gpg.conf, the PKCS#11 module path in
spoolca.toml, links in the state directory) never runs or writes anything as root.
Only root can run these tests (they change owners); elsewhere they skip."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from spoolca.keys.openpgp import stop_agent
from tests.pki import CA, make_csr, pem, wait_for

OWNER = 65534  # nobody: a user that is not root and owns nothing else here
REPO = Path(__file__).resolve().parent.parent
SYSTEM_PYTHON = Path("/usr/bin/python3")


class Installed(CA):
    """The CA's commands run as an install runs them: by an interpreter every user can
    read (the system's; a development interpreter under /root is out of the owner's
    reach once the command stops being root), with this checkout's code."""

    def run(self, *args: str, **kwargs) -> subprocess.CompletedProcess[str]:
        site = next((REPO / ".venv" / "lib").glob("python3*/site-packages"))
        return subprocess.run([str(SYSTEM_PYTHON), "-m", "spoolca.cli", "--config",
                               str(self.config), *args], capture_output=True, text=True,
                              timeout=120, env={**os.environ,
                                                "PYTHONPATH": f"{REPO}:{site}"})

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="changes file owners: needs root")


def chown_tree(top: Path, uid: int) -> None:
    for folder, dirs, files in os.walk(top):
        for name in [*dirs, *files]:
            os.lchown(Path(folder) / name, uid, uid)
    os.lchown(top, uid, uid)


@pytest.fixture
def owned(ca: CA) -> Iterator[CA]:
    """The session's CA copied where another user can reach it, and given to that user,
    as the README's `chown -R spoolca:spoolca` does."""
    if not SYSTEM_PYTHON.exists() or not (REPO / ".venv").is_dir():
        pytest.skip("needs the system's python3 and the checkout's .venv")
    top = Path(tempfile.mkdtemp(prefix="spoolca-owned-", dir="/tmp"))
    os.chmod(top, 0o755)
    target = top / "ca"
    shutil.copytree(ca.dir, target, symlinks=True, ignore=shutil.ignore_patterns("S.*"))
    chown_tree(target, OWNER)
    try:
        yield Installed(target)
    finally:
        stop_agent(target / "gnupg")
        shutil.rmtree(top, ignore_errors=True)


def owners(top: Path) -> set[int]:
    return {os.lstat(p).st_uid for p in [top, *top.rglob("*")]}


class TestAsTheOwner:
    def test_what_root_runs_writes_as_the_owner(self, owned: CA):
        """A request processed and the CRLs remade by root: every file is the owner's."""
        owned.submit("server/www.csr", pem(make_csr("www.sample.com")[1]))
        chown_tree(owned.incoming, OWNER)
        for command in (("process",), ("crl",)):
            done = owned.run(*command)
            assert done.returncode == 0, done.stderr
        assert owned.result("www")["status"] == "issued"
        assert owners(owned.dir) == {OWNER}

    def test_gpg_conf_of_the_owner_runs_nothing(self, owned: CA, tmp_path: Path):
        """gpg.conf's `agent-program` ran its program as root; gpg now reads no gpg.conf
        at all (its `comment` line would show in every signature, were it read)."""
        marker = Path(tempfile.mkdtemp(dir="/tmp")) / "ran"
        os.chmod(marker.parent, 0o777)
        program = owned.dir / "evil.sh"
        program.write_text(f"#!/bin/sh\nid -u > {marker}\nexec gpg-agent \"$@\"\n")
        program.chmod(0o755)
        (owned.dir / "gnupg" / "gpg.conf").write_text(f"agent-program {program}\n"
                                                      "comment read-from-gpg.conf\n")
        chown_tree(owned.dir, OWNER)
        try:
            done = owned.run("crl")
            assert done.returncode == 0, done.stderr
            assert not marker.exists(), marker.read_text()
            signatures = list((owned.outgoing / "audit").glob("checkpoint-*.asc"))
            assert signatures and not any(b"read-from-gpg.conf" in p.read_bytes()
                                          for p in signatures)
        finally:
            shutil.rmtree(marker.parent)

    def test_a_pkcs11_module_named_by_the_owner_is_loaded_as_the_owner(self, owned: CA,
                                                                       tmp_path: Path):
        """The config names the module root's command dlopen()ed; it runs as the owner."""
        if shutil.which("cc") is None:
            pytest.skip("no C compiler")
        marker = Path(tempfile.mkdtemp(dir="/tmp")) / "uid"
        os.chmod(marker.parent, 0o777)
        source = tmp_path / "evil.c"
        source.write_text('#include <stdio.h>\n#include <unistd.h>\n'
                          '__attribute__((constructor)) static void ran(void) {\n'
                          f'  FILE *f = fopen("{marker}", "w");\n'
                          '  if (f) { fprintf(f, "%d", (int)geteuid()); fclose(f); } }\n')
        module = owned.dir / "evil.so"
        subprocess.run(["cc", "-shared", "-fPIC", "-o", str(module), str(source)], check=True)
        owned.edit_config('key = "keys/intermediate.key.pem"',
                          'key_store = "pkcs11"\nkey_label = "x"')
        owned.edit_config('# module = "/usr/lib/softhsm/libsofthsm2.so"',
                          f'module = "{module}"')
        owned.edit_config('# token = "spoolca"', 'token = "spoolca"')
        chown_tree(owned.dir, OWNER)
        try:
            owned.run("crl")  # fails (no such token): what matters is who loaded it
            assert marker.read_text() == str(OWNER)
        finally:
            shutil.rmtree(marker.parent)

    def test_the_unlock_secret_goes_where_root_said_as_root(self, owned: CA, tmp_path: Path):
        """shares combine --install FILE: the state work as the owner, the file root's."""
        out = Path(tempfile.mkdtemp(prefix="shares-", dir="/tmp"))
        os.chown(out, OWNER, OWNER)
        try:
            owned.edit_config('# file = "/root/spoolca-passphrase"',
                              f'file = "{owned.dir / "passphrase"}"')
            (owned.dir / "passphrase").write_text("a secret of the owner's\n")
            chown_tree(owned.dir, OWNER)
            split = owned.run("shares", "split", "2-of-3", "--custodian", "a", "--custodian",
                              "b", "--custodian", "c", "--out", str(out / "set"))
            if split.returncode != 0 and "not encrypted" in split.stderr:
                pytest.skip("the fixture CA's keys are not encrypted")
            assert split.returncode == 0, split.stderr
            target = tmp_path / "installed"  # under root's 0700 tmp: the owner cannot reach it
            files = sorted(str(p) for p in (out / "set").iterdir())[:2]
            done = owned.run("shares", "combine", *files, "--install", str(target))
            assert done.returncode == 0, done.stderr
            info = os.stat(target)
            assert (info.st_uid, info.st_mode & 0o777) == (0, 0o400)
            assert target.read_bytes() == b"a secret of the owner's"
        finally:
            shutil.rmtree(out)

    def test_a_place_the_owner_may_not_write_is_one_sentence(self, owned: CA,
                                                             tmp_path: Path):
        """backup into root's own folder: what to do, never a traceback or 'a bug'."""
        (tmp_path / "backups").mkdir()
        done = owned.run("backup", str(tmp_path / "backups" / "b.tar.gz"))
        assert done.returncode == 1
        assert "root's commands run as nobody" in done.stderr, done.stderr
        assert "bug" not in done.stderr and done.stderr.count("\n") == 1
        assert not list((tmp_path / "backups").iterdir())


class TestRootOverItsOwn:
    def test_a_gnupg_home_others_can_change_is_refused(self, ca: CA):
        """Root over a root-owned state directory whose gnupg home is group-writable."""
        os.chmod(ca.dir / "gnupg", 0o770)
        before = sorted(p.name for p in (ca.outgoing / "crl").iterdir())
        done = ca.run("crl")
        assert done.returncode != 0
        assert "gnupg" in done.stderr and "another user" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr and done.stderr.count("\n") == 1
        assert sorted(p.name for p in (ca.outgoing / "crl").iterdir()) == before

    def test_a_config_another_user_owns_is_refused(self, ca: CA):
        os.chown(ca.config, OWNER, OWNER)
        done = ca.run("list")
        assert done.returncode != 0 and "spoolca.toml" in done.stderr, done.stderr

    def test_root_s_own_safe_directory_runs_as_root(self, ca: CA):
        """Counter-case: nothing another user can change, nothing refused."""
        done = ca.run("crl")
        assert done.returncode == 0, done.stderr
        assert owners(ca.outgoing / "crl") == {0}


class TestNothingWaitsSilently:
    def test_a_folder_root_made_in_incoming_is_said_and_taken_once_it_can_be(self,
                                                                          owned: CA):
        """Root makes incoming/web/ and drops a request in it; the daemon (its owner) may
        not move it out. It says so once, as a sentence, in STATUS= and `spoolca status`
        (no traceback per rescan, no false "fault cleared"), and answers it after chown."""
        from tests.daemon import NotifySocket

        owned.edit_config("rescan_seconds = 30", "rescan_seconds = 1")
        notify = NotifySocket(owned.dir.parent / "notify.sock")
        os.chown(notify.path, OWNER, OWNER)
        site = next((REPO / ".venv" / "lib").glob("python3*/site-packages"))
        log = owned.dir.parent / "serve.log"
        with log.open("wb") as out:
            daemon = subprocess.Popen(
                [str(SYSTEM_PYTHON), "-m", "spoolca.cli", "--config", str(owned.config),
                 "serve"], stdout=out, stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONPATH": f"{REPO}:{site}",
                     "NOTIFY_SOCKET": str(notify.path)})
        try:
            notify.wait_for("READY=1")
            web = owned.incoming / "web"
            web.mkdir()  # root's, 0755: the service may read it, not move out of it
            (web / "w.csr").write_bytes(pem(make_csr("w.sample.com")[1]))
            status: list[str] = []
            wait_for(lambda: status.extend(notify.poll()) or any(
                "WAITING: 1 file(s) cannot be taken" in s for s in status), 20, "STATUS=")
            shown = owned.run("status")
            assert "WAITING: cannot take" in shown.stdout and "chown -R nobody" in \
                shown.stdout, shown.stdout
            # A turn sends STATUS= at most every 0.5 s and rescans every 1 s: eight more
            # STATUS= lines that still wait span several rescans, each retrying the file.
            seen = len(status)
            wait_for(lambda: status.extend(notify.poll()) or sum(
                "WAITING" in s for s in status[seen:]) >= 8, 30, "more turns")
            text = log.read_text()
            assert text.count("cannot take a file") == 1, text
            assert "Traceback" not in text and "fault" not in text, text
            chown_tree(web, OWNER)
            wait_for((owned.outgoing / "w" / "result.json").exists, 20, "w answered")
        finally:
            daemon.terminate()
            daemon.wait(timeout=60)
            notify.close()
