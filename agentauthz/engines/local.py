"""The embedded engine: cedarpy with handles parsed once per policy-store version."""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import json
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

import cedarpy

from agentauthz._entities import MAX_GIVEN_DEPTH, given_depth
from agentauthz._errors import InvalidValueError
from agentauthz._model import Decision, Entity, EntityUID, Request
from agentauthz.engines._cedarcall import authorize_batch
from agentauthz.engines._conformance import KnownShapes, enumerated_types
from agentauthz.engines._partial import PartialEntities
from agentauthz.engines._reach import Reach, condition_literals
from agentauthz.policy._schema_json import schema_json_text
from agentauthz.policy._slicing import Slice, SliceIndex
from agentauthz.policy._store import PolicySnapshot, PolicyStore, redact, truncate

if TYPE_CHECKING:
    from agentauthz.engines._pool import DecisionPool

__all__ = ["LocalEngine", "deciding_with"]

_ERRING_POLICY = re.compile(r"(error while evaluating policy )`([^`]*)`")
_log = logging.getLogger("agentauthz")
# Below this many requests an async call decides inline: a thread hop costs more.
_INLINE_ASYNC_BATCH = 16
# Parsed per-call entity sets kept (LRU): small ones (up to this much JSON), and large ones
# (a stored graph rebuilt around changed entities).
_CACHED_ENTITY_SETS = 64
_CACHED_DOCUMENT_BYTES = 64 * 1024
_CACHED_REBUILT_SETS = 8
# Build a call's own entity set when it needs at most (stored entities / this) stored ones, plus
# a quarter of the given ones. Measured with cedarpy (documents given, users and groups stored):
# merging clones the stored graph, 0.35 us per stored entity at 2,000 and 1.4 us at 23,000, and
# takes ~3 us more per given entity; parsing costs 5-8 us per entity in a set of 2,000-3,000 and
# grows with the set. Parsing the call's own set was the cheaper one up to about a ninth (23,000
# stored) to an eleventh (2,300 stored) of the store. At the edge (1,000 documents reaching 1,775
# of 23,000 stored entities) the two cost the same once the walk and the JSON are counted (58 ms,
# 54 ms), and only the call's own set is kept for the next call with the same entities (8 ms).
_REACH_DIVISOR = 10
# With processes=, batches of at least this many requests are decided in the worker processes.
DEFAULT_PROCESS_BATCH = 2000
# Seconds a batch may take in the worker processes; past it they are stopped and it is decided here.
DEFAULT_PROCESS_TIMEOUT = 60.0


_pinned: contextvars.ContextVar[tuple[PolicyStore, PolicySnapshot] | None] = contextvars.ContextVar(
    "agentauthz_pinned_snapshot", default=None)


class deciding_with(AbstractContextManager[None]):  # named as a function (like contextlib.suppress)
    """Decisions of ``store``'s engines in the block use ``snapshot``, even if a reload swaps in another.

    For a request built for one version (its context cut to what that version's
    policies read): the version it was built for decides it.
    """

    __slots__ = ("_pin", "_token")

    def __init__(self, store: PolicyStore, snapshot: PolicySnapshot) -> None:
        self._pin = (store, snapshot)

    def __enter__(self) -> None:
        self._token = _pinned.set(self._pin)

    def __exit__(self, *exc_info: object) -> None:
        _pinned.reset(self._token)


