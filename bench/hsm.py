#!/usr/bin/env python3
"""Key custody costs: signing with a SoftHSM2 token against a key file, and shares to a
running service.

1. Signer: the same leaf certificate builder signed N times through spoolca's signers
   (TokenSigner vs FileKeySigner), same key type on both sides (P-256, P-384, RSA-3072),
   interleaved rounds; throughput (median of rounds) and per-signature latency (median
   and 95th percentile over every signature).
2. `spoolca process` of N CSRs (lint off), a CA whose keys are in the token against one
   whose keys are in files (P-384), median of rounds.
3. Custody: `spoolca shares combine` of 3 shares from files into a root-only file, then
   `spoolca serve` until READY=1 (the keys unlocked): each timed, median of rounds.

    .venv/bin/python bench/hsm.py [--signatures 500] [--csrs 500] [--rounds 5]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from daemon import start_daemon, stop
from process_vs_openssl import INTERMEDIATE, ROOT, SPOOLCA, make_csrs

from spoolca.keys.algorithms import generate_key
from spoolca.keys.filekey import FileKeySigner
from spoolca.keys.openpgp import stop_agent
from spoolca.keys.softhsm import make_token, softhsm_module
from spoolca.keys.token import TokenKey, TokenPool, TokenSigner, generate_in_token

PIN = b"bench token pin"


def builder(issuer_key_type: str) -> x509.CertificateBuilder:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench.sample.com")])
    now = dt.datetime.now(dt.UTC)
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(ec.generate_private_key(ec.SECP256R1()).public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + dt.timedelta(days=1)))


def sign_round(signer: object, count: int, key_type: str) -> tuple[float, list[float]]:
    made = builder(key_type)
    latencies = []
    started = time.perf_counter()
    for _ in range(count):
        one = time.perf_counter()
        signer.sign_certificate(made)  # type: ignore[attr-defined]
        latencies.append(time.perf_counter() - one)
    return count / (time.perf_counter() - started), latencies


def signer_table(work: Path, count: int, rounds: int) -> None:
    os.environ["SOFTHSM2_CONF"] = str(make_token(work / "hsm", "bench", PIN))
    pool = TokenPool()
    print(f"1. signing one leaf certificate, {count} per round, {rounds} interleaved rounds")
    print(f"{'key type':<10} {'store':<9} {'per s':>8} {'median ms':>10} {'p95 ms':>8}")
    try:
        for key_type in ("ec-p256", "ec-p384", "rsa-3072"):
            where = TokenKey(softhsm_module(), "bench", f"bench-{key_type}")
            public = generate_in_token(pool, where, key_type, PIN)
            signers = {"file": FileKeySigner(generate_key(key_type)),
                       "softhsm2": TokenSigner(pool.session(where, PIN), where, public)}
            rates: dict[str, list[float]] = {name: [] for name in signers}
            latencies: dict[str, list[float]] = {name: [] for name in signers}
            for _ in range(rounds):
                for name, signer in signers.items():
                    rate, each = sign_round(signer, count, key_type)
                    rates[name].append(rate)
                    latencies[name].extend(each)
            for name in signers:
                ms = sorted(x * 1000 for x in latencies[name])
                print(f"{key_type:<10} {name:<9} {statistics.median(rates[name]):>8.0f} "
                      f"{statistics.median(ms):>10.2f} {ms[int(len(ms) * 0.95)]:>8.2f}")
    finally:
        pool.close()


def token_ca(directory: Path, pin_file: Path, token: bool) -> Path:
    stores = ["--key-store", "pkcs11", "--pkcs11-module", str(softhsm_module()), "--token",
              "bench", "--key-label", directory.name] if token else []
    subprocess.run([*SPOOLCA, "init", "--dir", str(directory), "--root-subject", ROOT,
                    "--intermediate-subject", INTERMEDIATE, "--key-type", "ec-p384",
                    "--passphrase-file", str(pin_file), *stores], check=True,
                   capture_output=True)
    config = directory / "spoolca.toml"
    config.write_text(config.read_text().replace('lint = "pkix"', 'lint = "off"'))
    return config


def process_table(work: Path, count: int, rounds: int) -> None:
    csrs = make_csrs(Path(__file__).parent / "out" / "csrs", count)
    pin_file = work / "pin"
    pin_file.write_bytes(PIN)
    times: dict[str, list[float]] = {"file": [], "softhsm2": []}
    for round_number in range(rounds):
        for store in times:
            directory = work / f"p-{store}-{round_number}"
            config = token_ca(directory, pin_file, store == "softhsm2")
            incoming = directory / "spool" / "incoming" / "server"
            for csr in csrs:
                shutil.copyfile(csr, incoming / csr.name)
            subprocess.run(["sync"], check=True)
            started = time.perf_counter()
            subprocess.run([*SPOOLCA, "--config", str(config), "process"], check=True,
                           capture_output=True)
            times[store].append(time.perf_counter() - started)
            stop_agent(directory / "gnupg")
            shutil.rmtree(directory)
    print(f"\n2. `spoolca process` of {count} P-256 CSRs, P-384 CA, lint off, "
          f"median of {rounds}")
    for store, seconds in times.items():
        median = statistics.median(seconds)
        print(f"{store:<9} {median:6.2f} s  {count / median:6.0f} certificates/s")


def custody_table(work: Path, rounds: int) -> None:
    pin_file = work / "pin"
    directory = work / "custody"
    config = token_ca(directory, pin_file, True)
    out = work / "shares"
    people = [a for name in ("a", "b", "c", "d", "e") for a in ("--custodian", name)]
    subprocess.run([*SPOOLCA, "--config", str(config), "shares", "split", "3-of-5", *people,
                    "--out", str(out)], check=True, capture_output=True)
    combine, ready = [], []
    try:
        for _ in range(rounds):
            pin_file.unlink()
            started = time.perf_counter()
            subprocess.run([*SPOOLCA, "--config", str(config), "shares", "combine",
                            *(str(out / f"{n}.share.txt") for n in ("a", "c", "e")),
                            "--install", str(pin_file)], check=True, capture_output=True)
            combine.append(time.perf_counter() - started)
            started = time.perf_counter()
            daemon = start_daemon(config, work)
            ready.append(time.perf_counter() - started)
            stop(daemon)
    finally:
        stop_agent(directory / "gnupg")
    print(f"\n3. custody, token CA (P-384), median of {rounds}")
    print(f"shares combine (3 of 5, from files): {statistics.median(combine) * 1000:6.0f} ms")
    print(f"serve until READY=1 (keys unlocked): {statistics.median(ready) * 1000:6.0f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--signatures", type=int, default=500)
    parser.add_argument("--csrs", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="spoolca-hsm-bench-") as tmp:
        work = Path(tmp)
        signer_table(work, args.signatures, args.rounds)
        process_table(work, args.csrs, args.rounds)
        custody_table(work, args.rounds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
