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
from tests.test_live import _readme_csr, credential_step

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


# The same with the CA keys under a passphrase that reaches the units as an encrypted
# credential (README steps 2-3; systemd-creds seals it with the machine's host key).
CEREMONY_WITH_PASSPHRASE = f"""set -e
umask 077; printf 'correct horse battery staple' > /root/ca-passphrase
spoolca init --dir {STATE} --root-subject "{ROOT_SUBJECT}" \\
  --passphrase-file /root/ca-passphrase >/dev/null
{credential_step("/root/ca-passphrase")}systemctl enable --now spoolca
"""


def _booted(tmp_path_factory: pytest.TempPathFactory, ceremony: str
            ) -> Iterator[Appliance]:
    if IMAGE and not (Path(IMAGE) / "root.img").is_file():
        pytest.fail(f"SPOOLCA_APPLIANCE_IMAGE={IMAGE} holds no root.img (appliance/build)")
    if not IMAGE:
        pytest.skip("no appliance image: build one with `appliance/build DIR` and set "
                    "SPOOLCA_APPLIANCE_IMAGE=DIR")
    machine = Appliance(Path(IMAGE), tmp_path_factory.mktemp("appliance"))
    try:
        machine.boot()
        booted = machine.cpu_seconds()
        machine.sh(ceremony)
        machine.sh("until systemctl is-active -q spoolca; do sleep 1; done", timeout=600)
        print(f"boot to the guest agent: {booted:.1f} s of emulated CPU; the ceremony to "
              f"the daemon ready: {machine.cpu_seconds() - booted:.1f} s")
        yield machine
    finally:
        machine.shutdown()


@pytest.fixture(scope="module")
def appliance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Appliance]:
    """The image booted, its first ceremony run with --no-passphrase."""
    yield from _booted(tmp_path_factory, CEREMONY)


@pytest.fixture(scope="module")
def appliance_with_passphrase(tmp_path_factory: pytest.TempPathFactory
                              ) -> Iterator[Appliance]:
    """The image booted again, its CA's passphrase an encrypted credential."""
    yield from _booted(tmp_path_factory, CEREMONY_WITH_PASSPHRASE)


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


def journal_cursor(machine: Appliance) -> str:
    """Where the guest's journal ends now: later waits read only what comes after."""
    return machine.sh("journalctl -q -n 0 --show-cursor | sed -n 's/^-- cursor: //p'"
                      ).stdout.strip()


def wait_for_line(machine: Appliance, cursor: str, unit: str, pattern: str) -> None:
    """Until UNIT logs a line matching PATTERN (grep) after CURSOR; polled in the guest."""
    machine.sh(f"for i in $(seq 1800); do journalctl -o cat --after-cursor='{cursor}' "
               f"-u {unit} | grep -q '{pattern}' && exit 0; sleep 0.5; done; exit 1",
               timeout=900)


def round_trip(machine: Appliance, stick: Path, tmp_path: Path) -> tuple[Path, float]:
    """STICK plugged, left until the media unit says it may be pulled, pulled, and read
    back: what came back, and the emulated CPU seconds from plug to done."""
    cursor = journal_cursor(machine)
    cpu = machine.cpu_seconds()
    machine.plug(stick.stem, stick)
    device = device_of(machine, "SPOOLCA")
    wait_for_line(machine, cursor, f"spoolca-media@{device}", "the stick is unmounted: remove it")
    emulated = machine.cpu_seconds() - cpu
    machine.pull(stick.stem)
    return read_back(stick, tmp_path / f"{stick.stem}-back"), emulated


