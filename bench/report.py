"""What the stick report costs: its size for a trip of N requests, and the time it adds
to `media export` (gathering the facts and rendering the page, timed in-process).

    .venv/bin/python bench/report.py [--requests 10 1000] [--rounds 5]

Each size: a CA (P-256, lint off: issuance is not what is measured), a stick with N
CSRs ingested and processed, one export; then the report alone (gather + render, the
part an export adds) timed over ROUNDS, median.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from process_vs_openssl import SPOOLCA, make_csrs, new_ca

from spoolca.config import load_config
from spoolca.keys.openpgp import stop_agent
from spoolca.register.store import Store
from spoolca.stick.report.facts import Trip, gather
from spoolca.stick.report.html import render


def one(work: Path, csrs: list[Path], rounds: int) -> str:
    config_path = new_ca(work / "ca", "ec-p256", "off")
    stick = work / "stick"
    (stick / "server").mkdir(parents=True)
    for csr in csrs:
        shutil.copyfile(csr, stick / "server" / csr.name)
    for command in (["media", "ingest", str(stick)], ["process"]):
        subprocess.run([*SPOOLCA, "--config", str(config_path), *command], check=True,
                       capture_output=True)
    started = time.perf_counter()
    subprocess.run([*SPOOLCA, "--config", str(config_path), "media", "export", str(stick)],
                   check=True, capture_output=True)
    export = time.perf_counter() - started
    results = stick / "spoolca-results"
    html, facts = (results / "REPORT.html").stat().st_size, (results / "report.json").stat().st_size
    config = load_config(config_path)
    store = Store(config.database)
    names = sorted(p.name for p in (results / "results").iterdir())
    times = []
    for _ in range(rounds):
        begun = time.perf_counter()
        render(gather(config, store, dt.datetime.now(dt.UTC), Trip({"key": "bench"}, names)))
        times.append(time.perf_counter() - begun)
    store.close()
    stop_agent(config.gnupg_dir)
    added = statistics.median(times)
    return (f"| {len(csrs):>5} | {html / 1024:8.1f} KiB | {facts / 1024:8.1f} KiB | "
            f"{added * 1000:7.1f} ms | {export:6.2f} s | {100 * added / export:4.1f} % |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, nargs="+", default=[10, 1000])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print("| requests | REPORT.html | report.json | report (median) | whole export | share |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory(prefix="spoolca-report-") as tmp:
        csrs = make_csrs(Path(tmp) / "csrs", max(args.requests))
        for count in args.requests:
            print(one(Path(tmp) / f"n{count}", csrs[:count], args.rounds), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
