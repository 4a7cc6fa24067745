#!/usr/bin/env python3
"""The daemon: burst throughput against `spoolca process`, and a lone request's latency.

Burst: N CSRs renamed into a running daemon's incoming/ at once; the time from the
first rename until the last original is archived (archiving comes after its result is
published and synced). Compared, on the same CSRs, with `spoolca process` timed as a
whole command. Both with lint off, as in process_vs_openssl.py.

Latency: the default configuration (lint on), the daemon idle; one CSR at a time is
renamed in and the time until its result.json exists is measured (polled each 1 ms).

    python bench/daemon.py [--count 2000] [--lone 100]
"""

from __future__ import annotations

import argparse
import os
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
from process_vs_openssl import SPOOLCA, ensure_bytecode, make_csrs, new_ca, time_spoolca


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


def burst(work: Path, csrs: list[Path], key_type: str) -> tuple[float, float]:
    """(daemon seconds, process seconds) for the same CSRs."""
    config = new_ca(work / "burst", key_type, "off")
    staging = work / "burst" / "spool" / "staging"  # same file system: renames are atomic
    staging.mkdir()
    for csr in csrs:
        shutil.copyfile(csr, staging / csr.name)
    incoming = work / "burst" / "spool" / "incoming" / "server"
    archive = work / "burst" / "spool" / "archive"
    subprocess.run(["sync"], check=True)
    subprocess.run(["sync"], check=True)
    daemon = start_daemon(config, work)
    started = time.perf_counter()
    for csr in csrs:
        os.rename(staging / csr.name, incoming / csr.name)
    while len(os.listdir(archive)) < len(csrs):
        time.sleep(0.005)
    daemon_seconds = time.perf_counter() - started
    stop(daemon)

    return daemon_seconds, time_spoolca(work, csrs, key_type, "off").wall


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
    pairs = []
    with tempfile.TemporaryDirectory(prefix="spoolca-bench-") as tmp:
        for round_number in range(args.rounds):  # interleaved, nothing deleted until the end
            pairs.append(burst(Path(tmp) / f"round{round_number}", csrs[:args.count],
                               args.key_type))
        inside = sorted(latency(Path(tmp) / "inside", csrs[:args.lone], args.key_type,
                                from_outside=False))
        outside = sorted(latency(Path(tmp) / "outside", csrs[:args.lone], args.key_type,
                                 from_outside=True))
    daemon_s = statistics.median(p[0] for p in pairs)
    process_s = statistics.median(p[1] for p in pairs)
    n = args.count
    print(f"burst of {n} CSRs, lint off, CA key {args.key_type}, median of {args.rounds} "
          f"rounds (daemon, process: {', '.join(f'{d:.2f}/{p:.2f}' for d, p in pairs)})")
    print(f"  daemon (serve)        {daemon_s:6.2f} s {n / daemon_s:7.0f} certs/s")
    print(f"  spoolca process       {process_s:6.2f} s {n / process_s:7.0f} certs/s"
          f"   daemon/process: {process_s / daemon_s:.2f}x")
    for label, samples in (("renamed within incoming/", inside),
                           ("moved in from outside", outside)):
        p50 = statistics.median(samples)
        p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
        print(f"lone request at idle, lint on, {label}, {len(samples)} samples: "
              f"p50 {p50 * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms, max {samples[-1] * 1000:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
