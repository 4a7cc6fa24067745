#!/usr/bin/env python3
"""Throughput of `spoolca process` against `openssl ca -batch -infiles` on the same CSRs,
with the same CA key type on both sides.

For each CA key type (P-256 and P-384 by default, each with its matching hash), in the
same run: `openssl ca` with an equivalent openssl.cnf (the seeds' policy_match, the same
extensions, the same intermediate key), the same followed by a syncfs (durable, as
spoolca always is), and spoolca with lint off and lint on. Each timing is the whole
command, start-up included, with its CPU (user + system) from the children's rusage;
each is reported as a ratio to `openssl ca` on the same CSRs, never as a time. Beside
them, how fast cryptography (what spoolca signs with) signs against the system's
`openssl speed`.

Each run works on a fresh ext4 of its own (bench/freshfs.py: a loop-mounted image made
for it, as an appliance's own disk): file creation on a shared ext4 slows down after many
deletions (the inode allocator skips recently freed inodes), so one side would inherit
the other's state. The runs are interleaved over several rounds and medians reported.
Needs root for the mounts; --shared-fs measures the old, unfair way.

    python bench/process_vs_openssl.py [--count 2000] [--rounds 3] [--key-types ec-p256 ec-p384]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

sys.path.insert(0, str(Path(__file__).resolve().parent))
import freshfs


@dataclass(frozen=True)
class Run:
    wall: float
    user: float
    system: float


def measured(command: list[str]) -> Run:
    """Run COMMAND; its wall time and the CPU its process tree used."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return Run(wall, after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime)

ROOT = "/C=US/ST=New York/O=The Sample Company/CN=Bench Root CA"
INTERMEDIATE = "/C=US/ST=New York/O=The Sample Company/CN=Bench Intermediate CA"
SPOOLCA = [sys.executable, "-m", "spoolca.cli"]


def ensure_bytecode() -> None:
    """Compile spoolca's modules to bytecode first, as `pip install` does.

    Run from a checkout (an editable install) with PYTHONDONTWRITEBYTECODE set, Python
    would compile every module again on every start: 20-50 ms a command that no installed
    copy pays, and would charge it to spoolca."""
    import spoolca

    environment = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(Path(spoolca.__file__).parent)],
                   check=True, env=environment, capture_output=True)

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


def time_spoolca(work: Path, csrs: list[Path], key_type: str, lint: str) -> Run:
    directory = work / f"spoolca-{lint}-{key_type}"
    config = new_ca(directory, key_type, lint)
    incoming = directory / "spool" / "incoming" / "server"
    for csr in csrs:
        shutil.copyfile(csr, incoming / csr.name)
    subprocess.run(["sync"], check=True)
    elapsed = measured([*SPOOLCA, "--config", str(config), "process"])
    issued = len(list((directory / "spool" / "outgoing").glob("*/cert.pem")))
    if issued != len(csrs):
        raise SystemExit(f"spoolca ({lint}) issued {issued} of {len(csrs)}")
    return elapsed


def time_openssl(work: Path, csrs: list[Path], key_type: str, durable: bool) -> Run:
    directory = work / f"openssl-{key_type}-{'durable' if durable else 'plain'}"
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
    command = ["openssl", "ca", "-batch", "-config", str(cnf), "-notext", "-out",
               str(directory / "out.pem"), "-infiles", *map(str, csrs)]
    if durable:  # then syncfs: the certificates and index.txt on disk, as spoolca's are
        command = ["sh", "-c", '"$@" && sync -f "$0"', str(directory), *command]
    elapsed = measured(command)
    issued = len((directory / "index.txt").read_text().splitlines())
    if issued != len(csrs):
        raise SystemExit(f"openssl issued {issued} of {len(csrs)}")
    return elapsed


