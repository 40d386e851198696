"""Policy slicing: evaluate only the policies whose scope can match a request.

Cedar evaluates a policy's scope (``principal == / in / is``, ``action == / in``,
``resource == / in / is``) before its conditions, and a scope that does not
match makes the policy false without an error. A policy whose scope cannot
match a request therefore changes neither the decision, nor the determining
policies, nor the errors: leaving it out of the evaluated set is exact.

The index is built once per store version (:class:`SliceIndex`):

* Static policies are grouped by what their scope says about the request's
  action (``==``, ``in`` an action group, any) and the *types* of its principal
  and resource. A request whose principal is none of the entities that static
  principal scopes name (``==``, ``in``, ``is ... in``) and under none of them
  (ancestors from the stored entities, the schema's actions and the entities
  given with the call: a superset of Cedar's) leaves out every static policy
  naming an entity there; likewise for the resource. A static policy whose
  conditions start with ``when { principal.<attr> == "<text>" && ...`` (or only
  that) is false without an error for a principal whose entity holds another
  string in ``<attr>``: such a principal leaves it out. Each distinct group becomes
  one pre-parsed ``cedarpy.PolicySet`` (parsed from the policies' own text, so
  each slice has its own positional ``policyN`` ids, mapped back to store ids),
  built on first use and kept, up to a budget of policies held (past it, a
  request of a new kind gets the slice of its action and pair of types).
* Template links are indexed by the entities their slots name. A request adds
  the links whose principal (or, for resource-only templates, resource) matches,
  using the ancestors of the request's principal and resource in the entity
  graph (stored entities, the schema's action hierarchy and the entities given
  with the call), linked onto the static slice (``with_linked_batch``, the link
  id is what a decision reports). Those handles are cached (LRU).

A policy whose scope cannot be read (cedarpy's PST conversion refuses it) is
in every slice. The scope is read from the scope part of the statement alone,
so deep conditions never get in the way.
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import cedarpy
from cedarpy import pst

from agentauthz._entities import StoredEntities
from agentauthz._model import Entity, EntityUID, Request
from agentauthz.policy._store import Policy, PolicySnapshot, TemplateLink

__all__ = [
    "ActionScope", "Constraint", "Overlay", "Scope", "Slice", "SliceIndex", "leading_equality", "read_scopes",
    "scope_end", "scope_text", "tokens",
]

Uid = tuple[str, str]

ANY = 0
EQ = 1
IN = 2
IS = 3
IS_IN = 4

# Handles of a static slice plus the links of one request, kept across requests.
DEFAULT_LINKED_CACHE = 512
# A principal with at most this many matching links gets one slice for all its resources
# (cached per principal); above it, links are also matched on the resource.
PER_PRINCIPAL_LINKS = 16
_NONE: frozenset[Uid] = frozenset()
# Policies held by the pre-parsed slices (~4 KiB each in cedarpy 4.12): at most this many times the
# store's static policies, or MIN_SLICED_POLICIES when more. Past it, a request whose kind (the scope
# entities and attribute texts its principal and resource reach) has no slice yet evaluates every
# policy of its action and types, as with one slice per action and pair of types.
SLICED_POLICY_FACTOR = 4
MIN_SLICED_POLICIES = 4096
# Distinct request shapes (principal type, action, resource type) remembered per store version.
_MAX_KEYS = 4096
# Ancestor sets remembered per store version.
_MAX_MEMO = 100_000

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
    |(?P<comment>//[^\n\r]*)
    |(?P<string>"(?:[^"\\]|\\.)*")
    |(?P<ident>[A-Za-z_][A-Za-z0-9_]*)
    |(?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)


@dataclass(frozen=True, slots=True)
class Constraint:
    """A principal or resource scope constraint.

    Attributes:
        kind: ``ANY``, ``EQ``, ``IN``, ``IS`` or ``IS_IN``.
        entity: the entity of ``==`` / ``in`` (None for a slot or no entity).
        slot: ``"principal"`` / ``"resource"`` when a template slot stands for the entity.
        entity_type: the type of ``is``.
    """

    kind: int
    entity: Uid | None = None
    slot: str | None = None
    entity_type: str | None = None

    def filled(self, value: EntityUID | None) -> Constraint:
        """This constraint with its slot replaced by a link's value."""
        if self.slot is None or value is None:
            return self
        return Constraint(self.kind, (value.type, value.id), None, self.entity_type)

    def type_may_match(self, entity_type: str) -> bool:
        """Whether an entity of this type can satisfy the constraint (ancestry unknown)."""
        kind = self.kind
        if kind in (ANY, IN):
            return True
        if kind == EQ:
            return self.entity is None or self.entity[0] == entity_type
        return self.entity_type == entity_type

    def matches(self, uid: Uid, ancestors: frozenset[Uid] | set[Uid]) -> bool:
        """Exact scope test for an entity with these (transitive) ancestors."""
        kind = self.kind
        if kind == ANY:
            return True
        if kind == EQ:
            return uid == self.entity
        if kind == IS:
            return uid[0] == self.entity_type
        if kind == IS_IN and uid[0] != self.entity_type:
            return False
        return uid == self.entity or self.entity in ancestors


