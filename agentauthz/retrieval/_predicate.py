"""The pre-filter as a Python predicate over a document's metadata, exact for any metadata.

:class:`MetadataPredicate` evaluates an expression in negation normal form
(:func:`~agentauthz.retrieval._expr.nnf`) with the Cedar semantics of its
atoms: no equality across types, orders on integers only, a missing key or
``None`` is a missing attribute. :func:`like_matches` matches Cedar ``like``
patterns in linear time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from agentauthz._model import EntityUID
from agentauthz.retrieval._expr import (
    ANCESTORS,
    And,
    Comparison,
    Const,
    Contains,
    Expr,
    Has,
    In,
    InHierarchy,
    Not,
    Op,
    Or,
    Scalar,
    is_long,
)

__all__ = ["MetadataPredicate", "allow_all", "deny_all", "like_matches"]


def allow_all(metadata: Mapping[str, Any]) -> bool:
    """Keep every document."""
    return True


def deny_all(metadata: Mapping[str, Any]) -> bool:
    """Keep no document."""
    return False


_MISSING: Any = object()


class MetadataPredicate:
    """Evaluates an NNF expression over metadata with the Cedar semantics of its atoms."""

    def __init__(self, expression: Expr, keys: dict[str, str]) -> None:
        self.expression = expression
        self.keys = keys

    def __repr__(self) -> str:
        return f"<prefilter {self.expression}>"

    def __call__(self, metadata: Mapping[str, Any]) -> bool:
        if not isinstance(metadata, Mapping):
            return True
        try:
            return self._eval(self.expression, metadata)
        except Exception:  # unreadable metadata keeps the document: authorization decides
            return True

    def _eval(self, expr: Expr, metadata: Mapping[str, Any]) -> bool:
        if isinstance(expr, Const):
            return expr.value
        if isinstance(expr, And):
            return all(self._eval(item, metadata) for item in expr.items)
        if isinstance(expr, Or):
            return any(self._eval(item, metadata) for item in expr.items)
        if isinstance(expr, Not):
            if isinstance(expr.item, InHierarchy) and ANCESTORS not in self.keys:
                return True
            return not self._eval(expr.item, metadata)
        if isinstance(expr, InHierarchy):
            key = self.keys.get(ANCESTORS)
            if key is None:
                return True
            ancestors = metadata.get(key)
            if not isinstance(ancestors, (list, tuple, set, frozenset)):
                return False
            return any(_same_entity(item, expr.entity) for item in ancestors)
        value = metadata.get(self.keys.get(expr.attr, expr.attr), _MISSING)
        if value is None or value is _MISSING:
            return False
        if isinstance(expr, Has):
            return True
        if isinstance(expr, Comparison):
            if expr.op == "==":
                return _cedar_equal(value, expr.value)
            if expr.op == "!=":
                return not _cedar_equal(value, expr.value)
            if not is_long(value) or not isinstance(expr.value, int) or isinstance(expr.value, bool):
                return False
            return _compare(value, expr.op, expr.value)
        if isinstance(expr, In):
            return any(_cedar_equal(value, item) for item in expr.values)
        if isinstance(expr, Contains):
            return _is_list(value) and any(_cedar_equal(item, expr.value) for item in value)
        return isinstance(value, str) and like_matches(value, expr.pattern)


def _is_list(value: Any) -> bool:
    return isinstance(value, (list, tuple, set, frozenset))


def _compare(left: int, op: Op, right: int) -> bool:
    if op == "<":
        return left < right
    if op == "<=":
        return left <= right
    if op == ">":
        return left > right
    return left >= right


def _cedar_equal(value: Any, literal: Scalar) -> bool:
    """Metadata ``value`` equals a literal the way Cedar compares (no cross-type equality)."""
    if isinstance(literal, EntityUID):
        return _same_entity(value, literal) or (isinstance(value, str) and value == literal.id)
    if isinstance(literal, bool):
        return isinstance(value, bool) and value == literal
    if isinstance(literal, int):
        return is_long(value) and value == literal
    return isinstance(value, str) and value == literal


def _same_entity(value: Any, entity: EntityUID) -> bool:
    if isinstance(value, EntityUID):
        return value == entity
    if isinstance(value, str):
        return value == str(entity)
    if isinstance(value, Mapping):
        inner = value.get("__entity", value)
        return isinstance(inner, Mapping) and inner.get("type") == entity.type and \
            inner.get("id") == entity.id
    return False


def like_matches(text: str, pattern: Sequence[str | None]) -> bool:
    """Cedar ``like``: whether ``text`` matches ``pattern``, in linear time.

    ``pattern`` is a sequence of literal parts and wildcards (``None``, Cedar's
    unescaped ``*``: any run of characters, the empty one included); an escaped
    ``\\*`` in Cedar text is a literal ``"*"`` part. Characters are Unicode
    code points, compared exactly (no case folding, no normalization), as Cedar
    does. Without backtracking: the first literal run is a prefix, the last a
    suffix, and each run between wildcards is taken at its leftmost occurrence
    after the previous one (a later occurrence would only leave less room for
    the rest), so a hostile value costs one scan, not exponential time.

    Example:
        >>> like_matches("alpha.pdf", ("alpha", None, ".pdf"))
        True
        >>> like_matches("a*b", ("a", "*", "b")), like_matches("axb", ("a", "*", "b"))
        (True, False)
    """
    runs = [""]
    for part in pattern:
        if part is None:
            runs.append("")
        else:
            runs[-1] += part
    if len(runs) == 1:
        return text == runs[0]
    first, *middle, last = runs
    if len(text) < len(first) + len(last) or not text.startswith(first) or not text.endswith(last):
        return False
    position, end = len(first), len(text) - len(last)
    for run in middle:
        found = text.find(run, position, end)
        if found < 0:
            return False
        position = found + len(run)
    return True
