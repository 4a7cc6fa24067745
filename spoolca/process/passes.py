"""One pass over the spool (`spoolca process`, the demo, a media job): recover, claim,
answer. The daemon does the same turn by turn; both dispatch claimed files here."""

from __future__ import annotations

import contextlib
import dataclasses
import gc
from collections import defaultdict
from collections.abc import Iterator, Sequence

from spoolca.host.progress import Progress
from spoolca.host.untrusted import read_untrusted
from spoolca.process.batch import BATCH_SIZE, BatchProcessor
from spoolca.process.items import PassSummary
from spoolca.process.revocations import answer_revocations
from spoolca.process.session import QUARANTINED
from spoolca.process.sshrequests import answer_ssh_requests
from spoolca.spool.results import Outcome
from spoolca.spool.tree import Claimed
from spoolca.x509.csr import request_sha256

__all__ = ["PassSummary", "answer", "answer_recovered", "batches", "run_pass"]

_SMALLEST = BATCH_SIZE // 16


def batches(items: Sequence[Claimed]) -> list[Sequence[Claimed]]:
    """BATCH_SIZE at a time, the last batch's worth split in halves up to three times.

    A batch is published behind, in the publisher process, while the next is decided; the
    last one's publication is waited for with nothing left to overlap it, so it is kept
    small (500 results take the publisher about 0.3 s here). Every batch costs a commit,
    two syncfs and a seal, so the taper stops at an eighth."""
    cuts, start = [], 0
    while len(items) - start > BATCH_SIZE:
        cuts.append(items[start:start + BATCH_SIZE])
        start += BATCH_SIZE
    size = len(items) - start
    for _ in range(3) if cuts else ():  # a lone small pass has nothing to overlap
        if size < 2 * _SMALLEST:
            break
        cuts.append(items[start:start + size // 2])
        start, size = start + size // 2, size - size // 2
    return [*cuts, items[start:]] if start < len(items) else cuts


def answer(batch: BatchProcessor, claimed: Sequence[Claimed], *, shown: bool = False,
           flush: bool = True) -> list[Outcome]:
    """CSRs in batches, revocation requests each on their own: every claimed file answered.
    SHOWN: a progress bar on a terminal (the command line, never the daemon). FLUSH: wait
    until the last answer is published; the daemon, with more waiting, lets that overlap
    its next batch (what is recorded and not yet published, recovery publishes)."""
    ssh = set(batch.session.config.ssh_profiles)
    requests = [c for c in claimed if not c.is_revocation and c.profile not in ssh]
    batch.session.expect_results(len(requests))
    outcomes = []
    chunks = batches(requests)
    # The first batch is read here while the helper starts; it reads the rest ahead.
    ahead = [item for chunk in chunks[1:] for item in chunk]
    with Progress(len(claimed), "answering", shown=shown) as bar, batch.reading_ahead(ahead):
        for chunk in chunks:
            done = batch.process_batch(chunk)
            # Handed to the publisher already: a run of 100,000 keeps each outcome's
            # counts and reasons, not every certificate's bytes until it ends.
            outcomes += [dataclasses.replace(o, files={}, links={}) for o in done]
            bar.advance(len(done))
        outcomes += answer_revocations(batch.session, [c for c in claimed if c.is_revocation])
        outcomes += answer_ssh_requests(batch.session, [c for c in claimed if c.profile in ssh])
    if flush:
        batch.session.flush()  # every answer published, synced and archived on return
    return outcomes


@contextlib.contextmanager
def fewer_collections() -> Iterator[None]:
    """Python's cyclic garbage collector walks the young objects every 700 allocations and
    the survivors again later: 250 runs and 59 ms in a pass of 2,000 requests, whose
    objects mostly die by reference count anyway. For the pass, what lives already
    (modules, the session) is frozen out of its walks and it runs every 10,000
    allocations; both are undone after (2,000 P-256 CSRs, 8 interleaved runs: median
    1.69 against 1.77 s). The daemon keeps the defaults: it runs for months."""
    threshold = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(10_000, *threshold[1:])
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()


def run_pass(batch: BatchProcessor, *, shown: bool = False) -> PassSummary:
    """Everything recovery leaves in work/ and everything waiting in incoming/."""
    with fewer_collections():
        return _run_pass(batch, shown=shown)


def _run_pass(batch: BatchProcessor, *, shown: bool) -> PassSummary:
    session = batch.session
    session.now("issuance", session.issuers())  # refuse before claiming anything
    pending = session.recover()
    default = session.config.default_profile
    waiting = session.spool.candidates(default)  # one scan: unlocked for, then claimed
    if pending or waiting:
        profiles = [*(c.profile for c in pending), *(profile for _path, profile in waiting)]
        # Fail closed before anything is claimed: a missing key or an unsigned audit
        # trail leaves the requests in incoming/.
        session.preflight("issuance", batch.issuers_for(profiles), current=True)
    summary = PassSummary()
    for outcome in answer_recovered(batch, pending, shown=shown):
        summary.add(outcome)
    claimed = session.spool.claim_incoming(default, waiting)
    for outcome in answer(batch, claimed, shown=shown):  # answer() flushes: all published on return
        summary.add(outcome)
    return summary

# -- what recovery left: counted, then one by one, then quarantined -----------------------
# A request that crashes the process (a parser's fault, memory, a watchdog kill) leaves its
# claim round in work/; recovery answers it at the next start, and would crash again, for
# ever (invariant 9: one submission can never stop the service). So recovery counts, in
# the register and before it tries: a round is tried whole once more; then each of its
# requests alone, each counted too; one that stopped the service twice alone is answered
# `request.quarantined` without being read again, its file archived for the operator, and
# the same bytes sent again get that answer too.

ROUND_TRIES = 1   # recovery tries a claim round whole this many times
ALONE_TRIES = 2   # and then each of its requests alone this many times
_TRIES = "tries:"


def answer_recovered(batch: BatchProcessor, pending: Sequence[Claimed], *,
                     shown: bool = False) -> list[Outcome]:
    """Answer what recovery left undecided in work/, counting tries as above."""
    if not pending:
        return []
    session = batch.session
    rounds: dict[str, list[Claimed]] = defaultdict(list)
    for item in pending:
        rounds[item.claim or ""].append(item)
    whole: list[Claimed] = []
    alone: list[Claimed] = []
    with session.store.transaction(session.actor, session.clock()) as tx:
        for claim, items in rounds.items():
            (whole if tx.bump(f"{_TRIES}{claim}") <= ROUND_TRIES else alone).extend(items)
    outcomes = answer(batch, whole, shown=shown) if whole else []
    for item in alone:
        outcomes += answer(batch, [_counted(batch, item)], shown=shown)
    with session.store.transaction(session.actor, session.clock()) as tx:
        for claim, items in rounds.items():  # answered: nothing left to count
            tx.delete_meta(f"{_TRIES}{claim}")
            for item in items:
                tx.delete_meta(_key(item))
    return outcomes


def _key(item: Claimed) -> str:
    return f"{_TRIES}{item.claim or ''}/{item.profile}/{item.file_name}"


def _counted(batch: BatchProcessor, item: Claimed) -> Claimed:
    """ITEM, counted one more try alone; quarantined once it has had its tries."""
    session = batch.session
    with session.store.transaction(session.actor, session.clock()) as tx:
        if tx.bump(_key(item)) <= ALONE_TRIES:
            return item
        data = read_untrusted(item.path, batch.config.max_request_bytes).data or b""
        tx.set_meta(f"{QUARANTINED}{request_sha256(data)}", item.file_name)
        tx.record("request.quarantined", {"file": item.file_name, "profile": item.profile,
                                          "file_sha256": request_sha256(data),
                                          "tries": ROUND_TRIES + ALONE_TRIES + 1})
    return dataclasses.replace(item, quarantined=True)
