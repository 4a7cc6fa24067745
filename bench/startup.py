"""Start-up of the read-only commands over a bare interpreter start.

    .venv/bin/python bench/startup.py [--runs 20]

A CA with one certificate; each command is run RUNS times, interleaved, and the medians
are compared with `python3 -c pass` (the same interpreter). The goal: within 150 ms.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from process_vs_openssl import SPOOLCA, ensure_bytecode, make_csrs, new_ca


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    ensure_bytecode()
    with tempfile.TemporaryDirectory(prefix="spoolca-startup-") as tmp:
        work = Path(tmp)
        config = new_ca(work / "ca", "ec-p256", "pkix")
        csr = make_csrs(work / "csrs", 1)[0]
        shutil.copyfile(csr, work / "ca" / "spool" / "incoming" / "server" / csr.name)
        base = [*SPOOLCA, "--config", str(config)]
        subprocess.run([*base, "process"], check=True, capture_output=True)
        serial = subprocess.run([*base, "list"], capture_output=True, text=True,
                                check=True).stdout.splitlines()[1].split()[0]
        commands = {"python3 -c pass": [sys.executable, "-c", "pass"],
                    "list": [*base, "list"], "show": [*base, "show", serial],
                    "status": [*base, "status"], "policy check (lint on)": [
                        *base, "policy", "check", str(csr), "--profile", "server"]}
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.runs):
            for name, command in commands.items():
                started = time.perf_counter()
                done = subprocess.run(command, capture_output=True)
                assert done.returncode in (0, 1), done.stderr  # policy check: 1 = refused
                times[name].append(time.perf_counter() - started)
    bare = statistics.median(times["python3 -c pass"])
    print(f"| command | median | over `python3 -c pass` |  ({args.runs} runs each)")
    print("| --- | ---: | ---: |")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name} | {median * 1000:.0f} ms | {(median - bare) * 1000:+.0f} ms |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
