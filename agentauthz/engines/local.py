"""The embedded engine: cedarpy with handles parsed once per policy-store version."""

from __future__ import annotations

import asyncio
import json
import re
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import cedarpy

from agentauthz._errors import InvalidValueError
from agentauthz._model import Decision, Entity, EntityUID, Request
from agentauthz._policies import PolicySnapshot, PolicyStore, redact, truncate

__all__ = ["LocalEngine"]

_POSITIONAL_IN_TEXT = re.compile(r"`(policy\d+)`")
# Below this many requests an async call decides inline: a thread hop costs more.
_INLINE_ASYNC_BATCH = 16
_REBUILT_ENTITY_SETS = 8


class LocalEngine:
    """Decide requests in-process with cedarpy.

    Uses the store's pre-parsed ``PolicySet``, ``Schema`` and ``Entities``
    handles; per-call entities are merged onto the stored graph without
    re-parsing it. Requests are schema-checked when the store has a schema.

    Example:
        >>> store = PolicyStore.from_text('@id("p") permit(principal, action, resource);')
        >>> engine = LocalEngine(store)
        >>> from agentauthz import Request, EntityUID
        >>> engine.decide([Request(principal=EntityUID("U", "a"),
        ...     action=EntityUID("Action", "read"), resource=EntityUID("D", "d"))])[0].reasons
        ('p',)
    """

    name = "local"

    def __init__(self, store: PolicyStore) -> None:
        self.store = store
        self._rebuilt: OrderedDict[tuple[str, str], Any] = OrderedDict()

    @property
    def fingerprint(self) -> str:
        """Fingerprint of the store version in use."""
        return self.store.fingerprint

    def resolve_action(self, action: str | EntityUID) -> EntityUID:
        """``"read"`` -> the schema's ``...Action::"read"``; ``Action::"read"`` without a schema.

        Cedar text such as ``'App::Action::"read"'`` is taken as written. A name
        the schema declares in several namespaces must be written in full.
        """
        if isinstance(action, EntityUID):
            return action
        if '::"' in action:
            return EntityUID.parse(action)
        matches = [uid for uid in self.store.actions if uid.id == action]
        if len(matches) == 1:
            return matches[0]
        # Unknown or ambiguous: the schema check of the request then denies it.
        return EntityUID("Action", action)

    def decide(self, requests: Sequence[Request], entities: Sequence[Entity] = ()) -> list[Decision]:
        """Decide each request in order; see :class:`~agentauthz.Engine`."""
        if not requests:
            return []
        snapshot = self.store.snapshot
        try:
            entity_set = self._entity_set(snapshot, entities)
        except (ValueError, InvalidValueError) as exc:
            denial = Decision.deny(f"entities rejected: {truncate(redact(str(exc)))}")
            return [denial] * len(requests)
        cedar_requests = [self._cedar_request(request) for request in requests]
        try:
            results = cedarpy.is_authorized_batch(
                cedar_requests, snapshot.policy_set, entity_set, schema=snapshot.schema
            )
        except Exception as exc:  # cedarpy failing as a whole must never allow
            denial = Decision.deny(f"engine failure: {type(exc).__name__}: {truncate(redact(str(exc)))}")
            return [denial] * len(requests)
        if len(results) != len(requests):
            return [Decision.deny("engine returned a wrong number of results")] * len(requests)
        return [_decision(snapshot, result) for result in results]

    async def adecide(
        self, requests: Sequence[Request], entities: Sequence[Entity] = ()
    ) -> list[Decision]:
        """Async twin of :meth:`decide`; large batches run in a worker thread."""
        if len(requests) < _INLINE_ASYNC_BATCH:
            return self.decide(requests, entities)
        return await asyncio.to_thread(self.decide, requests, entities)

    def may_allow(
        self,
        principal: EntityUID,
        action: EntityUID,
        resource: EntityUID | None,
        entities: Sequence[Entity] = (),
    ) -> bool:
        """Whether some context (and, when ``resource`` is None, some resource) could be allowed.

        Partial evaluation with the unknowns left out: False only when Cedar
        says every such request is denied, or the request cannot even be
        built (unknown action, wrong types). Never use it to allow a call.
        """
        snapshot = self.store.snapshot
        request: dict[str, Any] = {"principal": str(principal), "action": str(action),
                                   "context": None}
        if resource is not None:
            request["resource"] = str(resource)
        result = cedarpy.is_authorized_partial(
            request, snapshot.policy_set, self._entity_set(snapshot, entities), schema=snapshot.schema
        )
        if result.decision is cedarpy.Decision.Deny:
            return False
        if result.decision is cedarpy.Decision.NoDecision and not result.residuals:
            return not result.diagnostics.errors
        return True

    @staticmethod
    def _cedar_request(request: Request) -> dict[str, Any]:
        action = request.action
        if isinstance(action, str):
            action = EntityUID("Action", action)
        cedar: dict[str, Any] = {
            "principal": {"type": request.principal.type, "id": request.principal.id},
            "action": {"type": action.type, "id": action.id},
            "resource": {"type": request.resource.type, "id": request.resource.id},
        }
        if request.cedar_context:
            cedar["context"] = request.cedar_context
        return cedar

    def _entity_set(self, snapshot: PolicySnapshot, entities: Sequence[Entity]) -> Any:
        if not entities:
            return snapshot.entity_set
        delta: dict[EntityUID, Entity] = {}
        overrides = False
        for entity in entities:
            stored = snapshot.entity_index.get(entity.uid)
            if stored is not None and stored.cedar == entity.cedar:
                continue
            earlier = delta.get(entity.uid)
            if earlier is not None and earlier.cedar != entity.cedar:
                raise ValueError(f"two different entities given for {truncate(str(entity.uid), 120)}")
            overrides = overrides or stored is not None
            delta[entity.uid] = entity
        if not delta:
            return snapshot.entity_set
        delta_json = json.dumps([entity.cedar for entity in delta.values()])
        if not overrides:
            return snapshot.entity_set.with_added_json_str(delta_json, snapshot.schema)
        return self._rebuilt_entity_set(snapshot, delta, delta_json)

    def _rebuilt_entity_set(
        self, snapshot: PolicySnapshot, delta: dict[EntityUID, Entity], delta_json: str
    ) -> Any:
        # The stored graph cannot be overlaid with a changed entity: rebuild it, and keep
        # a few rebuilt sets because an application usually overrides the same entities.
        key = (snapshot.fingerprint, delta_json)
        cached = self._rebuilt.get(key)
        if cached is not None:
            self._rebuilt.move_to_end(key)
            return cached
        merged = [entity.cedar for entity in snapshot.entities if entity.uid not in delta]
        merged.extend(entity.cedar for entity in delta.values())
        rebuilt = cedarpy.Entities.from_json_str(json.dumps(merged), snapshot.schema)
        self._rebuilt[key] = rebuilt
        while len(self._rebuilt) > _REBUILT_ENTITY_SETS:
            self._rebuilt.popitem(last=False)
        return rebuilt


def _decision(snapshot: PolicySnapshot, result: Any) -> Decision:
    diagnostics = result.diagnostics
    reasons = tuple(sorted(snapshot.store_id(reason) for reason in diagnostics.reasons))
    raw_errors = diagnostics.errors
    errors = tuple(
        truncate(_POSITIONAL_IN_TEXT.sub(lambda m: f"`{snapshot.store_id(m.group(1))}`", redact(str(e))))
        for e in raw_errors
    )
    allowed = result.decision is cedarpy.Decision.Allow
    return Decision(allowed, reasons, errors)
