"""Each way spoolca is started, started for real: most tests run the command line in
their own process (tests/inprocess.py), so these prove the processes themselves: the
installed `spoolca` script and `python -m spoolca.cli` (what the units run), with their
exit statuses, streams and the helpers a pass starts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.pki import CA, make_csr, pem

pytestmark = pytest.mark.subprocess

SCRIPT = Path(sys.executable).with_name("spoolca")


def test_the_installed_script_issues_and_rejects(ca: CA):
    """The console script the README installs: a pass issues one request and rejects
    another, each answered, exit 0, nothing on stderr but log lines."""
    ca.submit("good.csr", pem(make_csr("good.example.com")[1]))
    ca.submit("bad.csr", b"not a request")
    done = subprocess.run([str(SCRIPT), "--config", str(ca.config), "process"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert ca.result("good")["status"] == "issued"
    assert ca.result("bad")["status"] == "rejected"
    assert "Traceback" not in done.stderr


def test_the_module_entry_point_reports_errors_as_one_sentence(ca: CA):
    """`python -m spoolca.cli` (the units' ExecStart): a usage error exits 2 with one
    `spoolca:` sentence, and an unknown serial exits 1 the same way."""
    usage = subprocess.run([sys.executable, "-m", "spoolca.cli", "--config", str(ca.config),
                            "revoke"], capture_output=True, text=True, timeout=60)
    assert usage.returncode == 2 and "Traceback" not in usage.stderr
    unknown = subprocess.run([sys.executable, "-m", "spoolca.cli", "--config",
                              str(ca.config), "show", "0123456789abcdef"],
                             capture_output=True, text=True, timeout=60)
    assert unknown.returncode == 1
    assert unknown.stderr.startswith("spoolca: ") and "Traceback" not in unknown.stderr


def test_the_in_process_runner_matches_the_process(ca: CA):
    """The in-process runner is what most tests rely on: for the same calls it gives the
    same exit status and the same output as the real process."""
    from tests.inprocess import run_in_process

    for argv in (["--config", str(ca.config), "status"], ["--config", str(ca.config), "list"],
                 ["--config", str(ca.config), "show", "ff"], ["--version"], ["bogus"]):
        real = subprocess.run([sys.executable, "-m", "spoolca.cli", *argv],
                              capture_output=True, text=True, timeout=60)
        here = run_in_process(argv)
        assert (here.returncode, here.stdout) == (real.returncode, real.stdout), argv
        assert here.stderr.splitlines()[:1] == real.stderr.splitlines()[:1], argv
