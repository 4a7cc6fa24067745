"""`spoolca serve`: the long-running service that watches the spool.

One worker (this thread) does everything in order: the watcher (service.watch) notices
files, the CA session owns keys, clock, recovery and publication, and each turn hands
what is ready to the same dispatch `spoolca process` uses (process.passes). A fault of the
machine (disk full, read-only spool, locked register) never stops the service: the
session's recovery is retried with backoff, new work waits in incoming/, and STATUS= says
why (invariant 9). Recovery runs at start and after a fault, never while a batch is being
published.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from spoolca.config import Config, load_config
from spoolca.errors import (
    ClockError,
    KeyStoreError,
    RegisterBehindError,
    SpoolcaError,
    UntakeableError,
)
from spoolca.host.fsutil import atomic_write, probe_directory
from spoolca.log import get_logger
from spoolca.process.batch import BATCH_SIZE, BatchProcessor
from spoolca.process.instance import hold_instance_lock
from spoolca.process.items import PassSummary
from spoolca.process.passes import answer, answer_recovered
from spoolca.process.session import CASession, utc_now
from spoolca.register.damage import damaged
from spoolca.register.returnwindow import return_window
from spoolca.register.store import Store
from spoolca.register.views import crl_status
from spoolca.service.notify import Notifier
from spoolca.service.refusals import Refusal, Refusals
from spoolca.service.statusline import status_line
from spoolca.service.watch import Watch
from spoolca.spool.results import Outcome
from spoolca.spool.tree import Claimed
from spoolca.stick.exportrequests import pending as pending_exports
from spoolca.stick.exportrequests import serve as serve_exports

__all__ = ["Daemon", "reload_answer_path"]

# The longest single wait: a signal's Python handler runs only when the wait returns (a
# C-level queue wait is not interrupted), so SIGTERM and SIGHUP act within this.
MAX_WAIT = 0.5
CRL_CHECK_SECONDS = 1.0    # how often the worker asks the register whether a CRL is due
CRL_RETRY_SECONDS = 60.0   # after a failure (clock, lint), not every turn
SEAL_SECONDS = 300.0       # a checkpoint at least this often while anything happened
MAX_BACKOFF = 60.0         # the longest wait between retries of a fault (disk full, ...)
KEY_RETRY_SECONDS = 10.0   # a CA key that did not open (token missing, wrong PIN) is retried
# What one turn takes from a backlog: four batches, so that the second core reads the
# next three ahead (process.reading) as `spoolca process` does; one batch a turn never
# started the helper and a burst of 10,000 ran at 0.70x `process`. A turn stays a few
# seconds (the watchdog hears of every request; reload and stop wait for the turn).
TURN_SIZE = 4 * BATCH_SIZE
_log = get_logger("spoolca.service.daemon")


def reload_answer_path(config_path: Path) -> Path:
    """Where the daemon answers a reload: beside its lock, in the state directory."""
    return config_path.resolve().parent / "spoolca.reload.json"


class Daemon:
    """Watches, batches, processes; handles signals; tells systemd how it is doing."""

    def __init__(self, config_path: Path, *,
                 clock: Callable[[], dt.datetime] = utc_now,
                 on_outcome: Callable[[Outcome], None] = lambda _outcome: None) -> None:
        self._config_path = config_path
        self._clock = clock
        self._on_outcome = on_outcome  # the demo prints a line per result
        self._counters = PassSummary()  # counted, never kept
        self._notifier = Notifier()
        self._stop = False
        self._reload = False
        self._refusals = Refusals()  # why signing is refused now, if it is
        self._next_unlock = 0.0
        self._backlog = False  # the last turn took a full batch: more is ready, do not wait
        self._next_crl_check = 0.0
        self._next_seal = 0.0
        # A fault of the machine: what it is, for STATUS=, and when recovery runs next.
        self._fault = ""
        self._fault_backoff = 0.0
        self._fault_retry_at = 0.0

    # -- signals ------------------------------------------------------------------------

    def _on_signal(self, number: int, _frame: FrameType | None) -> None:
        if number == signal.SIGHUP:
            self._reload = True
        else:
            self._stop = True
        self._watch.wake()

    # -- the service ----------------------------------------------------------------------

    def run(self) -> int:
        """Serve until SIGTERM or SIGINT; 0 on a clean stop."""
        config = load_config(self._config_path)
        hold_instance_lock(config)
        store = Store.of(config)
        self._open(config, store)
        for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(number, self._on_signal)
        signal.signal(signal.SIGIO, signal.SIG_IGN)  # lease breaks: see untrusted.being_written
        try:
            self._start(store)
            while not self._stop:
                self._tick()
        finally:
            self._notifier.stopping()
            self._watch.stop()
            # A fault now must not turn a clean stop into a failure: each step is logged,
            # and what did not happen is done by the next start's recovery.
            self._stop_step(self._session.flush)
            if Refusal.REGISTER not in self._refusals:  # nothing written to one behind
                self._stop_step(lambda: self._record(store, "service.stopped",
                                                     {"pid": os.getpid()}))
                self._stop_step(self._session.seal)
            self._stop_step(self._session.close)  # last: it forgets the passphrase, stops gpg
            store.close()
        _log.info("stopped", **self._counters.fields(queued=len(self._watch)))
        return 0

    def _open(self, config: Config, store: Store, session: CASession | None = None) -> None:
        self._config = config
        self._session = session or CASession(config, store, clock=self._clock, actor="serve")
        self._session.heartbeat = self._notifier.watchdog  # long work pings as it goes
        self._batch = BatchProcessor(self._session)
        self._watch = Watch(self._session.spool, config.default_profile)

    def _stop_step(self, step: Callable[[], object]) -> None:
        try:
            step()
        except Exception as exc:
            self._log_failure(exc)
            _log.error("not done at stop; the next start recovers it", reason=str(exc))

    def _start(self, store: Store) -> None:
        # A register behind what was published is not written to at all (invariant 14):
        # no key unlocked, no start recorded; STATUS= says so, and recovery looks again.
        if self._attempt("recovery", self._session.check_register):
            self._unlock()
            self._refresh_crls()
            self._attempt("recording the start", lambda: self._record(
                store, "service.started", {"pid": os.getpid(),
                                           "config_sha256": self._config.sha256}))
            # Ready before recovery: a long one (a restore, a crash in a big batch) must
            # not outlast the start timeout and be killed before it commits, for ever.
            self._notifier.ready(f"recovering what a stop left in work/ | {self._status()}")
            self._attempt("recovery", self._recover)
        self._watch.start()
        self._next_rescan = time.monotonic() + self._config.rescan_seconds
        self._notifier.ready(self._status())
        _log.info("ready", incoming=str(self._session.spool.incoming), queued=len(self._watch))

    def _record(self, store: Store, event: str, data: dict[str, object]) -> None:
        with store.transaction("serve", self._clock()) as tx:
            tx.record(event, data)

    def _tick(self) -> None:
        """One turn of the worker: wait for work or a timer, then do what is ready."""
        self._watch.gather(self._timeout())
        self._notifier.watchdog()
        if self._reload:
            self._reload = False
            self._reload_config()
        if self._fault and time.monotonic() >= self._fault_retry_at:
            self._attempt("recovery", self._recover)
        if time.monotonic() >= self._next_rescan:
            self._watch.rescan()  # incoming/ only: work/ is recovery's, at start or a fault
            self._next_rescan = time.monotonic() + self._config.rescan_seconds
        if Refusal.KEY in self._refusals and time.monotonic() >= self._next_unlock:
            self._unlock()
        ready = [] if self._fault or Refusal.KEY in self._refusals else \
            self._watch.ready(TURN_SIZE)
        self._backlog = len(ready) >= TURN_SIZE
        if ready:
            self._attempt("a batch", lambda: self._process(ready))
            if not self._backlog:  # idle now: what was committed goes into ca.db itself
                self._attempt("a batch", self._session.store.checkpoint_wal)
        elif not self._fault:  # a backlog's last batch was published behind: done by now?
            self._attempt("publishing", self._session.flush)
        if Refusal.REGISTER not in self._refusals:  # nothing signed or written until caught up
            if pending_exports(self._config):
                self._attempt("an export", self._export)
            if time.monotonic() >= self._next_crl_check:
                self._refresh_crls()
            if time.monotonic() >= self._next_seal:
                self._seal()
        self._notifier.status(self._status())

    def _seal(self) -> None:
        """Checkpoint what happened beside batches (a revocation from the command line)."""
        self._next_seal = time.monotonic() + SEAL_SECONDS
        try:
            self._session.seal()
            self._refusals.lift(Refusal.SEAL)
        except Exception as exc:
            self._log_failure(exc)
            self._refusals.hold(Refusal.SEAL, str(exc))
            self._next_seal = time.monotonic() + CRL_RETRY_SECONDS
            _log.error("audit checkpoint not signed; issuing stops until it is", reason=str(exc))

    def _export(self) -> None:
        """The media unit's exports: it holds no key, so the daemon composes and signs."""
        self._session.seal()  # the stick carries the latest signed head
        made = serve_exports(self._config, self._session.store, self._session.audit_key(),
                             self._clock(), self._notifier.watchdog)
        _log.info("exports composed", count=made)

    def _refresh_crls(self) -> None:
        """Remake any CRL that is due (a revocation, or nextUpdate - refresh has come)."""
        self._next_crl_check = time.monotonic() + CRL_CHECK_SECONDS
        try:
            self._session.refresh_crls()
        except ClockError as exc:
            self._refuse(exc)
            self._next_crl_check = time.monotonic() + CRL_RETRY_SECONDS
        except Exception as exc:
            self._log_failure(exc)
            self._next_crl_check = time.monotonic() + CRL_RETRY_SECONDS
            _log.error("CRL not remade; retrying", reason=str(exc), retry_in=CRL_RETRY_SECONDS)

    def _timeout(self) -> float:
        if self._backlog and not self._refusals:
            return 0.0
        waits = [MAX_WAIT, max(0.0, self._next_rescan - time.monotonic())]
        if len(self._watch):
            waits.append(5.0 if self._refusals else 0.25)
        if self._notifier.watchdog_interval:
            waits.append(self._notifier.watchdog_interval)
        return min(waits)

    # -- processing --------------------------------------------------------------------------

    def _unlock(self) -> None:
        """Every CA key the service signs with, opened before anything is taken. One that
        does not open (a wrong passphrase or PIN, a token missing or holding the wrong key)
        is a refusal: requests wait in incoming/, STATUS= says why, and it is retried."""
        self._next_unlock = time.monotonic() + KEY_RETRY_SECONDS
        try:
            self._session.unlock(sorted(self._session.issuers() | {"root", "intermediate"}))
        except KeyStoreError as exc:
            if self._refusals.hold(Refusal.KEY, str(exc)):
                _log.error("refusing to sign: a CA key does not open", reason=str(exc),
                           retry_in=KEY_RETRY_SECONDS)
            self._session.forget_keys()
            return
        if was := self._refusals.lift(Refusal.KEY):
            _log.info("the CA keys open again", was=was)

    def _refuse(self, exc: ClockError) -> None:
        if self._refusals.hold(Refusal.CLOCK, str(exc)):
            _log.error("refusing to sign", reason=str(exc), floor=exc.floor, now=exc.now)

    def _process(self, ready: list[tuple[Path, str]]) -> None:
        try:
            self._session.now("issuance", self._session.issuers())
        except ClockError as exc:
            self._refuse(exc)
            return  # the requests stay in incoming/, retried on the next turn
        self._refusals.lift(Refusal.CLOCK)
        claim = self._session.spool.new_claim()
        claimed: list[Claimed] = []
        for path, profile in ready:
            try:
                item = self._session.spool.claim(path, profile, claim)
            except UntakeableError as exc:  # said once and in STATUS=; tried at rescans
                self._watch.cannot_take(path, str(exc))
                continue
            self._watch.taken(path)  # after: taken() forgets what was said about it
            if item is not None:
                claimed.append(item)
        self._answer(claimed, flush=not self._backlog)

    def _recover(self) -> None:
        """Ask the session to recover, then answer what it left undecided in work/. After
        a fault, the register and the spool must take a write first: recovery that needs
        none would otherwise pass on a disk still full, and the fault would seem cleared."""
        if self._fault:
            self._session.store.probe_write(self._clock())
            probe_directory(self._session.spool.outgoing)
            probe_directory(self._session.spool.archive)
        pending = self._session.recover()
        try:
            outcomes = answer_recovered(self._batch, pending)
        except ClockError as exc:
            self._refuse(exc)
            raise  # claimed files wait in work/: recovery answers them once the clock is right
        for outcome in outcomes:
            self._counters.count(outcome)
            self._on_outcome(outcome)
            self._on_outcome(outcome)

    def _answer(self, claimed: list[Claimed], *, flush: bool = True) -> None:
        """Answer claimed files; a fault propagates to `_attempt`, the files wait in work/.
        FLUSH false (a backlog): this batch's publication overlaps the next one."""
        if not claimed:
            return
        try:
            outcomes = answer(self._batch, claimed, flush=flush)
        except ClockError as exc:
            self._refuse(exc)
            raise  # claimed files wait in work/: recovery answers them once the clock is right
        for outcome in outcomes:
            self._counters.count(outcome)
            self._on_outcome(outcome)

    # -- faults ------------------------------------------------------------------------------

    def _attempt(self, what: str, step: Callable[[], object]) -> bool:
        """Run a step that touches the spool or the register; a fault never stops the
        service (invariant 9): it is logged, shown in STATUS=, and retried with backoff."""
        try:
            step()
        except RegisterBehindError as exc:
            # Not a passing fault: the operator must catch the register up (the service
            # stopped). Said once, shown as the refusal it is; looked at again each minute.
            if self._refusals.hold(Refusal.REGISTER, str(exc)):
                _log.error("refusing to sign: the register is behind what was published",
                           reason=str(exc))
            self._fault, self._fault_backoff = "the register is behind", MAX_BACKOFF
            self._fault_retry_at = time.monotonic() + MAX_BACKOFF
            return False
        except Exception as exc:
            damage = damaged(exc, self._config.database)
            if damage is not None:  # a damaged disk: no retry can help; stop (exit 3)
                raise damage from None
            self._log_failure(exc)
            if isinstance(exc, KeyStoreError):  # a token pulled mid-batch: open it afresh
                self._session.forget_keys()
            self._fault_backoff = min(max(2 * self._fault_backoff, 1.0), MAX_BACKOFF)
            self._fault_retry_at = time.monotonic() + self._fault_backoff
            self._fault = f"{what} failed: {exc}"
            _log.error("fault; retrying", what=what, reason=str(exc),
                       retry_in=self._fault_backoff)
            return False
        if self._fault and what == "recovery":
            _log.info("fault cleared", was=self._fault)
            self._fault, self._fault_backoff = "", 0.0
            self._refusals.lift(Refusal.REGISTER)
        return True

    @staticmethod
    def _log_failure(exc: Exception) -> None:
        """An unexpected exception (a bug) goes to the journal with its traceback."""
        if not isinstance(exc, SpoolcaError):
            _log.error("unexpected error", error=type(exc).__name__, exc_info=exc)

    # -- reload ------------------------------------------------------------------------------

    def _reload_config(self) -> None:
        """SIGHUP: the new configuration, or, if it is invalid, the old one stays."""
        self._notifier.reloading()
        old = self._config
        try:
            config = load_config(self._config_path)
            fixed = ("database", "spool_dir", "keys_dir")
            changed = [name for name in fixed if getattr(config, name) != getattr(old, name)]
            if changed:
                raise SpoolcaError(f"{', '.join(changed)} cannot change on reload; restart "
                                   "the service to move the state directory")
            store = self._session.store
            session = CASession(config, store, clock=self._clock, actor="serve")
        except SpoolcaError as exc:
            self._reload_answer(False, str(exc))
            return
        try:
            session.unlock(sorted(session.issuers() | {"root", "intermediate"}))
        except SpoolcaError as exc:
            session.close()
            self._reload_answer(False, str(exc))
            return
        self._session.close()
        self._watch.stop()
        self._open(config, store, session)
        self._watch.start()
        self._reload_answer(True, f"configuration {config.sha256[:12]} in force")

    def _reload_answer(self, applied: bool, message: str) -> None:
        """Log, tell systemd, and answer `spoolca reload` (it waits for this file)."""
        if applied:
            _log.info("configuration reloaded", sha256=self._config.sha256)
        else:
            _log.error("configuration reload refused; the previous configuration stays in "
                       "force", reason=message)
        answer = {"generation": time.time_ns(), "applied": applied, "message": message}
        try:
            atomic_write(reload_answer_path(self._config_path), json.dumps(answer).encode(),
                         0o640)
        except OSError as exc:
            _log.error("reload answer not written", reason=exc.strerror or str(exc))
        self._notifier.ready(self._status())

    def _status(self) -> str:
        wait = max(0, round(self._fault_retry_at - time.monotonic()))
        now = self._clock()
        crls = crl_status(self._config, self._session.store, now)
        window = return_window(self._config, self._session.store, now)
        return status_line(self._counters, crls, window,
                           queued=len(self._watch), waiting=self._watch.untakeable,
                           fault="" if Refusal.REGISTER in self._refusals else self._fault,
                           retry_in=wait, refusal=self._refusals.shown())
