"""Revocation requests that arrive as files: incoming/revoke/NAME.json (+ NAME.json.asc).

The format, documented in the README:

    {"serial": "0A1B...", "reason": "keyCompromise", "invalidity_date": "2026-11-20"}

`reason` and `invalidity_date` are optional (unspecified; none). Every request must be
signed (detached, NAME.json.asc) by one of `[signers] revokers`; anything else is
refused with the reasons in outgoing/NAME/result.json, and nothing is revoked.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import TYPE_CHECKING

from spoolca.authorization import SignerCheck
from spoolca.crl import REASONS
from spoolca.csr import request_sha256
from spoolca.errors import SpoolcaError
from spoolca.findings import Finding
from spoolca.fsutil import publish_folder, read_untrusted, sync_filesystem
from spoolca.register import normalize_serial
from spoolca.results import Outcome, result_json
from spoolca.revocation import revoke
from spoolca.spool import Claimed

if TYPE_CHECKING:
    from spoolca.pipeline import Processor

__all__ = ["RevocationRequest", "parse_revocation", "process_revocations"]

_KEYS = {"serial", "reason", "invalidity_date"}


class RevocationRequest:
    """A parsed, signature-checked revocation request."""

    def __init__(self, serial: str, reason: str, invalidity: dt.datetime | None,
                 signer: str) -> None:
        self.serial, self.reason, self.invalidity, self.signer = serial, reason, invalidity, \
            signer


def parse_revocation(data: bytes, signature: bytes | None, signers: SignerCheck,
                     revokers: tuple[str, ...], now: Callable[[], dt.datetime]
                     ) -> RevocationRequest | list[Finding]:
    """The request, or every reason it is refused."""
    signer, refusal = signers.check(data, signature, revokers)
    findings = [refusal] if refusal else []
    try:
        body = json.loads(data)
        if not isinstance(body, dict) or set(body) - _KEYS or "serial" not in body:
            raise ValueError("keys must be serial, and optionally reason and invalidity_date")
        serial = normalize_serial(str(body["serial"]))
        reason = str(body.get("reason", "unspecified"))
        invalidity_text = body.get("invalidity_date")
        invalidity = None
        if invalidity_text:
            invalidity = dt.datetime.fromisoformat(str(invalidity_text).replace("Z", "+00:00"))
            invalidity = invalidity if invalidity.tzinfo else invalidity.replace(tzinfo=dt.UTC)
    except (ValueError, TypeError) as exc:
        return [*findings, Finding("revoke.unparseable", f"not a revocation request: {exc}")]
    if reason not in REASONS or reason == "removeFromCRL":
        findings.append(Finding("revoke.reason_invalid", f"{reason!r} is not a reason a "
                                "request may give; use an RFC 5280 reason by its OpenSSL name"))
    if invalidity is not None and invalidity > now():
        findings.append(Finding("revoke.invalidity_in_future", "invalidity_date is in the "
                                "future"))
    if findings or signer is None:
        return findings
    return RevocationRequest(serial, reason, invalidity, signer)


def refusal_of(error: SpoolcaError) -> Finding:
    """A revocation the register refused (unknown serial, already revoked), as a finding."""
    text = str(error)
    code = "revoke.unknown_serial" if "no certificate" in text else "revoke.already_revoked"
    return Finding(code, text)


def process_revocations(processor: Processor) -> list[Outcome]:
    """Signed revocation requests in incoming/revoke/: revoke, answer, archive."""
    folder = processor.spool.incoming / "revoke"
    paths = sorted(p for p in folder.glob("*.json") if not p.name.startswith(".")) \
        if folder.is_dir() else []
    if not paths:
        return []
    processor.unlock()
    processor.require_audit_trail()
    outcomes = []
    for path in paths:
        claimed = processor.spool.claim(path, "revoke")
        if claimed is not None:
            outcomes.append(_answer(processor, claimed))
    if any(o.status == "revoked" for o in outcomes):
        processor.refresh_crls()
    processor.seal()
    return outcomes


def _answer(processor: Processor, claimed: Claimed) -> Outcome:
    config, store = processor.config, processor.store
    limit = config.max_request_bytes
    read = read_untrusted(claimed.path, limit)
    signature = read_untrusted(claimed.signature, limit).data if claimed.signature else None
    identity = request_sha256(read.data or b"")
    serial = None
    if read.data is None:
        parsed: RevocationRequest | list[Finding] = [
            Finding(read.problem or "file.unreadable", read.detail)]
    elif config.signers_keyring is None:
        parsed = [Finding("request.signer_unknown", "no [signers] keyring is configured")]
    else:
        parsed = parse_revocation(read.data, signature, processor.signers(), config.revokers,
                                  processor.clock)
    if isinstance(parsed, RevocationRequest):
        serial = parsed.serial
        try:
            revoke(store, parsed.serial, parsed.reason, parsed.invalidity, processor.clock(),
                   "revoke-request", requested_by=parsed.signer)
            parsed = []
        except SpoolcaError as exc:
            parsed = [refusal_of(exc)]
    status = "rejected" if parsed else "revoked"
    reasons = [f.as_dict() for f in parsed]
    with store.transaction("revoke-request", processor.clock()) as tx:
        name = processor.allocate_name(tx, claimed.file_name, identity)
        tx.add_submission(identity, claimed.file_name, name, "revoke", status, reasons, identity)
        if parsed:
            tx.record("revocation_request.rejected", {"file": claimed.file_name,
                                                      "codes": [f.code for f in parsed]})
        body = result_json(status=status, name=name, file=claimed.file_name,
                           request_sha256=identity, profile="revoke", decided_at=tx.now,
                           serial=serial, reasons=reasons or None)
    publish_folder(processor.spool.outgoing / name, {"result.json": body})
    sync_filesystem([processor.spool.outgoing])
    processor.spool.archive_claimed(claimed, name)
    return Outcome(name, claimed.file_name, identity, "revoke", status, serial, tuple(parsed),
                   {"result.json": body})
