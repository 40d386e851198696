"""Small entity handles for partial evaluation (``LocalEngine.may_allow``, ``permitted_tools``).

Cedar's partial evaluation costs time with every entity of the handle it is
given (about 0.05 us each, measured with cedarpy 4.12), not only with those it
reads; a handle parsed with the schema also holds every action the schema
declares. With N tools there are N actions: asking about each tool through the
whole stored graph costs N times a cost that grows with N.

A partial evaluation can only read the entities its request reaches (see
:mod:`agentauthz.engines._reach`) and the ancestry of the actions it meets, so
it is given a handle of just those. To read every value exactly as the stored
handle does, the reached entities are parsed with the schema once (as the store
parses them), dumped by Cedar in its explicit JSON (``__entity``, ``__extn``)
and parsed again without the schema and without the schema's other actions;
the action ancestry is added per request. The parsed part is kept per set of
reached entities (an application asks about many tools for one user).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any

import cedarpy

from agentauthz._model import Entity, EntityUID, Request
from agentauthz.engines._reach import Reach, entity_refs
from agentauthz.policy._store import PolicySnapshot

__all__ = ["PartialEntities"]

# Reach at most this many stored entities, or a share of the handle's size (stored entities and
# actions) when larger; beyond that the stored handle is used as it is.
_MIN_REACH_BUDGET = 256
_REACH_DIVISOR = 16
# Parsed reached sets kept (LRU): one per user asked about, usually.
_CACHED_SETS = 64
# Handles kept for requests without given entities (LRU): a few entities each.
_CACHED_HANDLES = 4096


class PartialEntities:
    """The entity handles for partial evaluations in one store version.

    Args:
        snapshot: the store version.
        reach: the reach of that version's entities and policies.
    """

    def __init__(self, snapshot: PolicySnapshot, reach: Reach) -> None:
        self.snapshot = snapshot
        self.reach = reach
        self._actions = _schema_actions(snapshot.schema)
        self._sets: OrderedDict[bytes, tuple[Any, frozenset[EntityUID]]] = OrderedDict()
        self._closures: dict[EntityUID, frozenset[EntityUID]] = {}
        self._handles: OrderedDict[tuple[EntityUID, EntityUID, EntityUID | None], Any] = OrderedDict()
        self._lock = threading.Lock()

    def handle(self, principal: EntityUID, action: EntityUID, resource: EntityUID | None,
               given: Mapping[EntityUID, Entity]) -> Any | None:
        """A handle holding what this partial evaluation can read, or None: use the stored one.

        ``given`` are the call's entities that differ from the stored ones.

        Raises:
            Exception: cedarpy refused the reached entities (as it would refuse them merged).
        """
        # Without given entities the handle depends only on the request (stored entities do not
        # change within a store version): an application asks the same questions every turn.
        key = None if given else (principal, action, resource)
        if key is not None:
            with self._lock:
                known = self._handles.get(key)
                if known is not None:
                    self._handles.move_to_end(key)
                    return known
        found = self._handle(principal, action, resource, given)
        if key is not None and found is not None:
            with self._lock:
                self._handles[key] = found
                while len(self._handles) > _CACHED_HANDLES:
                    self._handles.popitem(last=False)
        return found

    def _handle(self, principal: EntityUID, action: EntityUID, resource: EntityUID | None,
                given: Mapping[EntityUID, Entity]) -> Any | None:
        reach = self.reach
        budget = max(_MIN_REACH_BUDGET, (len(reach.stored) + len(self._actions)) // _REACH_DIVISOR)
        # An unknown resource reaches nothing: the principal stands in for it.
        request = Request(principal, action, resource if resource is not None else principal)
        reached = reach.entities([request], given, budget)
        if reached is None:
            return None
        base, held = self._parsed(reached)
        missing = [self._actions[uid] for uid in self._action_closure(action) if uid not in held]
        if not missing:
            return base
        return base.with_added_json_str(json.dumps(missing), None)

    def _parsed(self, reached: list[Entity]) -> tuple[Any, frozenset[EntityUID]]:
        """The handle of the reached entities and the actions it holds (those they can meet)."""
        cedar = [entity.cedar for entity in reached]
        document = json.dumps(cedar)
        key = hashlib.sha256(document.encode()).digest()
        with self._lock:
            cached = self._sets.get(key)
            if cached is not None:
                self._sets.move_to_end(key)
                return cached
        actions = self._actions
        schema = self.snapshot.schema
        if schema is not None:
            # Cedar reads the values as the store's handle does (a {type, id} record the schema
            # declares an entity is one), then writes them explicitly, readable without the schema.
            canonical = json.loads(str(cedarpy.Entities.from_json_str(document, schema)))
            cedar = [entity for entity in canonical if EntityUID.from_cedar(entity["uid"]) not in actions]
        # The actions named in the policies' conditions or in the reached attributes, with their groups.
        named: list[EntityUID] = list(self.reach.literals or ())
        for entity in cedar:
            entity_refs(entity.get("attrs"), named)
            entity_refs(entity.get("tags"), named)
        held = self._ancestry(named)
        cedar.extend(actions[uid] for uid in held)
        parsed = (cedarpy.Entities.from_json_str(json.dumps(cedar), None), held)
        with self._lock:
            self._sets[key] = parsed
            while len(self._sets) > _CACHED_SETS:
                self._sets.popitem(last=False)
        return parsed

    def _action_closure(self, action: EntityUID) -> frozenset[EntityUID]:
        known = self._closures.get(action)
        if known is None:
            known = self._ancestry((action,))
            self._closures[action] = known  # at most one per action of the schema
        return known

    def _ancestry(self, named: Iterable[EntityUID]) -> frozenset[EntityUID]:
        """The schema's actions among ``named``, with every action group above them."""
        actions = self._actions
        found = [uid for uid in named if uid in actions]
        included: set[EntityUID] = set()
        while found:
            uid = found.pop()
            if uid not in included:
                included.add(uid)
                found.extend(parent for parent in map(EntityUID.from_cedar, actions[uid].get("parents", ()))
                             if parent in actions)
        return frozenset(included)


def _schema_actions(schema: Any) -> dict[EntityUID, dict[str, Any]]:
    """The action entities a schema adds to every handle parsed with it, as Cedar writes them."""
    if schema is None:
        return {}
    dumped = json.loads(str(cedarpy.Entities.from_json_str("[]", schema)))
    return {EntityUID.from_cedar(entity["uid"]): entity for entity in dumped}