@dataclass(frozen=True, slots=True)
class ActionScope:
    """An action scope constraint: ``ANY``, ``EQ`` (one entity) or ``IN`` (any of the entities)."""

    kind: int
    entities: frozenset[Uid] = frozenset()

    def may_match(self, action: Uid, hits: frozenset[Uid]) -> bool:
        """Whether the action (``hits``: the action groups it is in) satisfies the constraint."""
        if self.kind == ANY:
            return True
        if self.kind == EQ:
            return action in self.entities
        return action in self.entities or not self.entities.isdisjoint(hits)


@dataclass(frozen=True, slots=True)
class Scope:
    """The scope of one policy or template."""

    principal: Constraint
    action: ActionScope
    resource: Constraint


Token = tuple[str, int, int]


def tokens(statement: str) -> list[Token]:
    """The statement's tokens as ``(kind, start, end)``, spaces and comments left out."""
    return [(m.lastgroup or "", m.start(), m.end()) for m in _TOKEN.finditer(statement)
            if m.lastgroup not in ("space", "comment")]


def _scope_span(statement: str, scanned: list[Token]) -> tuple[int, int] | None:
    # (index of the effect token, index just past the scope's closing parenthesis)
    i = 0
    while i < len(scanned) and statement[scanned[i][1]:scanned[i][2]] == "@":
        if i + 1 >= len(scanned) or scanned[i + 1][0] != "ident":
            return None
        i += 2
        if (i + 2 < len(scanned) and statement[scanned[i][1]:scanned[i][2]] == "("
                and scanned[i + 1][0] == "string" and statement[scanned[i + 2][1]:scanned[i + 2][2]] == ")"):
            i += 3
    if i + 1 >= len(scanned) or statement[scanned[i][1]:scanned[i][2]] not in ("permit", "forbid"):
        return None
    if statement[scanned[i + 1][1]:scanned[i + 1][2]] != "(":
        return None
    depth = 0
    for position in range(i + 1, len(scanned)):
        kind, begin, end = scanned[position]
        if kind != "other":
            continue
        char = statement[begin:end]
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
            if depth == 0:
                return i, position + 1
    return None


def scope_end(statement: str, scanned: list[Token]) -> int | None:
    """Index of the first token after the statement's scope (its conditions), None if unreadable."""
    span = _scope_span(statement, scanned)
    return None if span is None else span[1]


def scope_text(statement: str, scanned: list[Token] | None = None) -> str | None:
    """The statement reduced to its effect and scope (``permit(...);``), or None if unreadable.

    Annotations and conditions are dropped: Cedar reads the same scope from the
    result, and conditions nested past cedarpy's conversion limits do not matter.
    ``scanned``: the statement's :func:`tokens`, when the caller has them.
    """
    if scanned is None:
        scanned = tokens(statement)
    span = _scope_span(statement, scanned)
    if span is None:
        return None
    return statement[scanned[span[0]][1]:scanned[span[1] - 1][2]] + ";"