def checked_as_a_requester(results: Path, tmp_path: Path, name: str) -> None:
    """As docs/requester.md says: one signature over the list, every file, the chain."""
    keyring = tmp_path / "appliance.gpg"
    subprocess.run(["gpg", "--batch", "--yes", "--dearmor", "--output", str(keyring),
                    str(results / "audit" / "appliance-key.asc")], check=True)
    subprocess.run(["gpgv", "--keyring", str(keyring), "SHA256SUMS.asc", "SHA256SUMS"],
                   cwd=results, check=True, capture_output=True)
    subprocess.run(["sha256sum", "-c", "--quiet", "SHA256SUMS"], cwd=results, check=True)
    chain = subprocess.run(["openssl", "verify", "-CAfile", "ca/ca-chain.pem",
                            f"results/{name}/cert.pem"], cwd=results, capture_output=True,
                           text=True)
    assert chain.returncode == 0, chain.stdout + chain.stderr


class TestSticks:
    def test_a_stick_comes_back_with_its_certificate_and_nothing_typed(
            self, appliance: Appliance, tmp_path: Path):
        stick = fat_stick(tmp_path / "stick1.img", "SPOOLCA",
                          {"server/vm1.csr": pem(_readme_csr("vm1.example.com"))})
        results, emulated = round_trip(appliance, stick, tmp_path)
        checked_as_a_requester(results, tmp_path, "vm1")
        print(f"plug to done: {emulated:.1f} s of emulated CPU")

    def test_two_sticks_in_a_row_each_get_only_their_own(self, appliance: Appliance,
                                                         tmp_path: Path):
        first = fat_stick(tmp_path / "stick2.img", "SPOOLCA",
                          {"server/vm2.csr": pem(_readme_csr("vm2.example.com"))})
        second = fat_stick(tmp_path / "stick3.img", "SPOOLCA",
                           {"server/vm3.csr": pem(_readme_csr("vm3.example.com"))})
        back_first, _ = round_trip(appliance, first, tmp_path)
        back_second, _ = round_trip(appliance, second, tmp_path)
        assert sorted(p.name for p in (back_first / "results").iterdir()) == ["vm2"]
        assert sorted(p.name for p in (back_second / "results").iterdir()) == ["vm3"]
        checked_as_a_requester(back_second, tmp_path, "vm3")

    def test_a_stick_pulled_mid_trip_loses_nothing_and_comes_back_answered(
            self, appliance: Appliance, tmp_path: Path):
        """Pulled as soon as its unit starts: the unit stops (BindsTo= the device), the
        mount is gone, the daemon runs on; the same stick plugged again gets its answer."""
        stick = fat_stick(tmp_path / "stick4.img", "SPOOLCA",
                          {"server/vm4.csr": pem(_readme_csr("vm4.example.com"))})
        cursor = journal_cursor(appliance)
        appliance.plug(stick.stem, stick)
        device = device_of(appliance, "SPOOLCA")
        wait_for_line(appliance, cursor, f"spoolca-media@{device}", ".")  # its first line
        appliance.pull(stick.stem)
        appliance.sh(f"for i in $(seq 600); do systemctl is-active -q spoolca-media@{device} "
                     f"|| exit 0; sleep 0.5; done; exit 1", timeout=600)
        assert appliance.sh(f"findmnt /run/spoolca-media/{device}", check=False).returncode != 0
        assert appliance.sh("systemctl is-active spoolca").stdout.strip() == "active"
        results, _ = round_trip(appliance, stick, tmp_path)
        assert sorted(p.name for p in (results / "results").iterdir()) == ["vm4"]
        checked_as_a_requester(results, tmp_path, "vm4")

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


class TestPassphraseCredential:
    def test_a_stick_comes_back_answered_by_a_ca_under_a_passphrase(
            self, appliance_with_passphrase: Appliance, tmp_path: Path):
        """The units as shipped load the credential; nothing is typed after the ceremony,
        and the passphrase file is gone from the machine."""
        machine = appliance_with_passphrase
        assert machine.sh("test -e /root/ca-passphrase", check=False).returncode != 0
        stick = fat_stick(tmp_path / "stick5.img", "SPOOLCA",
                          {"server/vm5.csr": pem(_readme_csr("vm5.example.com"))})
        results, _ = round_trip(machine, stick, tmp_path)
        checked_as_a_requester(results, tmp_path, "vm5")
