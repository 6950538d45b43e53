"""The copy-free walk makes exactly the visitor calls libcst's own ``visit`` makes, and gives the same scopes."""

from __future__ import annotations

import json
from pathlib import Path

import libcst as cst
import pytest
from libcst.metadata import MetadataWrapper, ScopeProvider

from nb2pipe.fastvisit import fast_visits, is_trivia, module_code, parse_module, resolve_scopes, walk

ROOT = Path(__file__).resolve().parents[2]

#: Most of Python's syntax in one module, so every node type's child order is exercised.
SYNTAX = '''\
"""Module docstring."""
from __future__ import annotations
import os.path as osp, sys
from .. import a as b, c
from x import *
from y import (p, q as r,)
T = int | None
x: list[int] = [1, 2, *rest]
y = z = (a := 3) + -b ** 2 // c @ d
x[1:2, ::3] += {k: v for k, v in d.items() if k if v}
del x[0], y.attr
async def f(a, /, b: int = 1, *args, c, d=2, **kw) -> "X":
    global g
    nonlocal_name = lambda q, *, r=1: q + r
    async with open(a) as (h, i), ctx():
        async for j in aiter():
            await j
    yield from (k for k in range(3))
    return f"{a!r:>{b}} {c=}" "tail", b"bytes"
@decorator(arg)
class C(Base, metaclass=Meta):
    attr = 1
    def m(self):
        nonlocal_value = [i for i in self if not i]
        return {*nonlocal_value}, {1}, (), [], {}
try:
    pass
except* ValueError as e:
    raise RuntimeError() from e
else:
    pass
finally:
    pass
try:
    pass
except (A, B):
    pass
while x > 1 and not y or z is not None:
    break
else:
    continue
with a, b as c:
    assert x, "message"
match command:
    case [1, 2, *others] if others:
        pass
    case {"k": v, **rest}:
        pass
    case Point(x=0, y=_) | None:
        pass
    case str() as s:
        pass
if a: b = 1; c = 2
elif d:
    e = x if y else z
print(*args, sep="", **kw); ...
type Alias[T: int, *Ts, **P] = list[T]
def generic[T](x: T) -> T: return x
'''


class _Recorder(cst.CSTVisitor):
    """Records every call a walk makes, including attribute hooks."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, str, str]] = []

    def on_visit(self, node: cst.CSTNode) -> bool:
        self.calls.append(("visit", type(node).__name__, ""))
        return not isinstance(node, cst.Lambda)  # also check that a False answer skips the children

    def on_leave(self, original_node: cst.CSTNode) -> None:
        self.calls.append(("leave", type(original_node).__name__, ""))

    def on_visit_attribute(self, node: cst.CSTNode, attribute: str) -> None:
        if getattr(node, attribute) is not None:  # libcst skips the hooks of an absent f-string format spec
            self.calls.append(("enter", type(node).__name__, attribute))

    def on_leave_attribute(self, original_node: cst.CSTNode, attribute: str) -> None:
        if getattr(original_node, attribute) is not None:
            self.calls.append(("exit", type(original_node).__name__, attribute))


class _Hooks(cst.CSTVisitor):
    """A visitor with per-attribute hooks (the kind ScopeVisitor has) and no generic attribute methods."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def visit_ClassDef_bases(self, node: cst.ClassDef) -> None:
        self.calls.append("bases in " + node.name.value)

    def leave_ClassDef_bases(self, node: cst.ClassDef) -> None:
        self.calls.append("bases out " + node.name.value)

    def visit_Name(self, node: cst.Name) -> None:
        self.calls.append(node.value)

    def visit_Arg_comma(self, node: cst.Arg) -> None:  # a hook on a field that holds only trivia
        self.calls.append("comma of an argument")


class _Commas(_Hooks):
    """A visitor with a hook for trivia, which must not be skipped for it."""

    def visit_Comma(self, node: cst.Comma) -> None:
        self.calls.append(",")

    def leave_SimpleWhitespace(self, original_node: cst.SimpleWhitespace) -> None:
        self.calls.append(repr(original_node.value))


def _sources() -> list[str]:
    out = [SYNTAX]
    for nb in sorted((ROOT / "example_notebooks").glob("*.ipynb")):
        for cell in json.loads(nb.read_text())["cells"]:
            if cell["cell_type"] == "code":
                source = "".join(cell["source"])
                try:
                    cst.parse_module(source)
                except cst.ParserSyntaxError:
                    continue  # IPython syntax
                out.append(source)
    return out


@pytest.mark.parametrize("visitor_type", [_Recorder, _Hooks, _Commas])
def test_walk_makes_the_same_calls_as_libcst(visitor_type: type[_Recorder] | type[_Hooks]) -> None:
    for source in _sources():
        module = cst.parse_module(source)
        ours, theirs = visitor_type(), visitor_type()
        module.visit(theirs)
        walk(module, ours)
        assert ours.calls == theirs.calls
        with fast_visits():
            patched = visitor_type()
            module.visit(patched)
        assert patched.calls == theirs.calls


def test_walk_records_parents() -> None:
    module = cst.parse_module(SYNTAX)
    parents: dict[int, cst.CSTNode] = {}
    walk(module, _All(), parents)
    stmt = module.body[5]
    assert isinstance(stmt, cst.SimpleStatementLine)
    assert parents[id(stmt)] is module and parents[id(stmt.body[0])] is stmt
    # A visitor blind to trivia still gets the parent of every other node (and of some trivia: no matter).
    blind: dict[int, cst.CSTNode] = {}
    walk(module, cst.CSTVisitor(), blind)
    node_of = _node_of(module)
    assert {k: v for k, v in parents.items() if not is_trivia(type(node_of[k]))} == {
        k: v for k, v in blind.items() if not is_trivia(type(node_of[k]))
    }


