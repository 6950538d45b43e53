"""Faster libcst for what the converter does: read-only walks, code generation, parsing. Same results.

``CSTNode.visit`` walks a node's children through ``_visit_and_replace_children``, which builds (and validates)
a new copy of every node even when the visitor is a read-only :class:`libcst.CSTVisitor` whose result is thrown
away. On a whole notebook that copy is most of the cost of scope analysis: libcst's metadata providers walk the
tree four times, and our facts pass once more.

:func:`fast_visits` swaps in a walk that makes exactly the same visitor calls (``on_visit``,
``on_visit_attribute``, ``on_leave_attribute``, ``on_leave``, children in source order) but copies nothing, for
read-only visitors only; transformers still get libcst's own walk. The order of a node type's children is read
from the field-name constants of its ``_visit_and_replace_children``, in the order that method visits them.

:func:`module_code` generates a module's code without libcst's per-node position hook, and :func:`parse_module`
parses without re-validating the nodes the parser builds.
"""

from __future__ import annotations

import dataclasses
import threading
import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

import libcst as cst
from libcst._nodes.internal import CodegenState
from libcst.metadata import ExpressionContext, Scope
from libcst.metadata.expression_context_provider import ExpressionContextVisitor
from libcst.metadata.scope_provider import _ASSIGNMENT_LIKE_NODES, ScopeVisitor

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


#: A field of a node type with the visitor's hooks for it: (name, enter hook, leave hook).
_Field = tuple[str, Any, Any]
#: A node type's plan for a visitor type: (visit hook, leave hook, the node's child fields with their hooks).
_Plan = tuple[Any, Any, tuple[_Field, ...]]
#: Visitor type -> node type -> plan.
_PLANS: dict[type, dict[type, _Plan]] = {}
#: Value type -> 1 for a node, 2 for a sequence, 0 for anything else (strings, None, sentinels).
_KINDS: dict[type, int] = {}
#: Hook marker: the visitor overrides the generic method (``on_visit``, ``on_visit_attribute``...); call it.
_GENERIC = object()
_BASE = cst.CSTVisitor


def _hook(vcls: type, generic: str, specific: str) -> Any:
    """The visitor's hook: _GENERIC when it overrides the generic method, else its specific method or None."""
    if getattr(vcls, generic) is not getattr(_BASE, generic):
        return _GENERIC
    hook = getattr(vcls, specific, None)
    # CSTVisitor defines an empty visit_/leave_ method for every node type and field: calling those does nothing.
    return None if hook is getattr(_BASE, specific, None) else hook


_BRACKETS = frozenset(
    "LeftParen RightParen LeftSquareBracket RightSquareBracket LeftCurlyBrace RightCurlyBrace".split()
)
#: Visitor type -> whether it has no hook at all for trivia (whitespace, comments, operators, brackets).
_BLIND: dict[type, bool] = {}
#: Marker plan: skip the node and its subtree.
_SKIP = (None, None, ())
#: Marker plan: call only the visitor's ``on_leave`` for the node, skip its subtree (see ``trivia_roots_only``).
_ROOT_ONLY = (None, _GENERIC, ())


def is_trivia(ncls: type) -> bool:
    """Whitespace, comments, newlines, operator tokens and brackets: nodes with nothing but trivia below them."""
    return ncls.__module__ in ("libcst._nodes.whitespace", "libcst._nodes.op") or ncls.__name__ in _BRACKETS


def _blind_to_trivia(vcls: type) -> bool:
    blind = _BLIND.get(vcls)
    if blind is None:
        generic = ("on_visit", "on_leave", "on_visit_attribute", "on_leave_attribute")
        trivia = {c.__name__ for c in _all_subclasses(cst.CSTNode) if is_trivia(c)}
        hooks = tuple(f"{kind}_{t}" for t in sorted(trivia) for kind in ("visit", "leave"))
        blind = all(getattr(vcls, g) is getattr(_BASE, g) for g in generic) and not any(
            (name == h or name.startswith(h + "_")) and getattr(vcls, name) is not getattr(_BASE, name, None)
            for name in dir(vcls)
            for h in hooks
        )
        _BLIND[vcls] = blind
    return blind


#: Node type -> its fields whose declared type admits only trivia (or no node at all).
_TRIVIA_FIELDS: dict[type, frozenset[str]] = {}


