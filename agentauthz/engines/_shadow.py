"""Shadow policies: what each ``@mode("shadow")`` policy would have done, for the audit trail.

The store keeps shadow policies out of the enforced policy set (see
:class:`~agentauthz.policy._store.ShadowPolicies`), so they never change a
decision. After each decision the Authorizer asks this module what every shadow
policy says about the request, and writes it in the audit event's ``shadow``
field:

* ``"would deny"``: a shadow forbid whose scope and conditions hold;
* ``"would allow"``: a shadow permit that holds, and no forbid (enforced or
  shadow) holds;
* ``"overridden"``: a shadow permit that holds, but a forbid wins;
* ``"no match"``: the policy does not apply to the request;
* ``"error"``: the policy could not be evaluated for the request.

Each shadow set is evaluated on its own (forbids alone, permits alone), so
every satisfied shadow policy is reported, not only determining ones.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import cedarpy

from agentauthz._model import Decision, Entity, Request
from agentauthz.engines.local import LocalEngine, _cedar_request
from agentauthz.policy._store import PolicySnapshot, PolicyStore

__all__ = ["shadow_outcomes"]


def _entity_set(engine: Any, snapshot: PolicySnapshot, entities: Sequence[Entity]) -> Any:
    """The entities of the call on the store's graph, as the engine would build them."""
    if isinstance(engine, LocalEngine):
        return engine.entity_set(snapshot, entities)
    given = {entity.uid: entity for entity in entities}
    replaced = {(uid.type, uid.id) for uid in given}
    merged = [cedar for cedar in snapshot.entities.cedar
              if (cedar["uid"]["type"], cedar["uid"]["id"]) not in replaced]
    merged.extend(entity.cedar for entity in given.values())
    return cedarpy.Entities.from_json_str(json.dumps(merged), snapshot.schema)


def shadow_outcomes(
    engine: Any, requests: Sequence[Request], entities: Sequence[Entity], decisions: Sequence[Decision]
) -> list[dict[str, str]] | None:
    """What each shadow policy says about each request; None when the store has none.

    Args:
        engine: the engine that decided (only engines over a PolicyStore have shadow policies).
        requests: the requests decided.
        entities: the entities they were decided with.
        decisions: the enforced decisions, in request order.
    """
    store = getattr(engine, "store", None)
    if not isinstance(store, PolicyStore):
        return None
    snapshot = store.snapshot
    shadow = snapshot.shadow
    if shadow is None or not requests:
        return None
    outcomes: list[dict[str, str]] = [dict.fromkeys(sorted(shadow.ids), "no match") for _ in requests]
    try:
        entity_set = _entity_set(engine, snapshot, entities)
        cedar_requests = [_cedar_request(request) for request in requests]
        satisfied: dict[str, list[set[str]]] = {}
        for effect, policy_set in (("forbid", shadow.forbids), ("permit", shadow.permits)):
            if policy_set is None:
                satisfied[effect] = [set() for _ in requests]
                continue
            results = cedarpy.is_authorized_batch(cedar_requests, policy_set, entity_set,
                                                  schema=snapshot.schema)
            found = []
            for outcome, result in zip(outcomes, results, strict=True):
                reasons = {snapshot.store_id(reason) for reason in result.diagnostics.reasons}
                found.append({reason for reason in reasons if shadow.effects.get(reason) == effect})
                for error in result.diagnostics.errors:
                    text = str(error)
                    for policy_id in shadow.ids:
                        if shadow.effects.get(policy_id) != effect:
                            continue
                        positional = [p for p, i in snapshot.ids_by_position.items() if i == policy_id]
                        if any(f"`{name}`" in text for name in [policy_id, *positional]) or \
                                "failed to build request" in text:
                            outcome[policy_id] = "error"
            satisfied[effect] = found
    except Exception:  # shadow evaluation is advisory: it never changes or fails a decision
        return [dict.fromkeys(sorted(shadow.ids), "error") for _ in requests]
    for index, (outcome, decision) in enumerate(zip(outcomes, decisions, strict=True)):
        forbids = satisfied["forbid"][index]
        forbidden = bool(forbids) or (not decision.allowed and bool(decision.reasons))
        for policy_id in forbids:
            outcome[policy_id] = "would deny"
        for policy_id in satisfied["permit"][index]:
            outcome[policy_id] = "overridden" if forbidden else "would allow"
    return outcomes
