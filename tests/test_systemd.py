"""The shipped unit: hardening measured by systemd-analyze, and W^X shown on the live daemon."""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import pytest

from tests.daemon import issue_one, serving
from tests.pki import CA

UNIT = Path(__file__).resolve().parent.parent / "systemd" / "spoolca.service"
ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(ANALYZE is None and "CI" not in __import__("os").environ,
                                   reason="systemd-analyze is not installed (.ci/run installs it)")


def analyze(*args: str):
    import subprocess

    return subprocess.run([ANALYZE or "systemd-analyze", *args], capture_output=True,
                          text=True, timeout=120)


@needs_analyze
class TestUnit:
    def test_exposure_is_at_most_1_5(self, tmp_path):
        """systemd-analyze security rates the unit SAFE, exposure 1.5 or lower."""
        unit = tmp_path / "spoolca.service"
        shutil.copyfile(UNIT, unit)
        result = analyze("security", "--offline=yes", str(unit))
        match = re.search(r"Overall exposure level for spoolca.service: ([0-9.]+)",
                          result.stdout)
        assert match, result.stdout + result.stderr
        assert float(match.group(1)) <= 1.5

    def test_the_media_unit_s_exposure_is_at_most_2(self, tmp_path):
        """The unit that reads hostile sticks, offline: at most 2.0 (live: test_live)."""
        unit = tmp_path / "spoolca-media@sdb1.service"
        shutil.copyfile(UNIT.with_name("spoolca-media@.service"), unit)
        result = analyze("security", "--offline=yes", str(unit))
        match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", result.stdout)
        assert match, result.stdout + result.stderr
        assert float(match.group(1)) <= 2.0

    def test_verify_is_clean(self, tmp_path):
        """systemd-analyze verify has nothing to say (ExecStart pointed at this install)."""
        spoolca = Path(sys.executable).with_name("spoolca")
        unit = tmp_path / "spoolca.service"
        unit.write_text(UNIT.read_text().replace("/usr/local/bin/spoolca", str(spoolca)))
        result = analyze("verify", str(unit))
        assert result.returncode == 0, result.stderr
        assert result.stderr.strip() == ""

    def test_unit_carries_the_required_directives(self):
        """Type=notify, the watchdog, credentials and the hardening the issue lists."""
        text = UNIT.read_text()
        for directive in ("Type=notify", "WatchdogSec=", "Restart=on-failure",
                          "RestartPreventExitStatus=2", "LoadCredentialEncrypted=",
                          "UMask=0077", "PrivateNetwork=yes", "IPAddressDeny=any",
                          "RestrictAddressFamilies=AF_UNIX", "ProtectSystem=strict",
                          "ReadWritePaths=/var/lib/spoolca", "ProtectHome=yes",
                          "PrivateTmp=yes", "PrivateDevices=yes", "NoNewPrivileges=yes",
                          "CapabilityBoundingSet=\n", "SystemCallFilter=@system-service",
                          "MemoryDenyWriteExecute=yes", "LockPersonality=yes",
                          "RestrictNamespaces=yes", "ProtectKernelTunables=yes",
                          "ProtectKernelModules=yes", "ProtectKernelLogs=yes",
                          "ProtectClock=yes", "RestrictRealtime=yes", "RestrictSUIDSGID=yes",
                          "SystemCallArchitectures=native", "User=spoolca"):
            assert directive in text, directive


@needs_analyze
class TestMediaUnits:
    def test_media_unit_verifies(self, tmp_path):
        """spoolca-media@.service (as an instance for sdb1) is clean for systemd-analyze."""
        spoolca = Path(sys.executable).with_name("spoolca")
        template = UNIT.with_name("spoolca-media@.service").read_text()
        for name, text in (("spoolca-media@sdb1.service", template),
                           ("spoolca.service", UNIT.read_text())):
            (tmp_path / name).write_text(text.replace("/usr/local/bin/spoolca", str(spoolca)))
        result = analyze("verify", str(tmp_path / "spoolca-media@sdb1.service"))
        assert result.returncode == 0 and result.stderr.strip() == "", result.stderr

    def test_media_unit_mounts_safely(self):
        """Read-only, nosuid, nodev, noexec for ingest; owned by spoolca; unmounted after."""
        text = UNIT.with_name("spoolca-media@.service").read_text()
        mount = next(line for line in text.splitlines() if line.startswith("ExecStartPre=")
                     and "/usr/bin/mount " in line)
        assert "-o ro,nosuid,nodev,noexec,${STICK_OPTIONS} /dev/%I" in mount
        assert "Environment=STICK_OPTIONS=uid=spoolca,gid=spoolca," in text
        assert "fsck" not in mount and "ExecStartPre=+/usr/bin/systemd-mount" not in text
        assert "nsenter --mount=/proc/1/ns/mnt" in mount  # else gone with its namespace
        assert "media ingest --identity" in text
        assert "media export --through-daemon --identity" in text  # it holds no key
        assert "LoadCredential" not in text and "InaccessiblePaths=" in text
        assert "umount --lazy" in text.split("ExecStopPost=", 1)[1]

    def test_udev_rule_starts_the_unit_and_never_mounts(self):
        """The rule asks systemd (SYSTEMD_WANTS) and never mounts from RUN+=."""
        rule = UNIT.with_name("99-spoolca-media.rules").read_text()
        lines = [line for line in rule.splitlines() if line and not line.startswith("#")]
        assert len(lines) == 1
        assert 'ENV{SYSTEMD_WANTS}+="spoolca-media@%k.service"' in lines[0]
        assert 'TAG+="systemd"' in lines[0] and "RUN+=" not in lines[0]


class TestWriteXorExecute:
    def test_live_daemon_has_no_writable_executable_memory(self, ca: CA, tmp_path):
        """After unlocking keys, linting and signing, no mapping is both writable and
        executable: MemoryDenyWriteExecute=yes would not break the crypto stack."""
        with serving(ca, tmp_path) as running:
            issue_one(ca, "wx")
            maps = Path(f"/proc/{running.process.pid}/maps").read_text().splitlines()
            writable_exec = [line for line in maps if re.match(r"\S+ .wx", line)]
            assert maps and writable_exec == []
