"""Sticks on a real vfat driver (../shared/tools/fat-stick: a FAT image mounted by a
User-Mode Linux kernel; this host's kernel has no vfat). Ingest runs with the stick
mounted read-only, nosuid, nodev, noexec as the media unit mounts it; export with it
writable; what the stick holds afterwards is read back with mtools."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.pki import CA, make_csr, pem

REPO = Path(__file__).resolve().parent.parent
FAT_STICK = REPO.parent / "shared" / "tools" / "fat-stick"
SPOOLCA = str(Path(sys.executable).with_name("spoolca"))


def unit_options(mode: str) -> str:
    """The mount options spoolca-media@.service gives (its STICK_OPTIONS), for root in
    UML (no spoolca user there): what the unit mounts is what these tests mount."""
    unit = (REPO / "systemd" / "spoolca-media@.service").read_text()
    options = unit.split("Environment=STICK_OPTIONS=", 1)[1].split("\n", 1)[0]
    return f"{mode},nosuid,nodev,noexec," + options.replace("=spoolca", "=0")


INGEST, EXPORT = unit_options("ro"), unit_options("rw")


def stick_tool() -> None:
    problem = None if os.geteuid() == 0 else "needs root"
    if problem is None and not FAT_STICK.is_file():
        problem = f"{FAT_STICK} is missing"
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"FAT tests cannot run: {problem}")
        pytest.skip(problem)
    host_problem = uml_host_problem()
    if host_problem:  # the host CPU, not a missing install: skipped in CI too, said why
        pytest.skip(host_problem)


@functools.cache
def uml_host_problem() -> str | None:
    """Why User-Mode Linux cannot run user space on this host, or None. Its 6.1 kernel
    sets a process's FP state with one ptrace call sized for the XSAVE area it knows;
    on a CPU with a larger one (Intel AMX, seen on Sapphire Rapids hosts) the host
    refuses it (EFAULT) and UML panics as it starts init."""
    with tempfile.TemporaryDirectory() as scratch:
        image = Path(scratch) / "probe.img"
        made = fat("make", str(image), "--size", "1M", "--fat", "12", timeout=60)
        if made.returncode != 0:
            return None  # let the test itself say what is wrong
        probe = fat("run", str(image), "-v", "--timeout", "30", "--", "true", timeout=90)
    if probe.returncode != 0 and "ptrace set fp regs failed" in probe.stderr + probe.stdout:
        return ("User-Mode Linux cannot run user space on this host CPU (its kernel 6.1 "
                "panics: 'ptrace set fp regs failed', a larger XSAVE area such as Intel "
                "AMX's): the real-FAT tests need an x86-64 host without it")
    return None


def fat(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(FAT_STICK), *args], capture_output=True, text=True,
                          timeout=timeout)


def on_stick(image: Path, ca: CA, command: str, options: str) -> subprocess.CompletedProcess[str]:
    """Run `spoolca COMMAND $STICK` inside UML with the stick mounted with OPTIONS."""
    return fat("run", str(image), "--options", options, "--", "/bin/sh", "-c",
               f"{SPOOLCA} --config {ca.config} {command} \"$STICK\"")


@pytest.fixture
def stick(tmp_path: Path) -> Path:
    """A stick as Windows and macOS users leave them: 8.3 upper-case names, a long mixed-
    case name, a hidden request, litter, and the dirty bit of an unsafe removal."""
    stick_tool()
    tree = tmp_path / "tree"
    (tree / "SERVER").mkdir(parents=True)
    (tree / "SERVER" / "ALICE.CSR").write_bytes(pem(make_csr("alice.sample.com")[1]))
    (tree / "SERVER" / "Bob Laptop.csr").write_bytes(pem(make_csr("bob.sample.com")[1]))
    (tree / "SERVER" / "SECRET.CSR").write_bytes(pem(make_csr("secret.sample.com")[1]))
    (tree / "SERVER" / "._ALICE.CSR").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    (tree / ".Trashes").mkdir()
    (tree / "System Volume Information").mkdir()
    (tree / "desktop.ini").write_text("[.ShellClassInfo]\n")
    image = tmp_path / "stick.img"
    made = fat("make", str(image), "--size", "40M", "--from", str(tree), "--hidden",
               "SERVER/SECRET.CSR", "--dirty")
    assert made.returncode == 0, made.stderr
    return image


class TestRealFAT:
    def test_a_windows_stick_round_trip(self, ca: CA, stick: Path):
        """Upper-case 8.3 folders and names and long names are taken; a hidden request is
        skipped with its reason; litter is skipped; the results go back and check out."""
        ingest = on_stick(stick, ca, "media ingest", INGEST)
        assert ingest.returncode == 0, ingest.stdout + ingest.stderr
        assert "medium uuid:" in ingest.stdout  # identified by the file system's UUID
        assert "SERVER/SECRET.CSR: hidden or system file" in ingest.stdout
        taken = sorted(os.listdir(ca.incoming / "server"))
        assert taken == ["ALICE.CSR", "Bob_Laptop.csr"], taken
        ca.process()
        assert ca.result("ALICE")["status"] == "issued"
        export = on_stick(stick, ca, "media export", EXPORT)
        assert export.returncode == 0, export.stdout + export.stderr
        listing = fat("ls", str(stick), "spoolca-results/results")
        assert "ALICE" in listing.stdout and "Bob_Laptop" in listing.stdout
        assert "SECRET" not in listing.stdout
        check = fat("run", str(stick), "--options", "ro", "--", "/bin/sh", "-c",
                    'cd "$STICK/spoolca-results" && sha256sum -c --quiet SHA256SUMS')
        assert check.returncode == 0, check.stdout + check.stderr

    def test_the_stick_stays_untouched_during_ingest(self, ca: CA, stick: Path):
        """Counter-case: ingest never writes to the stick: the image is byte for byte the
        same afterwards, the dirty bit of the unsafe removal included (no fsck)."""
        import hashlib

        before = hashlib.sha256(stick.read_bytes()).hexdigest()
        assert on_stick(stick, ca, "media ingest", INGEST).returncode == 0
        assert hashlib.sha256(stick.read_bytes()).hexdigest() == before

    def test_a_full_stick_gets_no_partial_export(self, ca: CA, stick: Path):
        """A stick with no room: export says so in one sentence (exit 1) and leaves no
        half-written folder; once there is room, the same trip's export completes."""
        assert on_stick(stick, ca, "media ingest", INGEST).returncode == 0
        ca.process()
        full = fat("run", str(stick), "--options", EXPORT, "--", "/bin/sh",
                   "-c", f'dd if=/dev/zero of="$STICK/FILLER" bs=64k 2>/dev/null; '
                   f'{SPOOLCA} --config {ca.config} media export "$STICK"; echo "rc=$?"')
        assert "rc=1" in full.stdout, full.stdout + full.stderr
        assert "free space on it and export again" in full.stdout + full.stderr
        assert "Traceback" not in full.stdout + full.stderr
        root = fat("ls", str(stick)).stdout
        assert "spoolca-results" not in root, root  # nothing partial, not even a dot-folder
        again = fat("run", str(stick), "--options", EXPORT, "--", "/bin/sh",
                    "-c", f'rm "$STICK/FILLER" && {SPOOLCA} --config {ca.config} '
                    'media export "$STICK" && cd "$STICK/spoolca-results" && '
                    "sha256sum -c --quiet SHA256SUMS && ls results")
        assert again.returncode == 0, again.stdout + again.stderr
        assert "ALICE" in again.stdout

    def test_names_in_other_scripts(self, ca: CA, tmp_path: Path):
        """Accents and other scripts: with the unit's iocharset=utf8 every request is taken
        under its own name. Counter-case, a stick mounted by hand with the kernel's default
        (iso8859-1 in this kernel): a name that cannot be shown is skipped with its reason,
        never confused with another; the rest are taken under safe names."""
        stick_tool()
        tree = tmp_path / "tree"
        (tree / "server").mkdir(parents=True)
        names = ["Zoë Café.csr", "ÉTÉ.CSR", "日本.csr", "中国.csr"]
        for i, name in enumerate(names):
            (tree / "server" / name).write_bytes(pem(make_csr(f"n{i}.sample.com")[1]))
        image = tmp_path / "stick.img"
        made = subprocess.run([str(FAT_STICK), "make", str(image), "--size", "40M", "--from",
                               str(tree)], capture_output=True, text=True,
                              env={**os.environ, "LANG": "C.UTF-8"})
        assert made.returncode == 0, made.stderr
        by_hand = on_stick(image, ca, "media ingest", "ro,nosuid,nodev,noexec")
        assert by_hand.returncode == 0, by_hand.stdout + by_hand.stderr
        assert by_hand.stdout.count("skipped server/??.csr: its name reads the same") == 2
        assert "copied 2 file(s)" in by_hand.stdout  # Zoë Café and ÉTÉ, under safe names
        ingest = on_stick(image, ca, "media ingest", INGEST)
        assert "copied 4 file(s)" in ingest.stdout and "skipped" not in ingest.stdout
        ca.process()
        export = on_stick(image, ca, "media export", EXPORT)
        assert export.returncode == 0, export.stdout + export.stderr
        check = fat("run", str(image), "--options", INGEST, "--", "/bin/sh", "-c",
                    'cd "$STICK/spoolca-results" && sha256sum -c --quiet SHA256SUMS && '
                    "cat MANIFEST.json")
        assert check.returncode == 0, check.stdout + check.stderr
        assert len(json.loads(check.stdout)["results"]) == 6  # 2 by hand, then 4

    def test_a_stick_pulled_mid_export(self, ca: CA, tmp_path: Path):
        """The stick is pulled (UML powered off, no unmount, no sync; the kernel writes
        back every 10 ms, as a stick's own writes trickle out) at points of the export:
        what it holds is the export whole or none of it, never names without their
        contents; the register loses nothing, and the next export completes and checks."""
        stick_tool()
        tree = tmp_path / "tree"
        (tree / "SERVER").mkdir(parents=True)
        for i in range(12):
            (tree / "SERVER" / f"PULL{i}.CSR").write_bytes(pem(make_csr(f"p{i}.sample.com")[1]))
        image = tmp_path / "stick.img"
        assert fat("make", str(image), "--size", "16M", "--fat", "16", "--from",
                   str(tree)).returncode == 0
        assert "copied 12 file(s)" in on_stick(image, ca, "media ingest", INGEST).stdout
        ca.process()
        for cut_when in ('[ "$(ls "$STICK/.spoolca-results.part/results" | wc -l)" -ge 4 ]',
                         '[ -d "$STICK/spoolca-results/results" ]'):
            pulled = fat("run", str(image), "--options", EXPORT, "--timeout", "60", "--",
                         "/bin/sh", "-c", PULL.format(spoolca=SPOOLCA, config=ca.config,
                                                      cut_when=cut_when))
            assert pulled.returncode == 125, pulled.stdout + pulled.stderr  # no clean end
            assert "dirty: yes" in fat("info", str(image)).stdout
            held = fat("run", str(image), "--options", INGEST, "--", "/bin/sh", "-c",
                       'cd "$STICK" && if [ -d spoolca-results ]; then cd spoolca-results && '
                       "sha256sum -c --quiet SHA256SUMS && ls results | wc -l; else "
                       "echo none; fi")
            assert held.returncode == 0, held.stdout + held.stderr
            assert held.stdout.split()[-1] in ("none", "12"), held.stdout
            again = fat("run", str(image), "--options", EXPORT, "--", "/bin/sh", "-c",
                        f'{SPOOLCA} --config {ca.config} media export "$STICK" && '
                        'cd "$STICK/spoolca-results" && sha256sum -c --quiet SHA256SUMS && '
                        "ls results | wc -l")
            assert again.returncode == 0, again.stdout + again.stderr
            assert again.stdout.split()[-1] == "12"
        assert ca.run("audit", "verify").returncode == 0


# Inside UML, as root: write-back every 10 ms, the export in the background, and at the
# cut point (polled) power off at once (reboot(2)): no sync, no unmount, as a pulled stick.
PULL = """
echo 1 > /proc/sys/vm/dirty_expire_centisecs
echo 1 > /proc/sys/vm/dirty_writeback_centisecs
{spoolca} --config {config} media export "$STICK" > /dev/null 2>&1 &
until {cut_when}; do :; done 2>/dev/null
/sbin/poweroff --force --force --no-sync --no-wtmp
"""