class LocalEngine:
    """Decide requests in-process with cedarpy.

    Uses the store's pre-parsed ``PolicySet``, ``Schema`` and ``Entities``
    handles; the stored graph is never re-parsed per call. Entities given with
    a call are parsed together with the stored entities its requests can reach
    (see :mod:`agentauthz.engines._reach`), or merged onto the stored graph when that
    is cheaper. Requests are schema-checked when the store has a schema (once
    per request shape, see :mod:`agentauthz.engines._conformance`).

    With ``slicing`` (the default) each request is evaluated against only the
    policies whose scope can match it (its action, the types of its principal
    and resource, and the template links naming its principal or resource):
    decisions, determining policies and errors are those of the whole set
    (see :mod:`agentauthz.policy._slicing`). ``slicing=False`` evaluates every policy.

    cedarpy holds the GIL while it evaluates: threads add no throughput. With
    ``processes=N`` (opt-in), a batch of at least ``process_batch`` requests (a
    large ``filter``, ``authorize_many``) is split over N worker processes, each
    holding the same store version (see :mod:`agentauthz.engines._pool`), this
    process deciding a share too; the decisions are the same, and if the workers
    fail or take more than ``process_timeout`` seconds the batch is decided here.
    Until the workers of a store version are ready, batches are decided here
    (:meth:`start_processes` waits for them). Call :meth:`close` to stop them.

    Example:
        >>> store = PolicyStore.from_text('@id("p") permit(principal, action, resource);')
        >>> engine = LocalEngine(store)
        >>> from agentauthz import Request, EntityUID
        >>> engine.decide([Request(principal=EntityUID("U", "a"),
        ...     action=EntityUID("Action", "read"), resource=EntityUID("D", "d"))])[0].reasons
        ('p',)
    """

    name = "local"

    def __init__(self, store: PolicyStore, *, slicing: bool = True, processes: int = 0,
                 process_batch: int = DEFAULT_PROCESS_BATCH,
                 process_timeout: float = DEFAULT_PROCESS_TIMEOUT) -> None:
        self.store = store
        self.slicing = slicing
        self._processes: DecisionPool | None = None
        if processes > 1:
            from agentauthz.engines._pool import DecisionPool  # multiprocessing: only when asked for

            self._processes = DecisionPool(processes, max(1, process_batch), process_timeout)
        self._entity_sets: OrderedDict[tuple[str, bytes], Any] = OrderedDict()
        self._rebuilt_sets: OrderedDict[tuple[str, bytes], Any] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._reach_of: tuple[PolicySnapshot, Reach] | None = None
        self._partial: tuple[PolicySnapshot, PartialEntities] | None = None
        self._index: tuple[PolicySnapshot, SliceIndex | None] | None = None
        self._index_lock = threading.Lock()
        self._action_names: tuple[PolicySnapshot, dict[str, EntityUID | None]] | None = None
        self._shapes: tuple[PolicySnapshot, KnownShapes | None] | None = None

    def start_processes(self, timeout: float | None = None) -> bool:
        """Start the worker processes for the current store version and wait until they are ready.

        Without it the workers start with the first large batch, which (like every
        batch until they have built the store) is decided in this process.

        Args:
            timeout: seconds to wait at most (None: until they are ready).

        Returns:
            Whether they are ready (False without ``processes=``).
        """
        if self._processes is None:
            return False
        return self._processes.start(self, self.store.snapshot, timeout)

    def close(self) -> None:
        """Stop the worker processes, if any (they start again on the next large batch)."""
        if self._processes is not None:
            self._processes.close()

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
        snapshot = self.store.snapshot
        names = self._action_names
        if names is None or names[0] is not snapshot:
            unique: dict[str, EntityUID | None] = {}
            for uid in snapshot.actions:
                unique[uid.id] = None if uid.id in unique else uid
            names = (snapshot, unique)
            self._action_names = names
        found = names[1].get(action)
        if found is not None:
            return found
        # Unknown or ambiguous: the schema check of the request then denies it.
        return EntityUID("Action", action)

    def decide(self, requests: Sequence[Request], entities: Sequence[Entity] = ()) -> list[Decision]:
        """Decide each request in order; see :class:`~agentauthz.Engine`."""
        if not requests:
            return []
        pinned = _pinned.get()
        snapshot = pinned[1] if pinned is not None and pinned[0] is self.store else self.store.snapshot
        pool = self._processes
        if pool is not None and len(requests) >= pool.min_batch:
            decided = pool.decide(self, snapshot, requests, entities)
            if decided is not None:
                return decided
        return self.decide_in_process(snapshot, requests, entities)

    def decide_in_process(self, snapshot: PolicySnapshot, requests: Sequence[Request],
                          entities: Sequence[Entity] = ()) -> list[Decision]:
        """Decide ``requests`` with ``snapshot`` in this process (the worker processes' share, too)."""
        if not requests:
            return []
        if type(requests) is not list:
            requests = list(requests)  # read several times below: SharedRequests build each once
        entity_set = snapshot.entity_set
        delta: dict[EntityUID, Entity] = {}
        if entities:
            try:
                entity_set, delta = self._call_entities(snapshot, entities, requests)
            except (ValueError, InvalidValueError) as exc:
                denial = Decision.deny(f"entities rejected: {truncate(redact(str(exc)))}")
                return [denial] * len(requests)
        slices = self._slices(snapshot, requests, delta)
        first = slices[0]
        if len(slices) == 1 or all(chosen is first for chosen in slices):
            return self._evaluate(requests, first, entity_set, snapshot)
        groups: dict[int, tuple[Slice, list[int]]] = {}
        for position, chosen in enumerate(slices):
            group = groups.get(id(chosen))
            if group is None:
                groups[id(chosen)] = (chosen, [position])
            else:
                group[1].append(position)
        decisions: list[Decision] = [_UNDECIDED] * len(requests)
        for chosen, positions in groups.values():
            found = self._evaluate([requests[p] for p in positions], chosen, entity_set, snapshot)
            for position, decision in zip(positions, found, strict=True):
                decisions[position] = decision
        return decisions

    def _slices(self, snapshot: PolicySnapshot, requests: Sequence[Request],
                delta: Mapping[EntityUID, Entity]) -> list[Slice]:
        """The policies to evaluate each request with: its slice, or all of them."""
        current = self._index
        index = current[1] if current is not None and current[0] is snapshot else self.slice_index(snapshot)
        if index is None:
            return [_full_slice(snapshot)] * len(requests)
        try:
            overlay = index.overlay(delta) if delta else None
            return [index.select(request, overlay) for request in requests]
        except Exception:  # a slicing bug must cost speed, never a decision
            _log.exception("policy slicing failed; evaluating every policy")
            return [index.full] * len(requests)

    def slice_index(self, snapshot: PolicySnapshot | None = None) -> SliceIndex | None:
        """The scope index of the store version (built on first use), None when slicing is off."""
        if not self.slicing:
            return None
        snapshot = snapshot or self.store.snapshot
        current = self._index
        if current is not None and current[0] is snapshot:
            return current[1]
        with self._index_lock:
            current = self._index
            if current is not None and current[0] is snapshot:
                return current[1]
            try:
                index: SliceIndex | None = SliceIndex(snapshot)
            except Exception:  # never worse than no slicing
                _log.exception("cannot index the policies by scope; evaluating every policy")
                index = None
            self._index = (snapshot, index)
            return index

    def _evaluate(self, requests: Sequence[Request], chosen: Slice, entity_set: Any,
                  snapshot: PolicySnapshot) -> list[Decision]:
        cedar_requests = [_cedar_request(request) for request in requests]
        schema = snapshot.schema
        known = self._known_shapes(snapshot) if schema is not None else None
        shapes: list[Any] = []
        if known is not None:
            shapes = [known.shape(request) for request in requests]
            if known.all_known(shapes):
                schema = None  # every request's shape passed the schema check before
        try:
            results = authorize_batch(cedar_requests, chosen.policy_set, entity_set, schema)
        except Exception as exc:  # cedarpy failing as a whole must never allow
            denial = Decision.deny(f"engine failure: {type(exc).__name__}: {truncate(redact(str(exc)))}")
            return [denial] * len(requests)
        if len(results) != len(requests):
            return [Decision.deny("engine returned a wrong number of results")] * len(requests)
        if known is not None and schema is not None:
            # Allow or Deny means Cedar built the request, schema check included.
            known.learn(shapes, [type(result) is dict and result.get("decision") in _DECIDED
                                 for result in results])
        version = snapshot.fingerprint
        return [_decision(chosen, result, version) for result in results]

    def _known_shapes(self, snapshot: PolicySnapshot) -> KnownShapes | None:
        current = self._shapes
        if current is not None and current[0] is snapshot:
            return current[1]
        shapes: KnownShapes | None = None
        if snapshot.schema_text is not None:
            try:
                shapes = KnownShapes(enumerated_types(schema_json_text(snapshot.schema_text)))
            except Exception:  # enumerated types unknown: check every request against the schema
                _log.debug("cannot read the schema's enumerated entity types", exc_info=True)
        self._shapes = (snapshot, shapes)
        return shapes

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
        delta = _given_delta(snapshot, entities)
        entity_set = self._partial_entities(snapshot).handle(principal, action, resource, delta)
        if entity_set is None:
            entity_set = self._call_entities(snapshot, entities)[0]
        policy_set = snapshot.policy_set
        request: dict[str, Any] = {"principal": str(principal), "action": str(action),
                                   "context": None}
        if resource is not None:
            request["resource"] = str(resource)
            # Scopes are concrete once principal, action and resource are known: a policy whose
            # scope cannot match is neither a residual nor an error, as in a full evaluation.
            chosen = self._slices(snapshot, [Request(principal, action, resource)], delta)[0]
            policy_set = chosen.policy_set
        result = cedarpy.is_authorized_partial(request, policy_set, entity_set, schema=snapshot.schema)
        if result.decision is cedarpy.Decision.Deny:
            return False
        if result.decision is cedarpy.Decision.NoDecision and not result.residuals:
            return not result.diagnostics.errors
        return True

    def entity_set(self, snapshot: PolicySnapshot, entities: Sequence[Entity]) -> Any:
        """The cedarpy entities handle for a call: the stored graph with ``entities`` merged on.

        For evaluations beside :meth:`decide` on the same store version
        (partial evaluation, shadow policies).

        Raises:
            ValueError: two different entities are given for one uid, or they nest deeper
                than ``MAX_GIVEN_DEPTH`` levels through their parents.
        """
        return self._call_entities(snapshot, entities)[0]

    def _call_entities(
        self, snapshot: PolicySnapshot, entities: Sequence[Entity],
        requests: Sequence[Request] | None = None,
    ) -> tuple[Any, dict[EntityUID, Entity]]:
        """The entities handle for a call and the given entities that differ from the stored ones.

        With ``requests``, a handle that serves only those requests may be
        built from the entities they can reach (see :mod:`agentauthz.engines._reach`)
        when that is cheaper than merging onto the whole stored graph.
        """
        delta = _given_delta(snapshot, entities)
        if not delta:
            return snapshot.entity_set, delta
        stored_index = snapshot.entity_index
        overrides = any(uid in stored_index for uid in delta)
        if requests is not None:
            budget = len(stored_index) // _REACH_DIVISOR + len(delta) // 4
            reached = self._reach(snapshot).entities(requests, delta, budget)
            if reached is not None:
                return self._cached_entity_set(snapshot, [entity.cedar for entity in reached]), delta
        delta_json = json.dumps([entity.cedar for entity in delta.values()])
        if not overrides:
            return snapshot.entity_set.with_added_json_str(delta_json, snapshot.schema), delta
        # The stored graph cannot be overlaid with a changed entity: rebuild it.
        replaced = {(uid.type, uid.id) for uid in delta}
        merged = [cedar for cedar in snapshot.entities.cedar
                  if (cedar["uid"]["type"], cedar["uid"]["id"]) not in replaced]
        merged.extend(entity.cedar for entity in delta.values())
        return self._cached_entity_set(snapshot, merged), delta

    def _partial_entities(self, snapshot: PolicySnapshot) -> PartialEntities:
        current = self._partial
        if current is not None and current[0] is snapshot:
            return current[1]
        partial = PartialEntities(snapshot, self._reach(snapshot))
        self._partial = (snapshot, partial)
        return partial

    def _reach(self, snapshot: PolicySnapshot) -> Reach:
        current = self._reach_of
        if current is not None and current[0] is snapshot:
            return current[1]
        reach = Reach(snapshot.entity_index, condition_literals(policy.text for policy in snapshot.policies))
        self._reach_of = (snapshot, reach)
        return reach

    def _cached_entity_set(self, snapshot: PolicySnapshot, cedar: list[dict[str, Any]]) -> Any:
        # An application usually sends the same entities again (the bound user, an
        # overridden entity): keep parsed sets, keyed by a digest of their exact JSON.
        # Small sets (a call's own) are many; whole rebuilt graphs are few and large.
        document = json.dumps(cedar)
        key = (snapshot.fingerprint, hashlib.sha256(document.encode()).digest())
        small = len(document) <= _CACHED_DOCUMENT_BYTES
        cache, size = (self._entity_sets, _CACHED_ENTITY_SETS) if small else (
            self._rebuilt_sets, _CACHED_REBUILT_SETS)
        with self._cache_lock:
            cached = cache.get(key)
            if cached is not None:
                cache.move_to_end(key)
                return cached
        handle = cedarpy.Entities.from_json_str(document, snapshot.schema)
        with self._cache_lock:
            cache[key] = handle
            while len(cache) > size:
                cache.popitem(last=False)
        return handle


