"""A long campaign of the stateful model (tests/model.py): more sequences, longer ones.

    .venv/bin/python bench/model_campaign.py [SEQUENCES] [STEPS]   (default 200 x 50)

The suite runs 25 sequences of 30 steps (tests/test_model.py); this runs the same model
with a larger budget and prints the result, the time, and any falsifying sequence. A
sequence found here belongs in the suite as a regression test with its counter-case.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    sequences = sys.argv[1] if len(sys.argv) > 1 else "200"
    steps = sys.argv[2] if len(sys.argv) > 2 else "50"
    env = {**os.environ, "SPOOLCA_MODEL_SEQUENCES": sequences, "SPOOLCA_MODEL_STEPS": steps}
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
         "-p", "no:logging", "tests/test_model.py", "--hypothesis-show-statistics"],
        cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        print(result.stdout[-20000:])
    print(result.stdout.splitlines()[-1] if result.stdout else result.stderr[-2000:])
    print(f"{sequences} sequences of up to {steps} steps, {seconds:.0f} s")
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
