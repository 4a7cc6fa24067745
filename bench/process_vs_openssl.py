#!/usr/bin/env python3
"""Throughput of `spoolca process` against `openssl ca -batch -infiles` on the same CSRs.

Makes N P-256 CSRs once, then in the same run: a spoolca CA with lint off, one with
lint on, and `openssl ca` with an equivalent openssl.cnf (the seeds' policy_match, the
same extensions, the same intermediate key and hash). Each timing is the whole command,
start-up included. spoolca's figure is durable (committed and syncfs'd); openssl's is not.

File creation on ext4 slows down for a while after many deletions (the inode allocator
skips recently freed inodes), so the runs are interleaved over several rounds, nothing is
deleted until the end, and the medians are reported.

    python bench/process_vs_openssl.py [--count 2000] [--rounds 3] [--key-type ec-p384]
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

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ROOT = "/C=US/ST=New York/O=The Sample Company/CN=Bench Root CA"
INTERMEDIATE = "/C=US/ST=New York/O=The Sample Company/CN=Bench Intermediate CA"
SPOOLCA = [sys.executable, "-m", "spoolca.cli"]

OPENSSL_CNF = """\
[ ca ]
default_ca = CA_default
[ CA_default ]
dir = {dir}
database = $dir/index.txt
new_certs_dir = $dir/newcerts
certificate = $dir/intermediate.pem
private_key = $dir/intermediate.key.pem
serial = $dir/serial
default_days = 375
default_md = {md}
policy = policy_match
unique_subject = yes
copy_extensions = copy
x509_extensions = server_cert
preserve = no
email_in_dn = no
[ policy_match ]
countryName = match
stateOrProvinceName = match
organizationName = match
organizationalUnitName = optional
commonName = supplied
emailAddress = optional
[ server_cert ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
"""


def make_csrs(folder: Path, count: int) -> list[Path]:
    """N distinct P-256 CSRs with a SAN, made once and reused across runs."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = sorted(folder.glob("*.csr"))
    if len(paths) >= count:
        return paths[:count]
    for i in range(count):
        key = ec.generate_private_key(ec.SECP256R1())
        host = f"host{i:06d}.sample.com"
        subject = x509.Name([
            x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
            x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "New York"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "The Sample Company"),
            x509.NameAttribute(NameOID.COMMON_NAME, host),
        ])
        csr = (x509.CertificateSigningRequestBuilder().subject_name(subject)
               .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
               .sign(key, hashes.SHA256()))
        (folder / f"{host}.csr").write_bytes(csr.public_bytes(serialization.Encoding.PEM))
    return sorted(folder.glob("*.csr"))[:count]


def new_ca(directory: Path, key_type: str, lint: str) -> Path:
    subprocess.run([*SPOOLCA, "init", "--dir", str(directory), "--root-subject", ROOT,
                    "--intermediate-subject", INTERMEDIATE, "--key-type", key_type,
                    "--no-passphrase"], check=True, capture_output=True)
    config = directory / "spoolca.toml"
    text = config.read_text().replace('lint = "pkix"', f'lint = "{lint}"')
    config.write_text(text)
    return config


def time_spoolca(work: Path, csrs: list[Path], key_type: str, lint: str) -> float:
    directory = work / f"spoolca-{lint}"
    config = new_ca(directory, key_type, lint)
    incoming = directory / "spool" / "incoming" / "server"
    for csr in csrs:
        shutil.copyfile(csr, incoming / csr.name)
    subprocess.run(["sync"], check=True)
    started = time.perf_counter()
    subprocess.run([*SPOOLCA, "--config", str(config), "process"], check=True,
                   capture_output=True)
    elapsed = time.perf_counter() - started
    issued = len(list((directory / "spool" / "outgoing").glob("*/cert.pem")))
    if issued != len(csrs):
        raise SystemExit(f"spoolca ({lint}) issued {issued} of {len(csrs)}")
    return elapsed


def time_openssl(work: Path, csrs: list[Path], key_type: str) -> float:
    directory = work / "openssl"
    new_ca(directory / "ca", key_type, "off")  # the same kind of CA, made by spoolca init
    (directory / "newcerts").mkdir(parents=True)
    (directory / "index.txt").write_text("")
    (directory / "serial").write_text("1000\n")
    shutil.copyfile(directory / "ca" / "keys" / "intermediate.key.pem",
                    directory / "intermediate.key.pem")
    shutil.copyfile(directory / "ca" / "spool" / "outgoing" / "ca" / "intermediate.pem",
                    directory / "intermediate.pem")
    md = {"ec-p256": "sha256", "ec-p384": "sha384"}.get(key_type, "sha256")
    cnf = directory / "openssl.cnf"
    cnf.write_text(OPENSSL_CNF.format(dir=directory, md=md))
    subprocess.run(["sync"], check=True)
    started = time.perf_counter()
    subprocess.run(["openssl", "ca", "-batch", "-config", str(cnf), "-notext",
                    "-out", str(directory / "out.pem"), "-infiles", *map(str, csrs)],
                   check=True, capture_output=True)
    elapsed = time.perf_counter() - started
    issued = len((directory / "index.txt").read_text().splitlines())
    if issued != len(csrs):
        raise SystemExit(f"openssl issued {issued} of {len(csrs)}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--key-type", default="ec-p384", help="the CA key type (both sides)")
    parser.add_argument("--csr-cache", type=Path, default=Path(__file__).parent / "out" / "csrs")
    args = parser.parse_args()
    csrs = make_csrs(args.csr_cache, args.count)
    runs: dict[str, list[float]] = {"openssl": [], "off": [], "pkix": []}
    with tempfile.TemporaryDirectory(prefix="spoolca-bench-") as tmp:
        for round_number in range(args.rounds):
            work = Path(tmp) / f"round{round_number}"
            runs["openssl"].append(time_openssl(work, csrs, args.key_type))
            runs["off"].append(time_spoolca(work, csrs, args.key_type, "off"))
            runs["pkix"].append(time_spoolca(work, csrs, args.key_type, "pkix"))
    n = len(csrs)
    ossl = statistics.median(runs["openssl"])

    def line(label: str, key: str) -> str:
        median = statistics.median(runs[key])
        each = " ".join(f"{t:.2f}" for t in runs[key])
        ratio = f"  {ossl / median:.2f}x openssl" if key != "openssl" else "  (not durable)"
        return f"{label:<28} {median:6.2f} s {n / median:7.0f} certs/s{ratio}   runs: {each}"

    print(f"{n} P-256 CSRs, CA key {args.key_type}, median of {args.rounds} rounds")
    print(line("openssl ca -batch -infiles", "openssl"))
    print(line("spoolca process, lint off", "off"))
    print(line("spoolca process, lint pkix", "pkix"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