def _trivia_fields(ncls: type) -> frozenset[str]:
    found = _TRIVIA_FIELDS.get(ncls)
    if found is None:
        found = frozenset(f.name for f in dataclasses.fields(ncls) if _only_trivia(f.type))
        _TRIVIA_FIELDS[ncls] = found
    return found


def _only_trivia(annotation: Any) -> bool:
    """Whether a field declared as ``annotation`` can hold only trivia nodes, sentinels, strings or None.

    Anything not understood (a forward reference, a type variable) counts as possibly holding a node.
    """
    if typing.get_origin(annotation) is typing.Literal:
        return True
    args = typing.get_args(annotation)
    if args:  # Union, Optional, Sequence...: every member must qualify
        return all(_only_trivia(a) for a in args)
    if not isinstance(annotation, type) or annotation is object:
        return False
    if issubclass(annotation, cst.CSTNode):
        return is_trivia(annotation) and all(is_trivia(c) for c in _all_subclasses(annotation))
    return True


def _all_subclasses(cls: type) -> list[type]:
    out: list[type] = []
    sub: type
    for sub in cls.__subclasses__():
        out += [sub, *_all_subclasses(sub)]
    return out


def _plan(vcls: type, ncls: type) -> _Plan:
    # Hooks are looked up on the visitor's class once per node type (libcst looks them up on the instance at
    # every node: the same methods, unless an instance carries its own).
    plans = _PLANS.setdefault(vcls, {})
    if is_trivia(ncls) and _blind_to_trivia(vcls):
        # A visitor with no hook for any trivia would see no call at all in this subtree: skip it whole.
        plans[ncls] = _SKIP
        return _SKIP
    if is_trivia(ncls) and getattr(vcls, "trivia_roots_only", False):
        plans[ncls] = _ROOT_ONLY
        return _ROOT_ONLY
    t = ncls.__name__
    fields = tuple(
        (
            name,
            _hook(vcls, "on_visit_attribute", f"visit_{t}_{name}"),
            _hook(vcls, "on_leave_attribute", f"leave_{t}_{name}"),
        )
        for name in child_fields(ncls)
    )
    if _blind_to_trivia(vcls):
        # A field that can hold only trivia leads to skipped subtrees: without hooks of its own, it is left out.
        trivia = _trivia_fields(ncls)
        fields = tuple(f for f in fields if f[0] not in trivia or f[1] is not None or f[2] is not None)
    plan = (_hook(vcls, "on_visit", f"visit_{t}"), _hook(vcls, "on_leave", f"leave_{t}"), fields)
    plans[ncls] = plan
    return plan


def _kind(t: type) -> int:
    kind = 1 if issubclass(t, cst.CSTNode) else 2 if issubclass(t, tuple | list) else 0
    _KINDS[t] = kind
    return kind


def walk(node: cst.CSTNode, visitor: cst.CSTVisitor, parents: dict[int, cst.CSTNode] | None = None) -> None:
    """Visit ``node`` and its descendants with a read-only visitor, as ``node.visit(visitor)`` would.

    With ``parents``, also record the parent of every node visited below ``node``, keyed by ``id(child)`` (except
    trivia skipped for a visitor that has no hook for them, see :func:`is_trivia`).
    """
    vcls = type(visitor)
    plans = _PLANS.get(vcls)
    if plans is None:
        plans = _PLANS[vcls] = {}
    _walk(node, visitor, parents, plans, vcls)


def _walk(
    node: cst.CSTNode,
    visitor: cst.CSTVisitor,
    parents: dict[int, cst.CSTNode] | None,
    plans: dict[type, _Plan],
    vcls: type,
) -> None:
    plan = plans.get(type(node))
    if plan is None:
        plan = _plan(vcls, type(node))
    if plan is _ROOT_ONLY:
        visitor.on_leave(node)
        return
    visit, leave_node, fields = plan
    if visit is None:
        go = True
    elif visit is _GENERIC:
        go = visitor.on_visit(node)
    else:
        go = visit(visitor, node) is not False
    if go:
        for name, enter, leave in fields:
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
                if plans.get(t) is not _SKIP:  # skipped trivia: not even a call
                    _walk(value, visitor, parents, plans, vcls)
            elif kind == 2:
                for child in value:
                    if parents is not None:
                        parents[id(child)] = node
                    if plans.get(type(child)) is not _SKIP:
                        _walk(child, visitor, parents, plans, vcls)
            if leave is not None:
                if leave is _GENERIC:
                    visitor.on_leave_attribute(node, name)
                else:
                    leave(visitor, node)
    if leave_node is not None:
        if leave_node is _GENERIC:
            visitor.on_leave(node)
        else:
            leave_node(visitor, node)


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