def leading_equality(statement: str, scanned: list[Token] | None = None) -> tuple[str, str] | None:
    """``(attr, text)`` when the statement's conditions start with ``when { principal.attr == "text"``.

    Only when that comparison is the whole first condition or its first ``&&``
    operand (``==`` binds tighter than ``&&``; a ``||`` after it is refused), and
    only for a string literal without escapes, so the text is its value. Cedar
    evaluates it first: where it is false the policy is false, without an error. ``scanned``: the
    statement's :func:`tokens`, when the caller has them.
    """
    if scanned is None:
        scanned = tokens(statement)
    end = scope_end(statement, scanned)
    if end is None:
        return None
    kinds = [kind for kind, _, _ in scanned[end:end + 10]]
    words = [statement[begin:stop] for _, begin, stop in scanned[end:end + 10]]
    if len(words) < 9 or words[:4] != ["when", "{", "principal", "."] or words[5:7] != ["=", "="]:
        return None
    if kinds[4] != "ident" or kinds[7] != "string":
        return None
    literal = words[7]
    if "\\" in literal or not (words[8] == "}" or words[8:10] == ["&", "&"]):
        return None
    # `a && b || c` is `(a && b) || c`: the comparison decides only a clause without `||` (inside
    # parentheses too, to keep the check simple).
    depth = 0
    for kind, begin, stop in scanned[end + 1:]:
        char = statement[begin:stop] if kind == "other" else ""
        if char == "|":
            return None
        if char in ("(", "[", "{"):
            depth += 1
        elif char in (")", "]", "}"):
            depth -= 1
            if depth == 0:
                return words[4], literal[1:-1]
    return None


def read_scopes(texts: Sequence[str], scanned: Sequence[list[Token]] | None = None) -> list[Scope | None]:
    """The scope of each statement (policy or template), None where cedarpy cannot read it.

    ``scanned``: the statements' :func:`tokens`, when the caller has them.
    """
    reduced = [scope_text(text, scanned[index] if scanned is not None else None)
               for index, text in enumerate(texts)]
    scopes: list[Scope | None] = [None] * len(texts)
    readable = [index for index, text in enumerate(reduced) if text is not None]
    try:
        nodes = cedarpy.policies_to_pst("\n".join(reduced[index] or "" for index in readable))
        found = {**nodes.static_policies, **nodes.templates}
        if len(found) != len(readable):
            raise ValueError("statement count")
        for position, index in enumerate(readable):
            scopes[index] = _scope(found[f"policy{position}"])
        return scopes
    except (ValueError, KeyError, TypeError):
        pass
    for index in readable:  # one statement at a time: a failure costs only that statement
        try:
            nodes = cedarpy.policies_to_pst(reduced[index] or "")
            alone = [*nodes.static_policies.values(), *nodes.templates.values()]
            scopes[index] = _scope(alone[0]) if len(alone) == 1 else None
        except (ValueError, KeyError, TypeError):
            scopes[index] = None
    return scopes


def _uid(node: Any) -> Uid:
    if not isinstance(node, pst.EntityUid):
        raise TypeError(f"not an entity uid: {type(node).__name__}")
    return (str(node.type), node.id)


def _constraint(node: Any) -> Constraint:
    if isinstance(node, pst.ScopeAny):
        return Constraint(ANY)
    if isinstance(node, pst.ScopeIs):
        return Constraint(IS, entity_type=str(node.entity_type))
    if isinstance(node, (pst.ScopeEq, pst.ScopeIn, pst.ScopeIsIn)):
        kind = EQ if isinstance(node, pst.ScopeEq) else IN if isinstance(node, pst.ScopeIn) else IS_IN
        entity_type = str(node.entity_type) if isinstance(node, pst.ScopeIsIn) else None
        if isinstance(node.entity, pst.Slot):
            return Constraint(kind, slot=node.entity.name, entity_type=entity_type)
        return Constraint(kind, _uid(node.entity), entity_type=entity_type)
    raise TypeError(f"unknown scope constraint {type(node).__name__}")


def _action(node: Any) -> ActionScope:
    if isinstance(node, pst.ScopeAny):
        return ActionScope(ANY)
    if isinstance(node, pst.ActionEq):
        return ActionScope(EQ, frozenset((_uid(node.entity),)))
    if isinstance(node, pst.ActionIn):
        return ActionScope(IN, frozenset(_uid(entity) for entity in node.entities))
    raise TypeError(f"unknown action constraint {type(node).__name__}")


