#!/usr/bin/env python3
"""CRL regeneration with N revoked entries: `spoolca crl` against `openssl ca -gencrl`.

Both revoke the same N serials (reasons mixed, a third with an invalidity date for
spoolca) under the same intermediate key. Each timing is the whole command, start-up
included; spoolca's includes remaking the root's CRL, linting (a specimen), verifying the
result and recording it. The entries are stored as `spoolca revoke` stores them, with
their DER encoded at revocation.

    python bench/crl.py [--count 100000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import secrets
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cryptography import x509

sys.path.insert(0, str(Path(__file__).parent))
from process_vs_openssl import SPOOLCA, new_ca

from spoolca.register.store import parse_time
from spoolca.x509.crl import RevokedEntry, encode_entry

REASONS = ["keyCompromise", "superseded", "cessationOfOperation", "affiliationChanged",
           "unspecified"]
OPENSSL_CNF = """\
[ ca ]
default_ca = CA_default
[ CA_default ]
database = {dir}/index.txt
crlnumber = {dir}/crlnumber
certificate = {dir}/intermediate.pem
private_key = {dir}/intermediate.key.pem
default_md = sha384
default_crl_days = 30
crl_extensions = crl_ext
[ crl_ext ]
authorityKeyIdentifier = keyid:always
"""


def revoked_rows(count: int) -> list[tuple[str, str, str, str | None]]:
    now = dt.datetime.now(dt.UTC)
    rows = []
    for i in range(count):
        at = now - dt.timedelta(minutes=i)
        invalidity = (at - dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ") \
            if i % 3 == 0 else None
        rows.append((f"{secrets.randbits(127) | 1 << 120:X}", at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                     REASONS[i % len(REASONS)], invalidity))
    return rows


def time_spoolca(work: Path, rows: list[tuple[str, str, str, str | None]]) -> float:
    config = new_ca(work / "spoolca", "ec-p384", "pkix")
    # As `spoolca revoke` records them: each with its CRL entry encoded at revocation.
    with sqlite3.connect(work / "spoolca" / "ca.db") as db:
        db.executemany(
            "INSERT INTO certificates (serial, issuer, request_sha256, profile, subject, "
            "not_before, not_after, der, revoked_at, revocation_reason, invalidity_date, "
            "crl_entry) VALUES (?, 'intermediate', 'bench', 'server', '/CN=bench' || ?, "
            "'2026-01-01T00:00:00Z', '2027-01-01T00:00:00Z', x'', ?, ?, ?, ?)",
            [(s, s, at, reason, inv, encode_entry(RevokedEntry(
                int(s, 16), parse_time(at), reason, parse_time(inv) if inv else None)))
             for s, at, reason, inv in rows])
    started = time.perf_counter()
    subprocess.run([*SPOOLCA, "--config", str(config), "crl"], check=True, capture_output=True)
    elapsed = time.perf_counter() - started
    crl = x509.load_der_x509_crl(
        (work / "spoolca" / "spool" / "outgoing" / "crl" / "intermediate.crl").read_bytes())
    if len(crl) != len(rows):
        raise SystemExit(f"spoolca's CRL has {len(crl)} entries, not {len(rows)}")
    return elapsed


def time_openssl(work: Path, rows: list[tuple[str, str, str, str | None]]) -> float:
    source = work / "spoolca"
    folder = work / "openssl"
    folder.mkdir()
    (folder / "intermediate.pem").write_bytes(
        (source / "spool" / "outgoing" / "ca" / "intermediate.pem").read_bytes())
    (folder / "intermediate.key.pem").write_bytes(
        (source / "keys" / "intermediate.key.pem").read_bytes())
    (folder / "crlnumber").write_text("1000\n")
    lines = []
    for serial, at, reason, _invalidity in rows:
        revoked = dt.datetime.strptime(at, "%Y-%m-%dT%H:%M:%SZ").strftime("%y%m%d%H%M%SZ")
        serial = serial if len(serial) % 2 == 0 else "0" + serial
        lines.append(f"R\t270101000000Z\t{revoked},{reason}\t{serial}\tunknown\t/CN=b{serial}\n")
    (folder / "index.txt").write_text("".join(lines))
    (folder / "index.txt.attr").write_text("unique_subject = no\n")
    cnf = folder / "openssl.cnf"
    cnf.write_text(OPENSSL_CNF.format(dir=folder))
    started = time.perf_counter()
    subprocess.run(["openssl", "ca", "-gencrl", "-config", str(cnf), "-out",
                    str(folder / "crl.pem")], check=True, capture_output=True)
    elapsed = time.perf_counter() - started
    crl = x509.load_pem_x509_crl((folder / "crl.pem").read_bytes())
    if len(crl) != len(rows):
        raise SystemExit(f"openssl's CRL has {len(crl)} entries, not {len(rows)}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    ours, theirs = [], []
    with tempfile.TemporaryDirectory(prefix="spoolca-bench-") as tmp:
        for round_number in range(args.rounds):
            work = Path(tmp) / f"round{round_number}"
            rows = revoked_rows(args.count)
            ours.append(time_spoolca(work, rows))
            theirs.append(time_openssl(work, rows))
    o, t = statistics.median(ours), statistics.median(theirs)
    print(f"CRL with {args.count} revoked entries, CA key ec-p384, median of {args.rounds}")
    print(f"openssl ca -gencrl   {t:6.2f} s   runs: {' '.join(f'{x:.2f}' for x in theirs)}")
    print(f"spoolca crl          {o:6.2f} s   runs: {' '.join(f'{x:.2f}' for x in ours)}"
          f"   ({t / o:.2f}x openssl's speed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
