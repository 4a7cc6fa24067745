#!/usr/bin/env python3
"""The audit log's cost: `audit verify` on a large log, and its share of issuance.

1. A register with N audit entries (default 1,000,000, issuance-like data), sealed and
   exported by `spoolca audit export`; then `spoolca audit verify` timed as a command.
2. `spoolca process` on M CSRs (lint off), in-process, timing the audit's own work
   (chain entries, checkpoints, exports) against the whole pass.

    python bench/audit.py [--entries 1000000] [--csrs 2000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from process_vs_openssl import SPOOLCA, ensure_bytecode, make_csrs, new_ca

import spoolca.process.sealing
import spoolca.process.session
import spoolca.register.audit
from spoolca.config import load_config
from spoolca.keys.openpgp import stop_agent
from spoolca.log import configure_logging
from spoolca.process.batch import BatchProcessor
from spoolca.process.passes import run_pass
from spoolca.register.store import Store, Tx


def big_log(work: Path, entries: int) -> tuple[Path, float]:
    config = new_ca(work / "big", "ec-p256", "off")
    store = Store(load_config(config).database)
    now = dt.datetime.now(dt.UTC)
    with store.transaction("bench", now) as tx:
        for i in range(entries):
            tx.record("request.issued", {
                "name": f"host{i}", "file": f"host{i}.csr", "profile": "server",
                "request_sha256": secrets.token_hex(32), "serial": secrets.token_hex(16).upper(),
                "issuer": "intermediate", "subject": f"/C=US/O=Example/CN=host{i}.example.com",
                "names": [f"DNS:host{i}.example.com"], "not_after": "2027-12-01T00:00:00Z",
                "cert_sha256": secrets.token_hex(32), "supersedes": None})
    store.close()
    subprocess.run([*SPOOLCA, "--config", str(config), "audit", "export"], check=True,
                   capture_output=True)
    folder = work / "big" / "spool" / "outgoing" / "audit"
    started = time.perf_counter()
    fingerprint = Store(load_config(config).database).meta("audit_key_fingerprint") or ""
    result = subprocess.run([*SPOOLCA, "--config", str(config), "audit", "verify", "--dir",
                             str(folder), "--fingerprint", fingerprint],
                            capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"verify failed: {result.stdout}{result.stderr}")
    stop_agent(work / "big" / "gnupg")
    return folder, elapsed


def overhead(work: Path, count: int) -> tuple[float, float]:
    """(seconds of audit work, seconds of the whole pass) for one process run."""
    config = load_config(new_ca(work / "overhead", "ec-p384", "off"))
    incoming = config.spool_dir / "incoming" / "server"
    for csr in make_csrs(Path(__file__).parent / "out" / "csrs", count):
        shutil.copyfile(csr, incoming / csr.name)
    spent = [0.0]

    def timed(function):
        def wrapper(*args, **kwargs):
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                spent[0] += time.perf_counter() - started
        return wrapper

    Tx.record = timed(Tx.record)
    # What the deciding thread spends sealing: the checkpoint's body, waiting for the
    # signature made behind and storing it, and the exports.
    sealing = spoolca.process.sealing
    sealing.checkpoint_body = timed(spoolca.register.audit.checkpoint_body)
    sealing.Sealer.finish = timed(sealing.Sealer.finish)
    sealing.export = timed(spoolca.register.audit.export)
    configure_logging(io.StringIO())
    store = Store(config.database)
    started = time.perf_counter()
    with spoolca.process.session.CASession(config, store) as session:
        run_pass(BatchProcessor(session))
    total = time.perf_counter() - started
    store.close()
    stop_agent(config.gnupg_dir)
    return spent[0], total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--csrs", type=int, default=2000)
    args = parser.parse_args()
    ensure_bytecode()
    with tempfile.TemporaryDirectory(prefix="spoolca-bench-") as tmp:
        audit_s, total_s = overhead(Path(tmp), args.csrs)
        folder, verify_s = big_log(Path(tmp), args.entries)
        size = sum(p.stat().st_size for p in folder.glob("log-*.jsonl"))
    print(f"audit share of issuing {args.csrs} certificates (lint off): {audit_s:.3f} s of "
          f"{total_s:.2f} s = {100 * audit_s / total_s:.1f}%")
    print(f"audit verify of {args.entries} entries ({size / 1e6:.0f} MB): {verify_s:.2f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
