"""What a request's outcome looks like on the spool: outgoing/NAME/ and result.json.

result.json always has `status`, `request_sha256` and `profile`, then either `serial`
(hex, as in index.txt) and `not_after` (and `notes`, informational), or `reasons` (a list
of `{code, message}`).
Its content depends only on the recorded result, so a re-publication is identical.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from json.encoder import encode_basestring as _json_string
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from spoolca.findings import CODES, Finding
from spoolca.notation.der import pem
from spoolca.register.generations import generation
from spoolca.register.store import CertificateRecord

__all__ = [
    "ChainFiles",
    "Outcome",
    "ca_files",
    "issued_files",
    "not_held_files",
    "older_chain_file",
    "rejected_files",
    "result_json",
    "revocation_files",
    "ssh_files",
]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one submitted file, and the files that say so."""

    output_name: str
    file_name: str
    request_sha256: str
    profile: str
    status: str
    serial: str | None
    findings: tuple[Finding, ...]
    files: dict[str, bytes]
    republished: bool = False
    links: dict[str, Path] = field(default_factory=dict)  # hard links to shared files


@dataclass(frozen=True, slots=True)
class ChainFiles:
    """The CA certificates above one issuer, PEM-encoded once and reused per request.

    `path` is the published copy of `chain` in outgoing/ca/ (ca-chain.pem or root.pem);
    each result's chain.pem is a hard link to it, one inode fewer per request.
    """

    chain: bytes          # every CA above the certificate, root included
    intermediates: bytes  # the same without the root: what a TLS server sends
    path: Path

    @classmethod
    def above(cls, issuer: x509.Certificate, root: x509.Certificate, ca_folder: Path,
              file_name: str | None = None) -> ChainFiles:
        """FILE_NAME: an earlier generation's chain file (older_chain_file)."""
        root_pem = root.public_bytes(Encoding.PEM)
        if issuer.subject == root.subject:
            return cls(chain=root_pem, intermediates=b"", path=ca_folder / "root.pem")
        issuer_pem = issuer.public_bytes(Encoding.PEM)
        return cls(chain=issuer_pem + root_pem, intermediates=issuer_pem,
                   path=ca_folder / (file_name or "ca-chain.pem"))


def result_json(**fields: Any) -> bytes:
    """Stable, readable JSON: sorted keys, absent fields left out. Exactly what
    json.dumps(indent=2, sort_keys=True, ensure_ascii=False) writes, built with the C string
    encoder: the standard library falls back to pure Python whenever indent is set, and this
    runs once per result."""
    body = {key: value for key, value in fields.items() if value is not None}
    return (_indented(body, "\n") + "\n").encode()


def _indented(value: Any, newline: str) -> str:
    """VALUE as JSON; NEWLINE is a line break followed by the current indentation."""
    if isinstance(value, str):
        return _json_string(value)
    if isinstance(value, dict) and value:
        inner = newline + "  "
        return "{" + ",".join(f"{inner}{_json_string(str(key))}: {_indented(value[key], inner)}"
                              for key in sorted(value)) + newline + "}"
    if isinstance(value, list | tuple) and value:
        inner = newline + "  "
        return "[" + ",".join(inner + _indented(item, inner) for item in value) + newline + "]"
    return json.dumps(value)  # numbers, booleans, null, and empty containers


def rejected_files(*, name: str, file_name: str, request_sha256: str, profile: str,
                   decided_at: str, reasons: list[dict[str, str]], again: bool = False
                   ) -> dict[str, bytes]:
    """AGAIN: an earlier answer published again; a note says so, and how to ask anew."""
    notes = [{"code": "note.earlier_answer", "message": f"this request was decided on "
              f"{decided_at}; that answer is published again, not decided again: if the "
              f"policy has changed since, `spoolca reconsider {name}` decides it anew"}
             ] if again else None
    return {"result.json": result_json(
        status="rejected", name=name, file=file_name, request_sha256=request_sha256,
        profile=profile, decided_at=decided_at, reasons=reasons, notes=notes)}


def revocation_files(*, name: str, file_name: str, request_sha256: str, decided_at: str,
                     status: str, serial: str | None, reasons: list[dict[str, str]]
                     ) -> dict[str, bytes]:
    """A revocation request's answer: `revoked` with the serial, or `rejected` with every
    reason (and the serial it named, where it named one)."""
    return {"result.json": result_json(
        status=str(status), name=name, file=file_name, request_sha256=request_sha256,
        profile="revoke", decided_at=decided_at, serial=serial, reasons=reasons or None)}


