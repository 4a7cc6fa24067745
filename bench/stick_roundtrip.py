#!/usr/bin/env python3
"""A factory visit end to end: a stick of N CSRs in, answered, and back out (issue 32).

spoolca's path, as the appliance runs it: `spoolca media ingest STICK` while the daemon
(`spoolca serve`, not `process`) answers, then `spoolca media export STICK` (results,
chains, CRLs, audit log, report, one signed SHA256SUMS). Timed per phase: ingest (the
command), daemon (from the end of the ingest until the last request is archived, i.e.
answered, published and synced), export (the command). With lint off and on.

Beside it, the by-hand path a user of the OpenSSL how-to would script, on the same CSRs
and the same kind of stick: copy the CSRs off the stick, `openssl ca -batch -infiles`
(the same CA key type, an equivalent openssl.cnf), copy the certificates and the chain
back and sync. Nothing durable, linted, audited or signed on that side.

Each run has a fresh stick and a fresh disk of its own (bench/freshfs.py); the two paths
are interleaved over rounds and medians reported, as ratios only: each phase's share,
speed and CPU against the by-hand path, and the user share of the CPU. The stick is a
loop-mounted file system: this machine's kernel has no vfat driver and the User-Mode
Linux harness (../shared/tools/fat-stick) does not boot on it, so the stick here is an
ext4 image of its own (say so with the table). Needs root.

    python bench/stick_roundtrip.py [--counts 1000 10000] [--rounds 3] [--key-type ec-p384]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import freshfs
from daemon import start_daemon, stop
from process_vs_openssl import OPENSSL_CNF, SPOOLCA, ensure_bytecode, make_csrs, new_ca


@dataclass
class Phases:
    """One run of one path: seconds and CPU (user, system) per phase."""
    wall: dict[str, float] = field(default_factory=dict)
    user: dict[str, float] = field(default_factory=dict)
    system: dict[str, float] = field(default_factory=dict)

    @property
    def total(self) -> float:
        return sum(self.wall.values())

    @property
    def cpu(self) -> float:
        return sum(self.user.values()) + sum(self.system.values())


class Clock:
    """Wall time and children's CPU between marks."""

    def __init__(self) -> None:
        self.wall = time.perf_counter()
        self.usage = resource.getrusage(resource.RUSAGE_CHILDREN)

    def mark(self, phases: Phases, name: str) -> None:
        now, usage = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
        phases.wall[name] = now - self.wall
        phases.user[name] = usage.ru_utime - self.usage.ru_utime
        phases.system[name] = usage.ru_stime - self.usage.ru_stime
        self.wall, self.usage = now, usage

    def charge(self, phases: Phases, name: str) -> None:
        """Add the CPU children used since the last mark to NAME, not its wall time (a
        daemon's CPU is counted when it is reaped, after its phase ended)."""
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        phases.user[name] += usage.ru_utime - self.usage.ru_utime
        phases.system[name] += usage.ru_stime - self.usage.ru_stime


def run(*command: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command[:6])}...: exit {done.returncode}\n{done.stderr}")


def load_stick(stick: Path, csrs: list[Path]) -> None:
    (stick / "server").mkdir()
    for csr in csrs:
        shutil.copyfile(csr, stick / "server" / csr.name)
    os.sync()


def spoolca_path(disk: Path, stick: Path, csrs: list[Path], key_type: str, lint: str) -> Phases:
    config = new_ca(disk / "ca", key_type, lint)
    text = config.read_text()
    for limit, value in (("stick_max_requests = 1000", len(csrs)), ("stick_max_mib = 64", 1024)):
        text = text.replace(limit, f"{limit.split(' = ')[0]} = {value}")
    config.write_text(text)
    archive = disk / "ca" / "spool" / "archive"
    daemon = start_daemon(config, disk)
    phases = Phases()
    try:
        os.sync()
        clock = Clock()
        run(*SPOOLCA, "--config", str(config), "media", "ingest", str(stick))
        clock.mark(phases, "ingest")
        deadline = time.monotonic() + 3600
        while sum(1 for _ in os.scandir(archive)) < len(csrs):
            if daemon.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the daemon stopped before answering the stick")
            time.sleep(0.01)
        clock.mark(phases, "answer")
    finally:
        stop(daemon)
    clock.charge(phases, "answer")
    clock = Clock()
    run(*SPOOLCA, "--config", str(config), "media", "export", str(stick))
    clock.mark(phases, "export")
    exported = stick / "spoolca-results" / "results"
    issued = sum(1 for r in exported.iterdir() if (r / "cert.pem").exists())
    if issued != len(csrs):
        raise SystemExit(f"spoolca ({lint}) brought back {issued} of {len(csrs)} certificates")
    return phases


