"""A long fuzz campaign: the suite's hypothesis properties with a large budget.

    .venv/bin/python bench/fuzz_campaign.py [EXAMPLES_PER_PROPERTY]   (default 20000)

Prints how many inputs each property tried and any falsifying example. A crashing
input found here belongs in tests/vectors/ with the finding codes it must give.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    examples = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    env = {**os.environ, "SPOOLCA_FUZZ_EXAMPLES": str(examples)}
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist",
         "tests/test_fuzz.py", "-k", "not Golden and not SpoolNames",
         "--hypothesis-show-statistics"],
        cwd=ROOT, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    passing = [line.strip() for line in result.stdout.splitlines()
               if "passing examples" in line or line.startswith("tests/test_fuzz.py::")]
    print("\n".join(passing))
    print(result.stdout.splitlines()[-1] if result.stdout else result.stderr[-2000:])
    print(f"{examples} examples per property, {seconds:.0f} s")
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