def _node_of(module: cst.Module) -> dict[int, cst.CSTNode]:
    nodes: dict[int, cst.CSTNode] = {}

    class Collect(_All):
        def on_visit(self, node: cst.CSTNode) -> bool:
            nodes[id(node)] = node
            return True

    walk(module, Collect())
    return nodes


def test_fast_visits_leaves_transformers_and_libcst_alone_afterwards() -> None:
    original = cst.CSTNode.visit

    class Rename(cst.CSTTransformer):
        def leave_Name(self, original_node: cst.Name, updated_node: cst.Name) -> cst.Name:
            return updated_node.with_changes(value=updated_node.value.upper())

    with fast_visits(), fast_visits():
        assert cst.parse_module("a = b\n").visit(Rename()).code == "A = B\n"
    assert cst.CSTNode.visit is original


def test_parse_module_builds_what_libcst_builds_and_validates_again_afterwards() -> None:
    original = cst.CSTNode.__post_init__
    for source in _sources():
        ours, theirs = parse_module(source), cst.parse_module(source)
        assert ours.deep_equals(theirs)
        assert module_code(ours) == theirs.code == source
    assert cst.CSTNode.__post_init__ is original
    with pytest.raises(cst.CSTValidationError):
        cst.Name("not a name")
    with pytest.raises(cst.ParserSyntaxError):
        parse_module("x = (1\n")
    assert cst.CSTNode.__post_init__ is original


def test_other_threads_still_validate_while_a_thread_parses() -> None:
    import threading

    original = cst.CSTNode.__post_init__
    sources = _sources() * 5
    done = threading.Event()

    def parse_all() -> None:
        for source in sources:
            parse_module(source)
        done.set()

    parser = threading.Thread(target=parse_all)
    checked_while_patched = 0
    parser.start()
    while not done.is_set():
        patched = cst.CSTNode.__post_init__ is not original
        with pytest.raises(cst.CSTValidationError):
            cst.Name("not a name")
        checked_while_patched += patched
    parser.join()
    assert checked_while_patched > 0
    assert cst.CSTNode.__post_init__ is original


def test_module_code_is_libcsts_code_for_built_modules() -> None:
    module = cst.Module(
        body=[
            cst.parse_statement("def f(a, *, b=1):\n    return [a, b]\n"),
            cst.SimpleStatementLine([cst.Return(cst.Dict([cst.DictElement(cst.SimpleString('"a"'), cst.Name("a"))]))]),
        ]
    )
    assert module_code(module) == module.code


def test_resolve_scopes_matches_the_metadata_wrapper() -> None:
    for source in _sources():
        module = cst.parse_module(source)
        resolved = resolve_scopes(module)
        node_of = {id(node): node for node in resolved.nodes}
        ours = [(node_of[k], scope) for k, scope in resolved.by_id.items()]
        theirs = list(MetadataWrapper(module, unsafe_skip_copy=True).resolve(ScopeProvider).items())

        # Nodes of the tree are the same objects; those of string annotations come from a parse of each run's own.
        # Below the root of a trivia subtree (whitespace, operators...) we record nothing: compare the rest.
        def key(node: cst.CSTNode, module: cst.Module = module) -> object:
            return id(node) if node is module or _in(module, node) else type(node).__name__

        a = [(n, scope) for n, scope in theirs if not is_trivia(type(n))]
        b = [(n, scope) for n, scope in ours if not is_trivia(type(n))]
        assert [key(n) for n, _ in b] == [key(n) for n, _ in a]
        scope_ids: dict[int, int] = {}  # the two runs build their own Scope objects: compare their shapes
        for (node, their_scope), (_, our_scope) in zip(a, b, strict=True):
            assert type(our_scope) is type(their_scope)
            if their_scope is not None and our_scope is not None:
                assert scope_ids.setdefault(id(their_scope), id(our_scope)) == id(our_scope)
                # The index orders assignments and accesses (ScopeVisitor.on_leave counts assignment-like nodes).
                assert sorted((x.name, x._index) for x in our_scope.assignments) == sorted(
                    (x.name, x._index) for x in their_scope.assignments
                )
                if isinstance(node, cst.Name):
                    ours_q = sorted(str(q.name) for q in our_scope.get_qualified_names_for(node))
                    theirs_q = sorted(str(q.name) for q in their_scope.get_qualified_names_for(node))
                    assert ours_q == theirs_q
        # The order in which scopes first appear, trivia included, is the same (the analysis iterates in it).
        assert [scope_ids[i] for i in _first_seen(theirs)] == _first_seen(ours)


_TREE: dict[int, set[int]] = {}


def _in(module: cst.Module, node: cst.CSTNode) -> bool:
    if id(module) not in _TREE:
        parents: dict[int, cst.CSTNode] = {}
        walk(module, _All(), parents)
        _TREE.clear()
        _TREE[id(module)] = set(parents)
    return id(node) in _TREE[id(module)]


class _All(cst.CSTVisitor):
    """Sees every node (a generic ``on_visit`` makes the walk include trivia)."""

    def on_visit(self, node: cst.CSTNode) -> bool:
        return True


def _first_seen(items: list[tuple[cst.CSTNode, object]]) -> list[int]:
    seen: list[int] = []
    for _, scope in items:
        if scope is not None and id(scope) not in seen:
            seen.append(id(scope))
    return seen
