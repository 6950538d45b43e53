"""Read-only libcst traversals without rebuilding the tree.

``CSTNode.visit`` walks a node's children through ``_visit_and_replace_children``, which builds (and validates)
a new copy of every node even when the visitor is a read-only :class:`libcst.CSTVisitor` whose result is thrown
away. On a whole notebook that copy is most of the cost of scope analysis: libcst's metadata providers walk the
tree four times, and our facts pass once more.

:func:`fast_visits` swaps in a walk that makes exactly the same visitor calls (``on_visit``,
``on_visit_attribute``, ``on_leave_attribute``, ``on_leave``, children in source order) but copies nothing, for
read-only visitors only; transformers still get libcst's own walk. The order of a node type's children is read
from the field-name constants of its ``_visit_and_replace_children``, in the order that method visits them.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import libcst as cst
from libcst.metadata import ExpressionContext, Scope
from libcst.metadata.expression_context_provider import ExpressionContextVisitor
from libcst.metadata.scope_provider import ScopeVisitor

_original_visit: Callable[..., Any] = cst.CSTNode.visit
_lock = threading.Lock()
_depth = 0
#: Node type -> the names of its child fields, in the order libcst visits them.
_FIELDS: dict[type, tuple[str, ...]] = {}


def child_fields(cls: type) -> tuple[str, ...]:
    """The fields of node type ``cls`` that libcst visits, in its visiting order (source order)."""
    fields = _FIELDS.get(cls)
    if fields is None:
        names = {f.name for f in dataclasses.fields(cls)}
        code = cls._visit_and_replace_children.__code__  # type: ignore[attr-defined]
        # Each visited field is named once as a string constant (`visit_required(self, "name", ...)`); constants are
        # stored in order of first appearance, which is the order of the calls.
        fields = tuple(c for c in code.co_consts if isinstance(c, str) and c in names)
        _FIELDS[cls] = fields
    return fields


#: (visitor type, node type) -> the node's child fields, each with the visitor's hooks for it.
_PLANS: dict[tuple[type, type], tuple[tuple[str, Any, Any], ...]] = {}
#: Value type -> 1 for a node, 2 for a sequence, 0 for anything else (strings, None, sentinels).
_KINDS: dict[type, int] = {}
#: Hook marker: the visitor overrides ``on_visit_attribute``/``on_leave_attribute``, call those.
_GENERIC = object()


def _plan(vcls: type, ncls: type) -> tuple[tuple[str, Any, Any], ...]:
    generic = (
        vcls.on_visit_attribute is not cst.CSTVisitor.on_visit_attribute  # type: ignore[attr-defined]
        or vcls.on_leave_attribute is not cst.CSTVisitor.on_leave_attribute  # type: ignore[attr-defined]
    )
    plan = tuple(
        (name, _GENERIC, _GENERIC)
        if generic
        else (
            name,
            getattr(vcls, f"visit_{ncls.__name__}_{name}", None),
            getattr(vcls, f"leave_{ncls.__name__}_{name}", None),
        )
        for name in child_fields(ncls)
    )
    _PLANS[vcls, ncls] = plan
    return plan


def _kind(t: type) -> int:
    kind = 1 if issubclass(t, cst.CSTNode) else 2 if issubclass(t, tuple | list) else 0
    _KINDS[t] = kind
    return kind


def walk(node: cst.CSTNode, visitor: cst.CSTVisitor, parents: dict[int, cst.CSTNode] | None = None) -> None:
    """Visit ``node`` and its descendants with a read-only visitor, as ``node.visit(visitor)`` would.

    With ``parents``, also record the parent of every node visited below ``node``, keyed by ``id(child)``.
    """
    if visitor.on_visit(node):
        vcls, ncls = type(visitor), type(node)
        plan = _PLANS.get((vcls, ncls))
        if plan is None:
            plan = _plan(vcls, ncls)
        for name, enter, leave in plan:
            value = getattr(node, name)
            if enter is not None:
                if enter is _GENERIC:
                    visitor.on_visit_attribute(node, name)
                else:
                    enter(visitor, node)
            t = type(value)
            kind = _KINDS.get(t)
            if kind is None:
                kind = _kind(t)
            if kind == 1:
                if parents is not None:
                    parents[id(value)] = node
                walk(value, visitor, parents)
            elif kind == 2:
                for child in value:
                    if parents is not None:
                        parents[id(child)] = node
                    walk(child, visitor, parents)
            if leave is not None:
                if leave is _GENERIC:
                    visitor.on_leave_attribute(node, name)
                else:
                    leave(visitor, node)
    visitor.on_leave(node)


def _visit(self: cst.CSTNode, visitor: Any) -> Any:
    if isinstance(visitor, cst.CSTVisitor):
        walk(self, visitor)
        return self
    return _original_visit(self, visitor)


@contextmanager
def fast_visits() -> Iterator[None]:
    """Within this block, ``CSTNode.visit`` with a read-only visitor walks the tree without copying it.

    Re-entrant and thread-safe: the patch is applied once and removed when the last block ends; a visitor running
    meanwhile in another thread sees the same calls either way.
    """
    global _depth
    with _lock:
        if _depth == 0:
            cst.CSTNode.visit = _visit  # type: ignore[method-assign]
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                cst.CSTNode.visit = _original_visit  # type: ignore[method-assign]


class _Metadata:
    """Stands in for libcst's metadata providers: keeps what their visitors compute, ``id(node)`` -> value."""

    def __init__(self, depends_on: dict[int, Any] | None = None) -> None:
        self.values: dict[int, Any] = {}
        self.depends_on = depends_on or {}
        #: Every node given a value, so that no id is reused: ScopeVisitor also records nodes of modules it parses
        #: itself (string annotations), which nothing else keeps alive.
        self.nodes: list[cst.CSTNode] = []

    def set_metadata(self, node: cst.CSTNode, value: Any) -> None:
        self.values[id(node)] = value
        self.nodes.append(node)

    def get_metadata(self, key: object, node: cst.CSTNode, default: Any = None) -> Any:
        return self.depends_on.get(id(node), default)


@dataclass(frozen=True)
class Scopes:
    """The scope of every node, by ``id(node)``, and the nodes themselves (which keeps those ids valid)."""

    by_id: dict[int, Scope | None]
    nodes: list[cst.CSTNode]


def resolve_scopes(module: cst.Module) -> Scopes:
    """What ``MetadataWrapper(module).resolve(ScopeProvider)`` returns, keyed by ``id(node)``, in two walks, not four.

    The wrapper drives libcst's providers from an extra batched walk of the whole tree per dependency level, walks
    that do nothing past the module node; here the providers' own visitors run directly, under
    :func:`fast_visits`. The module is analysed as is (no defensive copy); keys are node ids (a libcst node hashes
    in Python, an id does not), valid while the module is alive.
    """
    with fast_visits():
        contexts = _Metadata()
        module.visit(ExpressionContextVisitor(contexts, ExpressionContext.LOAD))  # type: ignore[arg-type]
        scopes = _Metadata(contexts.values)
        visitor = ScopeVisitor(scopes)  # type: ignore[arg-type]
        module.visit(visitor)
        visitor.infer_accesses()
    return Scopes(scopes.values, scopes.nodes)
