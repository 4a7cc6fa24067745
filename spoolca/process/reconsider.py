"""`spoolca reconsider NAME|SHA256`: a rejected request decided again, on purpose.

A request's identity is its CSR's SHA-256, and one request gets one decision (an RSA
key makes the same CSR every time: sent again, it gets its answer again). When the
reason was the policy and the policy has changed since, the operator asks for a new
decision: the rejection is forgotten in the register (its answer and its audit entries
stay, and `request.reconsidered` records who asked and what was forgotten), and the
request goes back into incoming/ to be decided by the daemon or the next `process`.
Only a rejection: an issued request is renewed (`spoolca renew`), never decided twice.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from spoolca.config import Config
from spoolca.errors import SpoolcaError
from spoolca.host.fsutil import SHARED_DIR, atomic_write, ensure_dir, move, remove_file
from spoolca.notation.der import pem
from spoolca.register.store import Store
from spoolca.spool.tree import REVOKE

__all__ = ["reconsider"]


def reconsider(config: Config, store: Store, which: str, now: dt.datetime) -> Path:
    """Forget WHICH's rejection and queue its request again; where it was queued."""
    record = store.submission(which)
    request = store.request(record.request_sha256) if record else None
    if record is None or request is None:
        raise SpoolcaError(f"no request published as {which!r} (a name under outgoing/, or a "
                         "request's SHA-256)")
    if request.status != "rejected" or record.profile == REVOKE:
        raise SpoolcaError(f"{record.output_name} was {request.status}, not rejected: only a "
                         "rejected request is decided again (renew an issued one: spoolca "
                         "renew SERIAL)")
    der = store.request_der(request.sha256)
    if not der:
        raise SpoolcaError(f"{record.output_name} could not be read as a request: it cannot be "
                         "decided again; its requester sends it again, corrected")
    folder = ensure_dir(config.spool_dir / "incoming" / request.profile, SHARED_DIR)
    target = folder / f"{record.output_name}.csr"
    if target.exists():
        raise SpoolcaError(f"{target} is already waiting")
    staged = folder / f".{target.name}.part"
    atomic_write(staged, pem("CERTIFICATE REQUEST", der))
    try:
        with store.transaction("cli", now) as tx:
            tx.forget_rejection(request.sha256)
            tx.record("request.reconsidered", {
                "name": record.output_name, "request_sha256": request.sha256,
                "profile": request.profile, "decided_at": request.decided_at,
                "reasons": [f["code"] for f in request.findings]})
    except BaseException:
        remove_file(staged)
        raise
    move(staged, target)
    return target
