"""`spoolca renew SERIAL`: the stored request signed again under today's rules.

The operator's deliberate act, so it is allowed at any time (not only in the renewal
window); the old certificate is recorded as superseded (and revoked if the profile says
so). The new one is published where the request's result was, through the session.
"""

from __future__ import annotations

from spoolca.errors import NotFoundError, SpoolcaError
from spoolca.process.batch import BatchProcessor, BatchState
from spoolca.process.items import Plan, Prepared
from spoolca.spool.outgoing import PublishJob
from spoolca.spool.results import Outcome
from spoolca.x509.csr import load_request

__all__ = ["renew"]


def renew(batch: BatchProcessor, serial: str) -> Outcome:
    session = batch.session
    record = session.store.certificate(serial)
    if record is None:
        raise NotFoundError(f"no certificate with serial {serial} in the register",
                            serial=serial)
    if record.revoked_at or record.superseded_by:
        state = f"revoked ({record.revocation_reason})" if record.revoked_at \
            else f"already renewed by {record.superseded_by}"
        raise SpoolcaError(f"certificate {serial} is {state}: nothing to renew")
    der = session.store.request_der(record.request_sha256)
    profile = session.config.profiles.get(record.profile)
    if der is None or profile is None:
        raise SpoolcaError(f"certificate {serial} cannot be renewed: its request or its "
                           f"profile {record.profile!r} is no longer known")
    cleared = session.preflight("issuance", [profile.issuer], current=True)
    now, ca = cleared.now, cleared.authorities[profile.issuer]
    batch.linter()
    submitted = session.store.submissions_for(record.request_sha256)
    # An imported certificate's request came with the old CA, not as a submission.
    file_name = submitted[-1][1] if submitted else f"renewed-{serial}.csr"
    item = Prepared(None, record.request_sha256, load_request(der), None, False,
                    renewal_name=file_name)
    with session.store.transaction(session.actor, now, signing="renewal") as tx:
        planned = batch.plan_issue(tx, item, profile, ca, BatchState.of(batch.session), now,
                                   supersedes=serial, renews_request=True)
        if not isinstance(planned, Plan):
            codes = ", ".join(f"{f.code} ({f.message})" for f in planned.findings)
            raise SpoolcaError(f"certificate {serial} was not renewed: {codes}")
        signed = batch.sign(planned, now)
        if isinstance(signed, Exception):
            raise signed
        outcome = batch.record_signed(tx, planned, signed)
    if outcome.status == "issued":
        session.publish([PublishJob(outcome.output_name, outcome.files, outcome.links, None,
                                    outcome.file_name)])
        session.flush()
    session.seal()
    return outcome
