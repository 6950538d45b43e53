"""The order stages run in: notebook order whenever the edges allow it, otherwise ready stages in notebook order.

A sequential run in notebook order sees exactly the state the notebook had; only edges that point backwards (an
``after:`` tag on a later stage, a read the notebook resolves to a later binding) force another order, and a cycle
among them is an error that lists it.
"""

from __future__ import annotations

import graphlib

from .errors import CycleError
from .scope_analysis import Unit
from .tags import TagPlan


def stage_order(
    names: list[str], edges: dict[tuple[str, str], list[str]], plan: TagPlan, path: str, units: list[Unit]
) -> list[str]:
    """The stages in an order that respects every edge and ``after:`` constraint; a cycle is an error naming it."""
    sorter: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter()
    position = {n: i for i, n in enumerate(names)}
    for n in names:
        sorter.add(n)
    for a, b in edges:
        sorter.add(b, a)
    try:
        sorter.prepare()
    except graphlib.CycleError as exc:
        cycle = list(exc.args[1])
        first = next(r.cell for r in plan.roles if r.stage == cycle[0])
        raise CycleError(
            "stages form a cycle: " + " -> ".join(cycle) + "; remove an `after:` tag that points backwards",
            cycle=cycle,
            **first.where(path),
        ) from None
    # Notebook order when the graph allows it (a sequential run then sees exactly the notebook's state);
    # otherwise ready stages in notebook order.
    preds: dict[str, set[str]] = {n: set() for n in names}
    for a, b in edges:
        preds[b].add(a)
    done: set[str] = set()
    for n in names:
        if not preds[n] <= done:
            break
        done.add(n)
    else:
        return list(names)
    order: list[str] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready(), key=position.__getitem__)
        order.extend(ready)
        sorter.done(*ready)
    return order
