#!/usr/bin/env python3
"""The daemon: burst throughput against `spoolca process`, and a lone request's latency.

Burst: N CSRs renamed into a running daemon's incoming/ at once; the time from the
first rename until the last original is archived (archiving comes after its result is
published and synced). Compared, on the same CSRs, with `spoolca process` timed as a
whole command. Both with lint off, as in process_vs_openssl.py; each run on a fresh
ext4 of its own (bench/freshfs.py), the two interleaved over rounds; reported as the
ratio of the medians (and the CPU ratio), never as times.

Latency: the default configuration (lint on), the daemon idle; one CSR at a time is
renamed in and the time until its result.json exists is measured (polled each 1 ms).

    python bench/daemon.py [--count 2000] [--lone 100]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import freshfs
from process_vs_openssl import SPOOLCA, Run, ensure_bytecode, make_csrs, new_ca, time_spoolca


def start_daemon(config: Path, work: Path) -> subprocess.Popen[bytes]:
    notify = work / f"notify-{time.monotonic_ns() % 10**9}.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(notify))
    listener.settimeout(60)
    daemon = subprocess.Popen([*SPOOLCA, "--config", str(config), "serve"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              env={**os.environ, "NOTIFY_SOCKET": str(notify)})
    while b"READY=1" not in listener.recv(4096):
        pass
    listener.close()
    return daemon


def stop(daemon: subprocess.Popen[bytes]) -> None:
    daemon.send_signal(signal.SIGTERM)
    daemon.wait(timeout=120)


def burst(work: Path, csrs: list[Path], key_type: str) -> Run:
    """The daemon's time and CPU (its own, counted when it is reaped) for the burst."""
    config = new_ca(work / "burst", key_type, "off")
    staging = work / "burst" / "spool" / "staging"  # same file system: renames are atomic
    staging.mkdir()
    for csr in csrs:
        shutil.copyfile(csr, staging / csr.name)
    incoming = work / "burst" / "spool" / "incoming" / "server"
    archive = work / "burst" / "spool" / "archive"
    subprocess.run(["sync"], check=True)
    daemon = start_daemon(config, work)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    for csr in csrs:
        os.rename(staging / csr.name, incoming / csr.name)
    while len(os.listdir(archive)) < len(csrs):
        time.sleep(0.005)
    seconds = time.perf_counter() - started
    stop(daemon)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return Run(seconds, after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime)


def latency(work: Path, csrs: list[Path], key_type: str, *, from_outside: bool) -> list[float]:
    """Drop-to-result seconds per lone request, staged inside incoming/ or outside it."""
    config = new_ca(work, key_type, "pkix")
    incoming = work / "spool" / "incoming" / "server"
    outgoing = work / "spool" / "outgoing"
    staging = work / "spool" / "staging" if from_outside else incoming
    staging.mkdir(exist_ok=True)
    daemon = start_daemon(config, work)
    samples = []
    try:
        for csr in csrs:
            staged = staging / f".{csr.name}.part"
            shutil.copyfile(csr, staged)
            result = outgoing / csr.stem / "result.json"
            started = time.perf_counter()
            os.rename(staged, incoming / csr.name)
            while not result.exists():
                time.sleep(0.001)
            samples.append(time.perf_counter() - started)
            # Idle between requests: a lone request. (watchdog holds the rename-from event of
            # our own claim for 0.5 s, and events queue behind it: closer requests wait.)
            time.sleep(0.7)
    finally:
        stop(daemon)
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--lone", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--key-type", default="ec-p384")
    parser.add_argument("--csr-cache", type=Path, default=Path(__file__).parent / "out" / "csrs")
    args = parser.parse_args()
    ensure_bytecode()
    csrs = make_csrs(args.csr_cache, max(args.count, args.lone))
    why_not = freshfs.available()
    if why_not:
        raise SystemExit(f"fresh file systems cannot be made: {why_not}")
    daemon_runs, process_runs = [], []
    for _ in range(args.rounds):  # interleaved, each run on a fresh file system
        with freshfs.fresh_fs(args.count * 6) as disk:
            daemon_runs.append(burst(disk, csrs[:args.count], args.key_type))
        with freshfs.fresh_fs(args.count * 6) as disk:
            process_runs.append(time_spoolca(disk, csrs[:args.count], args.key_type, "off"))
    with tempfile.TemporaryDirectory(prefix="spoolca-bench-") as tmp:
        inside = sorted(latency(Path(tmp) / "inside", csrs[:args.lone], args.key_type,
                                from_outside=False))
        outside = sorted(latency(Path(tmp) / "outside", csrs[:args.lone], args.key_type,
                                 from_outside=True))
    daemon_s = statistics.median(r.wall for r in daemon_runs)
    process_s = statistics.median(r.wall for r in process_runs)
    daemon_cpu = statistics.median(r.user + r.system for r in daemon_runs)
    process_cpu = statistics.median(r.user + r.system for r in process_runs)
    print(f"burst of {args.count} CSRs, lint off, CA key {args.key_type}, median of "
          f"{args.rounds} interleaved rounds, each run on a fresh ext4 of its own")
    print(f"  daemon (serve) against spoolca process: speed {process_s / daemon_s:.2f}x, "
          f"CPU {daemon_cpu / process_cpu:.2f}x")
    for label, samples in (("renamed within incoming/", inside),
                           ("moved in from outside", outside)) if args.lone else ():
        p50 = statistics.median(samples)
        p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
        print(f"lone request at idle, lint on, {label}, {len(samples)} samples: "
              f"p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, max {samples[-1] * 1000:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
