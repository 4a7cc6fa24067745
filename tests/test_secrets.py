"""No secret outlives its command (invariant 13): no gpg-agent left running, no
passphrase cached, no core dump; each unit sets LimitCORE=0."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from spoolca.keys.openpgp import stop_agent
from tests.daemon import issue_one, serving
from tests.pki import CA, CHEAP_S2K_COUNT, PASSPHRASE, init_ca, make_csr, pem, wait_for
from tests.templates import Templates

REPO = Path(__file__).resolve().parent.parent


def agents(home: Path) -> list[str]:
    """gpg-agent processes serving `home`, as `ps` shows them."""
    listing = subprocess.run(["ps", "-ww", "-eo", "pid=,args="], capture_output=True, text=True,
                             check=True).stdout
    return [line for line in listing.splitlines()  # the agent itself, not a gpg naming it
            if line.split()[1:2] and line.split()[1].endswith("gpg-agent")
            and str(home) in line]


def signs_without_passphrase(home: Path) -> bool:
    """What another process of the same user would try: sign with the appliance key and
    no passphrase (no pinentry may ask)."""
    result = subprocess.run(["gpg", "--homedir", str(home), "--batch", "--pinentry-mode",
                             "error", "--detach-sign", "--armor"], input=b"forged",
                            capture_output=True, timeout=60)
    return result.returncode == 0


@pytest.fixture
def encrypted(tmp_path: Path, templates: Templates) -> CA:
    """A CA whose keys (and audit key) are protected by a passphrase file."""
    return templates.encrypted(tmp_path, PASSPHRASE, secret_name="passphrase")


class TestNoAgentLeft:
    def test_after_each_command_no_agent_and_no_cached_passphrase(self, encrypted: CA,
                                                                  tmp_path: Path):
        """init, process, serve (stopped), audit export and media export: after each, no
        agent runs for the appliance's home, and a signature needs the passphrase again."""
        home = encrypted.dir / "gnupg"
        assert agents(home) == [], "init left an agent"
        encrypted.submit("server/a.csr", pem(make_csr("a.sample.com")[1]))
        encrypted.process()
        assert agents(home) == [], "process left an agent"
        with serving(encrypted, tmp_path) as running:
            issue_one(encrypted, "b")
            wait_for(lambda: agents(home), 20, "the daemon's agent (it seals after a batch)")
            assert not signs_without_passphrase(home), "the agent cached the passphrase"
        assert running.stopped_with == 0
        assert agents(home) == [], "serve left an agent"
        assert encrypted.run("audit", "export").returncode == 0
        assert agents(home) == [], "audit export left an agent"
        stick = tmp_path / "stick"
        stick.mkdir()
        assert encrypted.run("media", "export", str(stick)).returncode == 0
        assert agents(home) == [], "media export left an agent"
        assert not signs_without_passphrase(home)
        assert agents(home) == [] or subprocess.run(
            ["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"]).returncode == 0

    def test_a_command_beside_the_daemon_leaves_it_its_agent(self, encrypted: CA,
                                                             tmp_path: Path):
        """A command run while the daemon signs (here `audit export`) stopped the agent
        the daemon was using at its close; the daemon's next signature then failed and
        was retried. Now the last process using the agent stops it: the daemon's agent
        survives the command, and none is left once the daemon stops."""
        home = encrypted.dir / "gnupg"
        with serving(encrypted, tmp_path) as running:
            issue_one(encrypted, "a")
            before = wait_for(lambda: agents(home), 20, "the daemon's agent")
            assert encrypted.run("audit", "export").returncode == 0
            # Under load the command's gpg may time out on the agent's socket and start a
            # second agent, which finds the socket taken and exits a moment later: poll
            # for it to go. The daemon's own agent must be the one left (the counter-case:
            # stopped by the command, it never comes back and this times out).
            wait_for(lambda: agents(home) == before, 20, "the daemon's agent alone")
        assert running.stopped_with == 0
        assert agents(home) == [], "the daemon, last out, left its agent"

    def test_a_key_closed_twice_leaves_the_agent_to_its_other_user(self, ca: CA):
        """The second close of a key is no close: it must not stop the agent that
        another key (in the daemon, say) still signs with."""
        import sqlite3

        from spoolca.keys.openpgp import ApplianceKey

        home = ca.dir / "gnupg"
        with sqlite3.connect(ca.dir / "ca.db") as db:
            fingerprint = db.execute("SELECT value FROM meta WHERE key = "
                                     "'audit_key_fingerprint'").fetchone()[0]
        signing = ApplianceKey(home, fingerprint, None)
        other = ApplianceKey(home, fingerprint, None)
        try:
            signing.sign(b"an agent starts")
            running = wait_for(lambda: agents(home), 20, "the agent")
            other.close()
            other.close()
            assert agents(home) == running
        finally:
            signing.close()
        # gpgconf --kill returns when the agent was told to stop, not when it has exited:
        # under load it can still be in the process table for a moment.
        wait_for(lambda: agents(home) == [], 10, "the agent stopped by the last close")

    def test_the_check_sees_a_cached_passphrase(self, tmp_path: Path):
        """Counter-case: a home without our agent settings caches the passphrase, and the
        same probe then signs with none: the test above can fail."""
        from spoolca.keys.openpgp import ApplianceKey, stop_agent

        home = tmp_path / "plain"
        key = ApplianceKey.create(home, PASSPHRASE, "plain")
        (home / "gpg-agent.conf").write_text("allow-loopback-pinentry\n")  # gpg's defaults
        stop_agent(home)
        try:
            subprocess.run(["gpg", "--homedir", str(home), "--batch", "--pinentry-mode",
                            "loopback", "--passphrase-fd", "0", "--detach-sign", "-o",
                            str(tmp_path / "sig"), str(home / "gpg-agent.conf")],
                           input=PASSPHRASE, check=True, capture_output=True)
            assert signs_without_passphrase(home)
            assert key.fingerprint
        finally:
            stop_agent(home)


