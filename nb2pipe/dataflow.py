"""From statement facts to stages: who reads which version of which name, and the DAG that follows.

The walk mirrors the notebook's execution: statements in notebook order, each name resolved to the binding a
running notebook would see at that point. A stage's inputs are the names it reads whose latest binding lives in
another stage (so with parallel branches every stage still reads the value the notebook would have read), its
outputs the names later stages read from it. A mutation is a read plus a new version. Process-wide state (RNG
seeds, pandas options...) flows the same way under ``@key`` names. Imports and pure definitions are code, not data:
they are imported where used instead of passed along.
"""

from __future__ import annotations

import ast
import builtins
from collections.abc import Iterable
from dataclasses import dataclass, field
from difflib import get_close_matches

import libcst as cst

from .aliases import alias_of, partners
from .effects import DRAW, READ, StateEffect
from .errors import ParameterError, UnknownNameError, UnsupportedCodeError
from .magics import ParsedCell
from .scope_analysis import Unit
from .stage_order import stage_order
from .tags import PRELUDE, TagPlan

_BUILTINS = frozenset(dir(builtins)) | {"__name__", "__file__", "display", "__builtins__"}


@dataclass(frozen=True)
class Parameter:
    """A pipeline parameter from the parameters cell."""

    name: str
    #: ``int``, ``float``, ``str``, ``bool``, ``list``, ``dict``, ``tuple``, ``NoneType`` or the annotation.
    type: str
    #: The default value (a Python literal).
    default: object
    #: The default as written in the notebook.
    default_code: str


@dataclass
class Site:
    """One binding of a name, in notebook order."""

    pos: int
    #: ``import``, ``star``, ``def`` (relocatable definition), ``data``, ``param``, ``shared`` or ``delete``.
    kind: str
    stage: str | None
    definite: bool = True
    unit: Unit | None = None


@dataclass
class StageFlow:
    """Everything the emitter needs about one stage."""

    name: str
    cells: list[ParsedCell] = field(default_factory=list)
    #: The statements of the stage body, in order (imports and hoisted definitions excluded).
    body: list[Unit] = field(default_factory=list)
    #: Input name -> producing stage, in order of first use.
    inputs: dict[str, str] = field(default_factory=dict)
    params: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    imports: list[str] = field(default_factory=list)
    star_imports: list[str] = field(default_factory=list)
    shared_names: list[str] = field(default_factory=list)
    #: Definitions from other stages that this stage calls (copied into its body).
    copies: list[Unit] = field(default_factory=list)
    state_in: dict[str, str | None] = field(default_factory=dict)
    state_out: list[str] = field(default_factory=list)
    files_read: list[str] = field(default_factory=list)
    files_written: list[str] = field(default_factory=list)
    requirements: list[str] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)
    after: list[str] = field(default_factory=list)
    #: Stages that must finish first because they read a value this stage modifies in place.
    order_after: list[str] = field(default_factory=list)
    uses_ipython: bool = False
    #: Names bound in the body (locals of the stage function).
    local_names: set[str] = field(default_factory=set)
    #: Names the stage gets only from a called function's ``global`` assignment: declared in the stage function
    #: (``x: object``) so that the function's ``nonlocal x`` has a variable to rebind.
    declared: list[str] = field(default_factory=list)


@dataclass
class Flow:
    """The pipeline as data flow."""

    stages: list[StageFlow]
    parameters: list[Parameter]
    #: Units that make up the shared module: shared cells and pure definitions, in notebook order.
    shared: list[Unit]
    shared_imports: list[str]
    shared_star: list[str]
    futures: list[str]
    requirements: list[str]
    #: (producer, consumer) -> names; ``after``/order edges carry no names.
    edges: dict[tuple[str, str], list[str]]
    order: list[str]
    #: Stage whose body holds each statement (by unit position), to label definitions copied elsewhere.
    defined_in: dict[int, str] = field(default_factory=dict)


def _add(seq: list[str], item: str) -> None:
    if item not in seq:
        seq.append(item)


