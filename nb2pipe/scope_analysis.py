"""Static facts about every top-level statement of a notebook, from libcst's scope analysis.

The notebook is one Python module executed top to bottom, so we analyse it as one: every code cell that takes
part in the pipeline is parsed (see :mod:`nb2pipe.magics`), the statements are concatenated into a single
``libcst.Module``, and libcst's scope analysis (what :class:`~libcst.metadata.ScopeProvider` computes, run
through :mod:`nb2pipe.fastvisit` so the tree is not copied at every walk) and ``Scope.get_qualified_names_for``
tell, for every name, where it is bound and read and which library object it denotes, across cells. Nothing is
executed.

The result is a list of :class:`Unit` (one top-level statement each) with the global names it binds, reads and
mutates, the process-wide state it touches and the files it names. :mod:`nb2pipe.dataflow` turns those into stages.
"""

from __future__ import annotations

import builtins
import itertools
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import libcst as cst
from libcst.metadata import (
    Assignment,
    BuiltinScope,
    ClassScope,
    ComprehensionScope,
    GlobalScope,
    ImportAssignment,
    QualifiedNameSource,
    Scope,
)

from . import effects
from .effects import StateEffect
from .errors import UnsupportedCodeError
from .fastvisit import resolve_scopes, walk
from .magics import ParsedCell, Stmt
from .unreachable import never_runs

_COMPOUND = (cst.If, cst.For, cst.While, cst.Try, cst.TryStar, cst.Match, cst.Else, cst.ExceptHandler)


@dataclass
class Unit:
    """One top-level statement of the notebook and what it does to the global namespace."""

    #: Position of the statement in notebook order.
    pos: int
    #: The parsed cell it comes from.
    cell: ParsedCell
    stmt: Stmt
    #: ``import``, ``star``, ``future``, ``def`` (a top-level def/class) or ``code``.
    kind: str = "code"
    #: Names bound, in order; ``definite`` holds those bound whenever the statement runs.
    binds: list[str] = field(default_factory=list)
    definite: set[str] = field(default_factory=set)
    #: Names read when the statement runs (for definitions: by decorators, defaults, bases, class bodies).
    reads: list[str] = field(default_factory=list)
    #: Those of ``reads`` read only in code that never runs (see :mod:`nb2pipe.unreachable`).
    unrun_reads: set[str] = field(default_factory=set)
    #: Names whose object the statement may modify.
    mutates: list[str] = field(default_factory=list)
    #: Those of ``mutates`` changed through the name itself (``x.a = 1``, ``x[0] = 1``, ``x.fit()``), not only
    #: passed to a call that may change its arguments: a change through an alias changes the aliased object.
    changes: list[str] = field(default_factory=list)
    #: Names removed with ``del``.
    deletes: list[str] = field(default_factory=list)
    #: Names bound by ``except ... as name``: Python deletes them when the handler ends.
    handler_names: list[str] = field(default_factory=list)
    state: list[StateEffect] = field(default_factory=list)
    files_read: list[str] = field(default_factory=list)
    files_written: list[str] = field(default_factory=list)
    #: For imports: bound name -> the import statement that binds it alone.
    imports: dict[str, str] = field(default_factory=dict)
    #: For ``from m import *``: the module.
    star_module: str | None = None
    #: For definitions: what the body reads, mutates and touches when called.
    deferred_reads: list[str] = field(default_factory=list)
    deferred_mutates: list[str] = field(default_factory=list)
    deferred_state: list[StateEffect] = field(default_factory=list)
    #: For definitions: names assigned through ``global`` declarations.
    global_writes: list[str] = field(default_factory=list)

    @property
    def def_name(self) -> str | None:
        if isinstance(self.stmt, cst.FunctionDef | cst.ClassDef):
            return self.stmt.name.value
        return _lambda_target(self.stmt)


