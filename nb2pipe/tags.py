"""The tag model: which cell belongs to which stage, read from standard ``metadata.tags``.

Tags (see ``docs/tags.md``)::

    stage:<name>   starts a stage; untagged code cells below belong to it
    after:<name>   an ordering constraint the data flow does not show
    parameters     papermill's parameters cell
    shared         imports and pure helper definitions available to every stage
    skip           excluded from the pipeline
    metrics        the cell's assigned values are the notebook's metrics
    reads:<path>   a data file the stage reads

Kale's tags are read as their nb2pipe equivalents so Kale users never retag. Code cells above the first stage form
an implicit first stage named :data:`PRELUDE`; the imports and pure definitions they hold are shared like any other.
"""

from __future__ import annotations

import keyword
from dataclasses import dataclass, field

from .errors import TagError
from .notebook import Cell, Notebook

#: Name of the implicit stage made of code cells above the first ``stage:`` tag.
PRELUDE = "prelude"

_STAGE_PREFIXES = ("stage:", "step:", "block:")  # nb2pipe, Kale (new), Kale (old)
_AFTER_PREFIXES = ("after:", "prev:")
_SHARED_TAGS = frozenset({"shared", "imports", "functions"})
_PARAMETER_TAGS = frozenset({"parameters", "pipeline-parameters"})
_METRIC_TAGS = frozenset({"metrics", "pipeline-metrics"})
_RESERVED = frozenset({"shared", "pipeline", "stages", "main", "nb2pipe", "runtime"})


@dataclass(frozen=True)
class CellRole:
    """What the tags say about one code cell."""

    cell: Cell
    #: ``stage``, ``shared``, ``parameters`` or ``skip``.
    role: str
    #: The stage the cell belongs to (for ``stage`` cells).
    stage: str | None = None
    #: The cell computes the notebook's metrics.
    metrics: bool = False


@dataclass(frozen=True)
class TagPlan:
    """The notebook's code cells with their roles, and the per-stage tag facts."""

    roles: tuple[CellRole, ...]
    #: Stage names in notebook order.
    stages: tuple[str, ...]
    #: ``after:`` constraints per stage, in tag order.
    after: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: ``reads:`` paths per stage, in tag order.
    reads: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: The first stage is the implicit prelude.
    has_prelude: bool = False

    def cells_of(self, stage: str) -> list[Cell]:
        return [r.cell for r in self.roles if r.role == "stage" and r.stage == stage]


def check_stage_name(name: str, nb: Notebook, cell: Cell, tag: str) -> str:
    """Validate a stage name from a tag, suggesting a fixed spelling."""
    if not name:
        raise TagError(f"tag {tag!r} has no stage name", **cell.where(nb.path))
    if not name.isidentifier() or keyword.iskeyword(name) or name.startswith("__"):
        fixed = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in name).strip("_")
        if not fixed or fixed[0].isdigit():
            fixed = "s_" + fixed
        raise TagError(
            f"stage name {name!r} in tag {tag!r} is not a Python identifier; try {fixed!r}",
            **cell.where(nb.path),
        )
    if name in _RESERVED:
        raise TagError(
            f"stage name {name!r} is reserved by nb2pipe; rename it (for example {name}_step)",
            **cell.where(nb.path),
        )
    return name


def _stage_tag(cell: Cell, nb: Notebook) -> str | None:
    names = []
    for tag in cell.tags:
        for prefix in _STAGE_PREFIXES:
            if tag.startswith(prefix):
                names.append(check_stage_name(tag[len(prefix) :].strip(), nb, cell, tag))
    if len(set(names)) > 1:
        raise TagError(
            f"cell starts two stages ({', '.join(sorted(set(names)))}); keep one stage tag",
            **cell.where(nb.path),
        )
    return names[0] if names else None


def plan_tags(nb: Notebook) -> TagPlan:
    """Assign every code cell a role and a stage, following the tag model above."""
    roles: list[CellRole] = []
    stages: list[str] = []
    after: dict[str, list[str]] = {}
    reads: dict[str, list[str]] = {}
    current: str | None = None
    has_prelude = False
    params_cell: Cell | None = None
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        tags = set(cell.tags)
        stage = _stage_tag(cell, nb)
        is_params = bool(tags & _PARAMETER_TAGS)
        if is_params and stage:
            raise TagError(
                "the parameters cell cannot also start a stage; put the stage tag on the next cell",
                **cell.where(nb.path),
            )
        if is_params:
            if params_cell is not None:
                raise TagError(
                    f"second parameters cell (the first is cell {params_cell.number}); merge them into one",
                    **cell.where(nb.path),
                )
            params_cell = cell
            roles.append(CellRole(cell, "parameters"))
            continue
        if "skip" in tags:
            roles.append(CellRole(cell, "skip"))
            continue
        if tags & _SHARED_TAGS and not stage:
            roles.append(CellRole(cell, "shared"))
            continue
        if stage and stage != current:
            if stage in stages:
                raise TagError(
                    f"stage {stage!r} starts again after stage {current!r}; a stage is one run of "
                    "consecutive cells, so rename one of them",
                    **cell.where(nb.path),
                )
            stages.append(stage)
            current = stage
        if current is None:
            current = PRELUDE
            has_prelude = True
            stages.append(PRELUDE)
        for tag in cell.tags:
            for prefix in _AFTER_PREFIXES:
                if tag.startswith(prefix):
                    target = check_stage_name(tag[len(prefix) :].strip(), nb, cell, tag)
                    after.setdefault(current, []).append(target)
            if tag.startswith("reads:"):
                path = tag[len("reads:") :].strip()
                if not path:
                    raise TagError("tag 'reads:' has no path", **cell.where(nb.path))
                reads.setdefault(current, []).append(path)
        roles.append(CellRole(cell, "stage", current, metrics=bool(tags & _METRIC_TAGS)))
    for stage, targets in after.items():
        for target in targets:
            if target not in stages:
                cell = next(r.cell for r in roles if r.stage == stage)
                from difflib import get_close_matches

                close = get_close_matches(target, stages, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else f"; stages are {', '.join(stages)}"
                raise TagError(f"'after:{target}' names no stage{hint}", **cell.where(nb.path))
            if target == stage:
                cell = next(r.cell for r in roles if r.stage == stage)
                raise TagError(f"stage {stage!r} cannot run after itself", **cell.where(nb.path))
    return TagPlan(
        roles=tuple(roles),
        stages=tuple(stages),
        after={k: tuple(dict.fromkeys(v)) for k, v in after.items()},
        reads={k: tuple(dict.fromkeys(v)) for k, v in reads.items()},
        has_prelude=has_prelude,
    )