def sign_speed(key_type: str) -> tuple[float, float]:
    """Signatures per second: the system's `openssl speed`, and cryptography's (what
    spoolca signs with), one core each."""
    curve = {"ec-p256": ("ecdsap256", ec.SECP256R1(), hashes.SHA256()),
             "ec-p384": ("ecdsap384", ec.SECP384R1(), hashes.SHA384())}[key_type]
    out = subprocess.run(["openssl", "speed", "-seconds", "2", curve[0]], capture_output=True,
                         text=True, check=True).stdout
    system = float(re.search(r"ecdsa \(nistp\d+\)\s+\S+\s+\S+\s+([0-9.]+)", out).group(1))
    key = ec.generate_private_key(curve[1])
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < 2:
        key.sign(b"x" * 300, ec.ECDSA(curve[2]))
        count += 1
    return system, count / (time.perf_counter() - started)


@contextlib.contextmanager
def place(shared: bool, files: int) -> Iterator[Path]:
    """Where one run works: a fresh file system of its own, or (--shared-fs) a folder."""
    if shared:
        with tempfile.TemporaryDirectory(prefix="spoolca-bench-") as tmp:
            yield Path(tmp)
    else:
        with freshfs.fresh_fs(files * 6) as mount:
            yield mount


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--key-types", nargs="+", default=["ec-p256", "ec-p384"],
                        help="the CA key types (both sides)")
    parser.add_argument("--csr-cache", type=Path, default=Path(__file__).parent / "out" / "csrs")
    parser.add_argument("--shared-fs", action="store_true", help="every run in one temporary "
                        "folder of the root file system (the old way; not a fair comparison)")
    args = parser.parse_args()
    ensure_bytecode()
    csrs = make_csrs(args.csr_cache, args.count)
    kinds = {"openssl": ("openssl ca -batch -infiles", False),
             "openssl+sync": ("openssl ca, then syncfs", True),
             "off": ("spoolca process, lint off", "off"),
             "pkix": ("spoolca process, lint on", "pkix")}
    runs: dict[tuple[str, str], list[Run]] = {(k, t): [] for k in kinds for t in args.key_types}
    why_not = None if args.shared_fs else freshfs.available()
    if why_not:
        raise SystemExit(f"fresh file systems cannot be made ({why_not}); run as root, or "
                         "give --shared-fs to measure in one temporary folder (unfair: the "
                         "two sides inherit each other's file-creation speed)")
    for round_number in range(args.rounds):
        for key_type in args.key_types:
            for kind in kinds:
                with place(args.shared_fs, len(csrs)) as folder:
                    work = folder / f"round{round_number}"
                    run = (time_openssl(work, csrs, key_type, kind == "openssl+sync")
                           if kind.startswith("openssl") else
                           time_spoolca(work, csrs, key_type, kind))
                runs[(kind, key_type)].append(run)
    where = "one shared temporary folder" if args.shared_fs else \
        "each run on a fresh loop-mounted ext4 of its own"
    print(f"{len(csrs)} P-256 CSRs; median of {args.rounds} interleaved rounds; {where}; "
          f"{os.cpu_count()} cores; spoolca is always durable (committed and syncfs'd)")
    print("| CA key | command | speed vs openssl ca | vs openssl + sync | "
          "CPU (user + system) vs openssl ca |")
    print("| --- | --- | ---: | ---: | ---: |")
    for key_type in args.key_types:
        plain = runs[("openssl", key_type)]
        base_wall = statistics.median(r.wall for r in plain)
        base_cpu = statistics.median(r.user + r.system for r in plain)
        durable = statistics.median(r.wall for r in runs[("openssl+sync", key_type)])
        for kind, (label, _) in kinds.items():
            chosen = runs[(kind, key_type)]
            wall = statistics.median(r.wall for r in chosen)
            cpu = statistics.median(r.user + r.system for r in chosen)
            print(f"| {key_type} | {label} | {base_wall / wall:.2f}x | {durable / wall:.2f}x | "
                  f"{cpu / base_cpu:.2f}x |")
    print("\nThe signing libraries, one core: cryptography (what spoolca signs with) against "
          "the system's openssl speed:")
    for key_type in args.key_types:
        system, library = sign_speed(key_type)
        print(f"  {key_type}: {library / system:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