def _lambda_target(stmt: cst.CSTNode) -> str | None:
    """``f`` for ``f = lambda ...``: a definition in all but syntax."""
    if isinstance(stmt, cst.SimpleStatementLine) and len(stmt.body) == 1:
        small = stmt.body[0]
        if (
            isinstance(small, cst.Assign)
            and len(small.targets) == 1
            and isinstance(small.targets[0].target, cst.Name)
            and isinstance(small.value, cst.Lambda)
        ):
            return small.targets[0].target.value
    return None


def _add(seq: list[str], name: str) -> None:
    if name not in seq:
        seq.append(name)


def _import_code(stmt: cst.SimpleStatementLine, small: cst.Import | cst.ImportFrom) -> dict[str, str]:
    """Map each bound name to an import statement binding it alone."""
    out: dict[str, str] = {}
    mod = cst.Module([])
    if isinstance(small, cst.Import):
        for alias in small.names:
            code = "import " + mod.code_for_node(alias.name)
            if alias.asname:
                target = alias.asname.name
                assert isinstance(target, cst.Name)
                out[target.value] = code + " as " + target.value
            else:
                out[mod.code_for_node(alias.name).split(".")[0]] = code
        return out
    assert not isinstance(small.names, cst.ImportStar)
    base = "." * len(small.relative) + (mod.code_for_node(small.module) if small.module else "")
    for alias in small.names:
        name = mod.code_for_node(alias.name)
        if alias.asname:
            target = alias.asname.name
            assert isinstance(target, cst.Name)
            out[target.value] = f"from {base} import {name} as {target.value}"
        else:
            out[name] = f"from {base} import {name}"
    return out


def _root_name(expr: cst.BaseExpression) -> cst.Name | None:
    """``a`` for ``a``, ``a.b``, ``a[0].c``; None when a call or literal intervenes."""
    while True:
        if isinstance(expr, cst.Name):
            return expr
        if isinstance(expr, cst.Attribute):
            expr = expr.value
        elif isinstance(expr, cst.Subscript):
            expr = expr.value
        else:
            return None


def _literal_str(node: cst.BaseExpression) -> str | None:
    if isinstance(node, cst.SimpleString | cst.ConcatenatedString):
        value = node.evaluated_value
        return value if isinstance(value, str) else None
    return None


