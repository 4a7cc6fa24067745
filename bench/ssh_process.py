#!/usr/bin/env python3
"""SSH certificates per second through `spoolca process`, against the by-hand path
(`ssh-keygen -s CA -I ID -n PRINCIPAL -V +7d KEY.pub`, one process per key), with the
same CA key type (Ed25519) and the same user keys on both sides.

Each run works on a fresh ext4 of its own (bench/freshfs.py: root needed), spoolca's
(init, ssh init, N keys with their request files) and ssh-keygen's (N keys), and times
the whole command (start-up included) with its CPU from the children's rusage. Rounds
are interleaved; the medians are reported as ratios, never as times.

    python bench/ssh_process.py [--count 500] [--rounds 3] [--type user|host]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
import freshfs  # noqa: E402  (bench/freshfs.py, beside this script)

SPOOLCA = [sys.executable, "-m", "spoolca.cli"]
PROFILES = '''
[ssh_profiles.ssh-user]
type = "user"
principals = ["user*"]
max_days = 30
[ssh_profiles.ssh-host]
type = "host"
principals = ["*.hosts.sample.com"]
max_days = 365
'''


def timed(command: list[str], **kwargs: object) -> tuple[float, float, float]:
    """(wall, user, system) seconds of COMMAND and its children."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, **kwargs)  # type: ignore[call-overload]
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime


def keys(count: int) -> list[bytes]:
    return [ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(
        Encoding.OpenSSH, PublicFormat.OpenSSH) + b" bench\n" for _ in range(count)]


def principal(kind: str, index: int) -> str:
    return f"user{index}" if kind == "user" else f"h{index}.hosts.sample.com"


def spoolca_round(folder: Path, lines: list[bytes], kind: str) -> tuple[float, float, float]:
    ca = folder / "ca"
    subprocess.run([*SPOOLCA, "init", "--dir", str(ca), "--no-passphrase", "--root-subject",
                    "/C=US/O=Bench/CN=Root", "--intermediate-subject",
                    "/C=US/O=Bench/CN=Intermediate"], check=True, capture_output=True)
    config = ca / "spoolca.toml"
    text = config.read_text().replace(
        '# [ssh]\n# user_key = "keys/ssh-user-ca.key.pem"\n'
        '# host_key = "keys/ssh-host-ca.key.pem"',
        '[ssh]\nuser_key = "keys/ssh-user-ca.key.pem"\nhost_key = "keys/ssh-host-ca.key.pem"')
    config.write_text(text + PROFILES)
    subprocess.run([*SPOOLCA, "--config", str(config), "ssh", "init"], check=True,
                   capture_output=True)
    incoming = ca / "spool" / "incoming" / f"ssh-{kind}"
    incoming.mkdir(parents=True, exist_ok=True)
    for index, line in enumerate(lines):
        (incoming / f"k{index}.json").write_text(json.dumps(
            {"principals": [principal(kind, index)]}))
        (incoming / f"k{index}.pub").write_bytes(line)
    took = timed([*SPOOLCA, "--config", str(config), "process"])
    issued = sum(1 for p in (ca / "spool" / "outgoing").glob("k*/*-cert.pub"))
    assert issued == len(lines), f"spoolca issued {issued} of {len(lines)}"
    return took


def by_hand_round(folder: Path, lines: list[bytes], kind: str) -> tuple[float, float, float]:
    """What a user would script: one ssh-keygen -s per key, then sync (durable)."""
    folder.mkdir()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / "ca")],
                   check=True)
    for index, line in enumerate(lines):
        (folder / f"k{index}.pub").write_bytes(line)
    script = folder / "sign.sh"
    host = "-h " if kind == "host" else ""
    script.write_text("set -e\ncd " + str(folder) + "\nfor i in $(seq 0 " +
                      str(len(lines) - 1) + "); do\n  ssh-keygen -q -s ca " + host +
                      "-I k$i -n " + ("user$i" if kind == "user" else
                                       "h$i.hosts.sample.com") +
                      " -V +7d k$i.pub\ndone\nsync -f .\n")
    return timed(["sh", str(script)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--type", choices=("user", "host"), default="user")
    args = parser.parse_args()
    lines = keys(args.count)
    results: dict[str, list[tuple[float, float, float]]] = {"spoolca process": [],
                                                            "ssh-keygen -s loop": []}
    why_not = freshfs.available()
    if why_not:
        raise SystemExit(f"fresh file systems cannot be made ({why_not}): run as root")
    for round_ in range(args.rounds):
        for name, run in (("ssh-keygen -s loop", by_hand_round),
                          ("spoolca process", spoolca_round)):
            with freshfs.fresh_fs(args.count * 6) as folder:
                results[name].append(run(folder / f"run-{round_}", lines, args.type))
    ours, theirs = results["spoolca process"], results["ssh-keygen -s loop"]
    speed = statistics.median(r[0] for r in theirs) / statistics.median(r[0] for r in ours)
    cpu = statistics.median(r[1] + r[2] for r in ours) / \
        statistics.median(r[1] + r[2] for r in theirs)
    print(f"{args.count} {args.type} certificates (Ed25519 CA and keys), {args.rounds} "
          f"interleaved rounds, each run on a fresh ext4, medians; {os.cpu_count()} CPUs")
    print(f"spoolca process against a ssh-keygen -s loop: {speed:.2f}x as fast, "
          f"{cpu:.2f}x the CPU (user + system)")

if __name__ == "__main__":
    main()
