"""The appliance image booted (QEMU) with a real kernel, udev and vfat, and USB sticks
plugged into it: the round trip a requester's stick makes, with nothing typed at the
appliance after its first ceremony.

Opt-in, as it needs the image: `appliance/build DIR`, then
`SPOOLCA_APPLIANCE_IMAGE=DIR python -m pytest -m appliance`. Elsewhere it skips.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.appliance.vm import Appliance
from tests.pki import pem
from tests.test_live import _readme_csr

pytestmark = pytest.mark.appliance

IMAGE = os.environ.get("SPOOLCA_APPLIANCE_IMAGE", "")
STATE = "/var/lib/spoolca"
ROOT_SUBJECT = "/C=US/ST=New York/O=Example/CN=Example Root CA"
# The operator's first ceremony at the console (README, "Running under systemd"), with
# --no-passphrase: what an appliance without a custodian at each boot runs.
CEREMONY = f"""set -e
spoolca init --dir {STATE} --no-passphrase --root-subject "{ROOT_SUBJECT}" >/dev/null
chown -R spoolca:spoolca {STATE}
systemctl enable --now spoolca
"""


@pytest.fixture(scope="module")
def appliance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Appliance]:
    if not IMAGE or not (Path(IMAGE) / "root.img").is_file():
        pytest.skip("no appliance image: build one with `appliance/build DIR` and set "
                    "SPOOLCA_APPLIANCE_IMAGE=DIR")
    machine = Appliance(Path(IMAGE), tmp_path_factory.mktemp("appliance"))
    try:
        machine.boot()
        booted = machine.cpu_seconds()
        machine.sh(CEREMONY)
        machine.sh("until systemctl is-active -q spoolca; do sleep 1; done", timeout=600)
        print(f"boot to the guest agent: {booted:.1f} s of emulated CPU; the ceremony to "
              f"the daemon ready: {machine.cpu_seconds() - booted:.1f} s")
        yield machine
    finally:
        machine.shutdown()


def fat_stick(path: Path, label: str, files: dict[str, bytes]) -> Path:
    """A 64 MiB FAT image labelled LABEL holding FILES (name -> bytes), made without a
    mount (mkfs.vfat, mtools), as a requester's machine would write it."""
    subprocess.run(["mkfs.vfat", "-C", "-n", label, str(path), "65536"], check=True,
                   capture_output=True)
    for name, data in files.items():
        local = path.parent / f".{path.name}.{name.replace('/', '_')}"
        local.write_bytes(data)
        if "/" in name:
            subprocess.run(["mmd", "-D", "s", "-i", str(path), "::" + name.rsplit("/", 1)[0]],
                           check=False, capture_output=True)
        subprocess.run(["mcopy", "-i", str(path), str(local), "::" + name], check=True)
    return path


def device_of(machine: Appliance, label: str) -> str:
    """The kernel name (sda, ...) of the plugged stick labelled LABEL, once udev has it."""
    found = machine.sh(f"for i in $(seq 600); do d=$(lsblk -rno NAME,LABEL | "
                       f"awk '$2==\"{label}\"{{print $1; exit}}'); [ -n \"$d\" ] && "
                       f"{{ echo $d; exit 0; }}; sleep 0.5; done; exit 1").stdout.strip()
    machine.sh("udevadm settle --timeout=120")
    return found


def read_back(image: Path, target: Path) -> Path:
    """The stick's results copied off with mtools: what the requester finds."""
    subprocess.run(["mcopy", "-s", "-n", "-i", str(image), "::spoolca-results", str(target)],
                   check=True, capture_output=True)
    return target


class TestSticks:
    def test_a_stick_comes_back_with_its_certificate_and_nothing_typed(
            self, appliance: Appliance, tmp_path: Path):
        csr = pem(_readme_csr("vm1.example.com"))  # the README's CSR, as policy wants it
        stick = fat_stick(tmp_path / "stick.img", "SPOOLCA", {"server/vm1.csr": csr})
        cpu = appliance.cpu_seconds()
        appliance.plug("stick1", stick)
        device = device_of(appliance, "SPOOLCA")
        appliance.sh(f"for i in $(seq 1200); do journalctl -o cat -u spoolca-media@{device} "
                     f"| grep -q 'the stick is unmounted: remove it' && exit 0; sleep 0.5; "
                     f"done; exit 1", timeout=900)
        emulated = appliance.cpu_seconds() - cpu
        appliance.pull("stick1")
        results = read_back(stick, tmp_path / "out")
        # As docs/requester.md says: one signature over the list, then every file.
        keyring = tmp_path / "appliance.gpg"
        subprocess.run(["gpg", "--batch", "--yes", "--dearmor", "--output", str(keyring),
                        str(results / "audit" / "appliance-key.asc")], check=True)
        subprocess.run(["gpgv", "--keyring", str(keyring), "SHA256SUMS.asc", "SHA256SUMS"],
                       cwd=results, check=True, capture_output=True)
        subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=results, check=True)
        chain = subprocess.run(["openssl", "verify", "-CAfile", "ca/ca-chain.pem",
                                "results/vm1/cert.pem"], cwd=results, capture_output=True,
                               text=True)
        assert chain.returncode == 0, chain.stdout + chain.stderr
        print(f"plug to done: {emulated:.1f} s of emulated CPU")

    def test_a_stick_with_another_label_is_left_alone(self, appliance: Appliance,
                                                      tmp_path: Path):
        """Counter-case: the rule matches the label only; the stick comes back as it went."""
        stick = fat_stick(tmp_path / "other.img", "PHOTOS", {"server/x.csr": b"not for us"})
        before = hashlib.sha256(stick.read_bytes()).hexdigest()
        appliance.plug("other", stick)
        device = device_of(appliance, "PHOTOS")
        units = appliance.sh(f"systemctl list-units --all --no-legend 'spoolca-media@{device}*'"
                             ).stdout
        appliance.pull("other")
        assert units.strip() == ""
        assert hashlib.sha256(stick.read_bytes()).hexdigest() == before
