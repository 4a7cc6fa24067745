"""A wrong system clock for real subprocesses: tests/tools/wallclock.c, preloaded.

The offset is read from a file on every call, so a test moves the clock of a daemon that
is running, as an operator's `date -s` would. The monotonic and boot clocks stay real:
they are what really elapsed. gpg, run by spoolca, inherits the wrong time too, as it
would on the appliance.
"""

from __future__ import annotations

import atexit
import datetime as dt
import functools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

__all__ = ["FakeClock", "wallclock_library"]

SOURCE = Path(__file__).parent / "tools" / "wallclock.c"


@functools.cache
def wallclock_library() -> str:
    """The shim, compiled once per test process (cc is on every Debian test machine)."""
    folder = Path(tempfile.mkdtemp(prefix="spoolca-wallclock-"))
    atexit.register(shutil.rmtree, folder, True)
    library = folder / "wallclock.so"
    subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-o", str(library), str(SOURCE), "-ldl"],
                   check=True, capture_output=True, timeout=60)
    return str(library)


class FakeClock:
    """The wall clock of the processes started with `env`, offset from the real one."""

    def __init__(self, folder: Path) -> None:
        self.file = folder / "wallclock-offset"
        self.set(dt.timedelta(0))

    def set(self, offset: dt.timedelta) -> None:
        """Move the clock: OFFSET from the real time, for every process using it."""
        self.offset = dt.timedelta(seconds=int(offset.total_seconds()))
        temp = self.file.with_suffix(".tmp")
        temp.write_text(f"{int(self.offset.total_seconds())}\n")
        os.replace(temp, self.file)  # a reader never sees it half-written

    def now(self) -> dt.datetime:
        """What the processes read now."""
        return dt.datetime.now(dt.UTC) + self.offset

    @property
    def env(self) -> dict[str, str]:
        return {"LD_PRELOAD": wallclock_library(), "WALLCLOCK_OFFSET_FILE": str(self.file)}