def parse_parameters(units: Iterable[Unit], path: str) -> list[Parameter]:
    """Typed parameters from the parameters cell: literal assignments only, each name once."""
    params: dict[str, Parameter] = {}
    mod = cst.Module([])
    for unit in units:
        stmt = unit.stmt
        where = unit.cell.cell.where(path)
        if not isinstance(stmt, cst.SimpleStatementLine):
            raise ParameterError("the parameters cell may hold only assignments of literal values", **where)
        for small in stmt.body:
            if isinstance(small, cst.Expr) and isinstance(small.value, cst.SimpleString | cst.ConcatenatedString):
                continue
            if isinstance(small, cst.Pass):
                continue
            annotation = None
            if isinstance(small, cst.Assign) and len(small.targets) == 1:
                target, value = small.targets[0].target, small.value
            elif isinstance(small, cst.AnnAssign) and small.value is not None:
                target, value = small.target, small.value
                annotation = mod.code_for_node(small.annotation.annotation)
            else:
                raise ParameterError(
                    f"`{mod.code_for_node(small).strip()}` is not a parameter assignment; "
                    "the parameters cell may hold only `name = literal` lines",
                    **where,
                )
            if not isinstance(target, cst.Name):
                raise ParameterError("a parameter must be assigned to a plain name", **where)
            code = mod.code_for_node(value)
            try:
                default = ast.literal_eval(code.strip())
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                raise ParameterError(
                    f"parameter {target.value!r} = {code.strip()} is not a literal; compute it in a stage "
                    "from a literal parameter",
                    **where,
                ) from None
            if target.value in params:
                raise ParameterError(f"parameter {target.value!r} is defined twice", **where)
            params[target.value] = Parameter(target.value, annotation or type(default).__name__, default, code.strip())
    return list(params.values())


