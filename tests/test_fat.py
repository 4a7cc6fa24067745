"""Sticks on a real vfat driver (../shared/tools/fat-stick: a FAT image mounted by a
User-Mode Linux kernel; this host's kernel has no vfat). Ingest runs with the stick
mounted read-only, nosuid, nodev, noexec as the media unit mounts it; export with it
writable; what the stick holds afterwards is read back with mtools."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.pki import CA, make_csr, pem

REPO = Path(__file__).resolve().parent.parent
FAT_STICK = REPO.parent / "shared" / "tools" / "fat-stick"
SPOOLCA = str(Path(sys.executable).with_name("spoolca"))


def stick_tool() -> None:
    problem = None if os.geteuid() == 0 else "needs root"
    if problem is None and not FAT_STICK.is_file():
        problem = f"{FAT_STICK} is missing"
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"FAT tests cannot run: {problem}")
        pytest.skip(problem)


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
        ingest = on_stick(stick, ca, "media ingest", "ro,nosuid,nodev,noexec")
        assert ingest.returncode == 0, ingest.stdout + ingest.stderr
        assert "medium uuid:" in ingest.stdout  # identified by the file system's UUID
        assert "SERVER/SECRET.CSR: hidden or system file" in ingest.stdout
        taken = sorted(os.listdir(ca.incoming / "server"))
        assert taken == ["ALICE.CSR", "Bob_Laptop.csr"], taken
        ca.process()
        assert ca.result("ALICE")["status"] == "issued"
        export = on_stick(stick, ca, "media export", "rw,nosuid,nodev,noexec")
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
        assert on_stick(stick, ca, "media ingest", "ro,nosuid,nodev,noexec").returncode == 0
        assert hashlib.sha256(stick.read_bytes()).hexdigest() == before

    def test_a_full_stick_gets_no_partial_export(self, ca: CA, stick: Path):
        """A stick with no room: export says so in one sentence (exit 1) and leaves no
        half-written folder; once there is room, the same trip's export completes."""
        assert on_stick(stick, ca, "media ingest", "ro,nosuid,nodev,noexec").returncode == 0
        ca.process()
        full = fat("run", str(stick), "--options", "rw,nosuid,nodev,noexec", "--", "/bin/sh",
                   "-c", f'dd if=/dev/zero of="$STICK/FILLER" bs=64k 2>/dev/null; '
                   f'{SPOOLCA} --config {ca.config} media export "$STICK"; echo "rc=$?"')
        assert "rc=1" in full.stdout, full.stdout + full.stderr
        assert "free space on it and export again" in full.stdout + full.stderr
        assert "Traceback" not in full.stdout + full.stderr
        root = fat("ls", str(stick)).stdout
        assert "spoolca-results" not in root, root  # nothing partial, not even a dot-folder
        again = fat("run", str(stick), "--options", "rw,nosuid,nodev,noexec", "--", "/bin/sh",
                    "-c", f'rm "$STICK/FILLER" && {SPOOLCA} --config {ca.config} '
                    'media export "$STICK" && cd "$STICK/spoolca-results" && '
                    "sha256sum -c --quiet SHA256SUMS && ls results")
        assert again.returncode == 0, again.stdout + again.stderr
        assert "ALICE" in again.stdout
