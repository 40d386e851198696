"""Pre-filters for retrieval: the store's policies, partially evaluated, as a vector-store filter.

:func:`compile_prefilter` asks Cedar which resources the bound end user could
``action`` by partially evaluating the store's policies with the resource
unknown and everything else as :meth:`Authorizer.filter` sends it (the same
scope builds both: principal, entity, context, the bound session's record).
The residual policies are translated into a small, neutral filter
expression over resource attributes (:class:`Prefilter.expression`), which
renders as an Amazon Bedrock Knowledge Base ``RetrievalFilter``, a Mongo-style
dict (Chroma, Pinecone, MongoDB) or a Python callable over document metadata.

The pre-filter is an optimization: it lets a vector store skip documents the
user can certainly not read, so that the ``k`` results fetched are mostly ones
the user may see, and every document it lets through is still decided by
:meth:`Authorizer.filter`. Only an :attr:`Prefilter.exact` one, rendered with
``to_bedrock(keys, exact=True)``, may stand in for that decision (Bedrock's
``retrieve_and_generate``, which nothing can post-filter).

Soundness: the filter never excludes a document that full authorization would
allow, under the metadata convention below. Where a policy condition cannot be
translated exactly it is over-approximated: inside a ``permit`` an unknown
sub-condition counts as *true*, a ``forbid`` is applied only as far as it is
translated exactly, and when nothing useful remains there is no pre-filter at
all. Cedar's error semantics are followed: a condition that errors (a missing
attribute, a type mismatch) makes its policy not apply, so a document without a
metadata key is never excluded because of a ``forbid`` that reads that key.

Metadata convention (how a document's metadata relates to its Cedar resource):

* The resource attribute ``a`` is built from the metadata key ``keys.get(a, a)``
  (``keys`` is the mapping given to ``to_bedrock`` / ``to_mongo`` /
  ``to_callable``); a missing key, or the value ``None``, is a missing attribute.
* Values keep their JSON kind: a string is a Cedar ``String``, an integer a
  ``Long``, a boolean a ``Bool``, a list a ``Set``, a dict a record. An
  entity-typed attribute (``resource.owner == principal``) holds the entity's
  *id* as a string (``"alice"`` for ``User::"alice"``); since the id alone does
  not name the type, comparisons with entities are used only where an
  over-approximation is sound (inside permits, never to exclude).
* Hierarchy (``resource in Folder::"x"``) is translated only when
  ``keys[ANCESTORS]`` names a metadata key holding the Cedar text of *every*
  ancestor of the resource, transitively (``['Folder::"x"', 'Folder::"root"']``);
  otherwise it is over-approximated.
* The Bedrock and Mongo renderings also assume each key holds one type, the one
  the policies use it with (a scalar where compared with ``==`` or ``<``, a list
  where read with ``.contains``), as a Cedar schema guarantees. The callable is
  exact for any metadata.

Translated: ``==``, ``!=``, ``<``, ``<=``, ``>``, ``>=`` between a top-level
resource attribute and a string, integer or boolean (values from the principal
and the context are filled in by Cedar); ``S.contains(resource.a)`` with a
literal set (``a in [...]``); ``resource.a.contains(v)``, ``containsAny``,
``containsAll``; ``resource has a``; boolean attributes; ``like`` (matched in
linear time by :func:`like_matches`); ``is`` (with
``resource_type``); ``resource in E`` (with the ancestors convention);
``&&``, ``||``, ``!``, ``if-then-else``. Everything else (nested attributes,
arithmetic, extension functions, tags, ``isEmpty``, comparisons between two
resource attributes) is over-approximated.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, ClassVar, Literal, NamedTuple, TypeAlias

import cedarpy

from agentauthz._entities import referenced_uids
from agentauthz._errors import AccessDenied, AuthzError, ConfigurationError
from agentauthz._model import Decision, Entity, EntityUID, Request
from agentauthz.policy._store import truncate

if TYPE_CHECKING:
    from agentauthz._authorizer import Authorizer
    from agentauthz.retrieval._filter import RetrievalScope

__all__ = [
    "ALWAYS_ALLOWED",
    "ALWAYS_DENIED",
    "ANCESTORS",
    "FALSE",
    "NO_PREFILTER",
    "TRUE",
    "And",
    "Comparison",
    "Const",
    "Contains",
    "Expr",
    "Has",
    "In",
    "InHierarchy",
    "Like",
    "Not",
    "Or",
    "Prefilter",
    "all_of",
    "any_of",
    "compile_prefilter",
    "like_matches",
    "negate",
]

#: Entry of a ``keys`` mapping naming the metadata key that lists a resource's ancestors.
ANCESTORS = "@ancestors"

Scalar: TypeAlias = "str | int | bool | EntityUID"
Op = Literal["==", "!=", "<", "<=", ">", ">="]
_ORDER_OPS: tuple[Op, ...] = ("<", "<=", ">", ">=")
_NEGATED: dict[Op, Op] = {"==": "!=", "!=": "==", "<": ">=", "<=": ">", ">": "<=", ">=": "<"}
_FLIPPED: dict[Op, Op] = {"==": "==", "!=": "!=", "<": ">", "<=": ">=", ">": "<", ">=": "<="}
_LONG_MIN = -(2**63)
_LONG_MAX = 2**63 - 1
# Bounds on the work done for one policy: deeper residuals are over-approximated,
# bigger translations are dropped (the policy then counts as unknown).
_MAX_DEPTH = 200
_MAX_SIZE = 1_000
_MAX_ANCESTORS = 256


# -- the neutral filter expression ----------------------------------------------------


@dataclass(frozen=True)
class Const:
    """``TRUE`` (keep every document) or ``FALSE`` (keep none)."""

    value: bool

    def __str__(self) -> str:
        return "true" if self.value else "false"


TRUE = Const(True)
FALSE = Const(False)


class _Node:
    """Size and hash of a composite expression, computed once (trees can be large)."""

    _size: int
    _hash: int

    def _cache(self, children: tuple[Expr, ...]) -> None:
        object.__setattr__(self, "_size", 1 + sum(_size(child) for child in children))
        object.__setattr__(self, "_hash", hash((type(self).__name__, children)))

    def __hash__(self) -> int:
        return self._hash


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
        return f"has {_name(self.attr)}"


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
        return f"{_name(self.attr)} {self.op} {_literal(self.value)}"


@dataclass(frozen=True)
class In:
    """The attribute is present and equal (as in :class:`Comparison`) to one of ``values``."""

    attr: str
    values: tuple[Scalar, ...]

    def __str__(self) -> str:
        return f"{_name(self.attr)} in [{', '.join(_literal(v) for v in self.values)}]"


@dataclass(frozen=True)
class Contains:
    """The attribute is a list holding an element equal to ``value``."""

    attr: str
    value: Scalar

    def __str__(self) -> str:
        return f"{_name(self.attr)}.contains({_literal(self.value)})"


@dataclass(frozen=True)
class Like:
    """The attribute is a string matching a Cedar ``like`` pattern; ``None`` parts are ``*``."""

    attr: str
    pattern: tuple[str | None, ...]

    def __str__(self) -> str:
        text = "".join("*" if part is None else part.replace("\\", "\\\\").replace("*", "\\*")
                       for part in self.pattern)
        return f"{_name(self.attr)} like {json.dumps(text, ensure_ascii=False)}"


@dataclass(frozen=True)
class InHierarchy:
    """The resource descends from ``entity`` (needs the :data:`ANCESTORS` key)."""

    entity: EntityUID

    def __str__(self) -> str:
        return f"in {self.entity}"


Expr: TypeAlias = "Const | And | Or | Not | Has | Comparison | In | Contains | Like | InHierarchy"
_Atom: TypeAlias = "Has | Comparison | In | Contains | Like | InHierarchy"
_ATOMS = (Has, Comparison, In, Contains, Like, InHierarchy)


def _name(attr: str) -> str:
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


def _needed(expr: Expr) -> frozenset[str]:
    """The attributes that are present wherever ``expr`` holds."""
    if isinstance(expr, (Has, Comparison, In, Contains, Like)):
        return frozenset((expr.attr,))
    if isinstance(expr, And):
        return frozenset().union(*(_needed(item) for item in expr.items))
    if isinstance(expr, Or):
        return frozenset.intersection(*(_needed(item) for item in expr.items))
    return frozenset()


def all_of(*items: Expr) -> Expr:
    """Conjunction, simplified (flattened, constants folded, duplicates dropped).

    Example:
        >>> print(all_of(Has("dept"), Comparison("dept", "==", "hr"), TRUE))
        dept == "hr"
    """
    unique: dict[Expr, None] = {}
    for item in items:
        for part in item.items if isinstance(item, And) else (item,):
            if part == FALSE:
                return FALSE
            if part != TRUE:
                unique[part] = None
    if any(Not(part) in unique for part in unique):
        return FALSE
    # An attribute compared with a value is present: `has a` next to it says nothing more.
    needed: set[str] = set()
    for part in unique:
        if not isinstance(part, Has):
            needed |= _needed(part)
    # Absorption: a && (a || b) is a.
    flat = [part for part in unique
            if not (isinstance(part, Has) and part.attr in needed)
            and not (isinstance(part, Or) and any(item in unique for item in part.items))]
    if not flat:
        return TRUE
    return flat[0] if len(flat) == 1 else And(tuple(flat))


def any_of(*items: Expr) -> Expr:
    """Disjunction, simplified (flattened, constants folded, duplicates dropped).

    Example:
        >>> print(any_of(Comparison("dept", "==", "hr"), FALSE))
        dept == "hr"
    """
    unique: dict[Expr, None] = {}
    for item in items:
        for part in item.items if isinstance(item, Or) else (item,):
            if part == TRUE:
                return TRUE
            if part != FALSE:
                unique[part] = None
    if any(Not(part) in unique for part in unique):
        return TRUE
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


def _size(expr: Expr) -> int:
    return expr._size if isinstance(expr, _Node) else 1


def _nnf(expr: Expr, negated: bool = False) -> Expr:
    """Push negations down to atoms; constants folded."""
    if isinstance(expr, Const):
        return Const(expr.value != negated)
    if isinstance(expr, Not):
        return _nnf(expr.item, not negated)
    if isinstance(expr, And):
        parts = [_nnf(item, negated) for item in expr.items]
        return any_of(*parts) if negated else all_of(*parts)
    if isinstance(expr, Or):
        parts = [_nnf(item, negated) for item in expr.items]
        return all_of(*parts) if negated else any_of(*parts)
    return Not(expr) if negated else expr


# -- the result -----------------------------------------------------------------------


@dataclass(frozen=True)
class Prefilter:
    """What a vector store may filter on before the documents are authorized.

    A pre-filter never excludes a document the end user may read. Unless it
    is :attr:`exact`, it may keep documents the user may not read: every
    document it lets through must then still be authorized with
    :meth:`Authorizer.filter` (the retrievers always do this). Only an exact
    pre-filter, rendered with ``to_bedrock(keys, exact=True)``, may stand in
    for authorization where nothing can be post-filtered.

    Attributes:
        expression: the filter over resource attributes; ``TRUE`` when there is
            nothing to filter on, ``FALSE`` when nothing can be allowed.
        always_allowed: Cedar allows the action on every resource: no filter needed.
        always_denied: no resource can be allowed: do not search at all.
        exact: the expression keeps exactly the documents the policies allow
            (the metadata convention of this module holding): the partial
            evaluation's upper and lower bounds met. True for the two short cuts;
            False for a pre-filter made by hand, for :data:`NO_PREFILTER` and
            wherever a condition was over-approximated.
        note: why there is no pre-filter, or why it is not exact (for logs).

    Example:
        >>> import agentauthz as az
        >>> authz = az.Authorizer.from_text(
        ...     'permit(principal, action, resource) when { resource.dept == principal.dept };',
        ...     entities=[az.Entity(uid=az.EntityUID("User", "ann"), attrs={"dept": "hr"})])
        >>> with authz.acting_as(az.EntityUID("User", "ann")):
        ...     pre = compile_prefilter(authz, action="read")
        >>> print(pre)
        dept == "hr"
        >>> pre.to_bedrock(keys={"dept": "department"})
        {'equals': {'key': 'department', 'value': 'hr'}}
        >>> pre.to_mongo()
        {'dept': {'$eq': 'hr'}}
        >>> pre.to_callable()({"dept": "eng"})
        False
    """

    expression: Expr = TRUE
    always_allowed: bool = False
    always_denied: bool = False
    exact: bool = False
    note: str = field(default="", compare=False)

    def __str__(self) -> str:
        if self.always_denied:
            return "always denied"
        if self.always_allowed:
            return "always allowed"
        if self.expression == TRUE:
            return f"no pre-filter ({self.note})" if self.note else "no pre-filter"
        return str(self.expression)

    @property
    def attributes(self) -> frozenset[str]:
        """The resource attributes the expression reads.

        Example:
            >>> sorted(Prefilter(all_of(Comparison("a", "==", 1), Not(Has("b")))).attributes)
            ['a', 'b']
        """
        return _attributes(self.expression)

    @property
    def attributes_present(self) -> frozenset[str]:
        """The attributes every document the expression keeps has (an atom on them must hold).

        Example:
            >>> pre = Prefilter(any_of(Comparison("a", "==", 1), all_of(Comparison("a", "==", 2), Has("b"))))
            >>> sorted(pre.attributes_present)
            ['a']
        """
        return _needed(self.expression)

    @property
    def filters(self) -> bool:
        """Whether there is a filter to apply (neither everything nor nothing)."""
        return not isinstance(self.expression, Const)

    def to_bedrock(
        self, keys: Mapping[str, str] | None = None, *, exact: bool = False
    ) -> dict[str, Any] | None:
        """The Bedrock Knowledge Base ``RetrievalFilter`` (for ``vectorSearchConfiguration.filter``).

        By default a superset: it keeps every document the user may read and
        perhaps others, for a caller that authorizes every result. With
        ``exact=True`` it keeps exactly the documents the policies allow, or
        raises: use that where the filter stands in for authorization
        (``retrieve_and_generate``).

        Args:
            keys: Cedar resource attribute -> metadata key (default: the same
                name); ``keys[ANCESTORS]`` names the ancestors list.
            exact: refuse anything but an exact filter.

        Returns:
            The filter. None only when no filter is needed: every document is
            allowed (:attr:`always_allowed`) or, without ``exact``, nothing
            narrows the search (authorize every result).

        Raises:
            AccessDenied: :attr:`always_denied`: no document can be allowed (do not search).
            ConfigurationError: ``exact`` and the filter would keep documents the
                policies do not allow (the message names the construct).

        Example:
            >>> Prefilter(Comparison("level", "<=", 3)).to_bedrock()
            {'lessThanOrEquals': {'key': 'level', 'value': 3}}
        """
        if self.always_denied:
            raise AccessDenied(Decision(allowed=False), subject="the retrieval")
        if self.always_allowed:
            return None
        if exact and not self.exact:
            raise ConfigurationError(
                "the policies do not translate exactly into a metadata filter: "
                + ("no pre-filter" if not self.filters else "a condition is over-approximated")
                + " (see Prefilter.note)")
        if not self.filters:
            return None
        dialect = _Bedrock(keys or {}, strict=exact)
        out = _checked(_render(_nnf(self.expression), dialect, frozenset()))
        if dialect.approximated:
            raise ConfigurationError(
                "the policies do not translate exactly into a Bedrock metadata filter: "
                + "; ".join(dict.fromkeys(dialect.approximated)))
        return out

    def to_mongo(
        self, keys: Mapping[str, str] | None = None, *, ne_matches_missing: bool = True
    ) -> dict[str, Any] | None:
        """A Mongo-style filter (``$and``, ``$or``, ``$eq``, ``$ne``, ``$in``, ``$nin``, ``$gt``...).

        For Chroma, Pinecone, MongoDB and stores with the same query language.
        Array fields follow MongoDB: ``{"tags": {"$in": ["x"]}}`` matches a list
        holding ``"x"``.

        Args:
            keys: Cedar resource attribute -> metadata key (default: the same name).
            ne_matches_missing: whether ``$ne`` / ``$nin`` match documents
                without the key (MongoDB, Chroma >= 0.5.12). Pass False for a
                store where they only match documents that have the key: the
                negations that need it are then left out (the filter keeps more).

        Returns:
            The filter (a superset: authorize every result), or None when
            nothing narrows the search.

        Raises:
            AccessDenied: :attr:`always_denied`: no document can be allowed (do not search).

        Example:
            >>> Prefilter(Contains("tags", "public")).to_mongo()
            {'tags': {'$in': ['public']}}
        """
        if self.always_denied:
            raise AccessDenied(Decision(allowed=False), subject="the retrieval")
        if not self.filters:
            return None
        return _checked(_render(_nnf(self.expression), _Mongo(keys or {}, ne_matches_missing), frozenset()))

    def to_callable(self, keys: Mapping[str, str] | None = None) -> Callable[[Mapping[str, Any]], bool]:
        """A predicate over a document's metadata, exact for any metadata.

        Metadata that is not a mapping, or a value the predicate cannot read,
        keeps the document (authorization then decides).

        Example:
            >>> keep = Prefilter(Comparison("owner", "==", EntityUID("User", "ann"))).to_callable()
            >>> keep({"owner": "ann"}), keep({"owner": "bob"}), keep({})
            (True, False, False)
        """
        if self.always_denied:
            return _deny_all
        expression = _nnf(self.expression)
        if expression == TRUE:
            return _allow_all
        return _MetadataPredicate(expression, dict(keys or {}))

    def restricted_to(self, attributes: Collection[str], *, ancestors: bool) -> Prefilter:
        """This pre-filter for resources that have only ``attributes`` (and parents only if ``ancestors``).

        For a mapping that builds a resource from a few metadata keys: every
        other attribute is missing (a condition on it is false), and without
        ancestors the resource descends from nothing. Exactness is kept.

        Example:
            >>> pre = Prefilter(any_of(Comparison("dept", "==", "hr"), Comparison("x", "==", 1)), exact=True)
            >>> print(pre.restricted_to({"dept"}, ancestors=False))
            dept == "hr"
        """
        if not self.filters:
            return self
        expression = _restricted(self.expression, frozenset(attributes), ancestors)
        if expression == FALSE:
            return ALWAYS_DENIED  # even the superset keeps nothing
        if expression == TRUE and self.exact:
            return ALWAYS_ALLOWED
        return replace(self, expression=expression)

    def to_document_filter(self, keys: Mapping[str, str] | None = None) -> Callable[[Any], bool]:
        """:meth:`to_callable` for objects with a ``.metadata`` mapping (LangChain ``Document``).

        Suits ``InMemoryVectorStore``'s ``filter=``; an object without a
        metadata mapping is kept (authorization then decides).

        Example:
            >>> from types import SimpleNamespace
            >>> keep = Prefilter(Comparison("dept", "==", "hr")).to_document_filter()
            >>> keep(SimpleNamespace(metadata={"dept": "hr"}))
            True
        """
        predicate = self.to_callable(keys)

        def keep(document: Any) -> bool:
            metadata = getattr(document, "metadata", None)
            if not isinstance(metadata, Mapping):
                return not self.always_denied
            return predicate(metadata)

        return keep


def _attributes(expr: Expr) -> frozenset[str]:
    if isinstance(expr, (And, Or)):
        return frozenset().union(*(_attributes(item) for item in expr.items))
    if isinstance(expr, Not):
        return _attributes(expr.item)
    name = _attr_of(expr)
    return frozenset() if name is None else frozenset((name,))


def _checked(rendered: _Rendered) -> dict[str, Any] | None:
    """A rendered filter; None (no filter) only for "keep every document", never for "keep none"."""
    if rendered == FALSE:
        raise AccessDenied(Decision(allowed=False), subject="the retrieval")
    return rendered if isinstance(rendered, dict) else None


def _restricted(expr: Expr, attributes: frozenset[str], ancestors: bool) -> Expr:
    """``expr`` where attributes outside ``attributes`` (and, without ``ancestors``, parents) are missing."""
    if isinstance(expr, Const):
        return expr
    if isinstance(expr, And):
        return all_of(*(_restricted(item, attributes, ancestors) for item in expr.items))
    if isinstance(expr, Or):
        return any_of(*(_restricted(item, attributes, ancestors) for item in expr.items))
    if isinstance(expr, Not):
        return negate(_restricted(expr.item, attributes, ancestors))
    if isinstance(expr, InHierarchy):
        return expr if ancestors else FALSE
    return expr if expr.attr in attributes else FALSE  # every atom needs its attribute present


#: The action is allowed on every resource: no filter.
ALWAYS_ALLOWED = Prefilter(TRUE, always_allowed=True, exact=True)
#: No resource can be allowed: make no retrieval call.
ALWAYS_DENIED = Prefilter(FALSE, always_denied=True, exact=True)
#: Nothing to filter on (the engine cannot evaluate partially, or nothing translates).
NO_PREFILTER = Prefilter(TRUE)


def _allow_all(metadata: Mapping[str, Any]) -> bool:
    return True


def _deny_all(metadata: Mapping[str, Any]) -> bool:
    return False


# -- the callable ---------------------------------------------------------------------

_MISSING: Any = object()


class _MetadataPredicate:
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
            if not _is_long(value) or not isinstance(expr.value, int) or isinstance(expr.value, bool):
                return False
            return _compare(value, expr.op, expr.value)
        if isinstance(expr, In):
            return any(_cedar_equal(value, item) for item in expr.values)
        if isinstance(expr, Contains):
            return _is_list(value) and any(_cedar_equal(item, expr.value) for item in value)
        return isinstance(value, str) and like_matches(value, expr.pattern)


def _is_long(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


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
        return _is_long(value) and value == literal
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


# -- backends -------------------------------------------------------------------------

_Rendered: TypeAlias = "dict[str, Any] | Const"


class _Dialect:
    """How one backend writes atoms, negated atoms and connectives."""

    def and_(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        raise NotImplementedError

    def or_(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        raise NotImplementedError

    def literal(self, atom: _Atom, negated: bool, present: frozenset[str]) -> _Rendered:
        """A filter keeping at least the documents where the literal holds.

        ``present``: attributes the enclosing conjunction already requires.
        """
        raise NotImplementedError


def _render(expr: Expr, dialect: _Dialect, present: frozenset[str]) -> _Rendered:
    """Render an NNF expression; each literal becomes a superset of itself, so the whole does."""
    if isinstance(expr, Const):
        return expr
    if isinstance(expr, Not):
        assert isinstance(expr.item, _ATOMS)
        return dialect.literal(expr.item, True, present)
    if isinstance(expr, And):
        # What the conjunction needs present, each member may count on.
        required = present.union(*(_needed(item) for item in expr.items))
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


def _numeric(value: Any) -> bool:
    return _is_long(value)


class _Bedrock(_Dialect):
    """Amazon Bedrock Knowledge Base ``RetrievalFilter``.

    ``notEquals`` also matches documents without the key (documented); ``notIn``
    does not. There is no "exists" operator and no negated ``listContains``.
    """

    _ORDER: ClassVar[dict[str, str]] = {
        "<": "lessThan", "<=": "lessThanOrEquals", ">": "greaterThan", ">=": "greaterThanOrEquals",
    }

    def __init__(self, keys: Mapping[str, str], *, strict: bool = False) -> None:
        self.keys = keys
        self.strict = strict
        #: With ``strict``: what was rendered as a strict superset of itself.
        self.approximated: list[str] = []

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

    def _superset(self, rendered: _Rendered, what: str) -> _Rendered:
        """``rendered`` keeps more than the literal: fine unless strict, where it is noted."""
        if self.strict:
            self.approximated.append(what)
        return rendered

    def literal(self, atom: _Atom, negated: bool, present: frozenset[str]) -> _Rendered:
        if isinstance(atom, InHierarchy):
            key = self.keys.get(ANCESTORS)
            if key is None or not 1 <= len(key) <= 100:
                return self._superset(TRUE, "a hierarchy condition without an ancestors key")
            if negated:
                return self._superset(TRUE, "a negated hierarchy condition")
            return self._leaf("listContains", key, str(atom.entity))
        key = self._key(atom.attr)
        if key is None:
            return self._superset(TRUE, f"attribute {_name(atom.attr)} has no valid metadata key")
        if isinstance(atom, Has):
            return self._superset(TRUE, f"has {_name(atom.attr)} (no filter tests a key's presence)")
        if self.strict and not _bedrock_exact_values(atom):
            self.approximated.append(f"a comparison of {_name(atom.attr)} with an entity or a "
                                     "number beyond 2^53")
        # Presence the conjunction needs is not enforced by the filter where `has` renders as
        # nothing: strict rendering does not rely on it.
        known = atom.attr in present and not self.strict
        if isinstance(atom, Comparison):
            value = _plain(atom.value)
            op = _NEGATED[atom.op] if negated else atom.op
            if op == "==":
                # missing-or-equal (a negated !=) cannot be written; equal alone needs presence.
                if not negated or known:
                    return self._leaf("equals", key, value)
                return self._superset(TRUE, f"{_name(atom.attr)} missing or equal")
            if op == "!=":
                leaf = self._leaf("notEquals", key, value)  # also keeps documents without the key
                return leaf if negated else self._superset(leaf, f"{_name(atom.attr)} != ... "
                                                                 "(notEquals keeps documents without it)")
            if negated and not known:
                return self._superset(TRUE, f"{_name(atom.attr)} missing or out of range")
            if not _numeric(value):
                return self._superset(TRUE, f"an order on {_name(atom.attr)} with a non-number")
            return self._leaf(self._ORDER[op], key, value)
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
                return self._superset(TRUE, f"!{_name(atom.attr)}.contains(...) (no negated listContains)")
            return self._leaf("listContains", key, _plain(atom.value))
        # Like
        if negated:
            return self._superset(TRUE, f"!({_name(atom.attr)} like ...)")
        return self._like(key, atom.attr, atom.pattern)

    def _like(self, key: str, attr: str, pattern: tuple[str | None, ...]) -> _Rendered:
        if all(part is not None for part in pattern):
            return self._leaf("equals", key, "".join(part for part in pattern if part is not None))
        # startsWith would be closer, but only OpenSearch Serverless stores accept it.
        chunks = [part for part in pattern if part]
        what = f"{_name(attr)} like a pattern with a wildcard"
        if chunks:
            return self._superset(self._leaf("stringContains", key, max(chunks, key=len)), what)
        return self._superset(TRUE, what)


#: Bedrock numbers are doubles: a Long beyond this compares inexactly.
_DOUBLE_EXACT = 2**53


def _bedrock_exact_values(atom: _Atom) -> bool:
    """Whether the literal values of ``atom`` compare in Bedrock as in Cedar."""
    values: tuple[Any, ...] = ()
    if isinstance(atom, (Comparison, Contains)):
        values = (atom.value,)
    elif isinstance(atom, In):
        values = atom.values
    return not any(isinstance(value, EntityUID) or (_is_long(value) and abs(value) > _DOUBLE_EXACT)
                   for value in values)


class _Mongo(_Dialect):
    """Mongo-style filters as Chroma, Pinecone and MongoDB read them."""

    _ORDER: ClassVar[dict[str, str]] = {"<": "$lt", "<=": "$lte", ">": "$gt", ">=": "$gte"}

    def __init__(self, keys: Mapping[str, str], ne_matches_missing: bool) -> None:
        self.keys = keys
        self.ne_matches_missing = ne_matches_missing

    def and_(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        return {"$and": _spliced("$and", items)}

    def or_(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        return {"$or": _spliced("$or", items)}

    def _key(self, attr: str) -> str | None:
        key = self.keys.get(attr, attr)
        # `$...` reads as an operator and a dot as a path: such keys cannot be addressed.
        if not isinstance(key, str) or not key or key.startswith("$") or "." in key:
            return None
        return key

    def literal(self, atom: _Atom, negated: bool, present: frozenset[str]) -> _Rendered:
        if isinstance(atom, InHierarchy):
            key = self.keys.get(ANCESTORS)
            if key is None or self._key_ok(key) is None:
                return TRUE
            if negated:
                return {key: {"$nin": [str(atom.entity)]}} if self.ne_matches_missing else TRUE
            return {key: {"$in": [str(atom.entity)]}}
        key = self._key(atom.attr)
        if key is None or isinstance(atom, Has):
            return TRUE
        # Where the attribute may be missing, a negation must match documents without the key.
        negation_ok = atom.attr in present or self.ne_matches_missing
        if isinstance(atom, Comparison):
            value = _plain(atom.value)
            op = _NEGATED[atom.op] if negated else atom.op
            if op == "==":
                return {key: {"$eq": value}} if not negated or atom.attr in present else TRUE
            if op == "!=":
                return {key: {"$ne": value}} if not negated or negation_ok else TRUE
            if negated and atom.attr not in present:
                return TRUE
            return {key: {self._ORDER[op]: value}} if _numeric(value) else TRUE
        if isinstance(atom, In):
            values = [_plain(v) for v in atom.values]
            if not negated:
                return {key: {"$in": values}}
            return {key: {"$nin": values}} if negation_ok else TRUE
        if isinstance(atom, Contains):
            if not negated:
                return {key: {"$in": [_plain(atom.value)]}}
            return {key: {"$nin": [_plain(atom.value)]}} if negation_ok else TRUE
        # Like: no pattern operator in the common subset; a pattern without wildcards is equality.
        if negated or any(part is None for part in atom.pattern):
            return TRUE
        return {key: {"$eq": "".join(part for part in atom.pattern if part is not None)}}

    def _key_ok(self, key: str) -> str | None:
        return key if key and not key.startswith("$") and "." not in key else None


# -- compiling residual policies ----------------------------------------------------------


class _Bounds(NamedTuple):
    """Bounds on where a Cedar condition evaluates to true and to false (errors are neither).

    ``t_up`` keeps at least every document where the condition is true,
    ``t_low`` only documents where it is true; ``f_up`` / ``f_low`` likewise
    for false.
    """

    t_up: Expr
    t_low: Expr
    f_up: Expr
    f_low: Expr


_UNKNOWN = _Bounds(TRUE, FALSE, TRUE, FALSE)
_ERROR = _Bounds(FALSE, FALSE, FALSE, FALSE)


def _capped(bounds: _Bounds) -> _Bounds:
    """Bounds grown too large give way to the trivial ones (``||`` chains grow lower bounds)."""
    if max(_size(bound) for bound in bounds) <= _MAX_SIZE:
        return bounds
    return _Bounds(
        bounds.t_up if _size(bounds.t_up) <= _MAX_SIZE else TRUE,
        bounds.t_low if _size(bounds.t_low) <= _MAX_SIZE else FALSE,
        bounds.f_up if _size(bounds.f_up) <= _MAX_SIZE else TRUE,
        bounds.f_low if _size(bounds.f_low) <= _MAX_SIZE else FALSE,
    )


def _exact(true: Expr, false: Expr) -> _Bounds:
    return _Bounds(true, true, false, false)


def _may_error(attr: str) -> _Bounds:
    """Unknown outcome, except that a missing attribute makes it an error."""
    return _Bounds(Has(attr), FALSE, Has(attr), FALSE)


@dataclass(frozen=True)
class _Resource:
    """The unknown resource itself."""


@dataclass(frozen=True)
class _Attr:
    """An attribute of the unknown resource."""

    name: str


@dataclass(frozen=True)
class _Known:
    """A value Cedar knows (from the principal, the action, the context or a literal)."""

    value: Any


@dataclass(frozen=True)
class _Set:
    items: tuple[Any, ...]


@dataclass(frozen=True)
class _Record:
    items: tuple[tuple[str, Any], ...]

    def get(self, name: str) -> Any:
        for key, value in self.items:
            if key == name:
                return value
        return _MISSING


@dataclass(frozen=True)
class _Opaque:
    """An extension value or anything else this module does not interpret."""

    text: str


_Term: TypeAlias = "_Resource | _Attr | _Known | None"


def _from_json(value: Any) -> Any:
    """A Cedar JSON value as a hashable Python value (sets and records frozen)."""
    if isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, list):
        return _Set(tuple(_from_json(item) for item in value))
    if isinstance(value, dict):
        if set(value) == {"__entity"} and isinstance(value["__entity"], dict):
            return EntityUID(value["__entity"]["type"], value["__entity"]["id"])
        if "__extn" in value:
            return _Opaque(json.dumps(value, sort_keys=True))
        return _Record(tuple((str(k), _from_json(v)) for k, v in value.items()))
    return _Opaque(repr(value))


def _is_scalar(value: Any) -> bool:
    return isinstance(value, (str, bool, EntityUID)) or (
        isinstance(value, int) and _LONG_MIN <= value <= _LONG_MAX
    )


class _Translator:
    """Turns the residual (Cedar JSON EST) of one policy into bounds over resource attributes."""

    def __init__(
        self,
        *,
        principal: EntityUID,
        action: EntityUID,
        context: Mapping[str, Any],
        resource_type: str | None,
        entities: Mapping[EntityUID, Entity],
    ) -> None:
        self.principal = principal
        self.action = action
        self.context = _from_json(dict(context))
        self.resource_type = resource_type
        self.entities = entities

    # policy ------------------------------------------------------------------------

    def policy(self, est: Mapping[str, Any]) -> _Bounds:
        parts: list[Any] = []
        if est.get("principal", {}).get("op") != "All" or est.get("action", {}).get("op") != "All":
            return _UNKNOWN
        scope = self._resource_scope(est.get("resource", {}))
        if scope is None:
            return _UNKNOWN
        parts.extend(scope)
        for condition in est.get("conditions", ()):
            body = condition.get("body")
            kind = condition.get("kind")
            if kind == "when":
                parts.append(body)
            elif kind == "unless":
                parts.append({"!": {"arg": body}})
            else:
                return _UNKNOWN
        bounds = _exact(TRUE, FALSE)
        for part in parts:
            bounds = self._and(bounds, self.cond(part, 0))
        return bounds

    def _resource_scope(self, scope: Mapping[str, Any]) -> list[Any] | None:
        unknown = {"unknown": [{"Value": "resource"}]}
        op = scope.get("op")
        if op == "All":
            return []
        if op == "==" and "entity" in scope:
            return [{"==": {"left": unknown, "right": {"Value": {"__entity": scope["entity"]}}}}]
        if op == "in" and "entity" in scope:
            return [{"in": {"left": unknown, "right": {"Value": {"__entity": scope["entity"]}}}}]
        if op == "is" and "entity_type" in scope:
            found: dict[str, Any] = {"left": unknown, "entity_type": scope["entity_type"]}
            if "in" in scope and "entity" in scope["in"]:
                found["in"] = {"Value": {"__entity": scope["in"]["entity"]}}
            return [{"is": found}]
        return None

    # boolean conditions ------------------------------------------------------------------

    def cond(self, est: Any, depth: int) -> _Bounds:
        bounds = self._cond(est, depth)
        if isinstance(est, dict) and len(est) == 1 and not _CONNECTIVES & est.keys():
            # An operation is an error (neither true nor false) without the attributes it reads,
            # whether or not it translates.
            names = _must_read(est, depth)
            if names:
                present = all_of(*(Has(name) for name in sorted(names)))
                bounds = bounds._replace(t_up=all_of(bounds.t_up, present),
                                         f_up=all_of(bounds.f_up, present))
        return _capped(bounds)

    def _cond(self, est: Any, depth: int) -> _Bounds:
        if depth > _MAX_DEPTH or not isinstance(est, dict) or len(est) != 1:
            return _UNKNOWN
        ((op, body),) = est.items()
        depth += 1
        if op == "&&":
            return self._and(self.cond(body["left"], depth), self.cond(body["right"], depth))
        if op == "||":
            return self._or(self.cond(body["left"], depth), self.cond(body["right"], depth))
        if op == "!":
            inner = self.cond(body["arg"], depth)
            return _Bounds(inner.f_up, inner.f_low, inner.t_up, inner.t_low)
        if op == "if-then-else":
            return self._if(self.cond(body["if"], depth), self.cond(body["then"], depth),
                            self.cond(body["else"], depth))
        if op in ("==", "!="):
            bounds = self._equal(self.term(body["left"], depth), self.term(body["right"], depth))
            return bounds if op == "==" else _Bounds(bounds.f_up, bounds.f_low, bounds.t_up, bounds.t_low)
        if op in _ORDER_OPS:
            return self._order(op, self.term(body["left"], depth), self.term(body["right"], depth))
        if op == "has":
            return self._has(self.term(body["left"], depth), body.get("attr"))
        if op == "contains":
            return self._contains(self.term(body["left"], depth), self.term(body["right"], depth))
        if op in ("containsAny", "containsAll"):
            return self._contains_set(op, self.term(body["left"], depth), self.term(body["right"], depth))
        if op == "like":
            return self._like(self.term(body["left"], depth), body.get("pattern"))
        if op == "in":
            return self._in(self.term(body["left"], depth), self.term(body["right"], depth))
        if op == "is":
            return self._is(body, depth)
        term = self.term(est, depth - 1)
        if isinstance(term, _Known) and isinstance(term.value, bool):
            return _exact(TRUE, FALSE) if term.value else _exact(FALSE, TRUE)
        if isinstance(term, _Attr):
            # A boolean attribute used as a condition; anything but a Bool is an error.
            return _exact(Comparison(term.name, "==", True), Comparison(term.name, "==", False))
        return _UNKNOWN

    @staticmethod
    def _and(a: _Bounds, b: _Bounds) -> _Bounds:
        # true: both true. false: a false, or a true and b false (a error -> error).
        return _Bounds(
            all_of(a.t_up, b.t_up),
            all_of(a.t_low, b.t_low),
            any_of(a.f_up, b.f_up),
            any_of(a.f_low, all_of(a.t_low, b.f_low)),
        )

    @staticmethod
    def _or(a: _Bounds, b: _Bounds) -> _Bounds:
        # true: a true, or a false and b true. false: both false.
        return _Bounds(
            any_of(a.t_up, b.t_up),
            any_of(a.t_low, all_of(a.f_low, b.t_low)),
            all_of(a.f_up, b.f_up),
            all_of(a.f_low, b.f_low),
        )

    @staticmethod
    def _if(c: _Bounds, a: _Bounds, b: _Bounds) -> _Bounds:
        return _Bounds(
            any_of(all_of(c.t_up, a.t_up), all_of(c.f_up, b.t_up)),
            any_of(all_of(c.t_low, a.t_low), all_of(c.f_low, b.t_low)),
            any_of(all_of(c.t_up, a.f_up), all_of(c.f_up, b.f_up)),
            any_of(all_of(c.t_low, a.f_low), all_of(c.f_low, b.f_low)),
        )

    def _equal(self, left: _Term, right: _Term) -> _Bounds:
        if isinstance(left, _Known) and not isinstance(right, _Known):
            left, right = right, left
        if isinstance(left, _Attr) and isinstance(right, _Known):
            value = right.value
            if isinstance(value, EntityUID):
                # The id in metadata does not carry the type: a superset of equality only.
                return _Bounds(Comparison(left.name, "==", value), FALSE, Has(left.name), FALSE)
            if _is_scalar(value):
                return _exact(Comparison(left.name, "==", value), Comparison(left.name, "!=", value))
            return _may_error(left.name)
        if isinstance(left, _Resource) and isinstance(right, _Known):
            value = right.value
            if not isinstance(value, EntityUID) or (
                self.resource_type is not None and value.type != self.resource_type
            ):
                return _exact(FALSE, TRUE)  # an entity never equals another type's entity
            return _UNKNOWN
        return _operands_present(left, right)

    def _order(self, op: Op, left: _Term, right: _Term) -> _Bounds:
        if isinstance(left, _Known) and isinstance(right, _Attr):
            left, right, op = right, left, _FLIPPED[op]
        if isinstance(left, _Attr) and isinstance(right, _Known):
            value = right.value
            if _is_long(value) and _is_scalar(value):
                return _exact(Comparison(left.name, op, value),
                              Comparison(left.name, _NEGATED[op], value))
        return _operands_present(left, right)

    @staticmethod
    def _has(target: _Term, attr: Any) -> _Bounds:
        if isinstance(target, _Resource) and isinstance(attr, str):
            return _exact(Has(attr), Not(Has(attr)))
        return _UNKNOWN

    def _contains(self, container: _Term, element: _Term) -> _Bounds:
        if isinstance(container, _Known) and isinstance(element, _Attr):
            items = container.value
            if not isinstance(items, _Set):
                return _UNKNOWN
            name = element.name
            values = tuple(dict.fromkeys(item for item in items.items if _is_scalar(item)))
            if len(values) < len(items.items):
                return _may_error(name)  # a set element this module cannot compare
            found = In(name, values) if values else FALSE
            if any(isinstance(v, EntityUID) for v in values):
                return _Bounds(found, FALSE, Has(name), FALSE)
            return _exact(found, all_of(Has(name), negate(found)))
        if isinstance(container, _Attr) and isinstance(element, _Known):
            name, value = container.name, element.value
            if not _is_scalar(value):
                return _may_error(name)
            contains = Contains(name, value)
            if isinstance(value, EntityUID):
                # An id in metadata may stand for another type's entity: never negate it.
                return _Bounds(contains, FALSE, Has(name), FALSE)
            # false needs a list without the value; "is a list" has no atom: bounded above only.
            return _Bounds(contains, contains, all_of(Has(name), negate(contains)), FALSE)
        return _operands_present(container, element)

    def _contains_set(self, op: str, left: _Term, right: _Term) -> _Bounds:
        if op == "containsAny" and isinstance(left, _Known) and isinstance(right, _Attr):
            left, right = right, left  # containsAny is symmetric
        if not (isinstance(left, _Attr) and isinstance(right, _Known)):
            return _operands_present(left, right)
        name = left.name
        items = right.value
        if not isinstance(items, _Set) or not all(_is_scalar(item) for item in items.items):
            return _may_error(name)
        values = tuple(dict.fromkeys(items.items))
        atoms = [Contains(name, value) for value in values]
        if op == "containsAll" and not values:
            return _may_error(name)  # true exactly for lists: no atom says "is a list"
        found = any_of(*atoms) if op == "containsAny" else all_of(*atoms)
        if any(isinstance(value, EntityUID) for value in values):
            # An id in metadata may stand for another type's entity: never negate it.
            return _Bounds(found, FALSE, Has(name), FALSE)
        return _Bounds(found, found, all_of(Has(name), negate(found)), FALSE)

    @staticmethod
    def _like(target: _Term, pattern: Any) -> _Bounds:
        if not isinstance(target, _Attr):
            return _UNKNOWN
        parts: list[str | None] = []
        for element in pattern if isinstance(pattern, list) else ():
            if element == "Wildcard":
                parts.append(None)
            elif isinstance(element, dict) and isinstance(element.get("Literal"), str):
                if parts and isinstance(parts[-1], str):
                    parts[-1] += element["Literal"]
                else:
                    parts.append(element["Literal"])
            else:
                return _may_error(target.name)
        atom = Like(target.name, tuple(parts))
        return _Bounds(atom, atom, all_of(Has(target.name), Not(atom)), FALSE)

    def _in(self, left: _Term, right: _Term) -> _Bounds:
        if isinstance(left, _Resource) and isinstance(right, _Known):
            targets = right.value.items if isinstance(right.value, _Set) else (right.value,)
            if not all(isinstance(target, EntityUID) for target in targets):
                return _UNKNOWN
            result = _exact(FALSE, TRUE)
            for target in targets:
                result = self._or(result, self._descends(target))
            return result
        if isinstance(left, _Known) and isinstance(left.value, EntityUID) and isinstance(right, _Attr):
            # principal in resource.readers: the attribute holds the principal or an ancestor.
            ancestors = self._ancestors(left.value)
            if ancestors is None:
                return _may_error(right.name)
            atoms: list[Expr] = []
            for uid in (left.value, *ancestors):
                atoms.extend((Comparison(right.name, "==", uid), Contains(right.name, uid)))
            return _Bounds(any_of(*atoms), FALSE, Has(right.name), FALSE)
        return _operands_present(left, right)

    def _descends(self, target: EntityUID) -> _Bounds:
        """``resource in target`` for one entity: equal to it, or one of its descendants."""
        below = InHierarchy(target)
        if self.resource_type is not None and target.type != self.resource_type:
            return _exact(below, Not(below))
        return _Bounds(TRUE, below, Not(below), FALSE)  # resource == target is not translatable

    def _is(self, body: Mapping[str, Any], depth: int) -> _Bounds:
        target = self.term(body.get("left"), depth)
        if not isinstance(target, _Resource) or self.resource_type is None:
            return _UNKNOWN
        matches = body.get("entity_type") == self.resource_type
        result = _exact(TRUE, FALSE) if matches else _exact(FALSE, TRUE)
        if "in" in body:
            result = self._and(result, self._in(target, self.term(body["in"], depth)))
        return result

    def _ancestors(self, uid: EntityUID) -> list[EntityUID] | None:
        """Every ancestor of ``uid`` in the entities Cedar sees; None when too many."""
        found: dict[EntityUID, None] = {}
        frontier = [uid]
        while frontier:
            entity = self.entities.get(frontier.pop())
            if entity is None:
                continue
            for parent in entity.parents:
                if parent not in found and parent != uid:
                    found[parent] = None
                    frontier.append(parent)
            if len(found) > _MAX_ANCESTORS:
                return None
        return list(found)

    # values --------------------------------------------------------------------------

    def term(self, est: Any, depth: int) -> _Term:
        if depth > _MAX_DEPTH or not isinstance(est, dict) or len(est) != 1:
            return None
        ((op, body),) = est.items()
        if op == "Value":
            value = _from_json(body)
            return None if isinstance(value, _Opaque) else _Known(value)
        if op == "Var":
            if body == "resource":
                return _Resource()
            if body == "principal":
                return _Known(self.principal)
            if body == "action":
                return _Known(self.action)
            if body == "context":
                return _Known(self.context)
            return None
        if op == "unknown":
            if body == [{"Value": "resource"}]:
                return _Resource()
            return None
        if op == ".":
            base = self.term(body.get("left"), depth + 1)
            attr = body.get("attr")
            if not isinstance(attr, str):
                return None
            if isinstance(base, _Resource):
                return _Attr(attr)
            if isinstance(base, _Known):
                return self._known_attr(base.value, attr)
            return None
        if op == "Set" and isinstance(body, list):
            items = [self.term(item, depth + 1) for item in body]
            if all(isinstance(item, _Known) for item in items):
                return _Known(_Set(tuple(item.value for item in items if isinstance(item, _Known))))
            return None
        if op == "Record" and isinstance(body, dict):
            fields = {key: self.term(item, depth + 1) for key, item in body.items()}
            if all(isinstance(item, _Known) for item in fields.values()):
                return _Known(_Record(tuple(
                    (key, item.value) for key, item in fields.items() if isinstance(item, _Known))))
            return None
        return None

    def _known_attr(self, value: Any, attr: str) -> _Term:
        if isinstance(value, _Record):
            found = value.get(attr)
            return None if found is _MISSING else _Known(found)
        if isinstance(value, EntityUID):
            entity = self.entities.get(value)
            if entity is None or attr not in entity.cedar["attrs"]:
                return None
            found = _from_json(entity.cedar["attrs"][attr])
            return None if isinstance(found, _Opaque) else _Known(found)
        return None


_STRICT_BINARY = frozenset({
    "==", "!=", "<", "<=", ">", ">=", "+", "-", "*", "in", "contains", "containsAll", "containsAny",
    "hasTag", "getTag",
})
_STRICT_UNARY = frozenset({"!", "neg", "isEmpty"})
_CONNECTIVES = frozenset({"&&", "||", "!", "if-then-else"})


def _is_resource(est: Any) -> bool:
    return bool(est == {"Var": "resource"} or est == {"unknown": [{"Value": "resource"}]})


def _must_read(est: Any, depth: int = 0) -> set[str]:
    """Top-level resource attributes every evaluation of ``est`` reads (missing: an error).

    Only operands that are always evaluated count: both sides of a strict
    operator, never the right of ``&&`` / ``||`` or the branches of ``if``.
    """
    if depth > _MAX_DEPTH or not isinstance(est, dict) or len(est) != 1:
        return set()
    ((op, body),) = est.items()
    depth += 1
    if op == ".":
        if _is_resource(body.get("left")) and isinstance(body.get("attr"), str):
            return {body["attr"]}
        return _must_read(body.get("left"), depth)
    if op in ("has", "like", "is"):
        return set() if _is_resource(body.get("left")) else _must_read(body.get("left"), depth)
    if op in _STRICT_BINARY:
        return _must_read(body.get("left"), depth) | _must_read(body.get("right"), depth)
    if op in _STRICT_UNARY:
        return _must_read(body.get("arg"), depth)
    if op in ("&&", "||"):
        return _must_read(body.get("left"), depth)
    if op == "if-then-else":
        return _must_read(body.get("if"), depth)
    if op == "Set" and isinstance(body, list):
        return set().union(*(_must_read(item, depth) for item in body))
    if op == "Record" and isinstance(body, dict):
        return set().union(*(_must_read(item, depth) for item in body.values()))
    if op in ("Value", "Var", "unknown", "Slot"):
        return set()
    if isinstance(body, list):  # an extension function call: every argument is evaluated
        return set().union(*(_must_read(item, depth) for item in body))
    return set()


def _operands_present(*terms: _Term) -> _Bounds:
    """An operation this module does not translate: it errors if a resource attribute is missing."""
    names = [term.name for term in terms if isinstance(term, _Attr)]
    if not names:
        return _UNKNOWN
    present = all_of(*(Has(name) for name in names))
    return _Bounds(present, FALSE, present, FALSE)


def _policy_order(item: tuple[str, Any]) -> tuple[int, str]:
    """Residuals in policy order (``policy2`` before ``policy10``), for a stable expression."""
    match = re.fullmatch(r"policy(\d+)", item[0])
    return (int(match.group(1)), "") if match else (1 << 62, item[0])


def _translate(
    result: Any, translator: _Translator, store_id: Callable[[str], str]
) -> Prefilter:
    permits_up: list[Expr] = []
    permits_low: list[Expr] = []
    forbids_up: list[Expr] = []
    forbids_low: list[Expr] = []
    for positional, est in sorted(result.residuals.items(), key=_policy_order):
        try:
            bounds = _capped(translator.policy(est))
        except RecursionError:
            bounds = _UNKNOWN
        if est.get("effect") == "permit":
            permits_up.append(bounds.t_up)
            permits_low.append(bounds.t_low)
        elif est.get("effect") == "forbid":
            forbids_up.append(bounds.t_up)
            forbids_low.append(bounds.t_low)
        else:
            return Prefilter(note=f"unknown effect in policy {store_id(positional)}")
    # Allowed: some permit true and no forbid true (an erroring policy does not apply).
    # In negation normal form, where contradictions and tautologies across policies show.
    upper = _nnf(all_of(any_of(*permits_up), *(negate(f) for f in forbids_low)))
    lower = _nnf(all_of(any_of(*permits_low), *(negate(f) for f in forbids_up)))
    if upper == FALSE:
        return ALWAYS_DENIED
    if lower == TRUE:
        return ALWAYS_ALLOWED
    if upper == TRUE:
        return Prefilter(note="no policy condition translates to a filter")
    # The bounds meet: the filter keeps exactly the documents the policies allow.
    return Prefilter(upper, exact=upper == lower)


def compile_prefilter(
    authz: Authorizer,
    *,
    action: str | EntityUID,
    context: Mapping[str, Any] | None = None,
    resource_type: str | None = None,
    entities: Sequence[Entity] = (),
) -> Prefilter:
    """Compile the bound end user's policies for ``action`` into a pre-filter over resource attributes.

    The store's policies are partially evaluated with the resource unknown and
    everything else as :meth:`Authorizer.filter` would send it: the bound end
    user (with the bound entity, if any), ``context``, and in a bound session
    its ``context.session`` record (what was seen, calls, approvals). The
    residual conditions are translated. Where ``context.session.approved``
    differs between resources (an approval names one), the policies are
    compiled for each variant and the results joined (never exact).

    Engines without partial evaluation (AVP) give :data:`NO_PREFILTER`, as do
    failures of the partial evaluation: no filter is always sound, for a
    caller that authorizes every result; such a pre-filter is not
    :attr:`~Prefilter.exact`.

    Args:
        authz: the Authorizer (its engine, entities and bound session).
        action: the action of the retrieval, e.g. ``"read"``.
        context: the context the retrieval will be authorized with (without
            ``session``: the bound session adds it).
        resource_type: the Cedar type of the retrieved resources (e.g.
            ``"Document"``): lets ``is`` and hierarchy conditions translate.
        entities: entities the requests need beyond the Authorizer's own.

    Returns:
        The :class:`Prefilter`.

    Raises:
        IdentityError: no end user is bound.
        ConfigurationError: ``context`` sets ``session`` while a session is bound.

    Example:
        >>> import agentauthz as az
        >>> authz = az.Authorizer.from_text('''
        ...   permit(principal, action, resource) when { resource.level <= 2 };
        ...   forbid(principal, action, resource) when { resource.archived == true };''')
        >>> with authz.acting_as(az.EntityUID("User", "ann")):
        ...     pre = compile_prefilter(authz, action="read")
        >>> print(pre)
        level <= 2 && !(archived == true)
        >>> pre.exact
        True
        >>> pre.to_bedrock()["andAll"][1]
        {'notEquals': {'key': 'archived', 'value': True}}
    """
    from agentauthz.engines.local import LocalEngine

    engine = authz.engine
    if not isinstance(engine, LocalEngine):
        authz.current_principal()  # no end user: IdentityError, as on every path
        return Prefilter(note=f"the {getattr(engine, 'name', type(engine).__name__)} engine "
                              "has no partial evaluation")
    try:
        scope = authz._retrieval_scope(action, context)
    except AuthzError:
        raise
    except Exception:  # the session store failed (the refusal is audited): nothing may be let through
        return ALWAYS_DENIED
    # Stands for every resource no approval names (a uuid: no approval can name it).
    unnamed = EntityUID(resource_type or "Resource", f"agentauthz-unnamed-{uuid.uuid4()}")
    compiled: list[Prefilter] = []
    for request in scope.unknown_resource_requests(unnamed):
        try:
            compiled.append(_compile_local(authz, engine, request, scope, resource_type, entities))
        except Exception as exc:  # no pre-filter is always sound: authorization still decides
            return Prefilter(note=f"partial evaluation failed: {type(exc).__name__}: "
                                  f"{truncate(str(exc), 200)}")
    return _joined(compiled)


def _joined(compiled: Sequence[Prefilter]) -> Prefilter:
    """The pre-filter keeping what any of ``compiled`` keeps (each holds for some resources)."""
    if len(compiled) == 1:
        return compiled[0]
    if all(pre.always_denied for pre in compiled):
        return ALWAYS_DENIED
    if all(pre.always_allowed for pre in compiled):
        return ALWAYS_ALLOWED
    kept = [pre for pre in compiled if not pre.always_denied]
    expression = any_of(*(pre.expression for pre in kept))
    note = "the context differs between resources (context.session.approved)"
    # Exact only if every variant keeps the same documents: the choice then does not matter.
    exact = all(pre.exact and pre == kept[0] for pre in compiled)
    return Prefilter(expression, exact=exact, note="" if exact else note)


def _compile_local(
    authz: Authorizer,
    engine: Any,
    request: Request,
    scope: RetrievalScope,
    resource_type: str | None,
    entities: Iterable[Entity],
) -> Prefilter:
    given = [*scope.entities, *entities]
    roots = [request.principal, *referenced_uids(request.context)]
    slice_ = authz._entities_for_roots(roots, given)
    snapshot = engine.store.snapshot
    entity_set = engine.entity_set(snapshot, slice_)
    result = cedarpy.is_authorized_partial(
        {"principal": str(request.principal), "action": str(scope.action),
         "context": request.cedar_context},
        snapshot.policy_set, entity_set, schema=snapshot.schema,
    )
    if result.decision is cedarpy.Decision.Allow:
        return ALWAYS_ALLOWED
    if result.decision is cedarpy.Decision.Deny:
        return ALWAYS_DENIED
    if not result.residuals:
        errors = "; ".join(result.diagnostics.errors) or "no residual policies"
        return Prefilter(note=f"partial evaluation gave no decision: {truncate(errors, 200)}")
    known = dict(snapshot.entity_index)
    known.update((entity.uid, entity) for entity in slice_)
    translator = _Translator(principal=request.principal, action=scope.action,
                             context=request.cedar_context, resource_type=resource_type, entities=known)
    return _translate(result, translator, snapshot.store_id)
