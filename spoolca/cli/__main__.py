"""`python -m spoolca.cli`: what the installed `spoolca` runs."""

import sys

from spoolca.cli import main

sys.exit(main())
