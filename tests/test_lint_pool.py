"""Pre-issuance lint in worker processes, many certificates in flight: each answer must be
its own certificate's, a finding must not be lost on the way, and a killed worker must not
let a certificate through unlinted."""

from __future__ import annotations

import datetime as dt
import os
import signal
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding

from spoolca.x509.lint import CertificateLinter, PooledLinter
from tests.pki import make_key, subject, wait_for

NOW = dt.datetime(2026, 11, 23, tzinfo=dt.UTC)
_ISSUER = make_key("ec-p256")


def _certificate(serial: int, *, clean: bool) -> bytes:
    """A leaf; an unclean one names a host with an empty label, which pkilint reports."""
    key = make_key("ec-p256")
    builder = (x509.CertificateBuilder()
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                   _ISSUER.public_key()), False)
               .subject_name(subject(f"h{serial}.sample.com"))
               .issuer_name(subject("Lint CA")).public_key(key.public_key())
               .serial_number(serial).not_valid_before(NOW)
               .not_valid_after(NOW + dt.timedelta(days=30)))
    host = f"h{serial}.sample.com" if clean else f"h{serial}..sample.com"
    builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), False)
    return builder.sign(_ISSUER, hashes.SHA256()).public_bytes(Encoding.DER)


def _workers(parent: int) -> list[int]:
    found = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent and b"spawn_main" in cmdline:
            found.append(int(entry))
    return found


def test_many_in_flight_each_answer_is_its_own() -> None:
    ders = [_certificate(n, clean=n % 7 != 3) for n in range(1, 60)]  # chunks of 8, a tail
    expected = [bool(CertificateLinter().lint(der)) for der in ders]
    assert any(expected) and not all(expected)
    pool = PooledLinter(2)
    try:
        pending = [pool.submit(der) for der in ders]
        assert [bool(p.result()) for p in reversed(pending)] == expected[::-1]
    finally:
        pool.close()


def test_a_killed_worker_still_leaves_every_certificate_linted() -> None:
    pool = PooledLinter(2)
    try:
        assert pool.lint(_certificate(1, clean=True)) == []
        workers = wait_for(lambda: _workers(os.getpid()), 20, "the lint workers")
        for pid in workers:  # type: ignore[union-attr]
            os.kill(pid, signal.SIGKILL)
        pending = [pool.submit(_certificate(n, clean=n != 5)) for n in range(2, 12)]
        refused = [n for n, p in zip(range(2, 12), pending, strict=True) if p.result()]
        assert refused == [5]
    finally:
        pool.close()
