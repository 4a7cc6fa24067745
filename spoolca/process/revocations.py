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

from spoolca.authority.revocation import revoke
from spoolca.errors import SpoolcaError
from spoolca.findings import Finding
from spoolca.fsutil import publish_folder, read_untrusted, sync_filesystem
from spoolca.log import get_logger
from spoolca.process.authorization import SignerCheck
from spoolca.register.views import normalize_serial
from spoolca.spool.results import Outcome, result_json
from spoolca.spool.tree import Claimed
from spoolca.x509.crl import REASONS
from spoolca.x509.csr import request_sha256

if TYPE_CHECKING:
    from spoolca.process.batch import Processor

__all__ = ["RevocationRequest", "json_depth", "parse_revocation", "parse_revocation_body",
           "process_revocations"]

_log = get_logger("spoolca.process.revocations")
_KEYS = {"serial", "reason", "invalidity_date"}
MAX_BODY_BYTES = 16 * 1024  # the documented format needs about 100 bytes


class RevocationRequest:
    """A parsed, signature-checked revocation request."""

    def __init__(self, serial: str, reason: str, invalidity: dt.datetime | None,
                 signer: str) -> None:
        self.serial, self.reason, self.invalidity, self.signer = serial, reason, invalidity, \
            signer


def parse_revocation(data: bytes, signature: bytes | None, signers: SignerCheck,
                     revokers: tuple[str, ...], now: Callable[[], dt.datetime]
                     ) -> RevocationRequest | list[Finding]:
    """The request, or every reason it is refused.

    The signature is checked first: bytes nobody authorized are never parsed."""
    signer, refusal = signers.check(data, signature, revokers)
    if refusal is not None or signer is None:
        return [refusal] if refusal else []
    body = parse_revocation_body(data, now)
    if isinstance(body, list):
        return body
    serial, reason, invalidity = body
    return RevocationRequest(serial, reason, invalidity, signer)


def json_depth(data: bytes) -> int:
    """The deepest nesting of arrays and objects in `data`, in one linear pass.

    json.loads recurses once per level: a 50,000-deep `[[[...` would raise
    RecursionError, so the depth is measured before anything is parsed."""
    depth = deepest = 0
    in_string = escaped = False
    for byte in data:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return deepest


def parse_revocation_body(data: bytes, now: Callable[[], dt.datetime]
                          ) -> tuple[str, str, dt.datetime | None] | list[Finding]:
    """(serial, reason, invalidity date) from the documented JSON, or every reason not.

    Bounded: at most MAX_BODY_BYTES and one level of nesting (the format is one flat
    object), checked before json.loads runs; pure, no I/O, never raises."""
    if len(data) > MAX_BODY_BYTES:
        return [Finding("revoke.unparseable", f"the request has {len(data)} bytes; a "
                        f"revocation request is at most {MAX_BODY_BYTES}")]
    if json_depth(data) > 1:
        return [Finding("revoke.unparseable", "not a revocation request: the JSON must be one "
                        "flat object")]
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
    except (ValueError, TypeError, OverflowError, SpoolcaError) as exc:
        detail = str(exc).split("\n")[0][:200]
        return [Finding("revoke.unparseable", f"not a revocation request: {detail}")]
    findings = []
    if reason not in REASONS or reason == "removeFromCRL":
        findings.append(Finding("revoke.reason_invalid", f"{reason[:80]!r} is not a reason a "
                                "request may give; use an RFC 5280 reason by its OpenSSL name"))
    if invalidity is not None and invalidity > now():
        findings.append(Finding("revoke.invalidity_in_future", "invalidity_date is in the "
                                "future"))
    return findings or (serial, reason, invalidity)


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


def _judge(processor: Processor, claimed: Claimed, data: bytes | None,
           read_problem: Finding | None) -> tuple[str | None, list[Finding]]:
    """(serial, refusals): revoke if the request holds; refusals empty means revoked."""
    config = processor.config
    if read_problem is not None:
        return None, [read_problem]
    if claimed.name_problem is not None:
        return None, [Finding("file.name_invalid", f"{claimed.file_name}: "
                              f"{claimed.name_problem}")]
    if config.signers_keyring is None:
        return None, [Finding("request.signer_unknown", "no [signers] keyring is configured")]
    limit = config.max_request_bytes
    signature = read_untrusted(claimed.signature, limit).data if claimed.signature else None
    parsed = parse_revocation(data or b"", signature, processor.signers(), config.revokers,
                              processor.clock)
    if not isinstance(parsed, RevocationRequest):
        return None, parsed
    try:
        revoke(processor.store, parsed.serial, parsed.reason, parsed.invalidity,
               processor.clock(), "revoke-request", requested_by=parsed.signer)
    except SpoolcaError as exc:
        return parsed.serial, [refusal_of(exc)]
    return parsed.serial, []


def _answer(processor: Processor, claimed: Claimed) -> Outcome:
    store = processor.store
    read = read_untrusted(claimed.path, processor.config.max_request_bytes)
    identity = request_sha256(read.data or b"")
    problem = Finding(read.problem or "file.unreadable", read.detail) if read.data is None \
        else None
    try:
        serial, parsed = _judge(processor, claimed, read.data, problem)
    except Exception as exc:  # invariant 9: one request's failure is its own answer
        _log.error("revocation request failed", file=claimed.file_name, exc_info=exc)
        serial, parsed = None, [Finding("request.internal_error", "spoolca failed on this "
                                        "request; the operator's log has the error")]
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
