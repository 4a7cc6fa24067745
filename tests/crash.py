"""Power cuts, not process kills: crash states of a real ext4 under a real workload.

A workload (init, a pass, the daemon answering requests one at a time, a revocation)
runs with its state directory on a recorded block device (tests/blocklog.py). Each
crash state is the device as a power cut at one point of the recorded writes left it
(at a barrier, between barriers, or between barriers with some unflushed writes lost);
it is mounted (ext4 replays its journal) and checked:

- nothing published that is not durable: every result folder visible in the crash state
  holds a whole result (result.json parses, cert.pem and cert.crt are whole and agree);
- nothing taken that is not durable: the stick's requests are good, so a refusal of one
  means a torn copy was answered (named in incoming/ before its bytes were on disk; the
  workload's own submissions are plain writes a power cut may tear, as a user's copy);
- recovery (`spoolca process`) succeeds, and afterwards the register and outgoing/
  agree: every recorded result is published, byte for byte, and every published result
  is recorded; what was visible before recovery is unchanged by it (nothing durable lost);
- no request has two certificates; the exported log verifies by the appliance key;
- the CA issues a new request.

Used by tests/test_crash.py (a bounded sample) and bench/crash_campaign.py (all of them).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from spoolca.keys.openpgp import stop_agent
from tests.blocklog import Recording, crash_state, recording
from tests.pki import CA, INTERMEDIATE_SUBJECT, ROOT_SUBJECT, make_csr, pem, spoolca, wait_for

__all__ = ["CrashPoint", "check", "crash_points", "workload"]


@dataclass(frozen=True)
class CrashPoint:
    upto: int          # the first UPTO log entries reached the disk
    lose: int | None   # a seed: unflushed writes since the last barrier lost at random
    after_init: bool   # init had returned: the CA must work


def _cli(ca_dir: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return spoolca("--config", str(ca_dir / "spoolca.toml"), *args, timeout=timeout)


def workload(mountpoint: Path, log: Recording) -> None:
    """init; a pass over six requests; the daemon answering eight, one at a time; a
    revocation; a stick of five ingested (copies made durable in one batch, then named),
    then a pass. Marks in the log: init, pass, daemon, revoked, ingested."""
    ca_dir = mountpoint / "ca"
    made = spoolca("init", "--dir", str(ca_dir), "--root-subject", ROOT_SUBJECT,
                   "--intermediate-subject", INTERMEDIATE_SUBJECT, "--no-passphrase",
                   "--key-type", "ec-p256")
    assert made.returncode == 0, made.stderr
    ca = CA(ca_dir)
    ca.edit_config('lint = "pkix"', 'lint = "off"')
    log.mark("init")
    for index in range(6):
        ca.submit(f"server/p{index}.csr", pem(make_csr(f"p{index}.sample.com")[1]))
    assert _cli(ca_dir, "process").returncode == 0
    log.mark("pass")
    daemon = subprocess.Popen([sys.executable, "-m", "spoolca.cli", "--config",
                               str(ca.config), "serve"], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        for index in range(8):
            ca.submit(f"server/d{index}.csr", pem(make_csr(f"d{index}.sample.com")[1]))
            wait_for((ca.outgoing / f"d{index}" / "result.json").exists, 30, f"d{index}")
    finally:
        daemon.terminate()
        daemon.wait(timeout=60)
    log.mark("daemon")
    serial = ca.result("p0")["serial"]
    assert _cli(ca_dir, "revoke", serial, "--reason", "keyCompromise").returncode == 0
    log.mark("revoked")
    stick = mountpoint / "stick" / "server"
    stick.mkdir(parents=True)
    for index in range(5):
        (stick / f"s{index}.csr").write_bytes(pem(make_csr(f"s{index}.sample.com")[1]))
    assert _cli(ca_dir, "media", "ingest", str(stick.parent)).returncode == 0
    assert _cli(ca_dir, "process").returncode == 0
    log.mark("ingested")
    stop_agent(ca_dir / "gnupg")


def crash_points(log: Recording, sample: int | None, seed: int = 1) -> list[CrashPoint]:
    """Every barrier after init's first write, and as many points between barriers, each
    also with unflushed writes lost; SAMPLE of them at random (None: all)."""
    init_done = log.index_of("init")
    points = []
    for index, entry in enumerate(log.entries):
        if entry[0] == "f":
            points.append(CrashPoint(index + 1, None, index >= init_done))
        elif entry[0] == "w" and index > 0 and log.entries[index - 1][0] == "f":
            points.append(CrashPoint(index + 2, index, index >= init_done))
    chooser = random.Random(seed)
    if sample is not None and len(points) > sample:
        before = [p for p in points if not p.after_init]
        after = [p for p in points if p.after_init]
        points = chooser.sample(before, min(len(before), sample // 5)) + \
            chooser.sample(after, sample - min(len(before), sample // 5))
    return sorted(points, key=lambda p: p.upto)


@contextmanager
def mounted(image: Path, mountpoint: Path) -> Iterator[Path]:
    """IMAGE mounted (ext4 replays its journal); its loop device goes with the mount."""
    mounting = subprocess.run(["mount", "-t", "ext4", "-o", "loop", str(image),
                               str(mountpoint)], capture_output=True, text=True, timeout=60)
    assert mounting.returncode == 0, f"mount {image}: {mounting.stderr.strip()}"
    try:
        yield mountpoint
    finally:
        stop_agent(mountpoint / "ca" / "gnupg")  # an agent exiting keeps it busy a moment
        try:
            wait_for(lambda: _unmounted(mountpoint), 30, f"{mountpoint} unmounted")
        except AssertionError:  # only this very process can still hold it: a bug here
            held = _held_by_me(mountpoint)
            subprocess.run(["umount", "-l", str(mountpoint)], check=True, timeout=60)
            raise AssertionError(f"this test process still holds {held}") from None


def _held_by_me(mountpoint: Path) -> list[str]:
    with suppress(OSError):
        links = (os.readlink(fd) for fd in Path(f"/proc/{os.getpid()}/fd").iterdir())
        return [link for link in links if link.startswith(str(mountpoint))]
    return []


def _unmounted(mountpoint: Path) -> bool:
    """umount; when it is busy, what the checks started and left holding a file there (a
    gpg-agent of the crash state's home) is killed first: it is the test's, not the CA's."""
    if subprocess.run(["umount", str(mountpoint)], capture_output=True).returncode == 0:
        return True
    prefix = str(mountpoint) + "/"
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        with suppress(OSError):
            links = [os.readlink(proc / "cwd"), *(os.readlink(fd) for fd in
                                                   (proc / "fd").iterdir())]
            if any(link.startswith(prefix) or link == str(mountpoint) for link in links):
                os.kill(int(proc.name), 9)
    return False


def _published(outgoing: Path) -> dict[str, dict[str, bytes]]:
    found = {}
    if not outgoing.is_dir():
        return found
    for folder in sorted(outgoing.iterdir()):
        if folder.name.startswith(".") or not (folder / "result.json").exists():
            continue
        found[folder.name] = {p.name: p.read_bytes() for p in folder.iterdir()
                              if p.is_file() and not p.name.startswith(".")}
    return found


def _whole(name: str, files: dict[str, bytes]) -> str | None:
    """Why a visible result folder is not a whole result, or None."""
    try:
        result = json.loads(files["result.json"])
    except (KeyError, ValueError):
        return f"{name}/result.json is empty or not JSON"
    if result.get("status") == "issued":
        if not files.get("cert.pem", b"").startswith(b"-----BEGIN CERTIFICATE-----"):
            return f"{name}/cert.pem is empty or not a certificate"
        if not files.get("cert.crt"):
            return f"{name}/cert.crt is empty"
    return None


def check(base: Path, log: Recording, point: CrashPoint, scratch: Path) -> list[str]:
    """The problems of one crash state (empty: it holds every promise)."""
    # Each its own image and mount point: no state is ever written through another's loop.
    image = scratch / f"crash-{point.upto}-{point.lose}.img"
    mountpoint = scratch / f"crash-{point.upto}-{point.lose}"
    mountpoint.mkdir()
    crash_state(base, log, point.upto, image,
                random.Random(point.lose) if point.lose is not None else None)
    try:
        return _check_mounted(image, mountpoint, point)
    finally:
        image.unlink()


def _check_mounted(image: Path, mountpoint: Path, point: CrashPoint) -> list[str]:
    problems: list[str] = []
    with mounted(image, mountpoint):
        ca_dir = mountpoint / "ca"
        if not point.after_init:
            if (ca_dir / "spoolca.toml").exists():
                result = _cli(ca_dir, "status")
                if "bug" in result.stderr or "Traceback" in result.stderr:
                    problems.append(f"a half-made CA: {result.stderr.strip()}")
            return problems
        before = _published(ca_dir / "spool" / "outgoing")
        problems += [p for name, files in before.items() if (p := _whole(name, files))]
        recovered = _cli(ca_dir, "process")
        if recovered.returncode != 0:
            problems.append(f"recovery failed: {recovered.stderr.strip()}")
            return problems
        after = _published(ca_dir / "spool" / "outgoing")
        for name, files in before.items():
            if _whole(name, files) is None and after.get(name) != files:
                problems.append(f"{name} was whole before recovery and changed")
        problems += [p for name, files in after.items() if (p := _whole(name, files))]
        problems += [f"{name} (from the stick) was refused: {files['result.json'][:300]!r}"
                     for name, files in after.items() if name.startswith("s")
                     and json.loads(files["result.json"]).get("status") == "rejected"]
        problems += _agree(ca_dir, after)
        ca = CA(ca_dir)
        ca.submit("server/after.csr", pem(make_csr("after.sample.com")[1]))
        if _cli(ca_dir, "process").returncode != 0 or ca.result("after")["status"] != "issued":
            problems.append("the CA does not issue after recovery")
        problems += _log_verifies(ca_dir)
    return problems


def _agree(ca_dir: Path, published: dict[str, dict[str, bytes]]) -> list[str]:
    problems = []
    with closing(sqlite3.connect(ca_dir / "ca.db")) as db:  # `with connect` never closes
        names = {row[0] for row in db.execute("SELECT output_name FROM submissions")}
        issued = dict(db.execute("SELECT s.output_name, c.der FROM submissions s JOIN "
                                 "certificates c ON c.serial = s.serial WHERE s.status = "
                                 "'issued'"))
        twice = db.execute("SELECT request_sha256 FROM certificates GROUP BY request_sha256 "
                           "HAVING COUNT(*) > 1").fetchall()
    problems += [f"{name} is recorded but not published" for name in sorted(names)
                 if name not in published]
    problems += [f"{name} is published but not recorded" for name in sorted(published)
                 if name not in names]
    problems += [f"{name}/cert.crt is not the recorded certificate" for name, der in
                 issued.items() if name in published and published[name].get("cert.crt") != der]
    problems += [f"request {row[0]} has two certificates" for row in twice]
    return problems


def _log_verifies(ca_dir: Path) -> list[str]:
    with closing(sqlite3.connect(ca_dir / "ca.db")) as db:  # `with connect` never closes
        fingerprint = db.execute("SELECT value FROM meta WHERE key = "
                                 "'audit_key_fingerprint'").fetchone()[0]
    verified = _cli(ca_dir, "audit", "verify", "--dir",
                    str(ca_dir / "spool" / "outgoing" / "audit"), "--fingerprint", fingerprint)
    return [] if verified.returncode == 0 else [f"the exported log: {verified.stdout.strip()}"]


def campaign(sample: int | None) -> tuple[int, int, list[str]]:
    """Record the workload once, check SAMPLE crash states (None: all of them). Returns
    (points checked, log entries, problems with the point that showed each)."""
    scratch = Path(tempfile.mkdtemp(prefix="spc-"))  # short: gpg-agent's socket path
    try:
        with _device(scratch) as (mnt, log, base):
            workload(mnt, log)
        points = crash_points(log, sample)
        problems = []
        for point in points:
            problems += [f"crash after entry {point.upto}"
                         f"{' (unflushed writes lost)' if point.lose is not None else ''}: {p}"
                         for p in check(base, log, point, scratch)]
        return len(points), len(log.entries), problems
    finally:
        with suppress(OSError):
            shutil.rmtree(scratch)


@contextmanager
def _device(scratch: Path) -> Iterator[tuple[Path, Recording, Path]]:
    folder = scratch / "dev"
    folder.mkdir()
    with recording(folder) as found:
        yield found
    os.sync()
