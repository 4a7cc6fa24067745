"""python -m spoolca.manual [DOCS_DIR]: write the generated references (default docs/)."""

from __future__ import annotations

import sys
from pathlib import Path

from spoolca.manual import write_all

if __name__ == "__main__":
    for path in write_all(Path(sys.argv[1] if len(sys.argv) > 1 else "docs")):
        print(path)
