"""Aliases between top-level names: ``g = model.graph`` makes ``g`` a part of ``model``.

A change of ``model`` is a change of ``g``, so :mod:`nb2pipe.dataflow` versions them together and the stage
that changes ``model`` hands on both, in one bundle (where pickle keeps them one object). Found by
``nb2pipe verify``'s input checks on dowhy's do-sampler demo (``nx_graph = model._graph._graph``, then
``model.identify_effect()``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import libcst as cst


def alias_of(stmt: cst.CSTNode) -> tuple[str, str] | None:
    """``(g, model)`` for ``g = model.graph`` or ``g = model.parts[0]``: no call, so ``g`` is part of ``model``."""
    if not (isinstance(stmt, cst.SimpleStatementLine) and len(stmt.body) == 1):
        return None
    small = stmt.body[0]
    if not (isinstance(small, cst.Assign) and len(small.targets) == 1):
        return None
    target, value = small.targets[0].target, small.value
    if not isinstance(target, cst.Name) or not isinstance(value, cst.Attribute | cst.Subscript):
        return None
    while isinstance(value, cst.Attribute | cst.Subscript):
        value = value.value
    return (target.value, value.value) if isinstance(value, cst.Name) and value.value != target.value else None


def partners(
    aliases: Mapping[int, tuple[str, str]], name: str, pos: int, last_binding: Callable[[str, int], int | None]
) -> list[str]:
    """The names that are, at ``pos``, parts of ``name``'s object: aliases not rebound since they were made.

    Only that direction: a change of ``model`` may change ``model.graph``, so ``g`` gets a new version too. A
    change through ``g`` does change ``model``, but most such aliases are read-only views (``X = bunch.data``), and
    versioning the whole object for each would send it across every stage; ``nb2pipe verify``'s input checks name
    the stage when that is missed.
    """
    out = []
    for alias_pos, (alias, root) in aliases.items():
        if name == root and alias_pos < pos and last_binding(alias, pos) == alias_pos:
            out.append(alias)
    return out
