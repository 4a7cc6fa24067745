"""SSH certificate requests from the spool: incoming/PROFILE/NAME.pub, with an optional
request file NAME.json beside it (spoolca.ssh.request) and, where the profile requires
it, a detached signature NAME.pub.asc by an authorized signer.

They have the request lifecycle of CSRs and revocation requests (invariant 10): claimed
into work/, identified by what they ask (the key and the request, not the comment),
answered exactly once in the same transaction as the certificate is recorded, finished
after a crash from the register (spool.recovery). The same request again is answered
with the earlier certificate, never signed twice.

Where the profile requires a signature, NAME.pub.asc is a detached signature over the
key file's bytes followed by the request file's (`cat NAME.pub NAME.json | gpg
--detach-sign --armor > NAME.pub.asc`): what is asked for is signed with the key, so
nobody can change the principals of a signed request on the way.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import secrets
from collections.abc import Sequence

from cryptography.hazmat.primitives.serialization import SSHCertificate

from spoolca.config.sshsettings import SSHProfile
from spoolca.findings import Finding
from spoolca.host.untrusted import read_untrusted
from spoolca.log import get_logger
from spoolca.process.again import republished
from spoolca.process.batch import BATCH_FAULTS
from spoolca.process.session import CASession
from spoolca.register.store import Status, Tx, format_time, parse_time
from spoolca.register.views import ssh_name
from spoolca.spool.outgoing import PublishJob
from spoolca.spool.results import Outcome, rejected_files, ssh_files
from spoolca.spool.tree import Claimed
from spoolca.ssh.certificate import sign_ssh_certificate
from spoolca.ssh.policy import SSHDecision, judge
from spoolca.ssh.request import MAX_KEY_BYTES, MAX_REQUEST_BYTES, SSHRequest, parse_ssh_request
from spoolca.x509.csr import request_sha256

__all__ = ["answer_ssh_requests"]

_log = get_logger("spoolca.process.sshrequests")


def answer_ssh_requests(session: CASession, claimed: Sequence[Claimed]) -> list[Outcome]:
    """Answer claimed SSH requests, each in one transaction."""
    if not claimed:
        return []
    session.now("SSH certificate")  # the clock first: no key is unlocked under a wrong one
    for ca in sorted({session.config.ssh_profiles[c.profile].cert_type for c in claimed}):
        session.ssh_key(ca)  # only the CAs this round needs, before any transaction
    session.require_audit_trail()
    outcomes, jobs = [], []
    for item in claimed:
        outcome = _answer(session, item)
        outcomes.append(outcome)
        jobs.append(PublishJob(outcome.output_name, outcome.files, {}, item.path,
                               item.file_name, item.signature, item.request_file))
    # Published together (two syncs for the round, not per answer): each is committed
    # already, so a crash before this is repaired from the register (spool.recovery).
    session.publish(jobs)
    session.seal()
    return outcomes


def _answer(session: CASession, claimed: Claimed) -> Outcome:
    session.heartbeat()
    profile = session.config.ssh_profiles[claimed.profile]
    read = read_untrusted(claimed.path, MAX_KEY_BYTES)
    asked = read_untrusted(claimed.request_file, MAX_REQUEST_BYTES).data \
        if claimed.request_file else None
    parsed = parse_ssh_request(read.data, asked) if read.data is not None else \
        [Finding(read.problem or "file.unreadable", read.detail)]
    file_sha256 = request_sha256(read.data or b"")  # the key file's: the stick it came from
    identity = parsed.identity if isinstance(parsed, SSHRequest) else file_sha256
    if file_sha256 in session.quarantined:  # it stopped the service too often (invariant 9)
        claimed = dataclasses.replace(claimed, quarantined=True)
    now = session.now("SSH certificate")
    with session.store.transaction(session.actor, now, signing="SSH certificate") as tx:
        earlier = session.store.earlier_request_answer(identity, profile.name) \
            if isinstance(parsed, SSHRequest) and not claimed.quarantined else None
        if earlier is not None:
            outcome = republished(session, tx, claimed, identity, earlier, file_sha256)
        else:
            try:
                with tx.savepoint():
                    outcome = _decided(session, tx, claimed, profile, parsed, identity,
                                       file_sha256, read.data, asked)
            except BATCH_FAULTS:
                raise
            except Exception as exc:  # invariant 9: one request's failure is its own answer
                _log.error("SSH request failed", file=claimed.file_name, exc_info=exc)
                outcome = _refused(session, tx, claimed, profile, identity, file_sha256,
                                   [Finding.internal_error()])
    _log.info("SSH request", file=claimed.file_name, outcome=str(outcome.status),
              serial=outcome.serial, codes=[f.code for f in outcome.findings])
    return outcome


def _decided(session: CASession, tx: Tx, claimed: Claimed, profile: SSHProfile,
             parsed: SSHRequest | list[Finding], identity: str, file_sha256: str,
             data: bytes | None, asked: bytes | None) -> Outcome:
    if claimed.quarantined:
        return _refused(session, tx, claimed, profile, identity, file_sha256,
                        [Finding.quarantined(claimed.file_name)])
    if isinstance(parsed, list):
        return _refused(session, tx, claimed, profile, identity, file_sha256, parsed)
    refusals: list[Finding] = []
    signer = None
    if profile.require_signature:  # over the key and what it asks for, both
        signature = read_untrusted(claimed.signature, MAX_KEY_BYTES).data \
            if claimed.signature else None
        signer, refusal = session.signers().check((data or b"") + (asked or b""), signature,
                                                  profile.authorized_signers)
        refusals += [refusal] if refusal else []
    decision = judge(profile, parsed)
    if isinstance(decision, list):
        refusals += decision
    if refusals or isinstance(decision, list):
        return _refused(session, tx, claimed, profile, identity, file_sha256, refusals)
    ca = profile.cert_type
    serial = _new_serial(tx, ca)
    certificate = sign_ssh_certificate(parsed, decision, ca, session.ssh_key(ca), serial,
                                       session.backdated(parse_time(tx.now)))
    return _issued(session, tx, claimed, profile, identity, file_sha256, signer, serial,
                   decision, certificate)


def _new_serial(tx: Tx, ca: str) -> int:
    """A random serial in 1..2^63-1 (the register stores it as a SQLite integer), unique
    per CA."""
    while True:
        serial = secrets.randbelow(2**63 - 1) + 1
        if not tx.ssh_serial_taken(ca, serial):
            return serial


def _issued(session: CASession, tx: Tx, claimed: Claimed, profile: SSHProfile,
            identity: str, file_sha256: str, signer: str | None, serial: int,
            decision: SSHDecision, certificate: SSHCertificate) -> Outcome:
    line = certificate.public_bytes()
    valid_after = format_time(_utc(certificate.valid_after))
    valid_before = format_time(_utc(certificate.valid_before))
    tx.add_ssh_certificate(profile.cert_type, serial, decision.key_id,
                           json.dumps(list(decision.principals)), profile.name, identity,
                           valid_after, valid_before, line.decode())
    name = session.allocate_name(tx, claimed.file_name, identity)
    serial_text = ssh_name(profile.cert_type, serial)
    tx.add_submission(identity, claimed.file_name, name, profile.name, Status.ISSUED, [],
                      file_sha256, signer, claim=claimed.claim, serial=serial_text)
    tx.record("ssh.issued", {"ca": profile.cert_type, "serial": serial,
                             "key_id": decision.key_id, "principals": list(decision.principals),
                             "valid_before": valid_before, "profile": profile.name,
                             "request_sha256": identity, "signer": signer})
    files = ssh_files(name=name, file_name=claimed.file_name, request_sha256=identity,
                      profile=profile.name, decided_at=tx.now, ca=profile.cert_type,
                      serial=serial, key_id=decision.key_id,
                      principals=list(decision.principals), valid_after=valid_after,
                      valid_before=valid_before, certificate=line)
    return Outcome(name, claimed.file_name, identity, profile.name, Status.ISSUED,
                   serial_text, (), files)


def _refused(session: CASession, tx: Tx, claimed: Claimed, profile: SSHProfile,
             identity: str, file_sha256: str, refusals: list[Finding]) -> Outcome:
    name = session.allocate_name(tx, claimed.file_name, identity)
    reasons = [f.as_dict() for f in refusals]
    tx.add_submission(identity, claimed.file_name, name, profile.name, Status.REJECTED,
                      reasons, file_sha256, claim=claimed.claim)
    tx.record("request.rejected", {"file": claimed.file_name, "name": name,
                                   "profile": profile.name, "request_sha256": identity,
                                   "codes": [f.code for f in refusals]})
    files = rejected_files(name=name, file_name=claimed.file_name, request_sha256=identity,
                           profile=profile.name, decided_at=tx.now, reasons=reasons)
    return Outcome(name, claimed.file_name, identity, profile.name, Status.REJECTED, None,
                   tuple(refusals), files)


def _utc(stamp: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(stamp, dt.UTC)
