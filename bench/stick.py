"""A hostile stick's cost: `media ingest` of a stick with N junk files under long
non-UTF-8 names (the case that wrote a 130 MB audit entry and took 765 MB).

    .venv/bin/python bench/stick.py [--files 100000]

Prints the ingest's wall time and peak memory (max RSS of the child) and the size of the
media.ingested audit entry it wrote.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from process_vs_openssl import SPOOLCA, new_ca

from spoolca.keys.openpgp import stop_agent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=100_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="spoolca-stick-") as tmp:
        work = Path(tmp)
        config = new_ca(work / "ca", "ec-p256", "off")
        stick = work / "stick" / "server"
        stick.mkdir(parents=True)
        folder = os.fsencode(stick)
        for i in range(args.files):
            name = b"\xff" * 200 + b"%06d.txt" % i
            fd = os.open(folder + b"/" + name, os.O_WRONLY | os.O_CREAT, 0o644)
            os.write(fd, b"junk")
            os.close(fd)
        started = time.perf_counter()
        result = subprocess.run([*SPOOLCA, "--config", str(config), "media", "ingest",
                                 str(stick.parent)], capture_output=True, text=True)
        seconds = time.perf_counter() - started
        peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        if result.returncode != 0:
            raise SystemExit(result.stderr)
        shown = subprocess.run([*SPOOLCA, "--config", str(config), "audit", "show", "--json",
                                "--event", "media.ingested"], capture_output=True, text=True)
        entry = json.loads(shown.stdout)[-1]["data"]
        stop_agent(config.parent / "gnupg")
    print(f"{args.files} junk files: ingest {seconds:.1f} s, peak memory {peak_kib / 1024:.0f} "
          f"MiB, media.ingested entry {len(json.dumps(entry)) / 1024:.1f} KiB "
          f"({len(entry['skipped'])} listed, {entry['skipped_total']} counted)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
