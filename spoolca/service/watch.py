"""Noticing files in incoming/: watchdog events, rescans, and when a file is complete.

watchdog (inotify) is a wake-up call, not the source of truth: the handler only
enqueues, the worker decides, and the spool is rescanned at start and on a timer,
because events are lost while the daemon is down, watchdog drops inotify queue overflows
silently (its issue #654), and mounting a stick raises no event. A file is taken once it
was closed or renamed in, or, found by a scan (or reported as merely created, as a file
moved in from outside is), once no process has it open for writing (a read lease says
so), or, where that cannot be told, once its size and mtime have been still for
SETTLE_SECONDS. Revocation requests (incoming/revoke/) are noticed the same way.
"""

from __future__ import annotations

import os
import queue
import stat
import time
from dataclasses import dataclass
from pathlib import Path

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

from spoolca.host.untrusted import being_written
from spoolca.log import get_logger
from spoolca.spool.tree import REQUEST_SUFFIXES, Spool

_log = get_logger("spoolca.service.watch")

__all__ = ["BATCH_WINDOW", "SETTLE_SECONDS", "Watch"]

SETTLE_SECONDS = 2.0    # a file no event vouched for is taken after this long unchanged
BATCH_WINDOW = 0.05     # after a first event, gather more for this long: one transaction
WAKE = ("wake", "")


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


class Watch:
    """The files waiting in incoming/, by path, in order of arrival."""

    def __init__(self, spool: Spool, default_profile: str) -> None:
        self.spool = spool
        self.default_profile = default_profile
        self.events: queue.SimpleQueue[tuple[str, str]] = queue.SimpleQueue()
        self._sightings: dict[Path, _Sighting] = {}
        self._observer = Observer()
        # Files the service may not move (a folder root made): why, until they can be.
        self.untakeable: dict[Path, str] = {}

    def __len__(self) -> int:
        return len(self._sightings)

    def start(self) -> None:
        self._observer.schedule(_Enqueue(self.events), str(self.spool.incoming),
                                recursive=True, event_filter=[
                                    FileClosedEvent, FileMovedEvent, FileCreatedEvent,
                                    DirCreatedEvent, DirMovedEvent])
        self._observer.start()
        self.rescan()

    def stop(self) -> None:
        self._observer.stop()
        if self._observer.is_alive():
            self._observer.join(timeout=10)

    def wake(self) -> None:
        """From a signal handler: SimpleQueue.put is safe there."""
        self.events.put(WAKE)

    def gather(self, timeout: float) -> None:
        """Block for the first event (or the timeout), then take what follows it shortly."""
        try:
            first = self.events.get(timeout=timeout) if timeout > 0 \
                else self.events.get_nowait()
        except queue.Empty:
            return
        self._note(*first)
        deadline = time.monotonic() + BATCH_WINDOW
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                self._note(*self.events.get(timeout=remaining))
            except queue.Empty:
                break

    def _note(self, kind: str, raw: str) -> None:
        if kind == "wake":
            return
        if kind == "rescan":
            self.rescan()
            return
        path = Path(raw)
        profile = self.spool.profile_of(path, self.default_profile)
        if profile is None or self.spool.is_companion(path, profile):
            return
        sighting = self._sightings.get(path)
        if sighting is None:
            self._sightings[path] = _Sighting(profile, complete=kind == "complete")
        elif kind == "complete":
            sighting.complete = True

    def rescan(self) -> None:
        for path, profile in self.spool.candidates(self.default_profile):
            self._sightings.setdefault(path, _Sighting(profile, complete=False))
        self.untakeable = {p: why for p, why in self.untakeable.items() if os.path.lexists(p)}

    def ready(self, limit: int) -> list[tuple[Path, str]]:
        """Sightings safe to take, in order of arrival, at most `limit`."""
        ready = []
        now = time.time_ns()
        for path, sighting in list(self._sightings.items()):
            try:
                info = path.lstat()
            except FileNotFoundError:
                del self._sightings[path]
                continue
            if sighting.complete or _finished(path, info, sighting, now):
                ready.append((path, sighting.profile))
                if len(ready) >= limit:
                    break
        return ready

    def taken(self, path: Path) -> None:
        self._sightings.pop(path, None)
        self.untakeable.pop(path, None)

    def cannot_take(self, path: Path, why: str) -> None:
        """Said once (logged), shown in STATUS= until it can be taken at a rescan; tried
        again at rescans only."""
        self._sightings.pop(path, None)
        if self.untakeable.get(path) != why:
            _log.warning("cannot take a file", reason=why)
        self.untakeable[path] = why


def _finished(path: Path, info: os.stat_result, sighting: _Sighting, now: int) -> bool:
    """No event vouched for it: closed by every writer, or else settled unchanged."""
    writing = being_written(path) if stat.S_ISREG(info.st_mode) else None
    if writing is not None:
        return not writing
    still = (info.st_size, info.st_mtime_ns) == (sighting.size, sighting.mtime_ns)
    sighting.size, sighting.mtime_ns = info.st_size, info.st_mtime_ns
    return still and now - info.st_mtime_ns >= SETTLE_SECONDS * 1e9
