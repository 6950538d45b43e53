"""``python -m nb2pipe``: the same as the ``nb2pipe`` console script (used by the scheduler's launcher)."""

import sys

from .cli import main

sys.exit(main())
