"""Backup, drill and restore of a register of N certificates.

    .venv/bin/python bench/backup.py [--count 10000]

A CA (P-256, lint off) issues N certificates, then `spoolca backup`, `backup --verify`
(the drill) and `restore` are each timed once, whole commands; the archive's size too.
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from process_vs_openssl import SPOOLCA, make_csrs, new_ca

from spoolca.keys.openpgp import stop_agent


def timed(command: list[str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    return time.perf_counter() - started, done.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--csr-cache", type=Path, default=Path(__file__).parent / "out" / "csrs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="spoolca-backup-bench-") as tmp:
        work = Path(tmp)
        config = new_ca(work / "ca", "ec-p256", "off")
        incoming = work / "ca" / "spool" / "incoming" / "server"
        for csr in make_csrs(args.csr_cache, args.count):
            shutil.copyfile(csr, incoming / csr.name)
        subprocess.run([*SPOOLCA, "--config", str(config), "process"], check=True,
                       capture_output=True)
        with sqlite3.connect(work / "ca" / "ca.db") as db:
            fingerprint = db.execute("SELECT value FROM meta WHERE key = "
                                     "'audit_key_fingerprint'").fetchone()[0]
        archive = work / "backup.tar.gz"
        made, _ = timed([*SPOOLCA, "--config", str(config), "backup", str(archive)])
        drilled, _ = timed([*SPOOLCA, "backup", "--verify", str(archive), "--fingerprint",
                            fingerprint])
        restored, _ = timed([*SPOOLCA, "restore", str(archive), "--dir", str(work / "new"),
                             "--fingerprint", fingerprint])
        size = archive.stat().st_size
        register = (work / "ca" / "ca.db").stat().st_size
        for home in (work / "ca" / "gnupg", work / "new" / "gnupg"):
            stop_agent(home)
    print(f"{args.count} certificates (register {register / 2**20:.1f} MiB): backup "
          f"{made:.2f} s, archive {size / 2**20:.1f} MiB; drill {drilled:.2f} s; "
          f"restore {restored:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
