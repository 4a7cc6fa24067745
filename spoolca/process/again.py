"""A request sent again, answered with its earlier answer: never decided a second time.

One path for revocation requests and SSH requests (CSRs have theirs in the batch, which
also renews): a new submission that says it is the earlier one again, an audit entry,
and the earlier answer's files rebuilt from the register under the new name."""

from __future__ import annotations

from spoolca.findings import Finding
from spoolca.process.session import CASession
from spoolca.register.store import SubmissionRecord, Tx
from spoolca.spool.recovery import recorded_files
from spoolca.spool.results import Outcome
from spoolca.spool.tree import Claimed

__all__ = ["republished"]


def republished(session: CASession, tx: Tx, claimed: Claimed, identity: str,
                earlier: SubmissionRecord, file_sha256: str) -> Outcome:
    """In TX: CLAIMED (identified by IDENTITY) answered with EARLIER's answer."""
    name = session.allocate_name(tx, claimed.file_name, identity)
    tx.add_submission(identity, claimed.file_name, name, earlier.profile, earlier.status,
                      earlier.findings, file_sha256, claim=claimed.claim,
                      serial=earlier.serial, again=True)
    tx.record("request.republished", {"name": name, "file": claimed.file_name,
                                      "request_sha256": identity,
                                      "status": str(earlier.status), "serial": earlier.serial})
    again = SubmissionRecord(name, identity, claimed.file_name, earlier.profile,
                             earlier.status, earlier.findings, earlier.decided_at,
                             earlier.serial)
    files, _links = recorded_files(session.store, session.chains, again)
    findings = tuple(Finding(r["code"], r["message"]) for r in earlier.findings)
    return Outcome(name, claimed.file_name, identity, earlier.profile, earlier.status,
                   earlier.serial, findings, files, republished=True)
