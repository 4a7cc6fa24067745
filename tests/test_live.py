"""The daemon's unit, live: installed from the offline bundle exactly as the README says,
under a real systemd (PID 1 in fresh namespaces, no network), and worked as an operator
would. ../shared/tools/systemd-sandbox boots it; it needs root. In CI a missing tool
fails the test; elsewhere it skips."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from tests.pki import make_csr, pem, subject, wait_for
from tests.rawcsr import raw_csr
from tests.test_bounds import many_names

REPO = Path(__file__).resolve().parent.parent
SANDBOX = REPO.parent / "shared" / "tools" / "systemd-sandbox"
STATE = "/var/lib/spoolca"
ROOT_SUBJECT = "/C=US/ST=New York/O=Example/CN=Example Root CA"


def _available() -> None:
    problem = None if os.geteuid() == 0 else "needs root"
    if problem is None and not SANDBOX.is_file():
        problem = f"{SANDBOX} is missing"
    if problem is None and not Path("/usr/lib/systemd/systemd").exists():
        problem = "systemd is not installed"
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"live unit tests cannot run: {problem}")
        pytest.skip(problem)


class Sandbox:
    """A running systemd-sandbox: commands run inside it as root."""

    def __init__(self, name: str, loop: str) -> None:
        self.name = name
        self.loop = loop

    def sh(self, script: str, *, check: bool = True, timeout: float = 180
           ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([str(SANDBOX), "exec", self.name, "--", "bash", "-c", script],
                                capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"{script!r} exited {result.returncode}:\n"
                                 f"{result.stdout}\n{result.stderr}")
        return result

    def value(self, prop: str) -> str:
        return self.sh(f"systemctl show -p {prop} --value spoolca").stdout.strip()

    def result(self, name: str, timeout: float = 60) -> dict:
        path = f"{STATE}/spool/outgoing/{name}/result.json"
        wait_for(lambda: self.sh(f"test -f {path}", check=False).returncode == 0, timeout,
                 f"{name} answered")
        return json.loads(self.sh(f"cat {path}").stdout)

    def drop(self, name: str) -> None:
        """Into incoming/server/ as a media job would: written whole, then renamed in."""
        self.sh(f"cp /data/{name} {STATE}/spool/incoming/server/.{name}.part && "
                f"mv {STATE}/spool/incoming/server/.{name}.part "
                f"{STATE}/spool/incoming/server/{name}")


def credential_step(secret: str) -> str:
    """README.md, "Running under systemd", steps 2-3 after init: the state directory the
    service's, the unlock secret an encrypted credential, the file gone."""
    return f"""chown -R spoolca:spoolca {STATE}
mkdir -p /etc/credstore.encrypted
systemd-creds encrypt --name=spoolca-ca-passphrase {secret} \\
  /etc/credstore.encrypted/spoolca-ca-passphrase
shred -u {secret}
sed -i 's|^file = |# file = |' {STATE}/spoolca.toml
"""


# README.md, "Running under systemd", steps 1-4, with the bundle as step 1 says.
INSTALL = f"""
set -euo pipefail
/bundle/install.sh
umask 077; printf 'correct horse battery staple' > /root/ca-passphrase
spoolca init --dir {STATE} --root-subject "{ROOT_SUBJECT}" \\
  --passphrase-file /root/ca-passphrase
{credential_step("/root/ca-passphrase")}systemctl daemon-reload && systemctl enable --now spoolca
"""


