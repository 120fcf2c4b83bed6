"""`python -m devtools.devstack run|env` (from api/, or with PYTHONPATH=api)."""

import sys

from devtools.devstack.cli import main

sys.exit(main())
