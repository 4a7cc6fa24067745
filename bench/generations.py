#!/usr/bin/env python3
"""The cross-generation verify matrix: which chain file verifies which certificate after
each lifecycle step, judged by `openssl verify` and GnuTLS `certtool --verify`.

    .venv/bin/python bench/generations.py

One CA (lint on, the default): L1 issued; `ca renew intermediate` (same key), L2 issued;
`ca rekey intermediate`, L3 issued; `ca renew root`, L4 issued; then each certificate is
verified against its own chain.pem, the current ca-chain.pem and ca-chain-g1.pem, with
both tools (which must agree). Not a speed figure: the README and the closing note carry
the table.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

SPOOLCA = [sys.executable, "-m", "spoolca.cli"]
ORG = [x509.NameAttribute(NameOID.COUNTRY_NAME, "US"),
       x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "New York"),
       x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example")]


def run(config: Path, *args: str) -> str:
    return subprocess.run([*SPOOLCA, "--config", str(config), *args], check=True,
                          capture_output=True, text=True).stdout


def issue(ca: Path, name: str) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    host = f"{name.lower()}.example.com"
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([*ORG, x509.NameAttribute(NameOID.COMMON_NAME, host)]))
           .add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), False)
           .sign(key, hashes.SHA256()))
    (ca / "spool" / "incoming" / "server" / f"{name}.csr").write_bytes(
        csr.public_bytes(serialization.Encoding.PEM))
    run(ca / "spoolca.toml", "process")
    return ca / "spool" / "outgoing" / name


def verdict(chain: Path, result: Path) -> str:
    """OK or no, by openssl and by certtool (asserted to agree)."""
    ssl = subprocess.run(["openssl", "verify", "-CAfile", str(chain),
                          str(result / "cert.pem")], capture_output=True, text=True)
    bundle = result.parent / "check.pem"
    bundle.write_bytes((result / "cert.pem").read_bytes() + chain.read_bytes())
    gnutls = subprocess.run(["certtool", "--verify", "--load-ca-certificate",
                             str(chain.parent / "root.pem" if chain.name != "chain.pem"
                                 else chain), "--infile", str(bundle)],
                            capture_output=True, text=True)
    ok_gnutls = "Chain verification output: Verified" in gnutls.stdout
    ok_ssl = ssl.returncode == 0
    return "OK" if ok_ssl and ok_gnutls else "no" if not ok_ssl and not ok_gnutls \
        else f"disagree (openssl {ok_ssl}, certtool {ok_gnutls})"


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="spoolca-generations-") as tmp:
        ca = Path(tmp) / "ca"
        subprocess.run([*SPOOLCA, "init", "--dir", str(ca), "--no-passphrase",
                        "--root-subject", "/C=US/ST=New York/O=Example/CN=Example Root CA"],
                       check=True, capture_output=True)
        config = ca / "spoolca.toml"
        results = {"L1 (first)": issue(ca, "L1")}
        run(config, "ca", "renew", "intermediate", "--days", "3660")
        results["L2 (after intermediate renew)"] = issue(ca, "L2")
        run(config, "ca", "rekey", "intermediate", "--days", "3000")
        results["L3 (after rekey)"] = issue(ca, "L3")
        run(config, "ca", "renew", "root", "--days", "9000")
        results["L4 (after root renew)"] = issue(ca, "L4")
        out = ca / "spool" / "outgoing" / "ca"
        columns = ["own chain.pem", "ca-chain.pem (now)", "ca-chain-g1.pem", "ca-bundle.pem"]
        print(f"| certificate | {' | '.join(columns)} |")
        print("| --- | " + " | ".join("---" for _ in columns) + " |")
        for label, result in results.items():
            cells = [verdict(result / "chain.pem", result), verdict(out / "ca-chain.pem", result),
                     verdict(out / "ca-chain-g1.pem", result),
                     verdict(out / "ca-bundle.pem", result)]
            print(f"| {label} | {' | '.join(cells)} |")
        subprocess.run(["gpgconf", "--homedir", str(ca / "gnupg"), "--kill", "gpg-agent"],
                       capture_output=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
