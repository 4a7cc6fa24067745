#!/usr/bin/env python3
"""Importing an OpenSSL CA with a large index.txt, and the byte comparison after.

    .venv/bin/python bench/import_index.py [--count 10000] [--rounds 3]

The CA directory has the root how-to's layout (cacert.pem, private/cakey.pem encrypted,
index.txt, serial, newcerts/SERIAL.pem). Its N certificates are made here with
cryptography rather than N runs of `openssl ca` (20 ms each), in openssl ca's own index
format: sequential serials, every tenth revoked (alternating keyCompromise and no
reason), every twentieth already expired (left V, as openssl ca does until -updatedb).
tests/test_import.py covers directories made by the real `openssl ca` and `easyrsa`.
`spoolca import-openssl` is timed as a whole command (median of rounds), then
`export-index --authority root --no-updatedb` is compared with the index byte for byte.
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

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

SPOOLCA = [sys.executable, "-m", "spoolca.cli"]
ORG = [x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
       x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "New York"),
       x509.NameAttribute(NameOID.ORGANIZATION_NAME, "The Sample Company")]


def stamp(moment: dt.datetime) -> str:
    return moment.strftime("%y%m%d%H%M%SZ")


def make_ca(folder: Path, count: int, passphrase: bytes) -> None:
    (folder / "newcerts").mkdir(parents=True)
    (folder / "private").mkdir()
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([*ORG, x509.NameAttribute(NameOID.COMMON_NAME, "Sample Root CA")])
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    root = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(now - dt.timedelta(days=2000))
            .not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256()))
    (folder / "cacert.pem").write_bytes(root.public_bytes(serialization.Encoding.PEM))
    (folder / "private" / "cakey.pem").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(passphrase)))
    leaf_key = ec.generate_private_key(ec.SECP256R1()).public_key()
    lines = []
    for number in range(1, count + 1):
        serial = f"{number:X}"
        serial = serial if len(serial) % 2 == 0 else "0" + serial
        start = now - dt.timedelta(days=1000) if number % 20 == 0 else now - dt.timedelta(days=1)
        end = start + dt.timedelta(days=375)
        subject = f"host{number:06d}.sample.com"
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([*ORG, x509.NameAttribute(NameOID.COMMON_NAME,
                                                                   subject)]))
                .issuer_name(name).public_key(leaf_key).serial_number(number)
                .not_valid_before(start).not_valid_after(end).sign(key, hashes.SHA256()))
        (folder / "newcerts" / f"{serial}.pem").write_bytes(
            cert.public_bytes(serialization.Encoding.PEM))
        revocation, status = "", "V"
        if number % 10 == 0:
            status = "R"
            revocation = stamp(now) + (",keyCompromise" if number % 20 == 0 else "")
        lines.append(f"{status}\t{stamp(end)}\t{revocation}\t{serial}\tunknown\t"
                     f"/C=US/ST=New York/O=The Sample Company/CN={subject}\n")
    (folder / "index.txt").write_text("".join(lines))
    (folder / "serial").write_text(f"{count + 1:02X}\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    from spoolca.keys.openpgp import stop_agent

    with tempfile.TemporaryDirectory(prefix="spoolca-import-bench-") as tmp:
        work = Path(tmp)
        (work / "old-pw").write_bytes(b"old passphrase")
        (work / "new-pw").write_bytes(b"new passphrase")
        made = time.perf_counter()
        make_ca(work / "CA", args.count, b"old passphrase")
        print(f"made a CA with {args.count} certificates in "
              f"{time.perf_counter() - made:.1f} s")
        times, same = [], []
        for round_number in range(args.rounds):
            state = work / f"state-{round_number}"
            started = time.perf_counter()
            subprocess.run([*SPOOLCA, "import-openssl", str(work / "CA"), "--dir", str(state),
                            "--passphrase-file", str(work / "new-pw"),
                            "--source-passphrase-file", str(work / "old-pw")], check=True,
                           capture_output=True)
            times.append(time.perf_counter() - started)
            stop_agent(state / "gnupg")
            exported = subprocess.run([*SPOOLCA, "--config", str(state / "spoolca.toml"),
                                       "export-index", "--authority", "root",
                                       "--no-updatedb"], check=True, capture_output=True)
            same.append(exported.stdout == (work / "CA" / "index.txt").read_bytes())
            shutil.rmtree(state)
        size = (work / "CA" / "index.txt").stat().st_size
        print(f"import-openssl of {args.count} certificates ({size / 1024:.0f} KiB index.txt): "
              f"median {statistics.median(times):.2f} s over {args.rounds} "
              f"(all: {', '.join(f'{t:.2f}' for t in times)})")
        print(f"export-index --authority root --no-updatedb identical to index.txt: "
              f"{all(same)} ({sum(same)}/{len(same)})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
