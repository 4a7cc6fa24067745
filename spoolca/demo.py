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

from spoolca.authority.founding.ceremony import init_ca
from spoolca.authority.founding.newkeys import KeyPlan
from spoolca.config import load_config
from spoolca.host.fsutil import PRIVATE_FILE, atomic_write, ensure_dir, move, write_new
from spoolca.notation.dn import parse_subject
from spoolca.process.batch import BatchProcessor
from spoolca.process.passes import run_pass
from spoolca.process.session import CASession
from spoolca.register.store import Store
from spoolca.service.daemon import Daemon
from spoolca.spool.results import Outcome

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


def _sample_requests(requester: Path, round_number: int) -> dict[str, bytes]:
    """Two good requests and one that breaks policy_match; names unique per round."""
    company = [(NameOID.COUNTRY_NAME, "US"), (NameOID.STATE_OR_PROVINCE_NAME, "New York"),
               (NameOID.ORGANIZATION_NAME, "The Sample Company")]
    suffix = "" if round_number == 1 else str(round_number)
    mail, alice = f"mail{suffix}.sample.com", f"alice{suffix}@sample.com"
    return {
        f"server/{mail}.csr": _csr(
            requester, mail,
            [*company, (NameOID.ORGANIZATIONAL_UNIT_NAME, "Mail Server"),
             (NameOID.COMMON_NAME, mail)],
            [x509.DNSName(mail), x509.DNSName(f"smtp{suffix}.sample.com")]),
        f"client/alice{suffix}.csr": _csr(
            requester, f"alice{suffix}", [*company, (NameOID.COMMON_NAME, alice)], []),
        f"server/wrong-org{suffix}.csr": _csr(
            requester, f"wrong-org{suffix}",
            [(NameOID.COUNTRY_NAME, "GB"), (NameOID.ORGANIZATION_NAME, "Another Company"),
             (NameOID.COMMON_NAME, "www.another.example")], []),
    }


def _create(directory: Path) -> None:
    ensure_dir(directory, 0o750)
    passphrase_file = directory / "demo-passphrase"
    if not passphrase_file.exists():  # demo only: a real passphrase never sits beside the key
        write_new(passphrase_file, secrets.token_urlsafe(24).encode() + b"\n")
    init_ca(directory, root_subject=parse_subject(ROOT),
            intermediate_subject=parse_subject(INTERMEDIATE), plan=KeyPlan("ec-p384"),
            passphrase=passphrase_file.read_bytes().rstrip(b"\n"),
            passphrase_file=str(passphrase_file.resolve()), now=dt.datetime.now(dt.UTC))
    print(f"Created the demo CA in {directory}/ (its passphrase is in {passphrase_file}, "
          "for the demo only)")


def _drop_samples(directory: Path, incoming: Path) -> list[str]:
    """The requester's side: keys kept in requester/, CSRs written then renamed in."""
    requester_root = ensure_dir(directory / "requester", 0o700)
    round_number = len(list(requester_root.iterdir())) + 1
    requester = ensure_dir(requester_root / f"round{round_number}", 0o700)
    names = []
    for relative, data in _sample_requests(requester, round_number).items():
        target = incoming / relative
        temp = target.with_name(f".{target.name}.part")
        atomic_write(temp, data)
        os.utime(temp, (0, 0))  # written whole: the daemon's start scan may take it at once
        move(temp, target)
        names.append(relative)
    return names


def run_demo(directory: Path, *, once: bool = False) -> int:
    """Create the demo CA (once), drop sample requests, then run the daemon on it.

    With once=True: a single `process` pass instead of the daemon, then a summary.
    """
    config_path = directory / "spoolca.toml"
    if not config_path.exists():
        _create(directory)
    config = load_config(config_path)
    outgoing, incoming = _near(config.spool_dir / "outgoing"), _near(config.spool_dir / "incoming")
    names = _drop_samples(directory, config.spool_dir / "incoming")
    print(f"Dropped sample requests into {incoming}/: {', '.join(names)}")
    first = Path(names[0]).stem  # the server request: outgoing/<its name>/
    print(f"Results appear in {outgoing}/NAME/. Check one with an independent tool:")
    print(f"  openssl verify -CAfile {outgoing}/ca/ca-chain.pem {outgoing}/{first}/cert.pem")
    if once:
        store = Store.of(config)
        try:
            with CASession(config, store, actor="demo") as session:
                summary = run_pass(BatchProcessor(session))
        finally:
            store.close()
        for outcome in summary.outcomes:
            _show(outgoing, outcome)
        return 0
    print(f"The daemon now watches {incoming}/: drop more CSRs there "
          "(write, then rename in). Ctrl-C stops it.")
    return Daemon(config_path, on_outcome=lambda outcome: _show(outgoing, outcome)).run()


def _near(path: Path) -> Path:
    """PATH as the operator typed it: relative to the current folder when it is below it,
    so every line printed can be pasted as it is."""
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path


def _show(outgoing: Path, outcome: Outcome) -> None:
    """One short line per result."""
    detail = f"serial {outcome.serial}" if outcome.serial else \
        ", ".join(f.code for f in outcome.findings)
    print(f"  {outcome.status:<8} {outgoing / outcome.output_name}/  ({detail})", flush=True)
