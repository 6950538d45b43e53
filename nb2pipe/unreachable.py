"""Code that provably never runs: the body of a loop over a literal empty iterable, of ``while False``, ``if 0``.

A name read only there is not a read: ``for i in range(0): total += b`` runs fine in a notebook whose ``b`` is
bound further down, so the converter must not refuse it for reading ``b`` before any cell binds it. Only literal,
visibly empty headers count (no constant folding, no guessing about variables): anything else may run.
"""

from __future__ import annotations

import itertools
from collections.abc import Container, Sequence

import libcst as cst

_COMPREHENSIONS = (cst.ListComp, cst.SetComp, cst.GeneratorExp, cst.DictComp)
#: The node types with a header that may keep a part from running (tested by exact type first: cheap).
_GATES = frozenset({cst.For, cst.While, cst.If, cst.CompFor, *_COMPREHENSIONS})


def never_runs(chain: Sequence[cst.CSTNode], rebound: Container[str]) -> bool:
    """Whether the node ``chain[0]`` sits in code that never runs; ``chain`` goes from it up to its statement.

    ``rebound`` holds the builtin names the notebook binds itself (then ``range`` may not be the builtin).
    """
    for child, parent in itertools.pairwise(chain):
        if type(parent) not in _GATES:
            continue
        if isinstance(parent, cst.For) and child is parent.body and _empty(parent.iter, rebound):
            return True
        if isinstance(parent, cst.While | cst.If) and child is parent.body and _falsy(parent.test):
            return True
        if isinstance(parent, cst.CompFor) and child is not parent.iter and _empty(parent.iter, rebound):
            return True  # the conditions and inner loops of a comprehension over nothing
        if isinstance(parent, _COMPREHENSIONS) and child is not parent.for_in and _empty(parent.for_in.iter, rebound):
            return True  # its element
    return False


def _falsy(test: cst.BaseExpression) -> bool:
    if isinstance(test, cst.Name):
        return test.value in ("False", "None")
    if isinstance(test, cst.Integer):
        return test.evaluated_value == 0
    return isinstance(test, cst.SimpleString) and test.evaluated_value in ("", b"")


def _empty(iterable: cst.BaseExpression, rebound: Container[str]) -> bool:
    if isinstance(iterable, cst.List | cst.Tuple | cst.Set | cst.Dict):
        return not iterable.elements
    if isinstance(iterable, cst.SimpleString):
        return iterable.evaluated_value in ("", b"")
    if (
        isinstance(iterable, cst.Call)
        and isinstance(iterable.func, cst.Name)
        and iterable.func.value == "range"
        and "range" not in rebound
        and 1 <= len(iterable.args) <= 2
        and all(a.keyword is None and not a.star for a in iterable.args)
    ):
        bounds = [_int(a.value) for a in iterable.args]
        if any(b is None for b in bounds):
            return False
        start, stop = (0, bounds[0]) if len(bounds) == 1 else (bounds[0], bounds[1])
        assert start is not None and stop is not None
        return stop <= start
    return False


def _int(expr: cst.BaseExpression) -> int | None:
    """The value of an integer literal, possibly negated (``3``, ``-1``); None for anything else."""
    if isinstance(expr, cst.UnaryOperation) and isinstance(expr.operator, cst.Minus):
        value = _int(expr.expression)
        return None if value is None else -value
    if isinstance(expr, cst.Integer):
        value = expr.evaluated_value
        return value if isinstance(value, int) else None
    return None
