"""One exchange with Verified Permissions: the requests as sent, and the answers checked strictly.

:class:`Prepared` is one request in AVP form; :func:`groups` groups them into
batches of at most 30 sharing a principal or a resource. Every answer is
checked before it counts (:func:`result_outcome`, :func:`batch_outcomes`,
:func:`schema_from`): a malformed answer, a decision other than ALLOW/DENY, or a
request without exactly one result of its own is an :class:`Outcome` carrying a
failure, which the engine turns into a denial. Error texts name the operation
and the error code, redacted (:func:`failure_text`, :func:`error_text`).
"""

from __future__ import annotations

import heapq
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agentauthz._model import Decision, Entity, EntityUID
from agentauthz.avp import _wire as shapes
from agentauthz.policy._store import redact, truncate

__all__ = [
    "Outcome",
    "Prepared",
    "Schema",
    "action_in",
    "batch_outcomes",
    "error_code",
    "error_text",
    "failure_text",
    "groups",
    "principal_of",
    "result_outcome",
    "schema_from",
]

_QUOTED = re.compile(r"`([A-Za-z0-9/_-]+)`")
# How Cedar displays a policy that failed to evaluate, by version: 4.x "error while evaluating
# policy `id`: ...", 3.x "while evaluating policy `id`: ...", 2.x "error occurred while evaluating
# policy `id`: ...". AVP documents errorDescription only as a string: any of them may come back.
_FAILED_POLICY_PREFIX = re.compile(r"(?:error while|error occurred while|while) evaluating policy (?=`)")
_CANONICAL_PREFIX = "error while evaluating policy "


@dataclass
class Prepared:
    """One request in AVP form, ready to be grouped."""

    index: int
    item: dict[str, Any]
    key: str
    principal: str
    resource: str
    slice: list[Entity]
    slice_key: str


@dataclass
class Outcome:
    """What came back for one unique request."""

    decision: Decision | None = None
    failure: str | None = None
    cause: BaseException | None = None
    avp_reasons: tuple[str, ...] = ()
    raw_errors: tuple[str, ...] = ()
    principal: Any = None


@dataclass
class Schema:
    """The actions and namespaces of the policy store schema (GetSchema), or why it could not be read."""

    actions: tuple[EntityUID, ...] = ()
    namespaces: tuple[str, ...] = ()
    error: str | None = None
    fetched: float = field(default_factory=time.monotonic)


def action_in(schema: Schema, action: str) -> EntityUID:
    """The uid of a bare action name in the policy store's schema, as AVP's users name actions.

    An action the schema declares in one namespace takes that namespace; an
    undeclared one takes the schema's only namespace, else plain ``Action``.
    """
    matches = [uid for uid in schema.actions if uid.id == action]
    if len(matches) == 1:
        return matches[0]
    if not matches and len(schema.namespaces) == 1 and schema.namespaces[0]:
        return EntityUID(f"{schema.namespaces[0]}::Action", action)
    return EntityUID("Action", action)


def groups(prepared: list[Prepared]) -> list[list[Prepared]]:
    """Groups of at most 30 requests sharing a principal or a resource, few as can be.

    Greedy: take up to 30 of the requests of the principal or resource that has
    the most left (ties: the one whose first request left comes first, then the
    key seen first), then count again. n requests sharing one principal make
    ceil(n/30) groups. A heap of the keys' counts, refreshed lazily, keeps it
    O(n log n) (counting every key again on each pick was quadratic).
    """
    members: dict[tuple[str, str], list[int]] = {}
    for position, member in enumerate(prepared):
        members.setdefault(("p", member.principal), []).append(position)
        members.setdefault(("r", member.resource), []).append(position)
    keys = list(members.values())
    keys_of: list[list[int]] = [[] for _ in prepared]
    for key, positions in enumerate(keys):
        for position in positions:
            keys_of[position].append(key)
    left = [len(positions) for positions in keys]
    start = [0] * len(keys)  # every position before it in keys[key] is taken
    taken = [False] * len(prepared)

    def first_left(key: int) -> int:
        positions = keys[key]
        while taken[positions[start[key]]]:
            start[key] += 1
        return positions[start[key]]

    heap = [(-left[key], keys[key][0], key) for key in range(len(keys))]
    heapq.heapify(heap)
    result: list[list[Prepared]] = []
    while heap:
        count, _, key = heapq.heappop(heap)
        if -count != left[key]:  # stale: requests of this key went with another group
            if left[key]:
                heapq.heappush(heap, (-left[key], first_left(key), key))
            continue
        chosen: list[int] = []
        while len(chosen) < shapes.BATCH_LIMIT and left[key]:
            position = first_left(key)
            taken[position] = True
            for other in keys_of[position]:
                left[other] -= 1
            chosen.append(position)
        result.append([prepared[position] for position in chosen])
        if left[key]:
            heapq.heappush(heap, (-left[key], first_left(key), key))
    return result


def error_code(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)
    if isinstance(response, Mapping):
        error = response.get("Error")
        if isinstance(error, Mapping) and isinstance(error.get("Code"), str):
            return str(error["Code"])
    return None


def failure_text(operation: str, exc: BaseException) -> str:
    code = error_code(exc) or type(exc).__name__
    return f"Verified Permissions {operation} failed: {code}: {truncate(redact(str(exc)), 200)}"