def s2k_counts(home: Path) -> list[int]:
    """The S2K counts (bytes hashed to open each key) in a gnupg home's key files."""
    # ((sha1 SALT "COUNT")#IV#): the salt is hex, or a quoted string when printable.
    return [int(re.search(rb'\(\(sha1 .*?"(\d+)"\)#', key.read_bytes(), re.S).group(1))
            for key in sorted((home / "private-keys-v1.d").glob("*.key"))]


class TestAuditKeyAtRest:
    def test_init_protects_the_audit_key_with_the_calibrated_count(self, tmp_path: Path):
        """The test templates open their audit key with gpg's smallest S2K count
        (tests/pki.py, cheapen_audit_key) for speed; what init itself writes must keep
        gpg-agent's calibration (100 ms of hashing: tens of millions of bytes on any
        machine that runs a CA), which is what stands between a stolen disk and the key."""
        (tmp_path / "pw").write_bytes(PASSPHRASE)
        made = init_ca(tmp_path / "ca", "--passphrase-file", str(tmp_path / "pw"))
        assert [count >= 1 << 20 for count in s2k_counts(made.dir / "gnupg")] == [True]

    def test_the_templates_key_is_the_cheap_one(self, encrypted: CA):
        """Counter-case: the check above tells a cheap key from a calibrated one."""
        assert s2k_counts(encrypted.dir / "gnupg") == [CHEAP_S2K_COUNT]


class TestNoCoreDump:
    def test_unlocking_makes_the_process_non_dumpable(self, encrypted: CA):
        """After the session unlocks a key: PR_GET_DUMPABLE 0 and RLIMIT_CORE 0."""
        code = (
            "import resource\n"
            "from spoolca.config import load_config\n"
            "from spoolca.host.memory import is_dumpable\n"
            "from spoolca.process.session import CASession\n"
            "from spoolca.register.store import Store\n"
            f"config = load_config(__import__('pathlib').Path({str(encrypted.config)!r}))\n"
            "before = is_dumpable()\n"
            "with CASession(config, Store(config.database)) as session:\n"
            "    session.unlock(['intermediate'])\n"
            "    print(before, is_dumpable(), resource.getrlimit(resource.RLIMIT_CORE))\n")
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                timeout=60)
        assert result.stdout.split("\n")[0] == "True False (0, 0)", result.stderr

    def test_the_daemon_runs_without_core_files(self, encrypted: CA, tmp_path: Path):
        """The live daemon's core limit is 0, as /proc shows it."""
        with serving(encrypted, tmp_path) as running:
            limits = Path(f"/proc/{running.process.pid}/limits").read_text()
            line = next(x for x in limits.splitlines() if x.startswith("Max core file size"))
            assert line.split()[4:6] == ["0", "0"], line

    @pytest.mark.parametrize("unit", ["spoolca.service", "spoolca-media@.service"])
    def test_both_units_set_limit_core(self, unit: str):
        """LimitCORE=0 in each unit that unlocks a key."""
        text = (REPO / "systemd" / unit).read_text()
        assert "\nLimitCORE=0\n" in text


class TestGnupgHomeLength:
    def test_the_longest_home_allowed_works_and_one_more_is_one_sentence(self):
        """gpg-agent's sockets live in the home: the longest home the check lets through
        runs a real agent; one byte more is refused before gpg is ever asked (it failed
        as "No agent running" after a restore into a path of exactly that length)."""
        from spoolca.errors import SpoolcaError
        from spoolca.keys.openpgp import MAX_HOME_LENGTH, ApplianceKey, check_home_length

        top = Path(tempfile.mkdtemp(prefix="home-"))
        try:
            fits = top / ("a" * (MAX_HOME_LENGTH - len(str(top)) - len("/gnupg") - 1)) / "gnupg"
            assert len(str(fits)) == MAX_HOME_LENGTH
            check_home_length(fits)
            key = ApplianceKey.create(fits, None, "fits")
            assert key.sign(b"x")
            stop_agent(fits)
            longer = Path(str(fits.parent) + "b") / "gnupg"
            with pytest.raises(SpoolcaError, match="choose a state directory"):
                check_home_length(longer)
        finally:
            stop_agent(fits)
            shutil.rmtree(top, ignore_errors=True)