class _ScopeVisitor(ScopeVisitor):
    """libcst's ScopeVisitor, told to record the scope of a trivia subtree's root only.

    Its only work on whitespace, comments, operator tokens and brackets is ``on_leave`` recording the current
    scope for each node; every node of such a subtree gets the same scope, recorded one after another, so the root
    alone keeps the order in which scopes first appear (which the analysis relies on).
    """

    #: For :func:`walk`: call only ``on_leave`` for the root of a trivia subtree.
    trivia_roots_only = True

    def on_leave(self, original_node: cst.CSTNode) -> None:
        """``ScopeVisitor.on_leave``, with its per-node type tests answered once per node type.

        libcst tests every node against 18 node classes (each an ABC ``isinstance``, most of the walk's cost) to
        count assignment-like nodes, then looks up ``leave_<Type>`` by name; both depend on the type alone.
        """
        self.provider.set_metadata(original_node, self.scope)
        plan = _LEAVE_PLANS.get(type(original_node))
        if plan is None:
            plan = _leave_plan(type(original_node))
        counts, leave = plan
        if counts:
            self.scope._assignment_count += 1
        if leave is not None:
            leave(self, original_node)


#: Node type -> (whether ScopeVisitor counts it as an assignment, ScopeVisitor's ``leave_<Type>`` or None).
_LEAVE_PLANS: dict[type, tuple[bool, Any]] = {}


def _leave_plan(ncls: type) -> tuple[bool, Any]:
    leave = getattr(ScopeVisitor, f"leave_{ncls.__name__}", None)
    if leave is getattr(_BASE, f"leave_{ncls.__name__}", None):
        leave = None  # CSTVisitor's empty default
    plan = (issubclass(ncls, _ASSIGNMENT_LIKE_NODES), leave)
    _LEAVE_PLANS[ncls] = plan
    return plan


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
    in Python, an id does not), valid while the module is alive. Inside whitespace, comments, operator tokens and
    brackets only the outermost node has an entry (with the same scope, in the same order).
    """
    with fast_visits():
        contexts = _Metadata()
        module.visit(ExpressionContextVisitor(contexts, ExpressionContext.LOAD))  # type: ignore[arg-type]
        scopes = _Metadata(contexts.values)
        visitor = _ScopeVisitor(scopes)  # type: ignore[arg-type]
        module.visit(visitor)
        visitor.infer_accesses()
    return Scopes(scopes.values, scopes.nodes)


_NO_POSITION = nullcontext()


class _CodegenState(CodegenState):
    """libcst's code generation state without its per-node position hook (a no-op generator context per node)."""

    __slots__ = ()

    def record_syntactic_position(
        self, node: cst.CSTNode, *, start_node: cst.CSTNode | None = None, end_node: cst.CSTNode | None = None
    ) -> Any:
        return _NO_POSITION


def module_code(module: cst.Module) -> str:
    """``module.code``, the same text, without entering and leaving a generator context for every node."""
    state = _CodegenState(default_indent=module.default_indent, default_newline=module.default_newline)
    module._codegen(state)
    return "".join(state.tokens)


_original_post_init = cst.CSTNode.__post_init__
_parse_lock = threading.Lock()
#: Threads inside :func:`parse_module`, by ``threading.get_ident()``.
_parsers: set[int] = set()
_get_ident = threading.get_ident


def _post_init(self: cst.CSTNode) -> None:
    if _get_ident() not in _parsers:
        self._validate()


def parse_module(source: str) -> cst.Module:
    """``libcst.parse_module(source)`` without validating each node the parser builds.

    Every node's constructor re-checks its fields (parentheses balanced, required whitespace present...), which a
    tree straight from the parser satisfies by construction: a fifth of the parse (libcst's own comment on
    ``CSTNode.__post_init__`` suggests the same). Only the parsing thread skips it, only during the parse: nodes
    built meanwhile by other threads are still checked.
    """
    me = _get_ident()
    with _parse_lock:
        if not _parsers:
            cst.CSTNode.__post_init__ = _post_init  # type: ignore[method-assign]
        _parsers.add(me)
    try:
        return cst.parse_module(source)
    finally:
        with _parse_lock:
            _parsers.discard(me)
            if not _parsers:
                cst.CSTNode.__post_init__ = _original_post_init  # type: ignore[method-assign]
