"""A register of a million certificates: do the read commands stay interactive?

    .venv/bin/python bench/register_1m.py [--certificates 1000000] [--revoked 10000]

A CA issues one real certificate; copies of its row fill the register to N (distinct
serials and subjects, notAfter spread over 400 days, REVOKED of them revoked). Then each
command is timed as a whole (median of 3): `list --expiring 30`, `show`, `status`,
`export-index`, `crl` (encoding every revoked entry the first time), `policy check` of
a renewal (the subject-in-use lookup), and `list --expiring 30` again.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from process_vs_openssl import SPOOLCA, ensure_bytecode, make_csrs, new_ca

from spoolca.keys.openpgp import stop_agent

STAMP = "%Y-%m-%dT%H:%M:%SZ"


def fill(database: Path, count: int, revoked: int) -> str:
    """Copies of the one issued row; returns a serial to show."""
    with sqlite3.connect(database) as db:
        columns = [r[1] for r in db.execute("PRAGMA table_info(certificates)")]
        row = dict(zip(columns, db.execute("SELECT * FROM certificates").fetchone(), strict=True))
        now = dt.datetime.now(dt.UTC)

        def rows():
            for i in range(1, count):
                copy = dict(row)
                copy["serial"] = f"{i:032X}"
                copy["subject"] = row["subject"].replace("host000000", f"h{i:07d}")
                copy["not_after"] = (now + dt.timedelta(days=i % 400)).strftime(STAMP)
                if i % (count // max(revoked, 1)) == 0:
                    copy["revoked_at"] = now.strftime(STAMP)
                    copy["revocation_reason"] = "superseded"
                yield tuple(copy[c] for c in columns)

        marks = ", ".join("?" for _ in columns)
        db.executemany(f"INSERT INTO certificates VALUES ({marks})", rows())
        db.execute("ANALYZE")
    return f"{count // 2:032X}"


def timed(command: list[str], rounds: int = 3) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        times.append(time.perf_counter() - started)
        if done.returncode not in (0, 1):
            raise SystemExit(f"{command[-2:]}: {done.stderr[-500:]}")
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--certificates", type=int, default=1_000_000)
    parser.add_argument("--revoked", type=int, default=10_000)
    args = parser.parse_args()
    ensure_bytecode()
    with tempfile.TemporaryDirectory(prefix="spoolca-1m-") as tmp:
        work = Path(tmp)
        config = new_ca(work / "ca", "ec-p256", "off")
        csrs = make_csrs(Path(__file__).parent / "out" / "csrs", 2)
        shutil.copyfile(csrs[0], work / "ca" / "spool" / "incoming" / "server" / csrs[0].name)
        base = [*SPOOLCA, "--config", str(config)]
        subprocess.run([*base, "process"], check=True, capture_output=True)
        started = time.perf_counter()
        serial = fill(work / "ca" / "ca.db", args.certificates, args.revoked)
        filled = time.perf_counter() - started
        size = (work / "ca" / "ca.db").stat().st_size
        print(f"{args.certificates:,} certificates, {args.revoked:,} revoked; register "
              f"{size / 2**20:.0f} MiB (filled in {filled:.0f} s)")
        print("| command | median of 3 |")
        print("| --- | ---: |")
        for label, command, rounds in (
                ("list --expiring 30 --json", [*base, "list", "--expiring", "30", "--json"], 3),
                ("show SERIAL", [*base, "show", serial], 3),
                ("status", [*base, "status"], 3),
                ("policy check (renewal: subject in use)", [*base, "policy", "check",
                                                            str(csrs[0])], 3),
                ("crl (first: encodes every revoked entry)", [*base, "crl"], 1),
                ("crl (again)", [*base, "crl"], 3),
                ("export-index", [*base, "export-index"], 3),
                ("list (everything) --json", [*base, "list", "--json"], 1)):
            print(f"| `{label}` | {timed(command, rounds):.2f} s |", flush=True)
        stop_agent(work / "ca" / "gnupg")
    return 0


if __name__ == "__main__":
    sys.exit(main())
