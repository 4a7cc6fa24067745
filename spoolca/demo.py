"""`spoolca demo`: a demo CA in a local directory, fed with sample requests.

It plays both sides of the air gap: the requester makes keys and CSRs (as `openssl
req` would) and drops them into the spool, write-then-rename, and the appliance
processes them. One request is deliberately wrong, to show a rejection with reasons.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from spoolca.ceremony import init_ca
from spoolca.config import load_config
from spoolca.dn import parse_subject
from spoolca.fsutil import PRIVATE_FILE, atomic_write, ensure_dir, write_new
from spoolca.pipeline import Processor
from spoolca.store import Store

__all__ = ["run_demo"]

ROOT = "/C=US/ST=New York/O=The Sample Company/CN=Sample Root CA"
INTERMEDIATE = "/C=US/ST=New York/O=The Sample Company/CN=Sample Intermediate CA"


def _csr(directory: Path, name: str, attributes: list[tuple[x509.ObjectIdentifier, str]],
         sans: list[x509.GeneralName]) -> bytes:
    """The requester's side: a P-256 key (kept by the requester) and its CSR."""
    key = ec.generate_private_key(ec.SECP256R1())
    write_new(directory / f"{name}.key", key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()), mode=PRIVATE_FILE)
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(oid, value) for oid, value in attributes]))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def _sample_requests(requester: Path) -> dict[str, bytes]:
    company = [(NameOID.COUNTRY_NAME, "US"), (NameOID.STATE_OR_PROVINCE_NAME, "New York"),
               (NameOID.ORGANIZATION_NAME, "The Sample Company")]
    return {
        "server/mail.sample.com.csr": _csr(
            requester, "mail.sample.com",
            [*company, (NameOID.ORGANIZATIONAL_UNIT_NAME, "Mail Server"),
             (NameOID.COMMON_NAME, "mail.sample.com")],
            [x509.DNSName("mail.sample.com"), x509.DNSName("smtp.sample.com")]),
        "client/alice.csr": _csr(
            requester, "alice", [*company, (NameOID.COMMON_NAME, "alice@sample.com")], []),
        "server/wrong-org.csr": _csr(
            requester, "wrong-org",
            [(NameOID.COUNTRY_NAME, "GB"), (NameOID.ORGANIZATION_NAME, "Another Company"),
             (NameOID.COMMON_NAME, "www.another.example")], []),
    }


def run_demo(directory: Path) -> int:
    """Create the demo CA (once), drop sample requests in, process them, say where to look."""
    config_path = directory / "spoolca.toml"
    if not config_path.exists():
        ensure_dir(directory, 0o750)
        passphrase_file = directory / "demo-passphrase"
        if not passphrase_file.exists():  # demo only: a real passphrase never sits beside the key
            write_new(passphrase_file, secrets.token_urlsafe(24).encode() + b"\n")
        init_ca(directory, root_subject=parse_subject(ROOT),
                intermediate_subject=parse_subject(INTERMEDIATE), key_type="ec-p384",
                passphrase=passphrase_file.read_bytes().rstrip(b"\n"),
                passphrase_file=str(passphrase_file.resolve()), now=dt.datetime.now(dt.UTC))
        print(f"Created the demo CA in {directory}/ (passphrase in {passphrase_file}, "
              "demo only)")
    config = load_config(config_path)
    requester = ensure_dir(directory / "requester" / secrets.token_hex(3), 0o700)
    incoming = config.spool_dir / "incoming"
    for relative, data in _sample_requests(requester).items():
        target = incoming / relative
        atomic_write(target.with_name(f".{target.name}.part"), data)
        os.rename(target.with_name(f".{target.name}.part"), target)  # write, then rename in
    store = Store(config.database)
    try:
        with Processor(config, store, actor="demo") as processor:
            summary = processor.run_pass()
    finally:
        store.close()
    outgoing = config.spool_dir / "outgoing"
    print(f"Processed {len(summary.outcomes)} sample requests: {summary.issued} issued, "
          f"{summary.rejected} rejected. Look at:")
    for outcome in summary.outcomes:
        detail = f"serial {outcome.serial}" if outcome.serial else \
            ", ".join(f.code for f in outcome.findings)
        print(f"  {outcome.status:<8} {outgoing / outcome.output_name}/  ({detail})")
    print("Check a certificate with an independent tool:")
    print(f"  openssl verify -CAfile {outgoing}/ca/ca-chain.pem "
          f"{outgoing}/{summary.outcomes[0].output_name}/cert.pem" if summary.outcomes else "")
    return 0
