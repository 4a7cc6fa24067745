"""The ceremony record: what a key ceremony or custody event did, for the paper binder.

Plain text a person can read and sign with a pen, and an OpenPGP signature by the
appliance key over it: the parameters, the software versions, every key's and
certificate's fingerprint, the custodians' names (never a share), the SHA-256 of every
output, and the audit head after it (which holds the `ceremony.recorded` entry). Kept in
the state directory's ceremony/ and in outgoing/ceremony/, so the next stick carries it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import platform
import subprocess
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from spoolca import __version__
from spoolca.config import Config
from spoolca.host.fsutil import atomic_write, ensure_dir
from spoolca.keys.algorithms import spki
from spoolca.keys.openpgp import ApplianceKey
from spoolca.register.store import Store
from spoolca.spool.outgoing import Outgoing

__all__ = ["certificate_lines", "write_record"]


def _versions() -> str:
    import cryptography
    from cryptography.hazmat.backends.openssl.backend import backend

    try:
        gpg = subprocess.run(["gpg", "--version"], capture_output=True, text=True,
                             timeout=30).stdout.splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        gpg = "gpg: unknown"
    return (f"spoolca {__version__}; cryptography {cryptography.__version__} "
            f"({backend.openssl_version_text()}); {gpg}; Python {platform.python_version()}")


def certificate_lines(label: str, cert: x509.Certificate) -> list[str]:
    return [f"  {label}: {cert.subject.rfc4514_string()}",
            f"    certificate SHA-256  {cert.fingerprint(hashes.SHA256()).hex(':').upper()}",
            f"    public key SHA-256   {hashlib.sha256(spki(cert.public_key())).hexdigest()}",
            f"    valid until          {cert.not_valid_after_utc:%Y-%m-%d %H:%M:%S}Z"]


def write_record(config: Config, store: Store, key: ApplianceKey, event: str,
                 moment: dt.datetime, parameters: Sequence[tuple[str, str]],
                 keys: Sequence[str], outputs: Sequence[Path]) -> Path:
    """The record and its signature, in ceremony/ and outgoing/ceremony/, after an audit
    entry that marks it. Returns the record's path."""
    base = config.path.parent
    lines = ["spoolca ceremony record", "=======================", "",
             f"Event:     {event}", f"Time:      {moment:%Y-%m-%d %H:%M:%S}Z",
             f"Host:      {platform.node()}", f"Software:  {_versions()}", "", "Parameters:"]
    lines += [f"  {name}: {value}" for name, value in parameters]
    lines += ["", "Keys and certificates:", *keys,
              f"  appliance (audit) key: OpenPGP {key.fingerprint}", "", "Outputs (SHA-256):"]
    for path in outputs:
        shown = path.relative_to(base) if path.is_relative_to(base) else path
        lines.append(f"  {hashlib.sha256(path.read_bytes()).hexdigest()}  {shown}")
    with store.transaction("ceremony", moment) as tx:
        tx.record("ceremony.recorded", {"event": event})
    seq, head = store.audit_head()
    lines += ["", f"Audit head after it: entry {seq}, {head}", "",
              "Check: gpg --verify RECORD.txt.asc RECORD.txt (the appliance key above).", "",
              "Operator:  ______________________   Witness:  ______________________", ""]
    text = "\n".join(lines).encode()
    name = f"{moment:%Y%m%dT%H%M%SZ}-{event.replace('.', '-')}.txt"
    signature = key.sign(text).encode()
    Outgoing.of(config.spool_dir).ceremony_record(name, text, signature)  # for the stick
    return _keep(base / "ceremony", name, text, signature)


def _keep(folder: Path, name: str, text: bytes, signature: bytes) -> Path:
    """The appliance's own copy of a record, in ceremony/ beside its configuration."""
    ensure_dir(folder, 0o755)
    atomic_write(folder / name, text, 0o644)
    atomic_write(folder / f"{name}.asc", signature, 0o644)
    return folder / name