def ssh_files(*, name: str, file_name: str, request_sha256: str, profile: str,
              decided_at: str, ca: str, serial: int, key_id: str, principals: list[str],
              valid_after: str, valid_before: str, certificate: bytes,
              notes: list[dict[str, str]] | None = None) -> dict[str, bytes]:
    """An SSH certificate's answer: NAME-cert.pub (beside the owner's NAME key, as
    ssh-keygen -s names it) and result.json."""
    return {f"{name}-cert.pub": certificate.rstrip(b"\n") + b"\n",
            "result.json": result_json(
                status="issued", name=name, file=file_name, request_sha256=request_sha256,
                profile=profile, decided_at=decided_at, ssh_ca=ca, serial=serial,
                key_id=key_id, principals=principals, not_before=valid_after,
                not_after=valid_before, certificate=f"{name}-cert.pub", notes=notes)}


def issued_files(record: CertificateRecord, chain: ChainFiles, *, name: str, file_name: str,
                 decided_at: str, notes: list[dict[str, str]] | None = None) -> dict[str, bytes]:
    """cert.pem, cert.crt (DER), fullchain.pem and result.json; chain.pem is linked.

    Everything comes from the recorded DER, encoded once (cryptography re-encodes the
    certificate on every public_bytes and fingerprint call). `notes` are informational
    (what the request asked for and the profile overrode), never reasons: an issued result
    has none."""
    cert_pem = pem("CERTIFICATE", record.der)
    body = result_json(
        status="issued", name=name, file=file_name, request_sha256=record.request_sha256,
        profile=record.profile, decided_at=decided_at, serial=record.serial,
        subject=record.subject, issuer=record.issuer, not_before=record.not_before,
        not_after=record.not_after, cert_sha256=hashlib.sha256(record.der).hexdigest(),
        notes=notes or None,
    )
    return {
        "cert.pem": cert_pem,
        "cert.crt": record.der,
        "fullchain.pem": cert_pem + chain.intermediates,
        "result.json": body,
    }


def not_held_files(record: CertificateRecord, *, name: str, file_name: str, decided_at: str
                   ) -> dict[str, bytes]:
    """A certificate a catch-up knows from the audit log alone (its result was not on the
    catch-up's source): its one answer again, without the certificate it does not hold."""
    note = Finding("result.certificate_not_held", CODES["result.certificate_not_held"])
    return {"result.json": result_json(
        status="issued", name=name, file=file_name, request_sha256=record.request_sha256,
        profile=record.profile, decided_at=decided_at, serial=record.serial,
        subject=record.subject, issuer=record.issuer, not_before=record.not_before,
        not_after=record.not_after, notes=[note.as_dict()])}


def older_chain_file(name: str) -> str:
    """An earlier intermediate generation's chain: ca-chain-g1.pem for `intermediate`,
    ca-chain-g2.pem for `intermediate-g2` once a third one issues."""
    return f"ca-chain-g{generation(name)}.pem"


def ca_files(root: x509.Certificate, intermediate: x509.Certificate,
             older: dict[str, x509.Certificate] | None = None) -> dict[str, bytes]:
    """What outgoing/ca/ holds: root, intermediate and the chain, as PEM, plus DER .crt copies; and
    each earlier intermediate generation (after a rekey) as intermediate-gN.pem with its
    chain ca-chain-gN.pem, which its certificates' chain.pem files link to."""
    root_pem, inter_pem = root.public_bytes(Encoding.PEM), intermediate.public_bytes(Encoding.PEM)
    files = {
        "root.pem": root_pem,
        "intermediate.pem": inter_pem,
        "ca-chain.pem": inter_pem + root_pem,  # the seeds' ca-chain.cert.pem order
        "root.crt": root.public_bytes(Encoding.DER),
        "intermediate.crt": intermediate.public_bytes(Encoding.DER),
    }
    for name, cert in (older or {}).items():
        files[f"intermediate-g{generation(name)}.pem"] = cert.public_bytes(Encoding.PEM)
        files[older_chain_file(name)] = cert.public_bytes(Encoding.PEM) + root_pem
    if older:  # one CAfile for relying parties that verifies every generation's leaves
        files["ca-bundle.pem"] = inter_pem + b"".join(
            c.public_bytes(Encoding.PEM) for c in older.values()) + root_pem
    return files