def _scope(node: Any) -> Scope | None:
    try:
        return Scope(_constraint(node.principal), _action(node.action), _constraint(node.resource))
    except (TypeError, AttributeError):
        return None


@dataclass(frozen=True)
class Slice:
    """A pre-parsed policy set for a family of requests and how to name its policies.

    Attributes:
        policy_set: the cedarpy handle evaluated.
        ids: cedarpy's positional id in this set -> store id.
        template_ids: store id of a template -> its positional id in this set.
        size: policies evaluated (static policies and links).
        members: the statements (static policies, templates) it was built from, by index.
    """

    policy_set: Any
    ids: Mapping[str, str]
    template_ids: Mapping[str, str] = field(default_factory=dict)
    size: int = 0
    members: tuple[int, ...] = ()

    def store_id(self, cedar_id: str) -> str:
        """The store id of a policy cedarpy names in a decision or an error."""
        return self.ids.get(cedar_id, cedar_id)


@dataclass(frozen=True, slots=True)
class _Link:
    index: int
    link: TemplateLink
    template: int  # index of its template in the statements
    principal: Constraint
    action: ActionScope
    resource: Constraint


class _Hierarchy:
    """Parents of the stored entities and of the schema's actions; ancestors on demand.

    The stored entities' parents are read from their Cedar JSON when an ancestor
    walk reaches them: nothing is copied per stored entity.
    """

    def __init__(self, stored: StoredEntities, schema: Any) -> None:
        self._stored = stored
        actions: dict[Uid, tuple[Uid, ...]] = {}
        if schema is not None:
            for action in json.loads(str(cedarpy.Entities.from_json_str("[]", schema))):
                uid = action["uid"]
                actions[(uid["type"], uid["id"])] = tuple(
                    (parent["type"], parent["id"]) for parent in action.get("parents", ()))
        self._actions = actions
        self._memo: dict[Uid, frozenset[Uid]] = {}
        self._parents: dict[Uid, tuple[Uid, ...]] = {}

    def parents(self, uid: Uid) -> tuple[Uid, ...]:
        """The parents a stored entity (and, for an action, the schema) gives ``uid``."""
        known = self._parents.get(uid)
        if known is not None:
            return known
        found = self._actions.get(uid, ())
        position = self._stored.position(EntityUID(uid[0], uid[1])) if uid[0] else None
        if position is not None:
            stored = self._stored.cedar[position]["parents"]
            found = (*found, *((parent["type"], parent["id"]) for parent in stored))
        if len(self._parents) >= _MAX_MEMO:
            self._parents.clear()
        self._parents[uid] = found
        return found

    def ancestors(self, uid: Uid, delta: Mapping[Uid, tuple[Uid, ...]] | None) -> frozenset[Uid]:
        """Transitive ancestors; with per-call entities, their parents are added to the stored ones.

        Taking both (rather than the call's version only) can only find more
        ancestors, so a slice built from them can only hold more policies.
        """
        if not delta:
            known = self._memo.get(uid)
            if known is not None:
                return known
        found: set[Uid] = set()
        stack = [uid]
        while stack:
            current = stack.pop()
            for parent in self.parents(current):
                if parent not in found:
                    found.add(parent)
                    stack.append(parent)
            if delta:
                for parent in delta.get(current, ()):
                    if parent not in found:
                        found.add(parent)
                        stack.append(parent)
        result = frozenset(found)
        if not delta:
            if len(self._memo) >= _MAX_MEMO:
                self._memo.clear()
            self._memo[uid] = result
        return result


