"""Revocation requests that arrive as files: incoming/revoke/NAME.json (+ NAME.json.asc).

The format, documented in the README:

    {"serial": "0A1B...", "reason": "keyCompromise", "invalidity_date": "2026-11-20",
     "request_id": "2026-11-23 lost laptop"}

`reason`, `invalidity_date` and `request_id` are optional. Every request must be signed
(detached, NAME.json.asc) by one of `[signers] revokers`; anything else is refused with
the reasons in outgoing/NAME/result.json, and nothing is revoked.

Revocation requests have the request lifecycle (invariant 10): claimed into work/ like
CSRs, identified by the SHA-256 of their canonical text (line endings and trailing
blanks aside: a text-mode signature verifies over LF and CRLF alike), answered exactly
once in the same transaction as the revocation itself, finished after a crash as
revocations. The same request again, in any line endings, is answered with the earlier
result and never applied again: a signed certificateHold brought back after the hold was
lifted does not hold the certificate a second time. A new request with the same content
must differ (a new `request_id`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence

from spoolca.authority.revocation import revoke_in
from spoolca.authority.sshca import publish_ssh_files, revoke_ssh_in
from spoolca.errors import NotFoundError, RevocationError, SpoolcaError
from spoolca.findings import Finding
from spoolca.host.untrusted import loads_bounded, read_untrusted
from spoolca.log import get_logger
from spoolca.process.again import republished
from spoolca.process.authorization import SignerCheck
from spoolca.process.batch import BATCH_FAULTS
from spoolca.process.session import CASession
from spoolca.register.store import Status, Tx
from spoolca.register.views import is_ssh_name, normalize_serial, parse_ssh_name
from spoolca.spool.outgoing import PublishJob
from spoolca.spool.results import Outcome, revocation_files
from spoolca.spool.tree import Claimed
from spoolca.x509.crl import REASONS
from spoolca.x509.csr import request_sha256

__all__ = ["RevocationRequest", "answer_revocations", "parse_revocation",
           "parse_revocation_body"]

_log = get_logger("spoolca.process.revocations")
_KEYS = {"serial", "reason", "invalidity_date", "request_id"}
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


def parse_revocation_body(data: bytes, now: Callable[[], dt.datetime]
                          ) -> tuple[str, str, dt.datetime | None] | list[Finding]:
    """(serial, reason, invalidity date) from the documented JSON, or every reason not.

    Bounded: at most MAX_BODY_BYTES and one level of nesting (the format is one flat
    object), checked before json.loads runs; pure, no I/O, never raises."""
    try:
        body = loads_bounded(data, max_bytes=MAX_BODY_BYTES, max_depth=1)
        if not isinstance(body, dict) or set(body) - _KEYS or "serial" not in body:
            raise ValueError("keys must be serial, and optionally reason, invalidity_date "
                             "and request_id")
        named = str(body["serial"])  # an SSH certificate as result.json names it, or hex
        serial = named if is_ssh_name(named) and parse_ssh_name(named) else \
            normalize_serial(named)
        reason = str(body.get("reason", "unspecified"))
        invalidity_text = body.get("invalidity_date")
        invalidity = None
        if invalidity_text:
            invalidity = dt.datetime.fromisoformat(str(invalidity_text).replace("Z", "+00:00"))
            invalidity = invalidity if invalidity.tzinfo else invalidity.replace(tzinfo=dt.UTC)
        request_id = body.get("request_id")
        if request_id is not None and (not isinstance(request_id, str) or len(request_id) > 200):
            raise ValueError("request_id must be a string of at most 200 characters")
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


def answer_revocations(session: CASession, claimed: Sequence[Claimed]) -> list[Outcome]:
    """Answer claimed revocation requests, each in one transaction; CRLs remade once."""
    if not claimed:
        return []
    session.require_audit_trail()
    outcomes = []
    for item in claimed:  # some 75 ms of gpg each: the watchdog hears of every one
        session.heartbeat()
        outcomes.append(_answer(session, item))
    revoked = [o for o in outcomes if o.status == Status.REVOKED and not o.republished]
    if any(not is_ssh_name(o.serial) for o in revoked):
        session.refresh_crls()
    if any(is_ssh_name(o.serial) for o in revoked):
        publish_ssh_files(session.store, session.outgoing, session.now("revocation"))
    session.seal()
    return outcomes


def canonical_text(data: bytes) -> bytes:
    """What an OpenPGP text-mode signature covers, whatever the line endings: a signed
    request with CRLF where it had LF is the same request (its signature verifies over
    both), so its identity is this text's hash, not its bytes'. Lines end in LF, trailing
    spaces and tabs go, and so do trailing empty lines."""
    lines = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
    return b"\n".join(line.rstrip(b" \t") for line in lines).rstrip(b"\n")


def _answer(session: CASession, claimed: Claimed) -> Outcome:
    read = read_untrusted(claimed.path, session.config.max_request_bytes)
    identity = request_sha256(canonical_text(read.data or b""))
    file_sha256 = request_sha256(read.data or b"")
    now = session.now("revocation")
    # One that stopped the service too often (process.passes) is answered so, never
    # verified or parsed again: invariant 9 holds for revocation requests too.
    quarantined = claimed.quarantined or file_sha256 in session.quarantined
    with session.store.transaction("revoke-request", now, signing="revocation") as tx:
        earlier = session.store.earlier_request_answer(identity, "revoke") or \
            session.store.earlier_answer(file_sha256, "revoke") \
            if read.data and not quarantined else None
        if quarantined:
            outcome = _recorded(session, tx, claimed, identity, None, None,
                                [Finding.quarantined(claimed.file_name)], file_sha256)
        elif earlier is not None:
            outcome = republished(session, tx, claimed, identity, earlier, file_sha256)
        else:
            try:
                with tx.savepoint():
                    serial, signer, refusals = _judge(session, tx, claimed, read.data,
                                                      read.problem, read.detail)
            except BATCH_FAULTS:
                raise
            except Exception as exc:  # invariant 9: one request's failure is its own answer
                _log.error("revocation request failed", file=claimed.file_name, exc_info=exc)
                serial, signer, refusals = None, None, [Finding.internal_error()]
            outcome = _recorded(session, tx, claimed, identity, serial, signer, refusals,
                                file_sha256)
    session.publish([PublishJob(outcome.output_name, outcome.files, {}, claimed.path,
                                claimed.file_name, claimed.signature)])
    _log.info("revocation request", file=claimed.file_name, outcome=str(outcome.status),
              serial=outcome.serial, republished=outcome.republished,
              codes=[f.code for f in outcome.findings])
    return outcome


def _judge(session: CASession, tx: Tx, claimed: Claimed, data: bytes | None,
           problem: str | None, detail: str) -> tuple[str | None, str | None, list[Finding]]:
    """(serial, signer, refusals) for one request; no refusals means it was revoked."""
    if data is None:
        return None, None, [Finding(problem or "file.unreadable", detail)]
    if claimed.name_problem is not None:
        return None, None, [Finding("file.name_invalid",
                                    f"{claimed.file_name}: {claimed.name_problem}")]
    if not claimed.file_name.lower().endswith(".json"):
        return None, None, [Finding("file.extension_unsupported", f"{claimed.file_name}: "
                                    "revoke/ holds revocation requests, named *.json")]
    if session.config.signers_keyring is None:
        return None, None, [Finding("request.signer_unknown",
                                    "no [signers] keyring is configured")]
    limit = session.config.max_request_bytes
    signature = read_untrusted(claimed.signature, limit).data if claimed.signature else None
    parsed = parse_revocation(data, signature, session.signers(), session.config.revokers,
                              lambda: tx_time(tx))
    if not isinstance(parsed, RevocationRequest):
        return None, None, parsed
    try:
        if is_ssh_name(parsed.serial):
            ca, which = parse_ssh_name(parsed.serial)
            revoke_ssh_in(tx, session.store, ca, which, parsed.signer, parsed.reason)
        else:
            revoke_in(tx, parsed.serial, parsed.reason, parsed.invalidity, parsed.signer)
    except NotFoundError as exc:
        return parsed.serial, parsed.signer, [Finding("revoke.unknown_serial", str(exc))]
    except RevocationError as exc:
        return parsed.serial, parsed.signer, [Finding("revoke.already_revoked", str(exc))]
    return parsed.serial, parsed.signer, []


def tx_time(tx: Tx) -> dt.datetime:
    return dt.datetime.fromisoformat(tx.now)


def _recorded(session: CASession, tx: Tx, claimed: Claimed, identity: str,
              serial: str | None, signer: str | None, refusals: list[Finding],
              file_sha256: str) -> Outcome:
    status = Status.REJECTED if refusals else Status.REVOKED
    reasons = [f.as_dict() for f in refusals]
    name = session.allocate_name(tx, claimed.file_name, identity)
    tx.add_submission(identity, claimed.file_name, name, "revoke", status, reasons,
                      file_sha256, signer, claim=claimed.claim, serial=serial)
    if refusals:
        tx.record("revocation_request.rejected", {"file": claimed.file_name, "name": name,
                                                  "codes": [f.code for f in refusals]})
    files = revocation_files(name=name, file_name=claimed.file_name, request_sha256=identity,
                             decided_at=tx.now, status=status, serial=serial, reasons=reasons)
    return Outcome(name, claimed.file_name, identity, "revoke", status, serial,
                   tuple(refusals), files)