def result_outcome(answer: Any) -> Outcome:
    """Check one IsAuthorized answer (or batch result) strictly: anything odd is a failure."""
    if not isinstance(answer, Mapping):
        return Outcome(failure="malformed answer from Verified Permissions: not a structure")
    decision = answer.get("decision")
    if decision not in ("ALLOW", "DENY"):
        shown = truncate(repr(decision), 40)
        return Outcome(failure=f"malformed answer from Verified Permissions: decision {shown}")
    policies = answer.get("determiningPolicies")
    errors = answer.get("errors")
    if not isinstance(policies, list) or not all(
            isinstance(p, Mapping) and isinstance(p.get("policyId"), str) for p in policies):
        return Outcome(failure="malformed answer from Verified Permissions: determiningPolicies")
    if not isinstance(errors, list) or not all(
            isinstance(e, Mapping) and isinstance(e.get("errorDescription"), str) for e in errors):
        return Outcome(failure="malformed answer from Verified Permissions: errors")
    return Outcome(decision=Decision(decision == "ALLOW"),
                   avp_reasons=tuple(p["policyId"] for p in policies),
                   raw_errors=tuple(e["errorDescription"] for e in errors),
                   principal=answer.get("principal"))


def batch_outcomes(group: list[Prepared], answer: Any) -> dict[str, Outcome]:
    """Match each batch result to the request it echoes; a request without exactly one is a failure."""
    results = answer.get("results") if isinstance(answer, Mapping) else None
    if not isinstance(results, list):
        failure = "malformed answer from Verified Permissions: no results"
        return {member.key: Outcome(failure=failure) for member in group}
    by_key = {sent.key: sent for sent in group}
    by_scope: dict[str, list[Prepared]] = {}
    for sent in group:
        scope = {k: sent.item[k] for k in ("principal", "action", "resource") if k in sent.item}
        by_scope.setdefault(json.dumps(scope, sort_keys=True), []).append(sent)
    matched: dict[str, list[Outcome]] = {}
    for result in results:
        echo = result.get("request") if isinstance(result, Mapping) else None
        if not isinstance(echo, Mapping):
            continue
        try:
            key = json.dumps(echo, sort_keys=True)
        except (TypeError, ValueError):
            continue
        member = by_key.get(key)
        if member is None and "context" not in echo:
            # An echo without its context still names the request when its scope is unique.
            candidates = by_scope.get(key, [])
            member = candidates[0] if len(candidates) == 1 else None
        if member is not None:
            matched.setdefault(member.key, []).append(result_outcome(result))
    outcomes: dict[str, Outcome] = {}
    for member in group:
        found = matched.get(member.key, [])
        if len(found) == 1:
            outcomes[member.key] = found[0]
        elif not found:
            outcomes[member.key] = Outcome(
                failure="Verified Permissions returned no result for this request")
        else:
            outcomes[member.key] = Outcome(
                failure="Verified Permissions returned several results for this request")
    return outcomes


def principal_of(identifier: Any) -> EntityUID | None:
    """An EntityIdentifier AVP answered as an EntityUID, or None when absent or malformed."""
    if not isinstance(identifier, Mapping):
        return None
    entity_type, entity_id = identifier.get("entityType"), identifier.get("entityId")
    if not isinstance(entity_type, str) or not isinstance(entity_id, str) or not entity_type or not entity_id:
        return None
    try:
        return EntityUID(entity_type, entity_id)
    except Exception:
        return None


def schema_from(answer: Any) -> Schema:
    text = answer.get("schema") if isinstance(answer, Mapping) else None
    if not isinstance(text, str):
        return Schema(error="malformed GetSchema answer: no schema")
    try:
        document = json.loads(text)
    except ValueError:
        return Schema(error="malformed GetSchema answer: the schema is not JSON")
    if not isinstance(document, Mapping):
        return Schema(error="malformed GetSchema answer: the schema is not a JSON object")
    actions: list[EntityUID] = []
    for namespace, body in document.items():
        declared = body.get("actions") if isinstance(body, Mapping) else None
        action_type = f"{namespace}::Action" if namespace else "Action"
        for action_id in declared or ():
            actions.append(EntityUID(action_type, str(action_id)))
    return Schema(actions=tuple(actions), namespaces=tuple(str(n) for n in document))


def error_text(ids: Mapping[str, str], error: str) -> str:
    """An AVP error with its policy ids as ours; ids stay through redaction, values do not.

    A policy evaluation error in any of Cedar's displays is written as the
    embedded engine writes it (``error while evaluating policy `id`: ...``), so
    that :func:`~agentauthz.policy._store.failed_policy_id` places it; any other
    text names no policy, and an allow with it is denied under
    ``policy_errors="deny"``.

    Example:
        >>> error_text({"SP1": "no-secrets"}, "while evaluating policy `SP1`: attribute not found")
        'error while evaluating policy `no-secrets`: attribute not found'
    """
    prefix = _FAILED_POLICY_PREFIX.match(error)
    if prefix is not None:
        error = _CANONICAL_PREFIX + error[prefix.end():]
    named: list[str] = []

    def ours(match: re.Match[str]) -> str:
        found = ids.get(match.group(1))
        if found is None:
            return match.group(0)
        named.append(found)
        return f"`{found}`"

    return truncate(redact(_QUOTED.sub(ours, error), keep=named))