class _Facts(cst.CSTVisitor):
    """Collect mutations, state effects and file accesses of the whole module, keyed by the Name they concern."""

    def __init__(
        self, scopes: Mapping[int, Scope | None], extra_state: dict[str, StateEffect], import_roots: frozenset[str]
    ) -> None:
        super().__init__()
        #: Scope of every node, by ``id(node)``.
        self.scopes = scopes
        #: First components of the names imports bind anywhere, and the builtins: the only names whose qualified
        #: names can come from an import or the builtins.
        self.import_roots = import_roots
        self.extra_state = extra_state
        #: (Name node, why) for possibly mutated names.
        self.mutated: list[cst.Name] = []
        #: Ids of those of ``mutated`` that are only passed to a call that may change its arguments.
        self.passed: set[int] = set()
        #: (node, effect) for state effects; node locates the statement.
        self.state: list[tuple[cst.CSTNode, StateEffect]] = []
        self.files: list[tuple[cst.CSTNode, str, str]] = []
        self.awaits: list[cst.CSTNode] = []

    def _qualname(self, node: cst.CSTNode) -> str | None:
        # Asked only for calls and mutated objects: resolving qualified names for the whole tree costs more.
        scope = self.scopes.get(id(node))
        if scope is None or not isinstance(node, cst.Name | cst.Attribute):
            return None
        root = _root_name(node)
        if root is not None and root.value not in self.import_roots:
            return None  # a local name (most calls): no need to ask libcst
        names = scope.get_qualified_names_for(node)
        for q in sorted(names, key=lambda q: q.name):
            if q.source in (QualifiedNameSource.IMPORT, QualifiedNameSource.BUILTIN):
                return str(q.name)
        return None

    def _mutate_target(self, target: cst.BaseExpression) -> None:
        if isinstance(target, cst.Attribute | cst.Subscript):
            root = _root_name(target)
            if root is not None:
                self.mutated.append(root)
            self._state_object(target, effects.SET)
        elif isinstance(target, cst.Tuple | cst.List):
            for el in target.elements:
                self._mutate_target(el.value)
        elif isinstance(target, cst.StarredElement):
            self._mutate_target(target.value)

    def _state_object(self, expr: cst.BaseExpression, kind: str) -> None:
        node: cst.BaseExpression | None = expr
        while isinstance(node, cst.Attribute | cst.Subscript | cst.Name):
            q = self._qualname(node)
            key = effects.state_object(q) if q else None
            if key:
                self.state.append((expr, StateEffect(key, kind)))
                return
            node = node.value if isinstance(node, cst.Attribute | cst.Subscript) else None

    def visit_Assign(self, node: cst.Assign) -> None:
        for t in node.targets:
            self._mutate_target(t.target)

    def visit_AnnAssign(self, node: cst.AnnAssign) -> None:
        if node.value is not None:
            self._mutate_target(node.target)

    def visit_AugAssign(self, node: cst.AugAssign) -> None:
        self._mutate_target(node.target)
        if isinstance(node.target, cst.Name):
            self.mutated.append(node.target)

    def visit_Del(self, node: cst.Del) -> None:
        self._mutate_target(node.target)

    def visit_Subscript(self, node: cst.Subscript) -> None:
        self._state_object(node.value, effects.READ)

    def visit_Await(self, node: cst.Await) -> None:
        self.awaits.append(node)

    def visit_Call(self, node: cst.Call) -> None:
        func = node.func
        q = self._qualname(func)
        if q:
            eff = effects.state_effect(q, self.extra_state)
            if eff:
                self.state.append((node, eff))
        method = func.attr.value if isinstance(func, cst.Attribute) else None
        literal = _literal_str(node.args[0].value) if node.args else None
        if literal is not None:
            if isinstance(func, cst.Name) and func.value == "open":
                mode = next((_literal_str(a.value) for a in node.args[1:2] if a.keyword is None), None)
                mode = mode or next(
                    (_literal_str(a.value) for a in node.args if a.keyword and a.keyword.value == "mode"), None
                )
                self.files.append((node, "write" if mode and set(mode) & set("wax+") else "read", literal))
            else:
                access = effects.file_access(q, method)
                if access:
                    self.files.append((node, access, literal))
        if isinstance(func, cst.Attribute):
            inplace = any(
                a.keyword is not None and a.keyword.value == "inplace" and not _is_false(a.value) for a in node.args
            )
            receiver = func.value
            root = _root_name(receiver)
            if root is not None and effects.method_mutates(method or "", inplace):
                # A method of a library module (np.random.shuffle) is a plain function, not a method.
                if q is None or self._qualname(receiver) is None:
                    self.mutated.append(root)
                    self._state_object(receiver, effects.SET)
                    if effects.method_mutates_args(method or ""):
                        self._mutate_args(node)
                elif effects.function_mutates_args(q, None):
                    self._mutate_args(node)
                    self._state_object(receiver, effects.SET)
            elif root is not None and q and effects.function_mutates_args(q, None):
                self._mutate_args(node)
            elif root is None and q is None and effects.method_mutates_args(method or ""):
                self._mutate_args(node)  # a method of a computed object (``make().run(x)``) may modify ``x``
            return
        bare = func.value if isinstance(func, cst.Name) else None
        if effects.function_mutates_args(q, bare):
            self._mutate_args(node)

    def _mutate_args(self, node: cst.Call) -> None:
        for arg in node.args:
            root = _root_name(arg.value)
            if root is not None:
                self.mutated.append(root)
                self.passed.add(id(root))


def _is_false(expr: cst.BaseExpression) -> bool:
    return isinstance(expr, cst.Name) and expr.value in ("False", "None")


def _scopes(scopes: Mapping[int, Scope | None]) -> Iterator[Scope]:
    seen: set[int] = set()
    for scope in scopes.values():
        if scope is not None and id(scope) not in seen:
            seen.add(id(scope))
            yield scope


def _global_scope(scope: Scope) -> GlobalScope | None:
    while not isinstance(scope, GlobalScope):
        parent = scope.parent
        if parent is scope or isinstance(parent, BuiltinScope):
            return None
        scope = parent
    return scope


