"""`python -m jupyter_audit.cli …`: the same as `jupyter audit …`."""

import sys

from .main import main

sys.exit(main())
