"""Deep equality for values that cross stage boundaries: NumPy, pandas, estimators, objects without ``==``."""

from __future__ import annotations

import pickle
from typing import Any


def assert_same(a: Any, b: Any, where: str) -> None:
    import numpy as np
    import pandas as pd

    if isinstance(a, pd.DataFrame | pd.Series | pd.Index):
        assert type(a) is type(b), where
        assert a.equals(b), where
    elif isinstance(a, np.ndarray) and a.dtype == object:
        assert isinstance(b, np.ndarray) and b.dtype == object and a.shape == b.shape, where
        for i, (x, y) in enumerate(zip(a.flat, b.flat, strict=True)):
            assert_same(x, y, f"{where}.flat[{i}]")
    elif isinstance(a, np.ndarray):
        assert isinstance(b, np.ndarray) and a.dtype == b.dtype, where
        assert np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"), where
    elif isinstance(a, np.random.RandomState):
        assert isinstance(b, np.random.RandomState), where
        assert_same(a.get_state()[1], b.get_state()[1], f"{where}.state")
    elif hasattr(a, "get_params") and hasattr(a, "fit"):
        assert type(a) is type(b), where
        assert_same(a.get_params(), b.get_params(), f"{where}.params")
        fitted = sorted(k for k in vars(a) if k.endswith("_") and not k.startswith("_"))
        assert fitted == sorted(k for k in vars(b) if k.endswith("_") and not k.startswith("_")), where
        for key in fitted:
            assert_same(getattr(a, key), getattr(b, key), f"{where}.{key}")
    elif isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b), where
        for key in a:
            assert_same(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, list | tuple):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and a != a:
        assert isinstance(b, float) and b != b, where
    else:
        try:
            equal = a == b
        except Exception:  # objects without a usable ==: compare their pickles
            equal = pickle.dumps(a) == pickle.dumps(b)
        if not isinstance(equal, bool):
            equal = pickle.dumps(a) == pickle.dumps(b)
        if not equal and type(a) is type(b) and type(a).__eq__ is object.__eq__ and hasattr(a, "__getstate__"):
            # Identity-compared objects (sklearn's Tree): compare what they pickle.
            assert_same(a.__getstate__(), b.__getstate__(), f"{where}.__getstate__()")
            return
        assert equal, f"{where}: notebook {a!r} != pipeline {b!r}"
