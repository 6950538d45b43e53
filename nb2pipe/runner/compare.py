"""Tolerant deep comparison of values that crossed a stage boundary (``nb2pipe verify``).

Floats, NumPy arrays and pandas objects compare with a relative tolerance (a BLAS reduction may sum in another
order); containers compare element by element; objects without a meaningful ``==`` (fitted estimators, trees)
compare by their pickled state. The answer is ``None`` when equal, else a short path to the first difference
(``[3]['coef_']: 0.25 != 0.5``).
"""

from __future__ import annotations

import math
import pickle
import sys
from typing import Any

RTOL = 1e-7
ATOL = 1e-12
_MAX_DEPTH = 12


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def difference(a: Any, b: Any, path: str = "", depth: int = 0) -> str | None:
    """Where ``a`` and ``b`` first differ, or ``None`` when they are equal within tolerance."""
    if depth > _MAX_DEPTH:
        return None if _pickled(a) == _pickled(b) else f"{path}: differs"
    if type(a) is not type(b) and not (isinstance(a, int | float) and isinstance(b, int | float)):
        return f"{path}: {type(a).__name__} != {type(b).__name__}"
    np = sys.modules.get("numpy")
    pd = sys.modules.get("pandas")
    if pd is not None and isinstance(a, pd.DataFrame | pd.Series | pd.Index):
        try:
            check = pd.testing.assert_index_equal if isinstance(a, pd.Index) else None
            if check is not None:
                check(a, b, exact=True, check_exact=False, rtol=RTOL, atol=ATOL)
            elif isinstance(a, pd.DataFrame):
                pd.testing.assert_frame_equal(a, b, check_exact=False, rtol=RTOL, atol=ATOL)
            else:
                pd.testing.assert_series_equal(a, b, check_exact=False, rtol=RTOL, atol=ATOL)
        except AssertionError as exc:
            first = " ".join(str(exc).split())[:160]
            return f"{path}: {first}"
        return None
    if np is not None and isinstance(a, np.ndarray):
        if a.shape != b.shape or a.dtype != b.dtype:
            return f"{path}: array {a.dtype}{a.shape} != {b.dtype}{b.shape}"
        if a.dtype.kind in "fc":
            if not np.allclose(a, b, rtol=RTOL, atol=ATOL, equal_nan=True):
                return f"{path}: arrays differ (max abs difference {float(np.nanmax(np.abs(a - b))):.3g})"
            return None
        if a.dtype == object:
            for i, (x, y) in enumerate(zip(a.flat, b.flat, strict=True)):
                found = difference(x, y, f"{path}.flat[{i}]", depth + 1)
                if found:
                    return found
            return None
        return None if np.array_equal(a, b) else f"{path}: arrays differ"
    if isinstance(a, float) or (np is not None and isinstance(a, np.floating)):
        fa, fb = float(a), float(b)
        if math.isnan(fa) and math.isnan(fb):
            return None
        return None if math.isclose(fa, fb, rel_tol=RTOL, abs_tol=ATOL) else f"{path}: {fa!r} != {fb!r}"
    if isinstance(a, dict):
        if list(a) != list(b):
            return f"{path}: keys {_short(list(a))} != {_short(list(b))}"
        for key in a:
            found = difference(a[key], b[key], f"{path}[{key!r}]", depth + 1)
            if found:
                return found
        return None
    if isinstance(a, list | tuple):
        if len(a) != len(b):
            return f"{path}: length {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            found = difference(x, y, f"{path}[{i}]", depth + 1)
            if found:
                return found
        return None
    if isinstance(a, set | frozenset | str | bytes | int | bool | type(None) | complex):
        return None if a == b else f"{path}: {_short(a)} != {_short(b)}"
    try:
        equal = a == b
    except Exception:
        equal = None
    if isinstance(equal, bool) and equal:
        return None
    # Objects compared by identity (estimators) or without a plain ==: compare their state.
    state_a, state_b = _state(a), _state(b)
    if state_a is not None and state_b is not None:
        return difference(state_a, state_b, f"{path}.__dict__", depth + 1)
    pa, pb = _pickled(a), _pickled(b)
    if pa is not None and pa == pb:  # same pickled bytes: the same value, whatever == says
        return None
    return f"{path}: {_short(a)} != {_short(b)}"


def _state(value: Any) -> Any:
    getter = getattr(value, "__getstate__", None)
    try:
        got = getter() if getter is not None else None
    except Exception:
        got = None
    if isinstance(got, dict | tuple | list):
        return got
    if hasattr(value, "__dict__"):
        return dict(vars(value))
    return None


def _pickled(value: Any) -> bytes | None:
    try:
        return pickle.dumps(value, protocol=5)
    except Exception:
        return None
