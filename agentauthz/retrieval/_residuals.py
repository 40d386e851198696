"""Cedar residual policies translated into bounds over resource attributes.

Partial evaluation with the resource unknown leaves, for each policy that
could apply, a residual condition (Cedar JSON EST). :class:`Translator` turns
one residual into :class:`Bounds`: four expressions bounding, from above and
from below, where the condition is true and where it is false (an erroring
condition is neither). Whatever it cannot translate exactly is bounded by the
trivial expressions, so every bound stays sound; :mod:`agentauthz.retrieval._prefilter`
combines the bounds of every permit and forbid into the pre-filter.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeAlias

from agentauthz._model import Entity, EntityUID
from agentauthz.retrieval._expr import (
    ATOMS,
    FALSE,
    FLIPPED,
    NEGATED,
    ORDER_OPS,
    TRUE,
    Comparison,
    Contains,
    Expr,
    Has,
    In,
    InHierarchy,
    Like,
    Not,
    Op,
    all_of,
    any_of,
    is_long,
    negate,
    size_of,
)

__all__ = ["UNKNOWN", "Bounds", "Translator", "capped"]

_LONG_MIN = -(2**63)
_LONG_MAX = 2**63 - 1
# Bounds on the work done for one policy: deeper residuals are over-approximated,
# bigger translations are dropped (the policy then counts as unknown).
_MAX_DEPTH = 200
_MAX_SIZE = 1_000
_MAX_ANCESTORS = 256
_MISSING: Any = object()


class Bounds(NamedTuple):
    """Bounds on where a Cedar condition evaluates to true and to false (errors are neither).

    ``t_up`` keeps at least every document where the condition is true,
    ``t_low`` only documents where it is true; ``f_up`` / ``f_low`` likewise
    for false.
    """

    t_up: Expr
    t_low: Expr
    f_up: Expr
    f_low: Expr


UNKNOWN = Bounds(TRUE, FALSE, TRUE, FALSE)
#: A condition known to be true: exactly true, never false.
_TRUE = Bounds(TRUE, TRUE, FALSE, FALSE)


def capped(bounds: Bounds) -> Bounds:
    """Bounds grown too large give way to the trivial ones (``||`` chains grow lower bounds)."""
    t_up, t_low, f_up, f_low = bounds
    if (size_of(t_up) <= _MAX_SIZE and size_of(t_low) <= _MAX_SIZE and size_of(f_up) <= _MAX_SIZE
            and size_of(f_low) <= _MAX_SIZE):
        return bounds
    return Bounds(
        bounds.t_up if size_of(bounds.t_up) <= _MAX_SIZE else TRUE,
        bounds.t_low if size_of(bounds.t_low) <= _MAX_SIZE else FALSE,
        bounds.f_up if size_of(bounds.f_up) <= _MAX_SIZE else TRUE,
        bounds.f_low if size_of(bounds.f_low) <= _MAX_SIZE else FALSE,
    )


def _exact(true: Expr, false: Expr) -> Bounds:
    return Bounds(true, true, false, false)


def _may_error(attr: str) -> Bounds:
    """Unknown outcome, except that a missing attribute makes it an error."""
    return Bounds(Has(attr), FALSE, Has(attr), FALSE)


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


class Translator:
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

    def policy(self, est: Mapping[str, Any]) -> Bounds:
        parts: list[Any] = []
        if est.get("principal", {}).get("op") != "All" or est.get("action", {}).get("op") != "All":
            return UNKNOWN
        scope = self._resource_scope(est.get("resource", {}))
        if scope is None:
            return UNKNOWN
        parts.extend(scope)
        for condition in est.get("conditions", ()):
            body = condition.get("body")
            kind = condition.get("kind")
            if kind == "when":
                parts.append(body)
            elif kind == "unless":
                parts.append({"!": {"arg": body}})
            else:
                return UNKNOWN
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

    def cond(self, est: Any, depth: int) -> Bounds:
        bounds = self._cond(est, depth)
        if isinstance(est, dict) and len(est) == 1 and next(iter(est)) not in _CONNECTIVES:
            # An operation is an error (neither true nor false) without the attributes it reads,
            # whether or not it translates.
            names = _must_read(est, depth)
            if names:
                present = all_of(*(Has(name) for name in sorted(names)))
                t_up, t_low, f_up, f_low = bounds
                bounds = Bounds(_present(t_up, names, present), t_low, _present(f_up, names, present), f_low)
        return capped(bounds)

    def _cond(self, est: Any, depth: int) -> Bounds:
        if depth > _MAX_DEPTH or not isinstance(est, dict) or len(est) != 1:
            return UNKNOWN
        ((op, body),) = est.items()
        depth += 1
        if op == "&&":
            left, right = body["left"], body["right"]
            # `true && x` and `x && true` are x (as _and computes them): partial evaluation leaves
            # chains of them, one per conjunct it could decide.
            if _is_true(left):
                return self.cond(right, depth)
            if _is_true(right):
                return self.cond(left, depth)
            return self._and(self.cond(left, depth), self.cond(right, depth))
        if op == "||":
            return self._or(self.cond(body["left"], depth), self.cond(body["right"], depth))
        if op == "!":
            inner = self.cond(body["arg"], depth)
            return Bounds(inner.f_up, inner.f_low, inner.t_up, inner.t_low)
        if op == "if-then-else":
            return self._if(self.cond(body["if"], depth), self.cond(body["then"], depth),
                            self.cond(body["else"], depth))
        if op in ("==", "!="):
            bounds = self._equal(self.term(body["left"], depth), self.term(body["right"], depth))
            return bounds if op == "==" else Bounds(bounds.f_up, bounds.f_low, bounds.t_up, bounds.t_low)
        if op in ORDER_OPS:
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
        return UNKNOWN

    @staticmethod
    def _and(a: Bounds, b: Bounds) -> Bounds:
        # true: both true. false: a false, or a true and b false (a error -> error).
        # `true && x` and `x && true` are x (partial evaluation leaves chains of them): as computed.
        if a == _TRUE:
            return b
        if b == _TRUE:
            return a
        return Bounds(
            all_of(a.t_up, b.t_up),
            all_of(a.t_low, b.t_low),
            any_of(a.f_up, b.f_up),
            any_of(a.f_low, all_of(a.t_low, b.f_low)),
        )

    @staticmethod
    def _or(a: Bounds, b: Bounds) -> Bounds:
        # true: a true, or a false and b true. false: both false.
        return Bounds(
            any_of(a.t_up, b.t_up),
            any_of(a.t_low, all_of(a.f_low, b.t_low)),
            all_of(a.f_up, b.f_up),
            all_of(a.f_low, b.f_low),
        )

    @staticmethod
    def _if(c: Bounds, a: Bounds, b: Bounds) -> Bounds:
        return Bounds(
            any_of(all_of(c.t_up, a.t_up), all_of(c.f_up, b.t_up)),
            any_of(all_of(c.t_low, a.t_low), all_of(c.f_low, b.t_low)),
            any_of(all_of(c.t_up, a.f_up), all_of(c.f_up, b.f_up)),
            any_of(all_of(c.t_low, a.f_low), all_of(c.f_low, b.f_low)),
        )

    def _equal(self, left: _Term, right: _Term) -> Bounds:
        if isinstance(left, _Known) and not isinstance(right, _Known):
            left, right = right, left
        if isinstance(left, _Attr) and isinstance(right, _Known):
            value = right.value
            if isinstance(value, EntityUID):
                # The id in metadata does not carry the type: a superset of equality only.
                return Bounds(Comparison(left.name, "==", value), FALSE, Has(left.name), FALSE)
            if _is_scalar(value):
                return _exact(Comparison(left.name, "==", value), Comparison(left.name, "!=", value))
            return _may_error(left.name)
        if isinstance(left, _Resource) and isinstance(right, _Known):
            value = right.value
            if not isinstance(value, EntityUID) or (
                self.resource_type is not None and value.type != self.resource_type
            ):
                return _exact(FALSE, TRUE)  # an entity never equals another type's entity
            return UNKNOWN
        return _operands_present(left, right)

    def _order(self, op: Op, left: _Term, right: _Term) -> Bounds:
        if isinstance(left, _Known) and isinstance(right, _Attr):
            left, right, op = right, left, FLIPPED[op]
        if isinstance(left, _Attr) and isinstance(right, _Known):
            value = right.value
            if is_long(value) and _is_scalar(value):
                return _exact(Comparison(left.name, op, value),
                              Comparison(left.name, NEGATED[op], value))
        return _operands_present(left, right)

    @staticmethod
    def _has(target: _Term, attr: Any) -> Bounds:
        if isinstance(target, _Resource) and isinstance(attr, str):
            return _exact(Has(attr), Not(Has(attr)))
        return UNKNOWN

    def _contains(self, container: _Term, element: _Term) -> Bounds:
        if isinstance(container, _Known) and isinstance(element, _Attr):
            items = container.value
            if not isinstance(items, _Set):
                return UNKNOWN
            name = element.name
            values = tuple(dict.fromkeys(item for item in items.items if _is_scalar(item)))
            if len(values) < len(items.items):
                return _may_error(name)  # a set element this module cannot compare
            found = In(name, values) if values else FALSE
            if any(isinstance(v, EntityUID) for v in values):
                return Bounds(found, FALSE, Has(name), FALSE)
            return _exact(found, all_of(Has(name), negate(found)))
        if isinstance(container, _Attr) and isinstance(element, _Known):
            name, value = container.name, element.value
            if not _is_scalar(value):
                return _may_error(name)
            contains = Contains(name, value)
            if isinstance(value, EntityUID):
                # An id in metadata may stand for another type's entity: never negate it.
                return Bounds(contains, FALSE, Has(name), FALSE)
            # false needs a list without the value; "is a list" has no atom: bounded above only.
            return Bounds(contains, contains, all_of(Has(name), negate(contains)), FALSE)
        return _operands_present(container, element)

    def _contains_set(self, op: str, left: _Term, right: _Term) -> Bounds:
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
            return Bounds(found, FALSE, Has(name), FALSE)
        return Bounds(found, found, all_of(Has(name), negate(found)), FALSE)

    @staticmethod
    def _like(target: _Term, pattern: Any) -> Bounds:
        if not isinstance(target, _Attr):
            return UNKNOWN
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
        return Bounds(atom, atom, all_of(Has(target.name), Not(atom)), FALSE)

    def _in(self, left: _Term, right: _Term) -> Bounds:
        if isinstance(left, _Resource) and isinstance(right, _Known):
            targets = right.value.items if isinstance(right.value, _Set) else (right.value,)
            if not all(isinstance(target, EntityUID) for target in targets):
                return UNKNOWN
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
            return Bounds(any_of(*atoms), FALSE, Has(right.name), FALSE)
        return _operands_present(left, right)

    def _descends(self, target: EntityUID) -> Bounds:
        """``resource in target`` for one entity: equal to it, or one of its descendants."""
        below = InHierarchy(target)
        if self.resource_type is not None and target.type != self.resource_type:
            return _exact(below, Not(below))
        return Bounds(TRUE, below, Not(below), FALSE)  # resource == target is not translatable

    def _is(self, body: Mapping[str, Any], depth: int) -> Bounds:
        target = self.term(body.get("left"), depth)
        if not isinstance(target, _Resource) or self.resource_type is None:
            return UNKNOWN
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


def _is_true(est: Any) -> bool:
    """Whether ``est`` is the literal ``true`` (not ``1``, which equals True in Python)."""
    return type(est) is dict and len(est) == 1 and est.get("Value") is True


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


def _present(bound: Expr, names: set[str], present: Expr) -> Expr:
    """``bound && present`` (``present``: the attributes ``names`` are all there), simplified.

    Short cuts for what the conjunction would find anyway: false stays false, and an atom
    on the attributes already needs them present.
    """
    if bound == FALSE:
        return FALSE
    if len(names) == 1 and isinstance(bound, ATOMS) and not isinstance(bound, InHierarchy) \
            and bound.attr in names:
        return bound
    return all_of(bound, present)


def _operands_present(*terms: _Term) -> Bounds:
    """An operation this module does not translate: it errors if a resource attribute is missing."""
    names = [term.name for term in terms if isinstance(term, _Attr)]
    if not names:
        return UNKNOWN
    present = all_of(*(Has(name) for name in names))
    return Bounds(present, FALSE, present, FALSE)