def by_hand_path(disk: Path, stick: Path, csrs: list[Path], key_type: str) -> Phases:
    ca = disk / "by-hand"
    new_ca(ca / "made-by-spoolca", key_type, "off")  # the same kind of CA and key
    for name in ("newcerts", "in"):
        (ca / name).mkdir()
    (ca / "index.txt").write_text("")
    (ca / "serial").write_text("1000\n")
    made = ca / "made-by-spoolca"
    shutil.copyfile(made / "keys" / "intermediate.key.pem", ca / "intermediate.key.pem")
    shutil.copyfile(made / "spool" / "outgoing" / "ca" / "intermediate.pem",
                    ca / "intermediate.pem")
    shutil.copyfile(made / "spool" / "outgoing" / "ca" / "ca-chain.pem", ca / "ca-chain.pem")
    md = {"ec-p256": "sha256", "ec-p384": "sha384"}.get(key_type, "sha256")
    (ca / "openssl.cnf").write_text(OPENSSL_CNF.format(dir=ca, md=md))
    phases = Phases()
    os.sync()
    clock = Clock()
    run("sh", "-c", 'cp "$0"/server/*.csr "$1"/in/', str(stick), str(ca))
    clock.mark(phases, "copy off")
    run("sh", "-c", 'cd "$0" && exec openssl ca -batch -config openssl.cnf -notext '
        '-outdir newcerts -out all.pem -infiles in/*.csr', str(ca))
    clock.mark(phases, "openssl ca")
    run("sh", "-c", 'mkdir "$0"/certs && cp "$1"/newcerts/*.pem "$1"/ca-chain.pem "$0"/certs/ '
        '&& sync -f "$0"', str(stick), str(ca))
    clock.mark(phases, "copy back")
    if len(list((stick / "certs").glob("*.pem"))) != len(csrs) + 1:
        raise SystemExit("the by-hand path brought back the wrong number of certificates")
    return phases


def one_run(kind: str, csrs: list[Path], key_type: str) -> Phases:
    with freshfs.fresh_fs(len(csrs) * 2, 64 + len(csrs) // 40) as stick, \
            freshfs.fresh_fs(len(csrs) * 8) as disk:
        load_stick(stick, csrs)
        if kind == "openssl":
            return by_hand_path(disk, stick, csrs, key_type)
        return spoolca_path(disk, stick, csrs, key_type, kind)


LABELS = {"openssl": "by hand: cp, openssl ca -infiles, cp back",
          "off": "spoolca: ingest, daemon, export; lint off",
          "pkix": "spoolca: ingest, daemon, export; lint on"}


def report(count: int, runs: dict[str, list[Phases]], key_type: str, rounds: int) -> None:
    """Ratios only: each phase's wall time as a share of the by-hand path's whole time,
    each path's speed and CPU against the by-hand path's, and its CPU's user share."""
    base = statistics.median(p.total for p in runs["openssl"])
    base_cpu = statistics.median(p.cpu for p in runs["openssl"])
    print(f"\n{count} CSRs, CA key {key_type}, median of {rounds} interleaved rounds, "
          f"{os.cpu_count()} cores; each run on a fresh stick and disk of its own")
    print("| path | phases (wall, in by-hand wholes) | speed vs by hand | CPU vs by hand "
          "| user share of CPU |")
    print("| --- | --- | ---: | ---: | ---: |")
    for kind, chosen in runs.items():
        phases = [f"{name} {statistics.median(p.wall[name] for p in chosen) / base:.2f}"
                  for name in chosen[0].wall]
        total = statistics.median(p.total for p in chosen)
        cpu = statistics.median(p.cpu for p in chosen)
        user = statistics.median(sum(p.user.values()) / p.cpu for p in chosen)
        print(f"| {LABELS[kind]} | {'; '.join(phases)} | {base / total:.2f}x | "
              f"{cpu / base_cpu:.2f}x | {user:.0%} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--key-type", default="ec-p384")
    parser.add_argument("--kinds", nargs="+", default=list(LABELS), choices=list(LABELS))
    parser.add_argument("--csr-cache", type=Path, default=Path(__file__).parent / "out" / "csrs")
    args = parser.parse_args()
    why_not = freshfs.available()
    if why_not:
        raise SystemExit(f"fresh file systems cannot be made: {why_not}")
    ensure_bytecode()
    for count in args.counts:
        csrs = make_csrs(args.csr_cache, count)
        runs: dict[str, list[Phases]] = {kind: [] for kind in args.kinds}
        for _ in range(args.rounds):
            for kind in args.kinds:
                runs[kind].append(one_run(kind, csrs, args.key_type))
        if "openssl" in runs:
            report(count, runs, args.key_type, args.rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