class ModuleAnalysis:
    """Runs libcst's metadata once over the concatenated notebook and answers per-node questions."""

    def __init__(
        self, cells: Sequence[ParsedCell], path: str, extra_state: dict[str, StateEffect] | None = None
    ) -> None:
        self.path = path
        self.cells = list(cells)
        owners: list[tuple[ParsedCell, Stmt]] = [(pc, s) for pc in self.cells for s in pc.module.body]
        self.module = cst.Module(body=[s for _, s in owners])
        #: Keeps alive the nodes whose ids key ``scopes`` (some belong to modules libcst parsed from strings).
        self.resolved = resolve_scopes(self.module)
        self.scopes = self.resolved.by_id
        #: Every scope once, in order of first appearance.
        self.all_scopes = list(_scopes(self.scopes))
        import_roots = {
            a.name.split(".")[0] for s in self.all_scopes for a in s.assignments if isinstance(a, ImportAssignment)
        }
        self.facts = _Facts(self.scopes, extra_state or {}, frozenset(import_roots | set(dir(builtins))))
        #: Parent of every node by ``id(node)``, recorded by the facts walk (cheaper than libcst's ParentNodeProvider).
        self.parents: dict[int, cst.CSTNode] = {}
        walk(self.module, self.facts, self.parents)
        self.units = [Unit(pos, pc, s) for pos, (pc, s) in enumerate(owners)]
        self._index = {id(s): i for i, (_, s) in enumerate(owners)}

    # -- locating nodes -------------------------------------------------------------------------------------------
    def locate(self, node: cst.CSTNode) -> tuple[int, list[cst.CSTNode]]:
        """Top-level statement index of ``node`` and the chain of ancestors from the node up to that statement."""
        chain = [node]
        while id(chain[-1]) not in self._index:
            chain.append(self.parents[id(chain[-1])])
        return self._index[id(chain[-1])], chain

    @staticmethod
    def deferred(chain: list[cst.CSTNode]) -> bool:
        """Whether the node runs later than its statement: inside a function or lambda body."""
        for child, parent in itertools.pairwise(chain):
            if isinstance(parent, cst.FunctionDef) and child is parent.body:
                return True
            if isinstance(parent, cst.Lambda) and child is parent.body:
                return True
        return False

    @staticmethod
    def conditional(chain: list[cst.CSTNode]) -> bool:
        return any(isinstance(n, _COMPOUND) for n in chain[1:-1]) or isinstance(
            chain[-1], cst.If | cst.For | cst.While | cst.Try | cst.TryStar | cst.Match
        )

    # -- the pass -------------------------------------------------------------------------------------------------
    def run(self) -> list[Unit]:
        units = self.units
        for unit in units:
            self._classify(unit)
        all_scopes = self.all_scopes
        globals_ = [s for s in all_scopes if isinstance(s, GlobalScope)]
        gscope = globals_[0] if globals_ else None
        #: Names the notebook binds at the top level (a ``range`` of its own is not the builtin).
        self.rebound = {a.name for a in gscope.assignments} if gscope is not None else set()
        self.match_keywords: set[int] = set()
        match_names = self._match_captures()
        for scope in all_scopes:
            for access in scope.accesses:
                node = access.node
                if isinstance(node, cst.Attribute):  # `os.path.join` after `import os.path`: libcst's access node
                    node = _root_name(node) or node  # is the dotted chain; the name read is its root, `os`
                if not isinstance(node, cst.Name) or id(node) in match_names or id(node) in self.match_keywords:
                    continue
                if not self._is_global(access.referents):
                    continue
                self._read(node)
        if gscope is not None:
            for assignment in gscope.assignments:
                if isinstance(assignment, Assignment):
                    self._bind(assignment.name, assignment.node)
        for scope in all_scopes:
            if isinstance(scope, ComprehensionScope) and _global_scope(scope) is not None:
                for assignment in scope.assignments:
                    if isinstance(assignment, Assignment) and self._walrus_escapes(assignment.node, scope):
                        self._bind(assignment.name, assignment.node)
        for name in match_names.values():
            self._bind(name.value, name)
        for mutated in self.facts.mutated:
            self._mutate(mutated, id(mutated) not in self.facts.passed)
        for where, eff in self.facts.state:
            pos, chain = self.locate(where)
            unit = units[pos]
            (unit.deferred_state if self.deferred(chain) and unit.kind == "def" else unit.state).append(eff)
        for where, kind, path in self.facts.files:
            pos, _ = self.locate(where)
            _add(units[pos].files_read if kind == "read" else units[pos].files_written, path)
        for where in self.facts.awaits:
            pos, chain = self.locate(where)
            if not self.deferred(chain):
                unit = units[pos]
                raise UnsupportedCodeError(
                    "top-level `await` runs only inside IPython's event loop; wrap it in "
                    "`asyncio.run(...)` so the stage can run as a plain function",
                    **unit.cell.cell.where(self.path),
                )
        return units

    def _is_global(self, referents: object) -> bool:
        refs = list(referents)  # type: ignore[call-overload]
        if refs:
            return any(isinstance(r.scope, GlobalScope) for r in refs) or (
                all(
                    isinstance(r.scope, ComprehensionScope) and self._walrus_escapes(r.node, r.scope)
                    for r in refs
                    if isinstance(r, Assignment)
                )
                and any(isinstance(r, Assignment) for r in refs)
            )
        # Unresolved: a builtin, an undefined name, or one bound by a construct libcst does not model.
        return True

    def _walrus_escapes(self, node: cst.CSTNode, scope: Scope) -> bool:
        # PEP 572: a walrus target inside a comprehension binds in the enclosing non-comprehension scope.
        if not isinstance(node, cst.NamedExpr | cst.Name):
            return False
        parent = self.parents.get(id(node))
        is_walrus = isinstance(node, cst.NamedExpr) or isinstance(parent, cst.NamedExpr)
        s: Scope = scope
        while isinstance(s, ComprehensionScope):
            s = s.parent
        return is_walrus and isinstance(s, GlobalScope)

    def _match_captures(self) -> dict[int, cst.Name]:
        found: dict[int, cst.Name] = {}
        keywords = self.match_keywords

        class V(cst.CSTVisitor):
            def visit_MatchAs(self, node: cst.MatchAs) -> None:
                if node.name is not None:
                    found[id(node.name)] = node.name

            def visit_MatchStar(self, node: cst.MatchStar) -> None:
                if node.name is not None:
                    found[id(node.name)] = node.name

            def visit_MatchMapping(self, node: cst.MatchMapping) -> None:
                if node.rest is not None:
                    found[id(node.rest)] = node.rest

            def visit_MatchKeywordElement(self, node: cst.MatchKeywordElement) -> None:
                keywords.add(id(node.key))

        for unit in self.units:
            if isinstance(unit.stmt, cst.Match):
                unit.stmt.visit(V())
        # Only captures at module level bind globals (those inside functions are locals).
        return {k: v for k, v in found.items() if not self.deferred(self.locate(v)[1])}

    def _classify(self, unit: Unit) -> None:
        stmt = unit.stmt
        if isinstance(stmt, cst.FunctionDef | cst.ClassDef) or _lambda_target(stmt):
            unit.kind = "def"
            return
        if isinstance(stmt, cst.SimpleStatementLine) and len(stmt.body) == 1:
            small = stmt.body[0]
            if isinstance(small, cst.ImportFrom):
                module = cst.Module([]).code_for_node(small.module) if small.module else ""
                if module == "__future__":
                    unit.kind = "future"
                elif isinstance(small.names, cst.ImportStar):
                    unit.kind, unit.star_module = "star", "." * len(small.relative) + module
                else:
                    unit.kind, unit.imports = "import", _import_code(stmt, small)
            elif isinstance(small, cst.Import):
                unit.kind, unit.imports = "import", _import_code(stmt, small)

    def _read(self, node: cst.Name) -> None:
        pos, chain = self.locate(node)
        unit = self.units[pos]
        if _bound_by_enclosing_header(node.value, chain):
            return
        if isinstance(self.parents.get(id(node)), cst.Del) and not self.deferred(chain):
            _add(unit.deletes, node.value)
            return
        if unit.kind == "def" and self.deferred(chain):
            _add(unit.deferred_reads, node.value)
        elif unit.kind not in ("import", "star", "future"):
            first = node.value not in unit.reads
            _add(unit.reads, node.value)
            if not never_runs(chain, self.rebound):
                unit.unrun_reads.discard(node.value)
            elif first:
                unit.unrun_reads.add(node.value)

    def _bind(self, name: str, node: cst.CSTNode) -> None:
        pos, chain = self.locate(node)
        unit = self.units[pos]
        if unit.kind == "def" and self.deferred(chain):
            _add(unit.global_writes, name)
            return
        if isinstance(node, cst.Del) or isinstance(self.parents.get(id(node)), cst.Del):
            _add(unit.deletes, name)
            return
        _add(unit.binds, name)
        alias = self.parents.get(id(node))
        if isinstance(alias, cst.AsName) and isinstance(
            self.parents.get(id(alias)), cst.ExceptHandler | cst.ExceptStarHandler
        ):
            _add(unit.handler_names, name)
        if not self.conditional(chain):
            unit.definite.add(name)

    def _mutate(self, node: cst.Name, through: bool) -> None:
        scope = self.scopes.get(id(node))
        if scope is None:
            return
        refs = scope.accesses[node.value]
        refs = [a for a in refs if a.node is node]
        if refs and not self._is_global(refs[0].referents):
            return
        if not refs and not isinstance(scope, GlobalScope) and node.value in scope:
            # Bound in a local scope (a target, not an access): a local, not ours.
            local = scope.assignments[node.value]
            if any(not isinstance(a.scope, GlobalScope) for a in local):
                return
        if isinstance(scope, ClassScope) and node.value in scope.assignments:
            return
        pos, chain = self.locate(node)
        unit = self.units[pos]
        if unit.kind == "def" and self.deferred(chain):
            _add(unit.deferred_mutates, node.value)
        elif unit.kind == "code" or unit.kind == "def":
            _add(unit.mutates, node.value)
            if through:
                _add(unit.changes, node.value)