def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The offline bundle (README step 1), built once for the whole run: every live
    module installs the same bytes, and a build costs ~6 s of CPU. Under pytest-xdist the
    workers share the run's base temporary directory, and a lock lets one build it."""
    import fcntl

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    built = root / "bundle"
    with open(root / "bundle.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (built / "SHA256SUMS").is_file():
            subprocess.run(["bash", str(REPO / "packaging" / "make-bundle.sh"), str(built),
                            sys.executable], check=True, capture_output=True, timeout=600)
    return built


@contextmanager
def booted(bundle: Path, data: Path, prefix: str, install: str, devices: tuple[str, ...] = ()
           ) -> Iterator[Sandbox]:
    """A sandbox booted without a network with BUNDLE and DATA mounted read-only, INSTALL
    run in it; the sandbox removed on the way out."""
    name = f"{prefix}-{os.getpid()}"
    try:
        booting = subprocess.run([str(SANDBOX), "up", "--name", name, "--bind-ro",
                                  f"{bundle}:/bundle", "--bind-ro", f"{data}:/data",
                                  *(a for d in devices for a in ("--device", d))],
                                 capture_output=True, text=True, timeout=120)
        assert booting.returncode == 0, booting.stdout + booting.stderr
        sandbox = Sandbox(name, devices[0] if devices else "")
        sandbox.sh(install, timeout=600)
        yield sandbox
    finally:
        subprocess.run([str(SANDBOX), "down", name], capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """The bundle built here, the sandbox booted without a network, spoolca installed."""
    _available()
    work = tmp_path_factory.mktemp("live")
    data = work / "data"
    data.mkdir()
    (data / "live.csr").write_bytes(pem(make_csr("live.example.com", name=subject(
        "live.example.com", company=False, extra=[]))[1]))
    (data / "v1.der").write_bytes(raw_csr(name=subject("v1.example.com"), version=1)[1])
    for name in ("k0", "k1", "k2", "op", "stick-a", "stick-b", "stick-c"):
        (data / f"{name}.csr").write_bytes(pem(_readme_csr(f"{name}.example.com")))
    (data / "wedge").mkdir()  # the issue's stick: 60 requests of 6,000 names each
    for index in range(60):
        (data / "wedge" / f"wedge{index}.der").write_bytes(many_names(
            6000, f"wedge{index}.example.com"))
    image = work / "stick.img"  # the stick: a loop device (see TestLiveMedia)
    image.write_bytes(b"")
    os.truncate(image, 64 << 20)
    loop = subprocess.run(["losetup", "--find", "--show", str(image)], capture_output=True,
                          text=True, check=True).stdout.strip()
    try:
        with booted(bundle(tmp_path_factory), data, "spoolca-live", INSTALL, (loop,)) as sandbox:
            yield sandbox
    finally:
        subprocess.run(["losetup", "--detach", loop], capture_output=True)


def _readme_csr(common_name: str) -> bytes:
    """A request the README's CA (C=US, ST=New York, O=Example) signs."""
    return make_csr(common_name, name=x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
        x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "New York"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example"),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))[1]


class TestLiveDaemon:
    def test_ready_with_a_status_line(self, live: Sandbox):
        """Type=notify: active once READY=1 came, STATUS= says what it did."""
        assert live.value("ActiveState") == "active"
        assert "issued" in live.value("StatusText")
        interfaces = live.sh("awk 'NR > 2 {print $1}' /proc/net/dev").stdout.split()
        assert interfaces == ["lo:"]  # no network: the bundle had to be enough

    def test_a_csr_dropped_in_is_answered(self, live: Sandbox):
        """The policy_match of the README's CA refuses a foreign subject, with reasons."""
        live.drop("live.csr")
        body = live.result("live")
        assert body["status"] == "rejected"
        assert "policy.dn.countryName_missing" in [r["code"] for r in body["reasons"]]

    def test_a_poison_file_is_answered_and_the_service_stays(self, live: Sandbox):
        """A version-1 CSR: its own answer, and the unit is still active, same PID."""
        pid = live.value("MainPID")
        live.drop("v1.der")
        assert [r["code"] for r in live.result("v1")["reasons"]] == ["csr.version_invalid"]
        assert live.value("ActiveState") == "active" and live.value("MainPID") == pid

    def test_reload_applies_a_good_file_and_fails_on_a_refused_one(self, live: Sandbox):
        """systemctl reload waits for the daemon's answer and exits non-zero on refusal."""
        config = f"{STATE}/spoolca.toml"
        good = live.sh(f"sed -i 's/^rescan_seconds = 30/rescan_seconds = 20/' {config} && "
                       "systemctl reload spoolca", check=False)
        assert good.returncode == 0, good.stderr
        live.sh(f"cp {config} /root/good.toml && "
                f"sed -i 's/^lint = \"pkix\"/lint = \"sometimes\"/' {config}")
        refused = live.sh("systemctl reload spoolca", check=False)
        assert refused.returncode != 0
        journal = live.sh("journalctl -u spoolca -o cat --no-pager | tail -20").stdout
        assert "configuration reload refused" in journal
        live.sh(f"cp /root/good.toml {config} && chown spoolca:spoolca {config}")
        assert live.value("ActiveState") == "active"

    def test_kill_nine_restarts_and_loses_nothing(self, live: Sandbox):
        """SIGKILL: systemd restarts it (Restart=on-failure) and every request is answered."""
        pid = live.value("MainPID")
        for i in range(3):
            live.drop(f"k{i}.csr")
        live.sh("systemctl kill -s KILL spoolca")
        wait_for(lambda: live.value("MainPID") not in ("0", pid)
                 and live.value("ActiveState") == "active", 60, "restarted")
        for i in range(3):
            assert live.result(f"k{i}")["status"] == "issued"
        listing = json.loads(live.sh(f"spoolca --config {STATE}/spoolca.toml list --json"
                                     ).stdout)
        serials = [c["serial"] for c in listing]
        assert len(serials) == len(set(serials)) == 3

    def test_security_exposure_is_at_most_0_5(self, live: Sandbox):
        """systemd-analyze security on the running unit."""
        out = live.sh("systemd-analyze security spoolca --no-pager", check=False).stdout
        level = float(re.search(r"Overall exposure level for spoolca\.service: ([0-9.]+)",
                                out).group(1))
        assert level <= 0.5, out[-2000:]

    def test_gpg_signs_under_the_full_hardening(self, live: Sandbox):
        """Checkpoints were signed by gpg inside the unit's sandbox: the export verifies."""
        fingerprint = live.sh(f"sqlite3 {STATE}/ca.db \"SELECT value FROM meta WHERE "
                              "key = 'audit_key_fingerprint'\"", check=False).stdout.strip() \
            or json.loads(live.sh(f"spoolca --config {STATE}/spoolca.toml audit show --json "
                                  "--event ca.initialized").stdout)[0]["data"][
                "audit_key_fingerprint"]
        verify = live.sh(f"spoolca audit verify --dir {STATE}/spool/outgoing/audit "
                         f"--fingerprint {fingerprint}", check=False)
        assert verify.returncode == 0, verify.stdout + verify.stderr

    def test_the_operator_s_commands_work_as_installed(self, live: Sandbox):
        """README's install, then root's own commands: no --config, the passphrase only a
        credential. Each runs as spoolca (root's helper decrypts the unit's credential
        when a key is needed), so what they write is spoolca's and gpg runs as spoolca."""
        live.drop("op.csr")  # by root, as the test: the daemon answers and archives it
        serial = live.result("op")["serial"]
        live.sh("touch /tmp/before-the-operator")
        live.sh("install -d -o spoolca -g spoolca /var/backups/spoolca /tmp/stick-op")
        for command in ("crl", "audit export", "list", "status", "clock status",
                        f"show {serial}", f"revoke {serial} --reason superseded",
                        "backup /var/backups/spoolca/", "media export /tmp/stick-op"):
            done = live.sh(f"cd / && spoolca {command}", check=False)
            assert done.returncode == 0, (command, done.stdout, done.stderr)
        assert "revoked" in live.sh(f"spoolca show {serial}").stdout
        assert live.sh("ls /var/backups/spoolca/").stdout.strip().endswith(".tar.gz")
        assert live.sh("test -s /tmp/stick-op/spoolca-results/REPORT.html", check=False
                       ).returncode == 0
        owners = live.sh(f"find {STATE} -newer /tmp/before-the-operator -not -user spoolca "
                         "| head").stdout.strip()
        assert owners == "", owners
        denied = live.sh("mkdir -p /root/backups && spoolca backup /root/backups/b.tar.gz",
                         check=False)
        assert denied.returncode == 1 and "root's commands run as spoolca" in denied.stderr

    def test_the_manual_is_on_the_host(self, live: Sandbox):
        """The bundle installs spoolca(1), spoolca.toml(5) and the guides: `man` reads them
        with no network; the page names every command."""
        page = live.sh("MANPAGER=cat MANWIDTH=100 man spoolca").stdout
        for command in ("reconsider", "media export", "audit verify", "EXIT STATUS"):
            assert command in page, command
        assert "max_forward_days" in live.sh("MANPAGER=cat man spoolca.toml").stdout
        assert live.sh("test -s /usr/local/share/doc/spoolca/operator/stick.md", check=False
                       ).returncode == 0

    def test_stop_exits_zero_and_leaves_no_process(self, live: Sandbox):
        """stop: exit 0 (Result=success) and nothing left in the unit's cgroup, gpg-agent
        included."""
        live.sh("systemctl stop spoolca")
        assert live.value("Result") == "success"
        assert live.value("ExecMainStatus") == "0"
        left = live.sh("pgrep -a gpg-agent; pgrep -a -f '^/opt/spoolca/bin/python' ; true"
                       ).stdout.strip()
        assert left == "", left



# The media unit as installed, with only what the sandbox lacks stood in for: it has no
# udev, so there is no dev-loopN.device unit to bind to (a dependency cannot be removed
# by a drop-in: the two lines are taken out of the installed unit, and the test checks
# that nothing else changed), and its kernel has no vfat, so the stick is ext4, made
# owned by spoolca, mounted with ext4's options in place of FAT's uid=/gid=. Real FAT is
# tests/test_fat.py's (a vfat driver under User-Mode Linux).
MEDIA_STANDIN = """
set -euo pipefail
unit=/etc/systemd/system/spoolca-media@.service
cp $unit /root/media-unit.orig
sed -i -e '/^BindsTo=dev-%i.device$/d' -e 's/^After=dev-%i.device /After=/' $unit
mkdir -p $unit.d
printf '%s\\n' '[Service]' Environment=STICK_TYPES=ext4 \\
  Environment=STICK_OPTIONS=errors=remount-ro > $unit.d/sandbox-has-no-vfat.conf
systemctl daemon-reload
{ diff /root/media-unit.orig $unit || true; } | grep -c '^[<>]'
"""


@pytest.fixture(scope="module")
def media(live: Sandbox) -> Sandbox:
    assert live.sh(MEDIA_STANDIN).stdout.split()[-1] == "3"  # 2 lines out, 1 changed
    return live


class TestLiveMedia:
    """spoolca-media@.service's round trip on a loop device, started as udev would."""

    @staticmethod
    def make_stick(live: Sandbox, csr: str, *, label: str = "SPOOLCA", fill: bool = False
                   ) -> str:
        """A fresh file system on the loop device (a new UUID: another stick) holding
        server/CSR; FILL leaves no room for the export. Returns its UUID."""
        filler = (f"mount {live.loop} /mnt && {{ dd if=/dev/zero of=/mnt/FILLER bs=64k "
                  "2>/dev/null || :; } && umount /mnt") if fill else "true"
        return live.sh(
            f"rm -rf /root/stick && mkdir -p /root/stick/server && "
            f"cp /data/{csr}.csr /root/stick/server/ && "
            f"mkfs.ext4 -q -F -m 0 -L {label} -E root_owner=$(id -u spoolca):$(id -g spoolca) "
            f"-d /root/stick {live.loop} && {filler} && "
            f"blkid -p -s UUID -o value {live.loop}").stdout.strip()

    @staticmethod
    def trip(live: Sandbox) -> subprocess.CompletedProcess[str]:
        """Insert: what udev asks for (SYSTEMD_WANTS) started by hand; oneshot, so
        `systemctl start` returns when the round trip is over."""
        device = live.loop.removeprefix("/dev/")
        # A stick pulled stops the unit (BindsTo= its device); the sandbox has no udev.
        live.sh(f"systemctl stop spoolca-media@{device}.service", check=False)
        return live.sh(f"systemctl start spoolca-media@{device}.service", check=False)

    @staticmethod
    def stick_holds(live: Sandbox) -> str:
        """What the stick holds afterwards, read back read-only, and the export checked."""
        return live.sh(f"mount -o ro {live.loop} /mnt && trap 'umount /mnt' EXIT && ( "
                       "cd /mnt && find . -path ./lost+found -prune -o -print | sort && "
                       "if [ -d spoolca-results ]; then cd spoolca-results && "
                       "sha256sum -c --quiet SHA256SUMS && echo CHECKED; fi )").stdout

    def test_the_udev_rule_asks_for_the_unit_for_a_spoolca_stick_only(self, media: Sandbox):
        """`udevadm test` with the installed rule; the counter-case: another label."""
        device = media.loop.removeprefix("/dev/")
        for label, wanted in (("SPOOLCA", True), ("HOLIDAYS", False)):
            self.make_stick(media, "stick-a", label=label)
            out = media.sh(f"udevadm test --action=add /sys/class/block/{device} 2>&1").stdout
            assert (f"SYSTEMD_WANTS=spoolca-media@{device}.service" in out) is wanted, out

    def test_a_stick_that_wedged_the_daemon_is_answered_without_a_restart(self,
                                                                          media: Sandbox):
        """60 requests of 6,000 names each (3.4 MB, far under the stick limits) exceeded
        WatchdogSec inside one batch; the restart's recovery was killed before READY, for
        ever. Now each is refused at once (policy.san.too_many), the round trip ends with
        every request answered, and the daemon never restarted."""
        # No restart during the trip: the same process before and after, or, when another
        # test of the module left the daemon stopped (the trip's unit starts it, and a
        # start job resets NRestarts), no automatic restart since that start.
        pid = media.value("MainPID")
        media.sh("rm -rf /root/stick && mkdir -p /root/stick/server && "
                 "cp /data/wedge/*.der /root/stick/server/ && "
                 f"mkfs.ext4 -q -F -m 0 -L SPOOLCA -E root_owner=$(id -u spoolca):"
                 f"$(id -g spoolca) -d /root/stick {media.loop}")
        started = time.monotonic()
        done = self.trip(media)
        media.wedge_seconds = time.monotonic() - started  # type: ignore[attr-defined]
        assert done.returncode == 0, done.stderr + self.journal(media)
        codes = media.sh(f"cat {STATE}/spool/outgoing/wedge*/result.json | "
                         "grep -c policy.san.too_many").stdout.strip()
        assert codes == "60", codes
        if pid != "0":
            assert media.value("MainPID") == pid
        else:
            assert media.value("NRestarts") == "0"
        assert media.value("ActiveState") == "active"

    def test_two_sticks_through_one_mount_point_each_get_their_own(self, media: Sandbox):
        """Stick A, then stick B at the same /run/spoolca-media/loopN: each is identified
        by the UUID root read (blkid), and each carries back only its own result."""
        device = media.loop.removeprefix("/dev/")
        holds = {}
        for csr in ("stick-a", "stick-b"):
            uuid = self.make_stick(media, csr)
            started = time.monotonic()
            done = self.trip(media)
            assert done.returncode == 0, done.stderr + self.journal(media)
            media.trip_seconds = time.monotonic() - started  # type: ignore[attr-defined]
            assert f"medium uuid:{uuid}" in self.journal(media)
            assert media.sh(f"findmnt /run/spoolca-media/{device}", check=False).returncode
            # Done is observable: the unit stays active (exited), its last line says so.
            assert media.sh(f"systemctl is-active spoolca-media@{device}.service",
                            check=False).stdout.strip() == "active"
            shown = media.sh(f"systemctl status spoolca-media@{device}.service",
                             check=False).stdout
            assert "done, the stick is unmounted: remove it" in shown, shown
            holds[csr] = self.stick_holds(media)
        assert "./spoolca-results/results/stick-a/cert.pem" in holds["stick-a"]
        assert "stick-b" not in holds["stick-a"] and "CHECKED" in holds["stick-a"]
        assert "./spoolca-results/results/stick-b/cert.pem" in holds["stick-b"]
        assert "stick-a" not in holds["stick-b"] and "CHECKED" in holds["stick-b"]
        assert "./server/stick-b.csr" in holds["stick-b"]  # the request stays on its stick

    def test_a_failed_export_leaves_the_stick_unmounted_and_nothing_lost(self, media: Sandbox):
        """Counter-case: a stick with no room. The unit fails, the stick is unmounted (never
        left writable), it holds no partial export, and the request was answered."""
        device = media.loop.removeprefix("/dev/")
        self.make_stick(media, "stick-c", fill=True)
        done = self.trip(media)
        assert done.returncode != 0
        assert "free space on it and export again" in self.journal(media)
        assert media.sh(f"findmnt /run/spoolca-media/{device}", check=False).returncode
        assert "spoolca-results" not in self.stick_holds(media)
        assert media.result("stick-c")["status"] == "issued"

    def test_the_media_unit_is_sandboxed_like_the_daemon(self, media: Sandbox):
        """systemd-analyze security of the unit that reads hostile sticks: at most 2.0
        (it was 6.2 MEDIUM with the unlock credential loaded)."""
        device = media.loop.removeprefix("/dev/")
        out = media.sh(f"systemd-analyze security spoolca-media@{device}.service "
                       "| tail -1").stdout
        score = float(re.search(r"exposure level for \S+: ([0-9.]+)", out).group(1))
        media.media_security = score  # type: ignore[attr-defined]
        assert score <= 2.0, out

    def test_the_media_unit_cannot_read_a_key_or_the_unlock_secret(self, media: Sandbox):
        """The unit's own sandbox, with its commands replaced by one that tries: the keys
        and the gnupg home are not there for it, and no credential is loaded."""
        probe = "/etc/systemd/system/spoolca-media@probe.service.d"
        media.sh(f"mkdir -p {probe} && printf '%s\\n' '[Service]' ExecStartPre= "
                 "ExecStart= ExecStartPost= ExecStopPost= "
                 f"'ExecStart=/bin/sh -c \"ls -l {STATE}/keys {STATE}/gnupg; "
                 f"cat {STATE}/keys/*.pem; echo creds=$$CREDENTIALS_DIRECTORY; "
                 f"ls {STATE}/spool/outgoing/ca\"' > {probe}/probe.conf && "
                 "systemctl daemon-reload")
        try:
            media.sh("systemctl start spoolca-media@probe.service", check=False)
            out = media.sh("journalctl -u spoolca-media@probe.service -o cat --no-pager"
                           ).stdout
        finally:
            media.sh(f"rm -rf {probe} && systemctl daemon-reload && "
                     "systemctl reset-failed spoolca-media@probe.service", check=False)
        assert "ca-chain.pem" in out, out  # it did run, and sees the public files
        assert "BEGIN" not in out and "private-keys" not in out, out
        assert "creds=" in out and not re.search(r"creds=/", out), out

    @staticmethod
    def journal(live: Sandbox) -> str:
        return live.sh("journalctl -u 'spoolca-media@*' -o cat --no-pager | tail -40").stdout