class _Walk:
    def __init__(
        self, plan: TagPlan, units: list[Unit], roles: dict[int, str], path: str, skipped_names: frozenset[str]
    ):
        self.plan, self.units, self.path = plan, units, path
        self.roles = roles  # keyed by unit.pos
        #: Names bound only in cells tagged ``skip``, for a better unknown-name hint.
        self.skipped_names = skipped_names
        self.sites: dict[str, list[Site]] = {}
        self.shared_sites: dict[str, Site] = {}
        self.stages = {name: StageFlow(name) for name in plan.stages}
        self.readers: dict[tuple[str, str, int], list[str]] = {}  # (name, producer, site pos) -> reader stages
        #: ``g = model.graph``: unit pos -> (g, model), see :mod:`nb2pipe.aliases`.
        self.aliases: dict[int, tuple[str, str]] = {}
        self.alias_done: set[tuple[int, str]] = set()
        self.pure: set[int] = set()

    # -- purity -------------------------------------------------------------------------------------------------
    def find_pure(self) -> None:
        """Definitions that read only code (imports, builtins, other pure definitions): hoisted to ``shared``."""
        bind_count: dict[str, int] = {}
        kinds: dict[str, set[str]] = {}
        for u in self.units:
            for name in u.binds + u.deletes + u.global_writes:
                bind_count[name] = bind_count.get(name, 0) + 1
                kinds.setdefault(name, set()).add(u.kind if name in u.binds else "data")
        shared_data = {n for u in self.units if self.roles[u.pos] == "shared" and u.kind == "code" for n in u.binds}
        candidates = {
            u.pos: u
            for u in self.units
            if u.kind == "def"
            and self.roles[u.pos] in ("stage", "shared")
            and bind_count.get(u.def_name or "", 0) == 1
            and not u.global_writes
        }
        changed = True
        while changed:
            changed = False
            code_names = {u.def_name for u in candidates.values()}

            def is_code(name: str, code_names: set[str | None] = code_names) -> bool:
                k = kinds.get(name)
                if k is None:
                    return name in _BUILTINS
                return k <= {"import", "star"} or name in code_names or name in shared_data

            for pos, u in list(candidates.items()):
                if not all(map(is_code, u.reads + u.deferred_reads + u.deferred_mutates)):
                    del candidates[pos]
                    changed = True
        self.pure = set(candidates)

    # -- resolution ---------------------------------------------------------------------------------------------
    def lookup(self, name: str, pos: int, stage: str) -> tuple[Site | None, bool]:
        """The binding a read at ``pos`` in ``stage`` sees; and whether a local binding may shadow it."""
        maybe_local = False
        for site in reversed(self.sites.get(name, ())):
            if site.pos >= pos:
                continue
            if site.stage == stage and site.kind == "data":
                if site.definite:
                    return site, False
                maybe_local = True
                continue
            return site, maybe_local
        if name in self.shared_sites:
            return self.shared_sites[name], maybe_local
        return None, maybe_local

    def unknown(self, unit: Unit, name: str) -> UnknownNameError:
        known = set(self.sites) | set(self.shared_sites)
        later = [u for u in self.units if u.pos > unit.pos and name in u.binds]
        if later:
            hint = f"; it is bound only later, in cell {later[0].cell.cell.number}: move that code up"
        elif name in self.skipped_names:
            hint = "; it is bound only in a cell tagged 'skip': remove the tag or bind it elsewhere"
        else:
            close = get_close_matches(name, sorted((known | _BUILTINS) - {name}), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
        return UnknownNameError(
            f"`{name}` is used but no earlier cell defines it{hint}", name=name, **unit.cell.cell.where(self.path)
        )

    def read(self, unit: Unit, name: str, stage: StageFlow, seen: set[int]) -> Site | None:
        site, maybe_local = self.lookup(name, unit.pos, stage.name)
        if site is None:
            if name in _BUILTINS or (name in stage.local_names and maybe_local):
                return None
            if name == "get_ipython" and unit.cell.uses_ipython:
                stage.uses_ipython = True
                return None
            stars = self.stars_before(unit.pos)
            if stars:
                for star in stars:
                    _add(stage.star_imports, star)
                return None
            if name in unit.binds or self.unrun_read(unit, name):
                return None
            raise self.unknown(unit, name)
        if site.kind == "delete":
            if maybe_local or name in unit.binds or self.unrun_read(unit, name):
                return None
            raise self.unknown(unit, name)
        if site.kind == "import":
            assert site.unit is not None
            if _plain_import(site.unit.imports[name], name):
                # `import dowhy.datasets` then `import dowhy.api`: both bind `dowhy`, and `dowhy.datasets` works
                # only because the first one ran, so the stage needs every plain import of the package so far.
                for other in self.sites.get(name, ()):
                    if other.kind == "import" and other.pos < unit.pos and other.unit is not None:
                        if _plain_import(other.unit.imports[name], name):
                            _add(stage.imports, other.unit.imports[name])
            _add(stage.imports, site.unit.imports[name])
        elif site.kind == "star":
            assert site.unit is not None and site.unit.star_module is not None
            _add(stage.star_imports, site.unit.star_module)
        elif site.kind == "shared":
            _add(stage.shared_names, name)
        elif site.kind == "def":
            assert site.unit is not None
            if site.unit.pos in self.pure:
                _add(stage.shared_names, name)
            elif site.stage != stage.name and site.unit not in stage.copies:
                stage.copies.append(site.unit)
            self.call(unit, site.unit, stage, seen)
        elif site.kind == "param":
            _add(stage.params, name)
        elif site.kind == "data" and site.stage != stage.name:
            assert site.stage is not None
            self.check_stale_closure(unit, name, site, stage)
            if name not in stage.inputs:
                stage.inputs[name] = site.stage
            self.readers.setdefault((name, site.stage, site.pos), []).append(stage.name)
        return site

    def unrun_read(self, unit: Unit, name: str) -> bool:
        """A read only in code that never runs, of a name some cell binds (a name none binds is still a typo)."""
        return name in unit.unrun_reads and any(name in u.binds or name in u.global_writes for u in self.units)

    def check_stale_closure(self, unit: Unit, name: str, site: Site, stage: StageFlow) -> None:
        """Refuse a value made by a function that reads globals, used after one of those globals changed.

        Such a value may be a closure (``f = make_scaler()``) that, in the notebook, reads the global at call
        time; in the pipeline it would keep the value it saw in the stage that made it.
        """
        maker = site.unit
        if maker is None or maker.kind == "def":
            return
        for called in maker.reads:
            def_site, _ = self.lookup(called, maker.pos, site.stage or "")
            if def_site is None or def_site.kind != "def" or def_site.unit is None or def_site.unit.pos in self.pure:
                continue
            for g in def_site.unit.deferred_reads:
                then, _ = self.lookup(g, maker.pos + 1, site.stage or "")
                now, _ = self.lookup(g, unit.pos, stage.name)
                if then is not None and now is not None and then is not now and now.kind in ("data", "param"):
                    made = "made" if name in maker.binds else "changed"
                    rebound = f" (cell {now.unit.cell.cell.number})" if now.unit is not None else ""
                    raise UnsupportedCodeError(
                        f"`{name}` was {made} in cell {maker.cell.cell.number} by code that uses `{called}`, which "
                        f"reads the global `{g}`; stage {now.stage!r} rebinds `{g}`{rebound} before it uses `{name}`. "
                        f"If `{name}` keeps `{called}` and calls it later, the notebook would read the new `{g}` and "
                        f"the pipeline the old one, so nb2pipe cannot tell that the stages agree: give the new `{g}` "
                        f"another name, or pass `{g}` to `{called}` (an argument, or a default bound where it is "
                        f"defined: `{g}={g}`)",
                        **unit.cell.cell.where(self.path),
                    )

    def call(self, unit: Unit, definition: Unit, stage: StageFlow, seen: set[int]) -> None:
        """A stage referencing a definition may call it: its body's reads and effects happen here."""
        if definition.pos in seen:
            return
        seen.add(definition.pos)
        for name in definition.deferred_reads:
            self.read(unit, name, stage, seen)
        for name in definition.deferred_mutates + definition.global_writes:
            if name in definition.global_writes and self.rebinds_unbound(unit, name, definition, stage):
                continue
            self.mutate(unit, name, stage, seen)
        for eff in definition.deferred_state:
            self.touch_state(unit, eff, stage)

    def rebinds_unbound(self, unit: Unit, name: str, definition: Unit, stage: StageFlow) -> bool:
        """A called function that assigns ``global name`` without reading it, where ``name`` is unbound (deleted,
        or never bound): the call binds a new value, there is no old one to pass in. Records that binding."""
        if name in definition.deferred_reads or name in definition.deferred_mutates:
            return False
        site, maybe_local = self.lookup(name, unit.pos, stage.name)
        if maybe_local or (site is not None and site.kind != "delete"):
            return False
        self.bind(name, Site(unit.pos, "data", stage.name, True, unit))
        stage.local_names.add(name)
        _add(stage.declared, name)
        return True

    def mutate(self, unit: Unit, name: str, stage: StageFlow, seen: set[int], through: bool = False) -> None:
        site = self.read(unit, name, stage, seen)
        if site is None and name not in unit.binds and name not in stage.local_names:
            return
        if site is not None and site.kind not in ("data", "param"):
            return
        if site is not None and site.stage != stage.name:
            for reader in self.readers.get((name, site.stage or "", site.pos), ()):
                if reader != stage.name:
                    _add(stage.order_after, reader)
        self.bind(name, Site(unit.pos, "data", stage.name, True, unit))
        stage.local_names.add(name)
        self.alias_done.add((unit.pos, name))
        for other, whole in partners(self.aliases, name, unit.pos, self.last_binding, through):
            if (unit.pos, other) not in self.alias_done:
                self.mutate(unit, other, stage, seen, through=whole)

    def last_binding(self, name: str, pos: int) -> int | None:
        """Where ``name`` was last bound (not merely changed) before ``pos``."""
        for site in reversed(self.sites.get(name, ())):
            if site.pos < pos and (site.unit is None or site.kind != "data" or name in site.unit.binds):
                return site.pos
        return None

    def touch_state(self, unit: Unit, eff: StateEffect, stage: StageFlow) -> None:
        key = "@" + eff.key
        if eff.kind in (DRAW, READ):
            site, _ = self.lookup(key, unit.pos, stage.name)
            if site is None:
                stage.state_in.setdefault(eff.key, None)
            elif site.stage != stage.name:
                assert site.stage is not None
                stage.state_in.setdefault(eff.key, site.stage)
        if eff.kind == READ:
            return
        self.bind(key, Site(unit.pos, "data", stage.name, True, unit))
        _add(stage.state_out, eff.key)

    def bind(self, name: str, site: Site) -> None:
        self.sites.setdefault(name, []).append(site)

    def stars_before(self, pos: int) -> list[str]:
        """Modules star-imported before ``pos``: a name nothing else binds may come from them."""
        return [u.star_module for u in self.units if u.kind == "star" and u.pos < pos and u.star_module]

    # -- the walk -----------------------------------------------------------------------------------------------
    def shared_unit(self, unit: Unit) -> None:
        for name in unit.reads + (unit.deferred_reads if unit.pos not in self.pure else []):
            site = self.sites.get(name, [None])[-1] or self.shared_sites.get(name)
            if site is None and (name in _BUILTINS or self.stars_before(unit.pos)):
                continue
            if site is None or site.kind not in ("import", "star", "shared", "def"):
                where = f"stage {site.stage!r}" if site and site.stage else "no shared cell"
                raise UnsupportedCodeError(
                    f"shared code reads `{name}`, which {where} binds; shared cells may use only imports, "
                    "other shared code and builtins: pass it as an argument or move the cell into a stage",
                    **unit.cell.cell.where(self.path),
                )
        if unit.kind == "def" and unit.pos not in self.pure:
            raise UnsupportedCodeError(
                f"shared definition `{unit.def_name}` is redefined elsewhere or assigns globals; "
                "define it once, without `global`",
                **unit.cell.cell.where(self.path),
            )
        for name in unit.binds:
            site = Site(unit.pos, "import" if unit.kind == "import" else "shared", None, True, unit)
            self.bind(name, site)
            self.shared_sites[name] = site

    def stage_unit(self, unit: Unit, stage: StageFlow) -> None:
        seen: set[int] = set()
        if unit.kind in ("import", "star", "future"):
            kind = {"import": "import", "star": "star", "future": "import"}[unit.kind]
            for name in unit.binds:
                self.bind(name, Site(unit.pos, kind, stage.name, True, unit))
            if unit.kind == "star":
                self.bind("*" + (unit.star_module or ""), Site(unit.pos, "star", stage.name, True, unit))
            return
        header_sites = [self.read(unit, name, stage, seen) for name in unit.reads]
        for name in unit.mutates:
            self.mutate(unit, name, stage, seen, through=name in unit.changes)
        for eff in unit.state:
            self.touch_state(unit, eff, stage)
        for name in unit.deletes:
            # `del x` needs the x the notebook sees at this point: in a stage function it is a read first.
            self.read(unit, name, stage, seen)
            self.bind(name, Site(unit.pos, "delete", stage.name, True, unit))
        if unit.kind == "def":
            relocatable = unit.pos in self.pure or all(
                s is None or s.kind in ("import", "star", "shared", "def") for s in header_sites
            )
            kind = "def" if relocatable else "data"
            assert unit.def_name is not None
            self.bind(unit.def_name, Site(unit.pos, kind, stage.name, True, unit))
            if kind == "data":
                stage.local_names.add(unit.def_name)
            if unit.pos not in self.pure:
                stage.body.append(unit)
                stage.local_names.update(unit.binds)
            return
        for name in unit.binds:
            self.bind(name, Site(unit.pos, "data", stage.name, name in unit.definite, unit))
            stage.local_names.add(name)
        alias = alias_of(unit.stmt)
        if alias is not None:
            self.aliases[unit.pos] = alias
        for name in unit.handler_names:  # gone after the handler ran (and a later read fails in the notebook too)
            self.bind(name, Site(unit.pos, "delete", stage.name, True, unit))
        stage.body.append(unit)


def build_flow(
    plan: TagPlan, units: list[Unit], path: str, skipped_names: Iterable[str] = (), parsed: Iterable[ParsedCell] = ()
) -> Flow:
    """Walk the units in notebook order and build the stages, their inputs/outputs and the DAG."""
    role_of = {r.cell.index: r for r in plan.roles}
    roles = {u.pos: role_of[u.cell.cell.index].role for u in units}
    stage_of = {u.pos: role_of[u.cell.cell.index].stage or "" for u in units}
    walk = _Walk(plan, units, roles, path, frozenset(skipped_names))
    walk.find_pure()
    params_units = [u for u in units if roles[u.pos] == "parameters"]
    parameters = parse_parameters(params_units, path)
    param_pos = {name: u.pos for u in params_units for name in u.binds}
    for param in parameters:
        walk.bind(param.name, Site(param_pos.get(param.name, -1), "param", None))
    shared: list[Unit] = []
    futures: list[str] = []
    requirements: list[str] = []
    by_index = {pc.cell.index: pc for pc in parsed} or {u.cell.cell.index: u.cell for u in units}
    for cell_role in plan.roles:
        if cell_role.role == "stage" and cell_role.stage:
            pc = by_index.get(cell_role.cell.index)
            if pc is not None:
                walk.stages[cell_role.stage].cells.append(pc)
    for unit in units:
        role = roles[unit.pos]
        if unit.kind == "future":
            _add(futures, cst.Module([unit.stmt]).code.strip())
            continue
        if role == "parameters":
            continue
        if role == "shared" or unit.pos in walk.pure:
            shared.append(unit)
            if unit.pos in walk.pure:
                name = unit.def_name
                assert name is not None
                site = Site(unit.pos, "def", None, True, unit)
                walk.shared_sites[name] = site
                walk.bind(name, site)
            else:
                walk.shared_unit(unit)
            continue
        walk.stage_unit(unit, walk.stages[stage_of[unit.pos]])
    for pc in by_index.values():
        for req in pc.requirements:
            _add(requirements, req)
    stages = [s for s in walk.stages.values() if not (s.name == PRELUDE and not s.body)]
    names = {s.name for s in stages}
    for stage in stages:
        for cell in stage.cells:
            if role_of[cell.cell.index].metrics:
                for u in units:
                    if u.cell is cell:
                        for n in u.binds:
                            _add(stage.metrics, n)
        for req in (r for c in stage.cells for r in c.requirements):
            _add(stage.requirements, req)
        stage.after = list(plan.after.get(stage.name, ()))
        stage.files_read = list(plan.reads.get(stage.name, ()))
        for u in stage.body:
            for f in u.files_read:
                _add(stage.files_read, f)
            for f in u.files_written:
                _add(stage.files_written, f)
    for stage in stages:
        for name, producer in stage.inputs.items():
            if producer in names:
                _add(walk.stages[producer].outputs, name)
        for name in stage.metrics:
            _add(stage.outputs, name)
    for stage in stages:
        stage.outputs.sort()
    edges: dict[tuple[str, str], list[str]] = {}
    for stage in stages:
        for name, producer in stage.inputs.items():
            edges.setdefault((producer, stage.name), []).append(name)
        for other in stage.after + stage.order_after + [p for p in stage.state_in.values() if p]:
            if other != stage.name and other in names:
                edges.setdefault((other, stage.name), [])
    for stage in stages:
        bound = {n for u in stage.body for n in u.binds} | set(stage.inputs) | set(stage.params)
        stage.declared = [n for n in stage.declared if n not in bound]
    order = stage_order([s.name for s in stages], edges, plan, path, units)
    return Flow(
        stages=stages,
        parameters=parameters,
        shared=shared,
        shared_imports=_shared_imports(walk, shared),
        shared_star=[u.star_module for u in shared if u.kind == "star" and u.star_module],
        futures=futures,
        requirements=requirements,
        edges=edges,
        order=order,
        defined_in={u.pos: s.name for s in stages for u in s.body},
    )


def _plain_import(code: str, name: str) -> bool:
    """``import name`` or ``import name.sub``: binds ``name`` to the package itself, whatever the submodule."""
    return code == f"import {name}" or code.startswith(f"import {name}.")


def _shared_imports(walk: _Walk, shared: list[Unit]) -> list[str]:
    out: list[str] = []
    defined = {n for u in shared for n in u.binds}
    for unit in shared:
        if unit.kind == "import":
            continue
        for name in unit.reads + unit.deferred_reads:
            if name in defined and any(u.kind != "import" and name in u.binds for u in shared):
                continue
            for site in walk.sites.get(name, []):
                if site.kind == "import" and site.unit is not None:
                    _add(out, site.unit.imports[name])
                    break
    for unit in shared:
        if unit.kind == "import":
            for code in unit.imports.values():
                _add(out, code)
    return out
