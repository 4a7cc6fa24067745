"""Every crash state of the recorded workload (tests/crash.py), not a sample.

    sudo .venv/bin/python bench/crash_campaign.py [STATES]   (default: all of them)

Records init, a pass, the daemon and a revocation on a recorded block device once, then
mounts and checks each crash state: every barrier, and every point between barriers with
and without the unflushed writes lost. Prints how many were checked and every problem.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.crash import campaign


def main() -> int:
    sample = int(sys.argv[1]) if len(sys.argv) > 1 else None
    started = time.perf_counter()
    checked, entries, problems = campaign(sample)
    print(f"{checked} crash states of {entries} log entries checked in "
          f"{time.perf_counter() - started:.0f} s: {len(problems)} problem(s)")
    for problem in problems:
        print(f"  {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
