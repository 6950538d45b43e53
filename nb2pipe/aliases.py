"""Aliases between top-level names: ``g = model.graph`` makes ``g`` a part of ``model``.

A change of ``model`` is a change of ``g``, and a change made through ``g`` (``g.x = 1``, ``g.fit()``) is a
change of ``model``, so :mod:`nb2pipe.dataflow` versions them together and the stage that changes either hands
on both, in one bundle (where pickle keeps them one object). Found by
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
    aliases: Mapping[int, tuple[str, str]],
    name: str,
    pos: int,
    last_binding: Callable[[str, int], int | None],
    through: bool = False,
) -> list[tuple[str, bool]]:
    """The names that, at ``pos``, share ``name``'s object, each with whether it is the object ``name`` is part of.

    A change of ``model`` may change ``model.graph``, so ``g`` gets a new version too. A change made *through*
    ``best = models[1]`` (``through``: ``best.fit(...)``, ``best.x = 1``) changes ``models``, so ``models`` gets
    one as well, and a later stage reads both from the stage that changed them, in one bundle. Passing ``best`` to
    a function we know nothing about is only *maybe* a change (see :mod:`nb2pipe.effects`): that is not carried
    back to ``models``, or every helper called with a view (``X = bunch.data; clean(X)``) would send the whole
    object on from stage to stage; ``nb2pipe verify``'s input checks name the stage when it was a change. An alias
    counts while neither name has been rebound since it was made.
    """
    out = []
    for alias_pos, (alias, root) in aliases.items():
        if alias_pos >= pos or last_binding(alias, pos) != alias_pos:
            continue
        if name == root:
            out.append((alias, False))
        elif through and name == alias:
            bound = last_binding(root, pos)
            if bound is not None and bound < alias_pos:
                out.append((root, True))
    return out
