"""The entities a call can reach, to build its entity set without cloning the stored graph.

cedarpy merges per-call entities onto a stored ``Entities`` handle with
``with_added_json_str``, which clones the whole stored graph (O(E): ~0.7 ms at
2,000 entities, ~34 ms at 23,000, schema or not) and computes the transitive
closure in a way that grows with the cube of a per-call parent chain. When a
call brings entities of its own, the engine can instead parse a small set: the
entities the requests can reach plus the call's own.

What evaluation can reach: Cedar reads an entity's data (attributes, tags,
ancestors) only for an entity *value*, and entity values come from the request
(principal, action, resource, entity references in the context), from entity
literals in the policies' conditions, and from attributes and tags of entities
already reached. ``in`` needs the ancestors of its left side, and Cedar derives
them from the parents of the entities present: so every ancestor of an entity
in the set is in the set too, with its own parents. Scope literals
(``principal in Group::"g"``) are only compared against, never read. Every
entity given with the call is in the set, so that it is validated, and a cycle
it closes is found, exactly as when it is merged onto the whole graph.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from agentauthz._errors import InvalidValueError
from agentauthz._model import Entity, EntityUID, Request, unescape
from agentauthz.policy._slicing import scope_end, tokens

__all__ = ["Reach", "condition_literals"]


def condition_literals(texts: Iterable[str]) -> frozenset[EntityUID] | None:
    """Entity literals written after the scope of each statement; None if a statement is not read.

    ``Type::"id"`` and ``A::B::"id"`` are the only forms of an entity literal in
    Cedar text; a string that only looks like one is a string token and is skipped.
    """
    found: set[EntityUID] = set()
    for text in texts:
        scanned = tokens(text)
        end = scope_end(text, scanned)
        if end is None:
            return None
        rest = [text[begin:finish] if kind != "string" else (kind, text[begin:finish])
                for kind, begin, finish in scanned[end:]]
        for position, token in enumerate(rest):
            if not isinstance(token, tuple):
                continue
            path = _path_before(rest, position)
            if path is None:
                continue
            try:
                found.add(EntityUID(path, unescape(token[1][1:-1], token[1])))
            except InvalidValueError:
                return None  # Cedar would not read it either; do not guess
    return frozenset(found)


def _path_before(rest: list[Any], position: int) -> str | None:
    # ... ident : : ident : : "string"  ->  the type path, or None when the string is no uid.
    parts: list[str] = []
    index = position
    while index >= 3 and rest[index - 1] == ":" and rest[index - 2] == ":" and isinstance(
            rest[index - 3], str) and _is_ident(rest[index - 3]):
        parts.append(rest[index - 3])
        index -= 3
    return "::".join(reversed(parts)) if parts else None


def _is_ident(token: str) -> bool:
    return token[:1].isalpha() or token[:1] == "_"


def entity_refs(value: Any, out: list[EntityUID]) -> None:
    """Entity references in a Cedar JSON value (``__entity``, or ``{type, id}`` a schema reads as one)."""
    if isinstance(value, dict):
        if "__entity" in value:
            inner = value["__entity"]
            if isinstance(inner, dict) and isinstance(inner.get("type"), str) and isinstance(
                    inner.get("id"), str) and inner["type"]:
                out.append(EntityUID(inner["type"], inner["id"]))
            return
        if "__extn" in value:
            return
        kind = value.get("type")
        if len(value) == 2 and isinstance(kind, str) and kind and isinstance(value.get("id"), str):
            out.append(EntityUID(kind, value["id"]))
        for item in value.values():
            entity_refs(item, out)
    elif isinstance(value, list):
        for item in value:
            entity_refs(item, out)


class Reach:
    """Finds the entities a call can reach in one store version.

    Args:
        stored: the stored entities by uid.
        literals: entity literals in the policies' conditions (None: unknown, never usable).
    """

    def __init__(self, stored: Mapping[EntityUID, Entity], literals: frozenset[EntityUID] | None) -> None:
        self.stored = stored
        self.literals = literals
        self._refs: dict[EntityUID, tuple[EntityUID, ...]] = {}

    def entities(self, requests: Sequence[Request], given: Mapping[EntityUID, Entity],
                 budget: int) -> list[Entity] | None:
        """The given entities and the stored ones the requests can reach.

        Returns None when the policies' literals are unknown, or when more
        than ``budget`` stored entities would be needed (merging is cheaper).
        """
        if self.literals is None:
            return None
        stored = self.stored
        included: dict[EntityUID, Entity] = dict(given)
        extra = 0
        values: list[EntityUID] = list(given)
        values.extend(self.literals)
        for request in requests:
            values.append(request.principal)
            action = request.action
            values.append(EntityUID("Action", action) if isinstance(action, str) else action)
            values.append(request.resource)
            if request.cedar_context:
                entity_refs(request.cedar_context, values)
        seen: set[EntityUID] = set()
        parents: list[EntityUID] = []
        # Values reach through attributes and parents; parents reach only through parents.
        for frontier, through_attributes in ((values, True), (parents, False)):
            while frontier:
                uid = frontier.pop()
                if uid in seen:
                    continue
                seen.add(uid)
                entity = given.get(uid)
                if entity is None:
                    entity = stored.get(uid)
                    if entity is None:
                        continue
                    extra += 1
                    if extra > budget:
                        return None
                    included[uid] = entity
                if through_attributes:
                    values.extend(self._entity_refs(entity, uid in given))
                parents.extend(entity.parents)
        return list(included.values())

    def _entity_refs(self, entity: Entity, given: bool) -> tuple[EntityUID, ...]:
        if not given:
            known = self._refs.get(entity.uid)
            if known is not None:
                return known
        found: list[EntityUID] = []
        cedar = entity.cedar
        entity_refs(cedar.get("attrs"), found)
        if cedar.get("tags"):
            entity_refs(cedar["tags"], found)
        refs = tuple(found)
        if not given:
            self._refs[entity.uid] = refs
        return refs
