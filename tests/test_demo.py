"""The README's first command: `spoolca demo`, with the daemon and with --once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

from tests.daemon import NotifySocket
from tests.pki import CREATED, openssl, spoolca, wait_for


def statuses(outgoing) -> dict[str, str]:
    return {p.parent.name: json.loads(p.read_text())["status"]
            for p in outgoing.glob("*/result.json")}


class TestDemo:
    def test_once_issues_two_and_rejects_one_each_round(self, tmp_path):
        """Each run drops three new samples: two issued, one rejected with its reasons."""
        CREATED.append(tmp_path / "demo")
        for _ in range(2):
            result = spoolca("demo", "--dir", str(tmp_path / "demo"), "--once")
            assert result.returncode == 0, result.stderr
        outgoing = tmp_path / "demo" / "spool" / "outgoing"
        found = statuses(outgoing)
        assert sorted(found.values()).count("issued") == 4
        assert sorted(found.values()).count("rejected") == 2
        openssl("verify", "-CAfile", str(outgoing / "ca" / "ca-chain.pem"),
                str(outgoing / "mail.sample.com" / "cert.pem"))
        key = tmp_path / "demo" / "keys" / "intermediate.key.pem"
        assert key.read_bytes().startswith(b"-----BEGIN ENCRYPTED PRIVATE KEY-----")

    def test_demo_runs_the_daemon_until_interrupted(self, tmp_path):
        """Without --once the daemon watches the spool: samples answered, Ctrl-C exits 0.
        Ctrl-C reaches the whole process group, the lint workers too: no traceback."""
        notify = NotifySocket(tmp_path / "notify.sock")
        CREATED.append(tmp_path / "demo")
        process = subprocess.Popen(
            [sys.executable, "-m", "spoolca.cli", "demo", "--dir", str(tmp_path / "demo")],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "NOTIFY_SOCKET": str(notify.path)})
        try:
            notify.wait_for("READY=1", 60)
            outgoing = tmp_path / "demo" / "spool" / "outgoing"
            wait_for(lambda: len(statuses(outgoing)) == 3, 30, "three demo results")
        finally:
            os.killpg(process.pid, signal.SIGINT)  # as a terminal's Ctrl-C
            output, _ = process.communicate(timeout=30)
            notify.close()
        assert process.returncode == 0
        assert b"The daemon now watches" in output
        assert b"Traceback" not in output and b"KeyboardInterrupt" not in output, output[-2000:]
