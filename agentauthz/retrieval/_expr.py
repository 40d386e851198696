"""The neutral filter expression of a pre-filter: its nodes and their algebra.

A pre-filter is a boolean expression over resource attributes (``Expr``): the
constants :data:`TRUE` / :data:`FALSE`, the connectives :class:`And`,
:class:`Or`, :class:`Not`, and atoms with Cedar semantics (:class:`Has`,
:class:`Comparison`, :class:`In`, :class:`Contains`, :class:`Like`,
:class:`InHierarchy`). :func:`all_of`, :func:`any_of` and :func:`negate` build
simplified expressions; :func:`nnf` pushes negations down to the atoms, the
form every renderer (:mod:`agentauthz.retrieval._dialects`) and the metadata
predicate (:mod:`agentauthz.retrieval._predicate`) read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

from agentauthz._model import EntityUID

__all__ = [
    "ANCESTORS",
    "ATOMS",
    "FALSE",
    "FLIPPED",
    "NEGATED",
    "ORDER_OPS",
    "TRUE",
    "And",
    "Atom",
    "Comparison",
    "Const",
    "Contains",
    "Expr",
    "Has",
    "In",
    "InHierarchy",
    "Like",
    "Not",
    "Op",
    "Or",
    "Scalar",
    "all_of",
    "any_of",
    "attribute_text",
    "is_long",
    "negate",
    "nnf",
    "present_attributes",
    "read_attributes",
    "restricted",
    "size_of",
]

#: Entry of a ``keys`` mapping naming the metadata key that lists a resource's ancestors.
ANCESTORS = "@ancestors"

Scalar: TypeAlias = "str | int | bool | EntityUID"
Op = Literal["==", "!=", "<", "<=", ">", ">="]
ORDER_OPS: tuple[Op, ...] = ("<", "<=", ">", ">=")
NEGATED: dict[Op, Op] = {"==": "!=", "!=": "==", "<": ">=", "<=": ">", ">": "<=", ">=": "<"}
FLIPPED: dict[Op, Op] = {"==": "==", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}


def is_long(value: Any) -> bool:
    """Whether a Python value is a Cedar ``Long`` (an int, not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class Const:
    """``TRUE`` (keep every document) or ``FALSE`` (keep none)."""

    value: bool

    def __str__(self) -> str:
        return "true" if self.value else "false"


TRUE = Const(True)
FALSE = Const(False)


class _Node:
    """Size and hash of a composite expression, each computed once (trees can be large).

    The hash on first use: most nodes the simplifications build are flattened
    into their parents and never hashed.
    """

    _size: int
    _children: tuple[Expr, ...]
    _hash: int | None

    def _cache(self, children: tuple[Expr, ...]) -> None:
        object.__setattr__(self, "_size", 1 + sum(map(size_of, children)))
        object.__setattr__(self, "_children", children)
        object.__setattr__(self, "_hash", None)

    def __hash__(self) -> int:
        found = self._hash
        if found is None:
            found = hash((type(self).__name__, self._children))
            object.__setattr__(self, "_hash", found)
        return found


@dataclass(frozen=True, eq=True)
class And(_Node):
    """All of ``items`` hold."""

    items: tuple[Expr, ...]

    def __post_init__(self) -> None:
        self._cache(self.items)

    __hash__ = _Node.__hash__

    def __str__(self) -> str:
        return " && ".join(_wrapped(item) for item in self.items)


@dataclass(frozen=True, eq=True)
class Or(_Node):
    """At least one of ``items`` holds."""

    items: tuple[Expr, ...]

    def __post_init__(self) -> None:
        self._cache(self.items)

    __hash__ = _Node.__hash__

    def __str__(self) -> str:
        return " || ".join(_wrapped(item) for item in self.items)


@dataclass(frozen=True, eq=True)
class Not(_Node):
    """``item`` does not hold (true where its attribute is missing)."""

    item: Expr

    def __post_init__(self) -> None:
        self._cache((self.item,))

    __hash__ = _Node.__hash__

    def __str__(self) -> str:
        return f"!({self.item})"


@dataclass(frozen=True)
class Has:
    """The attribute is present (its metadata key exists and is not None)."""

    attr: str

    def __str__(self) -> str:
        return f"has {attribute_text(self.attr)}"


@dataclass(frozen=True)
class Comparison:
    """The attribute is present and compares with ``value`` (Cedar semantics).

    ``==`` / ``!=`` compare like Cedar: values of different types are not equal
    (``1 != true``, ``"1" != 1``); ``!=`` also needs the attribute present. An
    :class:`EntityUID` value matches the entity id held in metadata. ``<``,
    ``<=``, ``>``, ``>=`` hold only for integers.
    """

    attr: str
    op: Op
    value: Scalar

    def __str__(self) -> str:
        return f"{attribute_text(self.attr)} {self.op} {_literal(self.value)}"


@dataclass(frozen=True)
class In:
    """The attribute is present and equal (as in :class:`Comparison`) to one of ``values``."""

    attr: str
    values: tuple[Scalar, ...]

    def __str__(self) -> str:
        return f"{attribute_text(self.attr)} in [{', '.join(_literal(v) for v in self.values)}]"


@dataclass(frozen=True)
class Contains:
    """The attribute is a list holding an element equal to ``value``."""

    attr: str
    value: Scalar

    def __str__(self) -> str:
        return f"{attribute_text(self.attr)}.contains({_literal(self.value)})"


@dataclass(frozen=True)
class Like:
    """The attribute is a string matching a Cedar ``like`` pattern; ``None`` parts are ``*``."""

    attr: str
    pattern: tuple[str | None, ...]

    def __str__(self) -> str:
        text = "".join("*" if part is None else part.replace("\\", "\\\\").replace("*", "\\*")
                       for part in self.pattern)
        return f"{attribute_text(self.attr)} like {json.dumps(text, ensure_ascii=False)}"


@dataclass(frozen=True)
class InHierarchy:
    """The resource descends from ``entity`` (needs the :data:`ANCESTORS` key)."""

    entity: EntityUID

    def __str__(self) -> str:
        return f"in {self.entity}"


Expr: TypeAlias = "Const | And | Or | Not | Has | Comparison | In | Contains | Like | InHierarchy"
Atom: TypeAlias = "Has | Comparison | In | Contains | Like | InHierarchy"
ATOMS = (Has, Comparison, In, Contains, Like, InHierarchy)


def attribute_text(attr: str) -> str:
    return attr if attr.isidentifier() else json.dumps(attr, ensure_ascii=False)


def _literal(value: Scalar) -> str:
    if isinstance(value, EntityUID):
        return str(value)
    return json.dumps(value, ensure_ascii=False)


def _wrapped(expr: Expr) -> str:
    return f"({expr})" if isinstance(expr, (And, Or)) else str(expr)


def _attr_of(expr: Expr) -> str | None:
    if isinstance(expr, (Has, Comparison, In, Contains, Like)):
        return expr.attr
    return None


def present_attributes(expr: Expr) -> frozenset[str]:
    """The attributes that are present wherever ``expr`` holds."""
    if isinstance(expr, (Has, Comparison, In, Contains, Like)):
        return frozenset((expr.attr,))
    if isinstance(expr, And):
        return frozenset().union(*(present_attributes(item) for item in expr.items))
    if isinstance(expr, Or):
        return frozenset.intersection(*(present_attributes(item) for item in expr.items))
    return frozenset()


def _kinds(parts: dict[Expr, None]) -> tuple[bool, bool, bool] | None:
    """Whether ``parts`` holds a Has, an And, an Or; None if some ``p`` and ``Not(p)`` are both in.

    One pass, without building any node: the simplifications below look only
    for the kinds that are there.
    """
    has = conjunction = disjunction = False
    for part in parts:
        kind = type(part)
        if kind is Not:
            if part.item in parts:  # type: ignore[union-attr]
                return None
        elif kind is Has:
            has = True
        elif kind is And:
            conjunction = True
        elif kind is Or:
            disjunction = True
    return has, conjunction, disjunction


def all_of(*items: Expr) -> Expr:
    """Conjunction, simplified (flattened, constants folded, duplicates dropped).

    Example:
        >>> print(all_of(Has("dept"), Comparison("dept", "==", "hr"), TRUE))
        dept == "hr"
    """
    unique: dict[Expr, None] = {}
    for item in items:
        for part in item.items if type(item) is And else (item,):
            if type(part) is Const:
                if not part.value:
                    return FALSE
            else:
                unique[part] = None
    if len(unique) <= 1:
        return next(iter(unique)) if unique else TRUE
    kinds = _kinds(unique)
    if kinds is None:
        return FALSE
    has, _, disjunction = kinds
    if not (has or disjunction):
        return And(tuple(unique))
    # Absorption first: a && (a || b) is a.
    flat = [part for part in unique
            if not (isinstance(part, Or) and any(item in unique for item in part.items))]
    # Then an attribute compared with a value is present: `has a` next to it says nothing more. Only
    # what absorption kept may say so: `has a && (has a || a == 1)` is `has a`, not true.
    if has:
        needed: set[str] = set()
        for part in flat:
            if not isinstance(part, Has):
                needed |= present_attributes(part)
        flat = [part for part in flat if not (isinstance(part, Has) and part.attr in needed)]
    return flat[0] if len(flat) == 1 else And(tuple(flat))


def any_of(*items: Expr) -> Expr:
    """Disjunction, simplified (flattened, constants folded, duplicates dropped).

    Example:
        >>> print(any_of(Comparison("dept", "==", "hr"), FALSE))
        dept == "hr"
    """
    unique: dict[Expr, None] = {}
    for item in items:
        for part in item.items if type(item) is Or else (item,):
            if type(part) is Const:
                if part.value:
                    return TRUE
            else:
                unique[part] = None
    if len(unique) <= 1:
        return next(iter(unique)) if unique else FALSE
    kinds = _kinds(unique)
    if kinds is None:
        return TRUE
    if not kinds[1]:
        return Or(tuple(unique))
    # Absorption: a || (a && b) is a.
    flat = [part for part in unique
            if not (isinstance(part, And) and any(item in unique for item in part.items))]
    if not flat:
        return FALSE
    return flat[0] if len(flat) == 1 else Or(tuple(flat))


def negate(expr: Expr) -> Expr:
    """Negation, simplified (constants folded, double negation removed)."""
    if isinstance(expr, Const):
        return FALSE if expr.value else TRUE
    if isinstance(expr, Not):
        return expr.item
    return Not(expr)


def size_of(expr: Expr) -> int:
    """How many nodes ``expr`` has."""
    return expr._size if isinstance(expr, _Node) else 1


def nnf(expr: Expr, negated: bool = False) -> Expr:
    """Push negations down to atoms; constants folded."""
    if isinstance(expr, Const):
        return Const(expr.value != negated)
    if isinstance(expr, Not):
        return nnf(expr.item, not negated)
    if isinstance(expr, And):
        parts = [nnf(item, negated) for item in expr.items]
        return any_of(*parts) if negated else all_of(*parts)
    if isinstance(expr, Or):
        parts = [nnf(item, negated) for item in expr.items]
        return all_of(*parts) if negated else any_of(*parts)
    return Not(expr) if negated else expr


def read_attributes(expr: Expr) -> frozenset[str]:
    """The attributes ``expr`` reads."""
    if isinstance(expr, (And, Or)):
        return frozenset().union(*(read_attributes(item) for item in expr.items))
    if isinstance(expr, Not):
        return read_attributes(expr.item)
    name = _attr_of(expr)
    return frozenset() if name is None else frozenset((name,))


def restricted(expr: Expr, attributes: frozenset[str], ancestors: bool) -> Expr:
    """``expr`` where attributes outside ``attributes`` (and, without ``ancestors``, parents) are missing."""
    if isinstance(expr, Const):
        return expr
    if isinstance(expr, And):
        return all_of(*(restricted(item, attributes, ancestors) for item in expr.items))
    if isinstance(expr, Or):
        return any_of(*(restricted(item, attributes, ancestors) for item in expr.items))
    if isinstance(expr, Not):
        return negate(restricted(expr.item, attributes, ancestors))
    if isinstance(expr, InHierarchy):
        return expr if ancestors else FALSE
    return expr if expr.attr in attributes else FALSE  # every atom needs its attribute present
