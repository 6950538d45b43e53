"""Pause Python's cyclic garbage collector around work that allocates many long-lived objects and no garbage.

Both an analysis (hundreds of thousands of syntax-tree nodes, alive until it ends) and importing a stage's
numerical libraries fit that description: the collector would walk those objects again and again and free
nothing (a fifth of a 1,000-cell analysis, a tenth of a pandas + scikit-learn import). Memory is still released as
usual by reference counting. Kept free of imports: the runner's workers use it before any stage code loads.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the collector for the block; the caller's setting is restored after (a caller that paused it keeps it)."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
