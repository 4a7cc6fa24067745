"""`spoolca serve`: the long-running service that watches the spool.

watchdog (inotify) is a wake-up call, not the source of truth: the handler only
enqueues, one worker (this thread) does the work in order of arrival, and the spool is
rescanned at start and on a timer, because events are lost while the daemon is down,
watchdog drops inotify queue overflows silently (its issue #654), and mounting a stick
raises no event. A file is taken once it was closed or renamed in, or, found by a
scan (or reported as merely created, as a file moved in from outside is), once no
process has it open for writing (a read lease says so), or, where that cannot be told,
once its size and mtime have been still for SETTLE_SECONDS.
"""

from __future__ import annotations

import datetime as dt
import os
import queue
import signal
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from watchdog.events import (
    DirCreatedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer

from spoolca.authority.revocation import crl_status
from spoolca.config import Config, load_config
from spoolca.errors import ClockError, SpoolcaError
from spoolca.fsutil import being_written, instance_lock
from spoolca.log import get_logger
from spoolca.process.batch import BATCH_SIZE, Processor, utc_now
from spoolca.process.revocations import process_revocations
from spoolca.register.store import Store
from spoolca.service.notify import Notifier
from spoolca.spool.tree import REQUEST_SUFFIXES, Claimed

__all__ = ["Daemon", "hold_instance_lock"]

SETTLE_SECONDS = 2.0    # a file no event vouched for is taken after this long unchanged
RESCAN_SECONDS = 30.0   # the timer rescan, for events that never came
BATCH_WINDOW = 0.05     # after a first event, gather more for this long: one transaction
# The longest single wait: a signal's Python handler runs only when the wait returns (a
# C-level queue wait is not interrupted), so SIGTERM and SIGHUP act within this.
MAX_WAIT = 0.5
CRL_CHECK_SECONDS = 1.0    # how often the worker asks the register whether a CRL is due
CRL_RETRY_SECONDS = 60.0   # after a failure (clock, lint), not every turn
SEAL_SECONDS = 300.0       # a checkpoint at least this often while anything happened
MAX_BACKOFF = 60.0         # the longest wait between retries of a fault (disk full, ...)
_log = get_logger("spoolca.service.daemon")
_WAKE = ("wake", "")


def hold_instance_lock(config: Config) -> int:
    """One processor per state directory; the second one is told who holds it."""
    lock = config.path.parent / "spoolca.lock"
    try:
        return instance_lock(lock)
    except BlockingIOError:
        holder = lock.read_text().strip() if lock.exists() else "?"
        raise SpoolcaError(f"another spoolca (pid {holder}) is already processing "
                           f"{config.path.parent}; stop it first (lock {lock})") from None


class _Enqueue(FileSystemEventHandler):
    """The watchdog handler: it only enqueues; the worker decides (watchdog's own design)."""

    def __init__(self, events: queue.SimpleQueue[tuple[str, str]]) -> None:
        self._events = events

    def on_any_event(self, event: FileSystemEvent) -> None:
        if isinstance(event, FileClosedEvent):
            self._events.put(("complete", os.fsdecode(event.src_path)))
        elif isinstance(event, FileMovedEvent):
            self._events.put(("complete", os.fsdecode(event.dest_path)))
        elif isinstance(event, FileCreatedEvent):
            self._events.put(("seen", os.fsdecode(event.src_path)))
        elif isinstance(event, DirCreatedEvent | DirMovedEvent):
            path = os.fsdecode(getattr(event, "dest_path", "") or event.src_path)
            # A folder named like a request is a (bad) request; any other may hold some.
            kind = "seen" if path.lower().endswith(REQUEST_SUFFIXES) else "rescan"
            self._events.put((kind, path))


@dataclass(slots=True)
class _Sighting:
    """A file waiting in incoming/: whether an event vouched it complete, and its state."""

    profile: str
    complete: bool
    size: int = -1
    mtime_ns: int = -1


@dataclass(slots=True)
class _Counters:
    issued: int = 0
    rejected: int = 0
    republished: int = 0


class Daemon:
    """Watches, batches, processes; handles signals; tells systemd how it is doing."""

    def __init__(self, config_path: Path, *,
                 clock: Callable[[], dt.datetime] = utc_now) -> None:
        self._config_path = config_path
        self._clock = clock
        self._events: queue.SimpleQueue[tuple[str, str]] = queue.SimpleQueue()
        self._sightings: dict[Path, _Sighting] = {}
        self._counters = _Counters()
        self._notifier = Notifier()
        self._stop = False
        self._reload = False
        self._refusal = ""  # why issuing is refused now (clock guard), for STATUS=
        self._backlog = False  # the last turn took a full batch: more is ready, do not wait
        self._next_crl_check = 0.0
        self._next_seal = 0.0
        self._revocations_waiting = True  # look once at start
        # A fault of the machine (disk full, read-only spool, locked register): what it
        # is, for STATUS=, and when the recovery that retries it runs next.
        self._fault = ""
        self._fault_backoff = 0.0
        self._fault_retry_at = 0.0

    # -- signals ------------------------------------------------------------------------

    def _on_signal(self, number: int, _frame: FrameType | None) -> None:
        if number == signal.SIGHUP:
            self._reload = True
        else:
            self._stop = True
        self._events.put(_WAKE)  # SimpleQueue.put is safe in a signal handler

    # -- the service ----------------------------------------------------------------------

    def run(self) -> int:
        """Serve until SIGTERM or SIGINT; 0 on a clean stop."""
        for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(number, self._on_signal)
        signal.signal(signal.SIGIO, signal.SIG_IGN)  # lease breaks: see fsutil.being_written
        config = load_config(self._config_path)
        hold_instance_lock(config)
        store = Store(config.database)
        self._processor = Processor(config, store, clock=self._clock, actor="serve")
        observer = Observer()
        try:
            self._start(config, store, observer)
            while not self._stop:
                self._tick()
        finally:
            self._notifier.stopping()
            observer.stop()
            # A fault now must not turn a clean stop into a failure: each step is logged,
            # and what did not happen is done by the next start's recovery.
            self._stop_step(self._processor.close)
            self._stop_step(lambda: self._record(store, "service.stopped", {"pid": os.getpid()}))
            self._stop_step(self._processor.seal)
            store.close()
            if observer.is_alive():
                observer.join(timeout=10)
        _log.info("stopped", **self._counter_fields())
        return 0

    def _stop_step(self, step: Callable[[], object]) -> None:
        try:
            step()
        except Exception as exc:
            self._log_failure(exc)
            _log.error("not done at stop; the next start recovers it", reason=str(exc))

    def _start(self, config: Config, store: Store, observer: Observer) -> None:
        self._config = config
        self._processor.unlock()
        self._refresh_crls()
        self._attempt("recording the start", lambda: self._record(
            store, "service.started", {"pid": os.getpid(), "config_sha256": config.sha256}))
        self._attempt("recovery", self._recover)
        observer.schedule(_Enqueue(self._events), str(self._processor.spool.incoming),
                          recursive=True, event_filter=[
                              FileClosedEvent, FileMovedEvent, FileCreatedEvent,
                              DirCreatedEvent, DirMovedEvent])
        observer.start()
        self._rescan()
        self._next_rescan = time.monotonic() + RESCAN_SECONDS
        self._notifier.ready(self._status())
        _log.info("ready", incoming=str(self._processor.spool.incoming),
                  queued=len(self._sightings))

    def _record(self, store: Store, event: str, data: dict[str, object]) -> None:
        with store.transaction("serve", self._clock()) as tx:
            tx.record(event, data)

    def _tick(self) -> None:
        """One turn of the worker: wait for work or a timer, then do what is ready."""
        self._gather(self._timeout())
        self._notifier.watchdog()
        if self._reload:
            self._reload = False
            self._reload_config()
        if self._fault and time.monotonic() >= self._fault_retry_at:
            self._attempt("recovery", self._recover)
        if time.monotonic() >= self._next_rescan:
            if not self._fault:
                self._attempt("recovery", self._process_pending_work)
            self._rescan()
            self._revocations_waiting = True
            self._next_rescan = time.monotonic() + RESCAN_SECONDS
        if self._revocations_waiting:
            self._revocations_waiting = False
            self._take_revocations()
        ready = self._ready() if not self._fault else []  # new work waits in incoming/
        self._backlog = len(ready) >= BATCH_SIZE
        if ready:
            self._attempt("a batch", lambda: self._process(ready))
        if time.monotonic() >= self._next_crl_check:
            self._refresh_crls()
        if time.monotonic() >= self._next_seal:
            self._seal()
        self._notifier.status(self._status())

    def _seal(self) -> None:
        """Checkpoint what happened beside batches (a revocation from the command line)."""
        self._next_seal = time.monotonic() + SEAL_SECONDS
        try:
            self._processor.seal()
            if self._refusal.startswith("failed to sign"):
                self._refusal = ""
        except Exception as exc:
            self._log_failure(exc)
            self._refusal = str(exc)
            self._next_seal = time.monotonic() + CRL_RETRY_SECONDS
            _log.error("audit checkpoint not signed; issuing stops until it is", reason=str(exc))

    def _take_revocations(self) -> None:
        try:
            for outcome in process_revocations(self._processor):
                _log.info("revocation request", file=outcome.file_name, outcome=outcome.status,
                          serial=outcome.serial, codes=[f.code for f in outcome.findings])
        except Exception as exc:
            self._log_failure(exc)
            _log.error("revocation requests not taken; retrying", reason=str(exc))

    def _refresh_crls(self) -> None:
        """Remake any CRL that is due (a revocation, or nextUpdate - refresh has come)."""
        self._next_crl_check = time.monotonic() + CRL_CHECK_SECONDS
        try:
            self._processor.refresh_crls()
        except Exception as exc:
            self._log_failure(exc)
            self._next_crl_check = time.monotonic() + CRL_RETRY_SECONDS
            _log.error("CRL not remade; retrying", reason=str(exc), retry_in=CRL_RETRY_SECONDS)

    def _timeout(self) -> float:
        if self._backlog and not self._refusal:
            return 0.0
        waits = [MAX_WAIT, max(0.0, self._next_rescan - time.monotonic())]
        if self._sightings:
            waits.append(0.25 if not self._refusal else 5.0)
        if self._notifier.watchdog_interval:
            waits.append(self._notifier.watchdog_interval)
        return min(waits)

    # -- noticing files --------------------------------------------------------------------

    def _gather(self, timeout: float) -> None:
        """Block for the first event (or the timeout), then take what follows it shortly."""
        try:
            first = self._events.get(timeout=timeout) if timeout > 0 \
                else self._events.get_nowait()
        except queue.Empty:
            return
        self._note(*first)
        deadline = time.monotonic() + BATCH_WINDOW
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                self._note(*self._events.get(timeout=remaining))
            except queue.Empty:
                break

    def _note(self, kind: str, raw: str) -> None:
        if kind == "wake":
            return
        if kind == "rescan":
            self._rescan()
            return
        path = Path(raw)
        if path.parent.name == "revoke" and path.parent.parent == self._processor.spool.incoming:
            self._revocations_waiting = True  # taken on this turn, signature and all
            return
        profile = self._processor.spool.profile_of(path, self._config.default_profile)
        if profile is None:
            return
        sighting = self._sightings.get(path)
        if sighting is None:
            self._sightings[path] = _Sighting(profile, complete=kind == "complete")
        elif kind == "complete":
            sighting.complete = True

    def _rescan(self) -> None:
        for path, profile in self._processor.spool.candidates(self._config.default_profile):
            self._sightings.setdefault(path, _Sighting(profile, complete=False))

    def _ready(self) -> list[tuple[Path, str]]:
        """Sightings safe to take, in order of arrival, at most a batch."""
        ready = []
        now = time.time_ns()
        for path, sighting in list(self._sightings.items()):
            try:
                info = path.lstat()
            except FileNotFoundError:
                del self._sightings[path]
                continue
            if sighting.complete or self._finished(path, info, sighting, now):
                ready.append((path, sighting.profile))
                if len(ready) >= BATCH_SIZE:
                    break
        return ready

    @staticmethod
    def _finished(path: Path, info: os.stat_result, sighting: _Sighting, now: int) -> bool:
        """No event vouched for it: closed by every writer, or else settled unchanged."""
        writing = being_written(path) if stat.S_ISREG(info.st_mode) else None
        if writing is not None:
            return not writing
        still = (info.st_size, info.st_mtime_ns) == (sighting.size, sighting.mtime_ns)
        sighting.size, sighting.mtime_ns = info.st_size, info.st_mtime_ns
        return still and now - info.st_mtime_ns >= SETTLE_SECONDS * 1e9

    # -- processing --------------------------------------------------------------------------

    def _process(self, ready: list[tuple[Path, str]]) -> None:
        try:
            self._processor.check_clock(self._clock())
        except ClockError as exc:
            if str(exc) != self._refusal:
                _log.error("refusing to issue", reason=str(exc))
            self._refusal = str(exc)
            return  # the requests stay in incoming/, retried on the next turn
        self._refusal = ""
        claimed: list[Claimed] = []
        for path, profile in ready:
            del self._sightings[path]
            item = self._processor.spool.claim(path, profile)
            if item is not None:
                claimed.append(item)
        self._run_batch(claimed)

    def _recover(self) -> None:
        """Results the register holds are published; work/ left by a crash is finished."""
        self._processor.recover()
        self._process_pending_work()

    def _process_pending_work(self) -> None:
        """Anything a crash or a fault left claimed in work/ is finished before new work."""
        pending = self._processor.spool.pending_work()
        for start in range(0, len(pending), BATCH_SIZE):
            self._run_batch(pending[start:start + BATCH_SIZE])

    # -- faults ------------------------------------------------------------------------------

    def _attempt(self, what: str, step: Callable[[], object]) -> bool:
        """Run a step that touches the spool or the register; a fault never stops the
        service (invariant 9): it is logged, shown in STATUS=, and retried with backoff."""
        try:
            step()
        except Exception as exc:
            self._log_failure(exc)
            self._fault_backoff = min(max(2 * self._fault_backoff, 1.0), MAX_BACKOFF)
            self._fault_retry_at = time.monotonic() + self._fault_backoff
            self._fault = f"{what} failed: {exc}"
            _log.error("fault; retrying", what=what, reason=str(exc),
                       retry_in=self._fault_backoff)
            return False
        if self._fault and what == "recovery":
            _log.info("fault cleared", was=self._fault)
            self._fault, self._fault_backoff = "", 0.0
        return True

    @staticmethod
    def _log_failure(exc: Exception) -> None:
        """An unexpected exception (a bug) goes to the journal with its traceback."""
        if not isinstance(exc, SpoolcaError):
            _log.error("unexpected error", error=type(exc).__name__, exc_info=exc)

    def _run_batch(self, claimed: list[Claimed]) -> None:
        """One batch; a fault propagates to `_attempt`, the claimed files wait in work/."""
        if not claimed:
            return
        try:
            outcomes = self._processor.process_batch(claimed)
        except ClockError as exc:
            self._refusal = str(exc)
            _log.error("refusing to issue", reason=str(exc))
            return  # claimed files wait in work/; finished on the next start or batch
        for outcome in outcomes:
            if outcome.republished:
                self._counters.republished += 1
            elif outcome.status == "issued":
                self._counters.issued += 1
            else:
                self._counters.rejected += 1

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
            store = self._processor.store
            processor = Processor(config, store, clock=self._clock, actor="serve")
            processor.unlock()
        except SpoolcaError as exc:
            _log.error("configuration reload refused; the previous configuration stays in "
                       "force", reason=str(exc))
        else:
            self._processor.close()
            self._processor, self._config = processor, config
            _log.info("configuration reloaded", sha256=config.sha256)
        self._notifier.ready(self._status())

    # -- status -------------------------------------------------------------------------------

    def _counter_fields(self) -> dict[str, int]:
        return {"issued": self._counters.issued, "rejected": self._counters.rejected,
                "republished": self._counters.republished, "queued": len(self._sightings)}

    def _status(self) -> str:
        c = self._counters
        crls = crl_status(self._config, self._processor.store)
        crl_text = ", ".join(f"{s.authority} #{s.number} until {s.next_update}" for s in crls)
        text = (f"{c.issued} issued, {c.rejected} rejected, {c.republished} re-published, "
                f"{len(self._sightings)} queued; CRLs: {crl_text or 'none yet'}")
        if self._fault:
            wait = max(0, round(self._fault_retry_at - time.monotonic()))
            text = f"FAULT: {self._fault} (retrying in {wait} s) | {text}"
        return f"REFUSING TO ISSUE: {self._refusal} | {text}" if self._refusal else text