class SliceIndex:
    """Policies of one store version indexed by scope; picks the slice for each request.

    Args:
        snapshot: the store version.
        linked_cache: handles of static slices with a request's links, kept (LRU).
    """

    def __init__(self, snapshot: PolicySnapshot, *, linked_cache: int = DEFAULT_LINKED_CACHE) -> None:
        self.snapshot = snapshot
        policies = snapshot.policies
        # Policies in shadow mode (``@mode("shadow")``) are not in the enforced set.
        shadow = getattr(snapshot, "shadow", None)
        excluded: frozenset[str] = shadow.ids if shadow is not None else frozenset()
        self._policies: tuple[Policy, ...] = policies
        scanned = [tokens(policy.text) for policy in policies]
        self._scopes = read_scopes([policy.text for policy in policies], scanned)
        self._statics = [i for i, policy in enumerate(policies)
                         if not policy.is_template and policy.id not in excluded]
        templates = {policy.id: i for i, policy in enumerate(policies) if policy.is_template}
        groups: set[Uid] = set()
        for scope in self._scopes:
            if scope is not None and scope.action.kind == IN:
                groups.update(scope.action.entities)
        self._links: list[_Link] = []
        self._always_links: list[int] = []  # links in every slice (scope unreadable, or no entity)
        self._by_principal: dict[tuple[int, Uid], list[int]] = {}
        # Links naming one principal exactly, once more by the resource they name exactly (a share),
        # or under the principal alone when their resource constraint names no single entity: a
        # principal with thousands of links finds a request's few without testing every one.
        self._by_pair: dict[tuple[Uid, Uid], list[int]] = {}
        self._open_resource: dict[Uid, list[int]] = {}
        self._by_resource: dict[tuple[int, Uid], list[int]] = {}
        self._principal_in = False
        self._resource_in = False
        for link in snapshot.links:
            if link.id not in excluded:
                self._index_link(link, templates[link.template])
        self._groups = frozenset(groups)
        # Static policies whose conditions start with ``principal.<attr> == "<text>"``, and the texts
        # compared with each attribute.
        self._equalities: dict[int, tuple[str, str]] = {}
        for index in self._statics:
            found = leading_equality(policies[index].text, scanned[index])
            if found is not None:
                self._equalities[index] = found
        self._families: dict[tuple[Any, ...], _Family] = {}
        self._held = 0  # policies in the slices of _by_members
        self._budget = max(MIN_SLICED_POLICIES, SLICED_POLICY_FACTOR * len(self._statics))
        self._linked_templates = sorted({entry.template for entry in self._links})
        self._hierarchy: _Hierarchy | None = None
        self._by_key: dict[tuple[Any, ...], Slice] = {}
        self._by_members: dict[tuple[int, ...], Slice] = {}
        self._linked: OrderedDict[tuple[tuple[int, ...], tuple[int, ...]], Slice] = OrderedDict()
        self._linked_size = linked_cache
        self._lock = threading.Lock()
        self.full = Slice(snapshot.policy_set, snapshot.ids_by_position,
                          size=len(self._statics) + len(snapshot.links))

    def _index_link(self, link: TemplateLink, template: int) -> None:
        """File a template link under the entity its principal (else resource) constraint names."""
        number = len(self._links)
        scope = self._scopes[template]
        if scope is None:
            self._links.append(_Link(number, link, template, Constraint(ANY), ActionScope(ANY),
                                     Constraint(ANY)))
            self._always_links.append(number)
            return
        entry = _Link(number, link, template, scope.principal.filled(link.principal), scope.action,
                      scope.resource.filled(link.resource))
        self._links.append(entry)
        if entry.principal.entity is not None:
            kind = EQ if entry.principal.kind == EQ else IN
            self._principal_in = self._principal_in or kind == IN
            self._by_principal.setdefault((kind, entry.principal.entity), []).append(number)
            if kind == EQ and entry.resource.kind == EQ and entry.resource.entity is not None:
                self._by_pair.setdefault((entry.principal.entity, entry.resource.entity), []).append(number)
            elif kind == EQ:
                self._open_resource.setdefault(entry.principal.entity, []).append(number)
        elif entry.resource.entity is not None:
            kind = EQ if entry.resource.kind == EQ else IN
            self._resource_in = self._resource_in or kind == IN
            self._by_resource.setdefault((kind, entry.resource.entity), []).append(number)
        else:
            self._always_links.append(number)

    @property
    def unreadable(self) -> int:
        """How many policies and templates are in every slice because their scope could not be read."""
        return sum(scope is None for scope in self._scopes)

    def overlay(self, delta: Mapping[EntityUID, Entity] | None) -> Overlay | None:
        """What :meth:`select` needs of the entities given with one call (None: nothing)."""
        if not delta:
            return None
        return Overlay({(uid.type, uid.id): tuple((parent.type, parent.id) for parent in entity.parents)
                        for uid, entity in delta.items()}, entities=delta)

    def select(self, request: Request, overlay: Overlay | None = None, *,
               resource_known: bool = True) -> Slice:
        """The slice to evaluate ``request`` with.

        Args:
            request: the request.
            overlay: from :meth:`overlay` of the entities given with the call.
            resource_known: False when the request's resource stands for every resource of its
                type (partial evaluation): only the resource's type is read then, and links are
                not matched (the caller leaves stores with links unsliced).
        """
        principal = request.principal
        resource = request.resource
        action = request.action
        action_uid: Uid = ("Action", action) if isinstance(action, str) else (action.type, action.id)
        hits: frozenset[Uid] = frozenset()
        if self._groups:
            hits = self._ancestors(action_uid, overlay) & self._groups
        principal_uid: Uid = (principal.type, principal.id)
        resource_uid: Uid = (resource.type, resource.id)
        base = (principal.type, action_uid, hits, resource.type)
        family = self._families.get(base)
        if family is None:
            family = self._family(base)
        key: tuple[Any, ...] = (
            base,
            self._reached(principal_uid, family.principals, overlay),
            self._reached(resource_uid, family.resources, overlay) if resource_known else None,
            self._principal_texts(principal, family.compared, overlay) if family.compared else None)
        static = self._by_key.get(key)
        if static is None:
            if self._held >= self._budget:
                key = (base, None, None, None)  # slices hold enough policies: the whole family
                static = self._by_key.get(key)
            if static is None:
                static = self._static_slice(key, family.compared)
        if not self._links:
            return static
        chosen = self._matching_links(principal_uid, action_uid, hits, resource_uid, overlay)
        if not chosen:
            return static
        return self._with_links(static, chosen)

    # -- static policies ------------------------------------------------------------

    def _family(self, base: tuple[Any, ...]) -> _Family:
        """What distinguishes the requests of one action and pair of types: the entities the scopes
        of their static policies name, and the attributes those policies' conditions compare."""
        principals: set[Uid] = set()
        resources: set[Uid] = set()
        compared: dict[str, set[str]] = {}
        for index in self._candidates(base):
            scope = self._scopes[index]
            if scope is None:
                continue
            if scope.principal.entity is not None:
                principals.add(scope.principal.entity)
            if scope.resource.entity is not None:
                resources.add(scope.resource.entity)
            equality = self._equalities.get(index)
            if equality is not None:
                compared.setdefault(equality[0], set()).add(equality[1])
        family = _Family(frozenset(principals), frozenset(resources),
                         tuple((attr, frozenset(texts)) for attr, texts in sorted(compared.items())))
        if len(self._families) >= _MAX_KEYS:
            self._families.clear()
        self._families[base] = family
        return family

    def _candidates(self, base: tuple[Any, ...]) -> list[int]:
        """The static policies whose scope may match requests of this action and pair of types."""
        principal_type, action, hits, resource_type = base
        found = []
        for index in self._statics:
            scope = self._scopes[index]
            if scope is None or (scope.action.may_match(action, hits)
                                 and scope.principal.type_may_match(principal_type)
                                 and scope.resource.type_may_match(resource_type)):
                found.append(index)
        return found

    def _reached(self, uid: Uid, named: frozenset[Uid], overlay: Overlay | None) -> frozenset[Uid]:
        """The ``named`` entities that ``uid`` is, or may be under (ancestors: a superset of Cedar's)."""
        if not named:
            return named
        found = named & self._ancestors(uid, overlay)
        return found | {uid} if uid in named else found

    def _principal_texts(self, principal: EntityUID, compared: tuple[tuple[str, frozenset[str]], ...],
                         overlay: Overlay | None) -> tuple[str | bool | None, ...]:
        """Per compared attribute: the principal's text when a policy compares it with that text,
        False for another string (no such policy can hold), None when unknown (every one is kept).

        The principal is read as Cedar gets it: the entity given with the call, else the stored one.
        """
        given = overlay.entities.get(principal) if overlay is not None else None
        if given is not None:
            attrs: Mapping[str, Any] = given.cedar["attrs"]
        else:
            stored = self.snapshot.entities
            position = stored.position(principal)
            if position is None:
                return (None,) * len(compared)
            attrs = stored.cedar[position]["attrs"]
        found: list[str | bool | None] = []
        for attr, texts in compared:
            value = attrs.get(attr)
            found.append(None if type(value) is not str else value if value in texts else False)
        return tuple(found)

    def _static_slice(self, key: tuple[Any, ...], compared: tuple[tuple[str, frozenset[str]], ...]) -> Slice:
        base, principals, resources, texts = key
        principal_texts: dict[str, str | bool] = {}
        if texts is not None:
            principal_texts = {attr: text for (attr, _), text in zip(compared, texts, strict=True)
                               if text is not None}
        equalities = self._equalities
        members = []
        for index in self._candidates(base):
            scope = self._scopes[index]
            if scope is not None:
                # A scope naming an entity the request's principal (resource) is not, nor is under.
                if principals is not None and scope.principal.entity not in (None, *principals):
                    continue
                if resources is not None and scope.resource.entity not in (None, *resources):
                    continue
            equality = equalities.get(index)
            if (equality is not None and equality[0] in principal_texts
                    and principal_texts[equality[0]] != equality[1]):
                continue  # principal.<attr> holds another string: false, without an error
            members.append(index)
        templates = [index for index in self._linked_templates if self._template_may_match(index, base)]
        chosen = tuple(sorted(members + templates))
        if len(self._by_key) >= _MAX_KEYS or len(self._by_members) >= _MAX_KEYS:
            self._by_key.clear()
            self._by_members.clear()
            self._held = 0
        found = self._by_members.get(chosen)
        if found is None:
            found = self._build(chosen, len(members))
            self._by_members[chosen] = found
            if found is not self.full:
                self._held += len(chosen)
        self._by_key[key] = found
        return found

    def _template_may_match(self, index: int, key: tuple[Any, ...]) -> bool:
        scope = self._scopes[index]
        if scope is None:
            return True
        principal_type, action, hits, resource_type = key
        return (scope.action.may_match(action, hits) and scope.principal.type_may_match(principal_type)
                and scope.resource.type_may_match(resource_type))

    def _build(self, chosen: tuple[int, ...], statics: int) -> Slice:
        policies = self._policies
        if statics == len(self._statics) and not self._links:
            return self.full  # every policy can apply: the store's own handle
        ids = {f"policy{position}": policies[index].id for position, index in enumerate(chosen)}
        template_ids = {policies[index].id: f"policy{position}"
                        for position, index in enumerate(chosen) if policies[index].is_template}
        try:
            handle = cedarpy.PolicySet.from_str("\n".join(policies[index].text for index in chosen))
            templates = handle.templates()
            # As when the store was loaded: the count and the templates' places must match, or
            # the positional ids would name the wrong policies.
            if len(handle) != statics or len(templates) != len(template_ids) or any(
                    ids.get(template["id"]) not in template_ids
                    or template_ids[ids[template["id"]]] != template["id"]
                    for template in templates):
                return self.full
        except ValueError:
            return self.full
        return Slice(handle, ids, template_ids, statics, chosen)

    # -- template links -------------------------------------------------------------

    def _ancestors(self, uid: Uid, overlay: Overlay | None) -> frozenset[Uid]:
        hierarchy = self._hierarchy
        if hierarchy is None:
            hierarchy = _Hierarchy(self.snapshot.entities, self.snapshot.schema)
            self._hierarchy = hierarchy
        if overlay is None:
            return hierarchy.ancestors(uid, None)
        known = overlay.memo.get(uid)
        if known is None:
            known = hierarchy.ancestors(uid, overlay.parents)
            overlay.memo[uid] = known
        return known

    def _matching_links(self, principal: Uid, action: Uid, hits: frozenset[Uid], resource: Uid,
                        overlay: Overlay | None) -> tuple[int, ...]:
        links = self._links
        # Ancestors are looked up only when an ``in`` constraint needs them.
        principal_ancestors: frozenset[Uid] | None = None
        resource_ancestors: frozenset[Uid] | None = None
        found: list[int] = []
        by_principal = self._by_principal
        if by_principal:
            named = by_principal.get((EQ, principal), ())
            if len(named) > PER_PRINCIPAL_LINKS:
                # Too many for one slice per principal: only those that can match this resource.
                candidates = [*self._by_pair.get((principal, resource), ()),
                              *self._open_resource.get(principal, ())]
            else:
                candidates = list(named)
            if self._principal_in:
                principal_ancestors = self._ancestors(principal, overlay)
                for uid in (principal, *principal_ancestors):
                    candidates.extend(by_principal.get((IN, uid), ()))
            kept = []
            for number in candidates:
                entry = links[number]
                if not entry.action.may_match(action, hits):
                    continue
                if entry.principal.kind != EQ:
                    if principal_ancestors is None:
                        principal_ancestors = self._ancestors(principal, overlay)
                    if not entry.principal.matches(principal, principal_ancestors):
                        continue
                kept.append(number)
            if len(kept) > PER_PRINCIPAL_LINKS:
                exact = []
                for number in kept:
                    constraint = links[number].resource
                    if constraint.kind in (IN, IS_IN) and resource_ancestors is None:
                        resource_ancestors = self._ancestors(resource, overlay)
                    if constraint.matches(resource, resource_ancestors or _NONE):
                        exact.append(number)
                kept = exact
            found.extend(kept)
        by_resource = self._by_resource
        if by_resource:
            candidates = list(by_resource.get((EQ, resource), ()))
            if self._resource_in:
                if resource_ancestors is None:
                    resource_ancestors = self._ancestors(resource, overlay)
                for uid in (resource, *resource_ancestors):
                    candidates.extend(by_resource.get((IN, uid), ()))
            # Resource-indexed links constrain the principal by type at most (no entity).
            found.extend(number for number in candidates
                         if links[number].action.may_match(action, hits)
                         and links[number].principal.matches(principal, _NONE))
        found.extend(self._always_links)
        return tuple(sorted(found))

    def _with_links(self, static: Slice, chosen: tuple[int, ...]) -> Slice:
        if static is self.full:
            return static  # the whole set already holds every link
        key = (static.members, chosen)
        with self._lock:
            cached = self._linked.get(key)
            if cached is not None:
                self._linked.move_to_end(key)
                return cached
        requests = []
        for number in chosen:
            link = self._links[number].link
            positional = static.template_ids.get(link.template)
            if positional is None:
                return self.full
            values: dict[str, Any] = {}
            if link.principal is not None:
                values["?principal"] = link.principal.to_cedar()
            if link.resource is not None:
                values["?resource"] = link.resource.to_cedar()
            requests.append({"template_id": positional, "new_id": link.id, "values": values})
        try:
            handle = static.policy_set.with_linked_batch(requests)
        except (ValueError, KeyError):
            return self.full
        linked = Slice(handle, static.ids, static.template_ids, static.size + len(requests), static.members)
        with self._lock:
            self._linked[key] = linked
            while len(self._linked) > self._linked_size:
                self._linked.popitem(last=False)
        return linked


@dataclass(frozen=True, slots=True)
class _Family:
    """What tells apart the static slices of one action and pair of types (see :meth:`SliceIndex._family`).

    Attributes:
        principals: entities the principal scopes of its policies name.
        resources: entities the resource scopes name.
        compared: attributes of the principal its policies' conditions start by comparing, with the texts.
    """

    principals: frozenset[Uid]
    resources: frozenset[Uid]
    compared: tuple[tuple[str, frozenset[str]], ...]


@dataclass
class Overlay:
    """Parents of the entities given with one call, and ancestors found so far in that call."""

    parents: dict[Uid, tuple[Uid, ...]]
    memo: dict[Uid, frozenset[Uid]] = field(default_factory=dict)
    entities: Mapping[EntityUID, Entity] = field(default_factory=dict)
