"""Re-make the golden vectors (kept for the record; the committed files are the vectors).

Each file is an input that once crashed or misled spoolca; expected.json beside them
holds the exact finding codes spoolca must give it (for the server profile of the
default configuration, issued by "Sample Intermediate CA").

    python -m tests.vectors.make_vectors
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from spoolca.notation.der import sequence, tlv
from tests.pki import make_csr, pem, subject
from tests.rawcsr import extension, raw_csr

HERE = Path(__file__).parent
SUBJ = "/C=US/ST=New York/O=The Sample Company/CN={}"


def _openssl_csr(target: Path, *args: str) -> None:
    with tempfile.TemporaryDirectory() as temp:
        subprocess.run(["openssl", "req", "-new", "-nodes", "-keyout", f"{temp}/k", *args,
                        "-out", str(target)], check=True, capture_output=True)


def main() -> None:
    csr = HERE / "csr"
    san = extension("2.5.29.17", x509.SubjectAlternativeName(
        [x509.DNSName("v.sample.com")]).public_bytes())
    bc = extension("2.5.29.19", x509.BasicConstraints(ca=False, path_length=None)
                   .public_bytes(), True)
    (csr / "version-1.der").write_bytes(
        raw_csr(name=subject("v.sample.com"), extensions=[san], version=1)[1])
    (csr / "duplicate-basic-constraints.der").write_bytes(
        raw_csr(name=subject("v.sample.com"), extensions=[san, bc, bc])[1])
    for tag, label in ((0xA3, "x400-address"), (0xA5, "edi-party-name")):
        (csr / f"san-{label}.der").write_bytes(raw_csr(name=subject("v.sample.com"), extensions=[
            extension("2.5.29.17", sequence(tlv(tag, sequence())))])[1])
    (csr / "whitespace-flood.pem").write_bytes(
        b"-----BEGIN CERTIFICATE REQUEST-----" + b" " * (64 * 1024 - 40))
    good = make_csr("v.sample.com")[1]
    der = good.public_bytes(serialization.Encoding.DER)
    (csr / "truncated.der").write_bytes(der[: len(der) // 2])
    (csr / "two-blocks.pem").write_bytes(pem(good) * 2)
    # Found by the fuzzer: an unknown SPKI algorithm made public_key() raise in policy.
    ec_oid = bytes.fromhex("06072a8648ce3d0201")
    (csr / "unknown-key-algorithm.der").write_bytes(
        der.replace(ec_oid, ec_oid[:-1] + b"\x05", 1))
    _openssl_csr(csr / "sha1-rsa.csr", "-newkey", "rsa:2048", "-sha1",
                 "-subj", SUBJ.format("v.sample.com"))
    _openssl_csr(csr / "explicit-curve.csr", "-newkey", "ec", "-pkeyopt",
                 "ec_paramgen_curve:P-256", "-pkeyopt", "ec_param_enc:explicit",
                 "-subj", SUBJ.format("v.sample.com"))
    with tempfile.TemporaryDirectory() as temp:
        subprocess.run(["openssl", "genpkey", "-algorithm", "rsa-pss", "-pkeyopt",
                        "rsa_keygen_bits:2048", "-out", f"{temp}/k"], check=True)
        subprocess.run(["openssl", "req", "-new", "-key", f"{temp}/k", "-subj",
                        SUBJ.format("v.sample.com"), "-out", str(csr / "rsa-pss-key.csr")],
                       check=True)
    (HERE / "revoke" / "nested-50000.json").write_bytes(b"[" * 50_000)
    (HERE / "revoke" / "huge-integer.json").write_bytes(b'{"serial": ' + b"9" * 5000 + b"}")


if __name__ == "__main__":
    main()
