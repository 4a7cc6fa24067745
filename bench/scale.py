"""How `process` scales: batches of N CSRs in one run, wall time and peak memory.

    .venv/bin/python bench/scale.py [--counts 10000 50000 100000] [--lint off]

Each N: a fresh CA (P-256), N P-256 CSRs copied into incoming/server/, one `spoolca
process` timed by /usr/bin/time (wall, peak RSS of the process). Linear growth means a
constant time per certificate and a memory that does not grow with N beyond the batch.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from process_vs_openssl import SPOOLCA, ensure_bytecode, make_csrs, new_ca

from spoolca.keys.openpgp import stop_agent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[10_000, 50_000, 100_000])
    parser.add_argument("--lint", default="off", choices=("off", "pkix"))
    parser.add_argument("--csr-cache", type=Path, default=Path(__file__).parent / "out" / "csrs")
    args = parser.parse_args()
    ensure_bytecode()
    csrs = make_csrs(args.csr_cache, max(args.counts))
    print(f"| CSRs | wall | per certificate | certs/s | peak memory |  (lint {args.lint}, "
          f"{os.cpu_count()} cores)")
    print("| ---: | ---: | ---: | ---: | ---: |")
    for count in args.counts:
        with tempfile.TemporaryDirectory(prefix="spoolca-scale-") as tmp:
            config = new_ca(Path(tmp) / "ca", "ec-p256", args.lint)
            incoming = Path(tmp) / "ca" / "spool" / "incoming" / "server"
            for csr in csrs[:count]:
                shutil.copyfile(csr, incoming / csr.name)
            subprocess.run(["sync"], check=True)
            timed = subprocess.run(["/usr/bin/time", "-f", "%e %M", *SPOOLCA, "--config",
                                    str(config), "process"], capture_output=True, text=True)
            if timed.returncode != 0:
                raise SystemExit(timed.stderr[-2000:])
            wall, peak_kib = timed.stderr.strip().splitlines()[-1].split()
            issued = len(list((Path(tmp) / "ca" / "spool" / "outgoing").glob("*/cert.pem")))
            assert issued == count, f"{issued} of {count}"
            seconds = float(wall)
            print(f"| {count:,} | {seconds:.1f} s | {1000 * seconds / count:.2f} ms | "
                  f"{count / seconds:.0f} | {int(peak_kib) / 1024:.0f} MiB |", flush=True)
            stop_agent(Path(tmp) / "ca" / "gnupg")
    return 0


if __name__ == "__main__":
    sys.exit(main())