def analyze_cells(
    cells: Sequence[ParsedCell], path: str, extra_state: dict[str, StateEffect] | None = None
) -> list[Unit]:
    """Facts for every top-level statement of ``cells`` (already parsed, in notebook order)."""
    return ModuleAnalysis(cells, path, extra_state).run()


def _header_names(target: cst.BaseExpression) -> set[str]:
    if isinstance(target, cst.Name):
        return {target.value}
    if isinstance(target, cst.Tuple | cst.List):
        return {n for el in target.elements for n in _header_names(el.value)}
    if isinstance(target, cst.StarredElement):
        return _header_names(target.value)
    return set()


_HEADER_TYPES = frozenset({cst.For, cst.With, cst.ExceptHandler, cst.ExceptStarHandler})


def _bound_by_enclosing_header(name: str, chain: list[cst.CSTNode]) -> bool:
    """Whether a read sits in the body of a ``for``/``with``/``except`` whose header binds the same name.

    Such a read always sees the header's binding, never an earlier cell's: ``for i in ...: total += i`` must not
    make ``i`` an input of the stage (an earlier stage's ``i`` may not even exist).
    """
    for child, parent in itertools.pairwise(chain):
        if type(parent) not in _HEADER_TYPES:  # cheap: an isinstance test of a libcst node class is an ABC check
            continue
        if isinstance(parent, cst.For) and child is parent.body and name in _header_names(parent.target):
            return True
        if isinstance(parent, cst.With) and child is parent.body:
            if any(i.asname is not None and name in _header_names(i.asname.name) for i in parent.items):
                return True
        if isinstance(parent, cst.ExceptHandler | cst.ExceptStarHandler) and child is parent.body:
            if parent.name is not None and name in _header_names(parent.name.name):
                return True
    return False