_UNDECIDED = Decision.deny("not decided")
_DECIDED = ("Allow", "Deny")


def _given_delta(snapshot: PolicySnapshot, entities: Sequence[Entity]) -> dict[EntityUID, Entity]:
    """The entities given with a call that differ from the stored ones, by uid.

    Raises:
        ValueError: two different entities are given for one uid, or they nest deeper
            than ``MAX_GIVEN_DEPTH`` levels through their parents.
    """
    delta: dict[EntityUID, Entity] = {}
    stored_index = snapshot.entity_index
    for entity in entities:
        stored = stored_index.get(entity.uid)
        if stored is not None and stored.cedar == entity.cedar:
            continue
        earlier = delta.get(entity.uid)
        if earlier is not None and earlier.cedar != entity.cedar:
            raise ValueError(f"two different entities given for {truncate(str(entity.uid), 120)}")
        delta[entity.uid] = entity
    if delta and given_depth(delta) > MAX_GIVEN_DEPTH:
        raise ValueError(f"the entities given with the call nest more than {MAX_GIVEN_DEPTH} levels "
                         "deep through their parents")
    return delta


def _full_slice(snapshot: PolicySnapshot) -> Slice:
    return Slice(snapshot.policy_set, snapshot.ids_by_position)


def _cedar_request(request: Request) -> dict[str, Any]:
    action = request.action
    principal = request.principal
    resource = request.resource
    if isinstance(action, str):
        action_id = {"type": "Action", "id": action}
    else:
        action_id = {"type": action.type, "id": action.id}
    cedar: dict[str, Any] = {
        "principal": {"type": principal.type, "id": principal.id},
        "action": action_id,
        "resource": {"type": resource.type, "id": resource.id},
    }
    context = request.cedar_context
    if context:
        cedar["context"] = json.dumps(context)
    return cedar


def _decision(chosen: Slice, answer: Any, version: str) -> Decision:
    try:
        diagnostics = answer["diagnostics"]
        found = diagnostics.get("reason")
        raw_errors = diagnostics["errors"]
        allowed = answer["decision"] == "Allow"
    except (TypeError, KeyError, AttributeError):
        return Decision.deny("engine returned a malformed answer")
    ids = chosen.ids
    reasons: tuple[str, ...] = ()
    if found:
        reasons = tuple(sorted(map(ids.get, found, found)))
    errors: tuple[str, ...] = ()
    if raw_errors:
        errors = tuple(_error_text(ids, str(error)) for error in raw_errors)
    return Decision(allowed, reasons, errors, policy_version=version)


def _error_text(ids: Mapping[str, str], message: str) -> str:
    # The policy an evaluation error names (cedarpy's positional id, or a link's id) is an id the
    # policy author chose, not data: shown as its store id and kept through redaction. Only that
    # place: an attribute called `policy1` later in the message is not an id.
    match = _ERRING_POLICY.match(message)
    if match is None:
        return truncate(redact(message))
    named = ids.get(match.group(2), match.group(2))
    return truncate(redact(f"{match.group(1)}`{named}`{message[match.end():]}", keep=(named,)))
