"""The pre-filter rendered for a vector store: a Bedrock ``RetrievalFilter`` or a Mongo-style dict.

Each dialect writes an atom, a negated atom and the connectives its store
understands; :func:`_render` walks an expression in negation normal form and
renders each literal as a superset of itself, so the whole filter keeps at
least the documents the expression keeps. A literal a store cannot express
becomes "keep everything" (:data:`~agentauthz.retrieval._expr.TRUE`); the
strict Bedrock rendering notes each such superset and refuses.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal, TypeAlias

from agentauthz._errors import AccessDenied, ConfigurationError
from agentauthz._model import Decision, EntityUID
from agentauthz.retrieval._expr import (
    ANCESTORS,
    ATOMS,
    FALSE,
    NEGATED,
    TRUE,
    And,
    Atom,
    Comparison,
    Const,
    Contains,
    Expr,
    Has,
    In,
    InHierarchy,
    Like,
    Not,
    Or,
    Scalar,
    all_of,
    any_of,
    attribute_text,
    is_long,
    nnf,
    present_attributes,
)

__all__ = ["Presence", "bedrock_filter", "bedrock_inexpressible", "mongo_filter"]

Rendered: TypeAlias = "dict[str, Any] | Const"


def bedrock_filter(expression: Expr, keys: Mapping[str, str], *, strict: bool) -> dict[str, Any] | None:
    """The Bedrock ``RetrievalFilter`` keeping at least the documents ``expression`` keeps.

    Returns:
        The filter, or None where it would keep every document.

    Raises:
        AccessDenied: the filter would keep no document.
        ConfigurationError: ``strict`` and the filter would keep more than the
            expression (the message names each construct).
    """
    dialect = _Bedrock(keys, strict=strict)
    rendered = _checked(_render(nnf(expression), dialect, frozenset()))
    if dialect.approximated:
        raise ConfigurationError(
            "the policies do not translate exactly into a Bedrock metadata filter: "
            + "; ".join(dict.fromkeys(dialect.approximated)))
    return rendered


def bedrock_inexpressible(expression: Expr, keys: Mapping[str, str]) -> tuple[str, ...]:
    """The resource attributes whose conditions no Bedrock filter writes exactly (to name them)."""
    dialect = _Bedrock(keys, strict=True)
    _render(nnf(expression), dialect, frozenset())
    return tuple(dict.fromkeys(dialect.inexpressible))


#: How a Mongo-style store tests that a key is present: ``$exists`` (Pinecone),
#: a comparison with null (MongoDB) or not at all (Chroma).
Presence: TypeAlias = 'Literal["exists", "null"] | None'


def mongo_filter(
    expression: Expr, keys: Mapping[str, str], *, ne_matches_missing: bool,
    presence: Presence = None, strict: bool = False,
) -> dict[str, Any] | None:
    """A Mongo-style filter keeping at least the documents ``expression`` keeps (None: every document).

    Raises:
        AccessDenied: the filter would keep no document.
        ConfigurationError: ``strict`` and the filter would keep more than the
            expression (the message names each construct).
    """
    dialect = _Mongo(keys, ne_matches_missing, presence, strict=strict)
    rendered = _checked(_render(nnf(expression), dialect, frozenset()))
    if dialect.approximated:
        raise ConfigurationError(
            "the policies do not translate exactly into this Mongo-style metadata filter: "
            + "; ".join(dict.fromkeys(dialect.approximated)))
    return rendered


def _checked(rendered: Rendered) -> dict[str, Any] | None:
    """A rendered filter; None (no filter) only for "keep every document", never for "keep none"."""
    if rendered == FALSE:
        raise AccessDenied(Decision(allowed=False), subject="the retrieval")
    return rendered if isinstance(rendered, dict) else None


class _Dialect:
    """How one backend writes atoms, negated atoms and connectives.

    With ``strict``, each literal rendered as a strict superset of itself is
    noted (:attr:`approximated`, and its attribute in :attr:`inexpressible`):
    the exact renderings refuse a filter that keeps more than the expression.
    """

    def __init__(self, *, strict: bool = False) -> None:
        self.strict = strict
        #: With ``strict``: what was rendered as a strict superset of itself.
        self.approximated: list[str] = []
        #: With ``strict``: the attributes of those conditions.
        self.inexpressible: list[str] = []

    def _superset(self, rendered: Rendered, what: str, attr: str | None = None) -> Rendered:
        """``rendered`` keeps more than the literal: fine unless strict, where it is noted."""
        if self.strict:
            self.approximated.append(what)
            if attr is not None:
                self.inexpressible.append(attr)
        return rendered

    def present_in(self, expr: Expr) -> frozenset[str]:
        """The attributes present wherever this dialect's rendering of ``expr`` holds.

        What an enclosing conjunction may count on: a member rendered by an
        operator that also matches a missing key requires nothing.
        """
        return present_attributes(expr)

    def and_(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        raise NotImplementedError

    def or_(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        raise NotImplementedError

    def literal(self, atom: Atom, negated: bool, present: frozenset[str]) -> Rendered:
        """A filter keeping at least the documents where the literal holds.

        ``present``: attributes the enclosing conjunction already requires.
        """
        raise NotImplementedError


def _render(expr: Expr, dialect: _Dialect, present: frozenset[str]) -> Rendered:
    """Render an NNF expression; each literal becomes a superset of itself, so the whole does."""
    if isinstance(expr, Const):
        return expr
    if isinstance(expr, Not):
        assert isinstance(expr.item, ATOMS)
        return dialect.literal(expr.item, True, present)
    if isinstance(expr, And):
        # What the conjunction needs present, each member may count on.
        required = present.union(*(dialect.present_in(item) for item in expr.items))
        parts: list[dict[str, Any]] = []
        for item in expr.items:
            rendered = _render(item, dialect, required)
            if rendered == FALSE:
                return FALSE
            if isinstance(rendered, dict) and rendered not in parts:
                parts.append(rendered)
        if not parts:
            return TRUE
        return parts[0] if len(parts) == 1 else dialect.and_(parts)
    if isinstance(expr, Or):
        absorbed = _absences_absorbed(expr)
        if absorbed != expr:
            return _render(absorbed, dialect, present)
        parts = []
        for item in expr.items:
            rendered = _render(item, dialect, present)
            if rendered == TRUE:
                return TRUE
            if isinstance(rendered, dict) and rendered not in parts:
                parts.append(rendered)
        if not parts:
            return FALSE
        return parts[0] if len(parts) == 1 else dialect.or_(parts)
    return dialect.literal(expr, False, present)


def _absences_absorbed(expr: Or) -> Expr:
    """``expr`` with each ``!has x`` disjunct merged into a disjunct on ``x``, where one takes it.

    The same documents, in a form more stores can write: ``!has x || (has x && R)``
    is ``!has x || R``; ``!has x || x != v`` is ``!(x == v)`` (true where ``x`` is
    missing, Bedrock's ``notEquals``); and ``!has x`` adds nothing next to a negated
    atom on ``x``, which already holds where ``x`` is missing. A ``has`` guard in a
    forbid (``resource has x && resource.x == v``) leaves exactly this shape.
    """
    absent = {_absent(item) for item in expr.items} - {None}
    if not absent:
        return expr
    items: list[Expr] = []
    for item in expr.items:
        if isinstance(item, And):
            item = all_of(*(part for part in item.items
                            if not (isinstance(part, Has) and part.attr in absent)))
        if isinstance(item, Comparison) and item.op == "!=" and item.attr in absent:
            item = Not(Comparison(item.attr, "==", item.value))
        items.append(item)
    covered = {item.item.attr for item in items
               if isinstance(item, Not) and isinstance(item.item, (Comparison, In, Contains, Like))}
    return any_of(*(item for item in items if _absent(item) not in covered))


def _absent(expr: Expr) -> str | None:
    """``x`` where ``expr`` is ``!has x``."""
    return expr.item.attr if isinstance(expr, Not) and isinstance(expr.item, Has) else None


def _spliced(connective: str, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Members of a connective, with nested uses of the same connective flattened."""
    flat: list[dict[str, Any]] = []
    for item in items:
        for member in item[connective] if set(item) == {connective} else (item,):
            if member not in flat:
                flat.append(member)
    return flat


def _plain(value: Scalar) -> str | int | bool:
    """The metadata form of a literal: an entity is stored as its id."""
    return value.id if isinstance(value, EntityUID) else value


class _Bedrock(_Dialect):
    """Amazon Bedrock Knowledge Base ``RetrievalFilter``.

    As the API reference (``bedrock-agent-runtime`` ``RetrievalFilter``) documents
    them: ``notEquals`` matches a document whose value differs *or that lacks the
    key*; every other operator (``equals``, ``in``, ``notIn``, the orders,
    ``listContains``, ``stringContains``, ``startsWith``) matches only documents
    that have the key. So ``x != v`` (present and different) is ``notIn [v]``,
    ``!(x == v)`` (missing or different) is ``notEquals``, and ``!(x in S)`` is
    ``notEquals`` for each member. There is no "exists" operator, no negation and
    no negated ``listContains``: ``has x`` alone, a missing key or'ed with anything
    but a difference, a negated ``contains`` or ``like`` cannot be written.
    """

    _ORDER: ClassVar[dict[str, str]] = {
        "<": "lessThan", "<=": "lessThanOrEquals", ">": "greaterThan", ">=": "greaterThanOrEquals",
    }

    def __init__(self, keys: Mapping[str, str], *, strict: bool = False) -> None:
        super().__init__(strict=strict)
        self.keys = keys

    def and_(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        return {"andAll": _spliced("andAll", items)}

    def or_(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        return {"orAll": _spliced("orAll", items)}

    def _key(self, attr: str) -> str | None:
        key = self.keys.get(attr, attr)
        return key if isinstance(key, str) and 1 <= len(key) <= 100 else None

    @staticmethod
    def _leaf(op: str, key: str, value: Any) -> dict[str, Any]:
        return {op: {"key": key, "value": value}}

    def literal(self, atom: Atom, negated: bool, present: frozenset[str]) -> Rendered:
        if isinstance(atom, InHierarchy):
            return self._hierarchy(atom, negated)
        attr = atom.attr
        key = self._key(attr)
        if key is None:
            return self._superset(TRUE, f"attribute {attribute_text(attr)} has no valid metadata key", attr)
        if isinstance(atom, Has):
            return self._superset(TRUE, _missing_key(attr, negated), attr)
        if not _exact_values(atom):
            self._superset(TRUE, f"a comparison of {attribute_text(attr)} with an entity or a number "
                                 "beyond 2^53", attr)
        # Where the conjunction needs the attribute, a positive atom of it (rendered by an operator
        # that needs the key: never notEquals) keeps only documents that have it; under that, a
        # negation may be written by its present-key form. `has` itself is never relied on: it
        # renders as nothing (a superset, refused when strict).
        known = attr in present
        if isinstance(atom, Comparison):
            return self._comparison(key, atom, negated, known)
        if isinstance(atom, In):
            values = [_plain(v) for v in atom.values]
            if not negated:
                return self._leaf("in", key, values)
            if known:
                return self._leaf("notIn", key, values)
            leaves = [self._leaf("notEquals", key, v) for v in values]
            return leaves[0] if len(leaves) == 1 else {"andAll": leaves}
        if isinstance(atom, Contains):
            if negated:
                return self._superset(
                    TRUE, f"!{attribute_text(attr)}.contains(...) (no negated listContains)", attr)
            return self._leaf("listContains", key, _plain(atom.value))
        # Like
        if negated:
            return self._superset(TRUE, f"!({attribute_text(attr)} like ...)", attr)
        return self._like(key, attr, atom.pattern)

    def _hierarchy(self, atom: InHierarchy, negated: bool) -> Rendered:
        key = self.keys.get(ANCESTORS)
        if key is None or not 1 <= len(key) <= 100:
            return self._superset(TRUE, "a hierarchy condition without an ancestors key")
        if negated:
            return self._superset(TRUE, "a negated hierarchy condition")
        return self._leaf("listContains", key, str(atom.entity))

    def _comparison(self, key: str, atom: Comparison, negated: bool, known: bool) -> Rendered:
        """``known``: the attribute is present wherever the literal is evaluated."""
        value = _plain(atom.value)
        op = NEGATED[atom.op] if negated else atom.op
        if op == "==":
            # missing-or-equal (a negated !=) cannot be written; equal alone needs presence.
            if not negated or known:
                return self._leaf("equals", key, value)
            return self._superset(TRUE, _missing_key(atom.attr, True, "equal to a value"), atom.attr)
        if op == "!=":
            # notEquals: missing or different (documented); notIn: present and different.
            return self._leaf("notEquals", key, value) if negated else self._leaf("notIn", key, [value])
        if negated and not known:
            return self._superset(TRUE, _missing_key(atom.attr, True, "out of range"), atom.attr)
        if not is_long(value):
            return self._superset(TRUE, f"an order on {attribute_text(atom.attr)} with a non-number",
                                  atom.attr)
        return self._leaf(self._ORDER[op], key, value)

    def _like(self, key: str, attr: str, pattern: tuple[str | None, ...]) -> Rendered:
        if all(part is not None for part in pattern):
            return self._leaf("equals", key, "".join(part for part in pattern if part is not None))
        # startsWith would be closer, but only OpenSearch Serverless stores accept it.
        chunks = [part for part in pattern if part]
        what = f"{attribute_text(attr)} like a pattern with a wildcard"
        if chunks:
            return self._superset(self._leaf("stringContains", key, max(chunks, key=len)), what, attr)
        return self._superset(TRUE, what, attr)


def _missing_key(attr: str, negated: bool, otherwise: str = "") -> str:
    """Why a condition on whether ``attr`` is present has no Bedrock filter, and what to write instead."""
    name = attribute_text(attr)
    if not negated:
        return f"has {name} (no Bedrock filter tests that a key is present: compare {name} with a value)"
    alternative = f" or {name} {otherwise}" if otherwise else ""
    return (f"{name} missing{alternative} (a Bedrock filter keeps documents without a key only with "
            f"notEquals, missing or different from one value: guard a forbid as `resource has {name} && "
            f"resource.{name} == value`, or drop its `has` guard so that documents without {name} are "
            f"denied, or give every document {name})")


#: Bedrock and Pinecone numbers are doubles: a Long beyond this compares inexactly.
_DOUBLE_EXACT = 2**53


def _exact_values(atom: Atom) -> bool:
    """Whether the literal values of ``atom`` compare in the store as in Cedar.

    An entity is stored as its id, which does not name its type; a Long beyond
    2^53 may be stored as a double.
    """
    values: tuple[Any, ...] = ()
    if isinstance(atom, (Comparison, Contains)):
        values = (atom.value,)
    elif isinstance(atom, In):
        values = atom.values
    return not any(isinstance(value, EntityUID) or (is_long(value) and abs(value) > _DOUBLE_EXACT)
                   for value in values)


class _Mongo(_Dialect):
    """Mongo-style filters as MongoDB, Pinecone and Chroma read them.

    ``$eq``, ``$in`` and the orders match only documents that have the key;
    ``$ne`` and ``$nin`` also match documents without it where
    ``ne_matches_missing`` (MongoDB, Chroma >= 0.5.12). Whether a key is there
    is tested as ``presence`` says: ``{"$exists": bool}`` (Pinecone, which
    stores no nulls), ``{"$eq": null}`` / ``{"$ne": null}`` (MongoDB: missing
    or null / present and not null, a stored null read as missing as the
    metadata convention does), or not at all (Chroma). So ``!has x || x != v``
    (a guarded forbid under ``policy_errors="deny"``) is ``$ne`` where it
    matches missing keys, and ``$ne`` or'ed with "missing" elsewhere; what the
    store cannot say is left out (a superset), noted when strict.
    """

    _ORDER: ClassVar[dict[str, str]] = {"<": "$lt", "<=": "$lte", ">": "$gt", ">=": "$gte"}

    def __init__(self, keys: Mapping[str, str], ne_matches_missing: bool, presence: Presence = None,
                 *, strict: bool = False) -> None:
        super().__init__(strict=strict)
        self.keys = keys
        self.ne_matches_missing = ne_matches_missing
        self.presence = presence

    def present_in(self, expr: Expr) -> frozenset[str]:
        """As the base class says; ``x != v`` by ``$ne`` needs no ``x`` where ``$ne`` matches missing keys."""
        if not self.ne_matches_missing:
            return present_attributes(expr)
        if isinstance(expr, Comparison) and expr.op == "!=":
            return frozenset()
        if isinstance(expr, And):
            return frozenset().union(*(self.present_in(item) for item in expr.items))
        if isinstance(expr, Or):
            return frozenset.intersection(*(self.present_in(item) for item in expr.items))
        return present_attributes(expr)

    def and_(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        return {"$and": _spliced("$and", items)}

    def or_(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        return {"$or": _spliced("$or", items)}

    @staticmethod
    def _addressable(key: Any) -> str | None:
        # `$...` reads as an operator and a dot as a path: such keys cannot be addressed.
        if not isinstance(key, str) or not key or key.startswith("$") or "." in key:
            return None
        return key

    def _missing(self, key: str) -> dict[str, Any] | None:
        """Documents without ``key`` (None: the store cannot say)."""
        if self.presence == "exists":
            return {key: {"$exists": False}}
        if self.presence == "null":
            return {key: {"$eq": None}}
        return None

    def _present(self, key: str) -> dict[str, Any] | None:
        """Documents with ``key`` (None: the store cannot say)."""
        if self.presence == "exists":
            return {key: {"$exists": True}}
        if self.presence == "null":
            return {key: {"$ne": None}}
        return None

    def _or_missing(self, key: str, rendered: dict[str, Any], what: str, attr: str | None) -> Rendered:
        """``rendered`` (on present keys), or the key missing."""
        missing = self._missing(key)
        if missing is None:
            return self._superset(TRUE, f"{what}, or {attribute_text(attr or key)} missing "
                                        "(the store cannot test that a key is missing)", attr)
        return self.or_([missing, rendered])

    def _negation(self, key: str, rendered: dict[str, Any], *, holds_where_missing: bool,
                  known: bool, what: str, attr: str | None) -> Rendered:
        """``rendered`` by ``$ne`` / ``$nin``; the literal holds where the key is missing or not.

        ``known``: the enclosing conjunction already requires the key.
        """
        if known or holds_where_missing == self.ne_matches_missing:
            return rendered
        if holds_where_missing:
            return self._or_missing(key, rendered, what, attr)
        present = self._present(key)
        if present is None:
            return self._superset(rendered, f"{what} (also kept where {attribute_text(attr or key)} is "
                                            "missing: the store cannot test that a key is present)", attr)
        return self.and_([present, rendered])

    def literal(self, atom: Atom, negated: bool, present: frozenset[str]) -> Rendered:
        if isinstance(atom, InHierarchy):
            return self._hierarchy(atom, negated)
        attr = atom.attr
        key = self._addressable(self.keys.get(attr, attr))
        if key is None:
            return self._superset(TRUE, f"attribute {attribute_text(attr)} has no addressable key", attr)
        if isinstance(atom, Has):
            found = self._missing(key) if negated else self._present(key)
            if found is None:
                return self._superset(TRUE, f"{'!' if negated else ''}has {attribute_text(attr)} (the store "
                                            "cannot test that a key is present)", attr)
            return found
        if not _exact_values(atom):
            self._superset(TRUE, f"a comparison of {attribute_text(attr)} with an entity or a number "
                                 "beyond 2^53", attr)
        known = attr in present
        if isinstance(atom, Like):
            if any(part is None for part in atom.pattern):
                return self._superset(TRUE, f"{attribute_text(attr)} like a pattern with a wildcard", attr)
            atom = Comparison(attr, "==", "".join(part for part in atom.pattern if part is not None))
        what = f"{'!' if negated else ''}({atom})"
        if isinstance(atom, Comparison):
            value = _plain(atom.value)
            op = NEGATED[atom.op] if negated else atom.op
            if op == "==":
                equal = {key: {"$eq": value}}
                return equal if not negated or known else self._or_missing(key, equal, what, attr)
            if op == "!=":
                return self._negation(key, {key: {"$ne": value}}, holds_where_missing=negated,
                                      known=known, what=what, attr=attr)
            if not is_long(value):
                return self._superset(TRUE, f"an order on {attribute_text(attr)} with a non-number", attr)
            ordered = {key: {self._ORDER[op]: value}}
            return ordered if not negated or known else self._or_missing(key, ordered, what, attr)
        values = [_plain(v) for v in atom.values] if isinstance(atom, In) else [_plain(atom.value)]
        # In, and Contains (an array field matches elementwise, as MongoDB, Pinecone and Chroma do)
        if not negated:
            return {key: {"$in": values}}
        return self._negation(key, {key: {"$nin": values}}, holds_where_missing=True, known=known,
                              what=what, attr=attr)

    def _hierarchy(self, atom: InHierarchy, negated: bool) -> Rendered:
        key = self._addressable(self.keys.get(ANCESTORS))
        if key is None:
            return self._superset(TRUE, "a hierarchy condition without an ancestors key")
        text = [str(atom.entity)]
        if not negated:
            return {key: {"$in": text}}
        # A resource without the ancestors key descends from nothing: the negation holds there.
        return self._negation(key, {key: {"$nin": text}}, holds_where_missing=True, known=False,
                              what=f"!({atom})", attr=None)
