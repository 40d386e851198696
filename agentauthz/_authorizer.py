"""The Authorizer: binds the end user, gathers entities, asks the engine, audits.

It is the one place where a request becomes a decision, so the fail-closed
rules live here: no principal raises :class:`IdentityError`; an engine that
raises, answers NoDecision or errors yields a denying decision.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import random
import secrets
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, TypeVar, overload

from agentauthz._audit import AuditEvent, AuditSink, LoggingSink, global_sinks
from agentauthz._entities import EntityProvider, StaticEntityProvider, entity_slice, referenced_uids
from agentauthz._errors import (
    AccessDenied,
    AuthzError,
    ConfigurationError,
    IdentityError,
    InvalidArguments,
    InvalidValueError,
)
from agentauthz._identity import Identity
from agentauthz._identity import bound_identity as _identity
from agentauthz._model import Decision, Entity, EntityUID, Request
from agentauthz.engines._shadow import shadow_outcomes
from agentauthz.engines.base import Engine
from agentauthz.policy._store import PolicyStore, redact, truncate
from agentauthz.retrieval._filter import (
    FilterResult,
    ResourceGroups,
    ResourceOf,
    RetrievalScope,
    group_by_resource,
)
from agentauthz.session._facts import ProducedFacts, SessionSchema, action_name
from agentauthz.session._session import (
    FULL_SHAPE,
    MemorySessionStore,
    Session,
    SessionConfig,
    SessionFacts,
    SessionShape,
    SessionStore,
    ToolCall,
    approval_covers,
    bind_session,
    call_record,
    current_session,
    labels_of,
    session_record,
    summed_value,
)
from agentauthz.session._stores import FOREIGN_SESSION, foreign_session
from agentauthz.tools._schema import validate_policies_for_tools
from agentauthz.tools._spec import (
    ContextSpec,
    OnDeny,
    RefusalKind,
    ResourceSpec,
    ToolSpec,
    bind_arguments,
    build_spec,
    refusal_message,
    spec_of,
    tool_input,
    wraps_tool,
)

__all__ = ["Authorizer", "Identity"]

Mode = Literal["enforce", "shadow"]
F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")
# Requests per engine call when filtering: bounds memory and latency per call.
DEFAULT_PAGE_SIZE = 500
_MODES = ("enforce", "shadow")
_BUSY = "the session kept changing while the call was decided; try again"
_REPEATED = "a call with this id already completed in this session: it does not run again"
_IN_FLIGHT = "a call with this id is already running in this session: it does not run twice"


class _Refused(Exception):
    """The session layer refused requests before the engine decided them (already audited)."""

    def __init__(self, decisions: list[Decision]) -> None:
        super().__init__("refused by the session")
        self.decisions = decisions


def _store_failure(exc: BaseException) -> str:
    return f"session store failed: {type(exc).__name__}: {truncate(redact(str(exc)))}"


class Authorizer:
    """Decides every request of an agent on behalf of the bound end user.

    Args:
        engine: the backend (:class:`LocalEngine`, :class:`VerifiedPermissionsEngine`).
        entities: entities the requests need beyond the engine's own, as a
            list or an :class:`EntityProvider`. For each request the Authorizer
            sends the slice it needs: principal, resource, their ancestors and
            the entities they reference.
        mode: ``"enforce"``, or ``"shadow"`` to compute and audit decisions
            while letting every call go ahead.
        audit: sinks for audit events; default: the ``agentauthz.audit`` logger.
        record_requests: put the Cedar request and its entities into audit
            events (attribute values included), for ``agentauthz replay``.
        tool_entity_type: entity type of a guarded tool that names no resource
            (``Tool::"<tool name>"``).
        sessions: how sessions are recorded (:class:`~agentauthz.session._session.SessionConfig`:
            store, label attribute, window, summed arguments); see :meth:`session`.
        disclose_reasons: put the determining policy ids (and the problems of
            invalid arguments) into the refusals a model reads. Off by default:
            the model gets a generic refusal and the decision's opaque id, and the
            reasons stay in the audit event. Turning it on discloses how the
            policies are built to the model and to whoever steers it.

    Example:
        >>> authz = Authorizer.from_text(
        ...     '@id("read-all") permit(principal, action == Action::"read", resource);')
        >>> with authz.acting_as(EntityUID("User", "alice")):
        ...     authz.authorize(action="read", resource=EntityUID("Document", "d1")).reasons
        ('read-all',)
    """

    def __init__(
        self,
        engine: Engine,
        *,
        entities: Sequence[Entity] | EntityProvider | None = None,
        mode: Mode = "enforce",
        audit: Sequence[AuditSink] | None = None,
        record_requests: bool = False,
        tool_entity_type: str = "Tool",
        sessions: SessionConfig | None = None,
        disclose_reasons: bool = False,
    ) -> None:
        if mode not in _MODES:
            raise ConfigurationError(f"mode must be 'enforce' or 'shadow', not {mode!r}")
        if not isinstance(engine, Engine):
            raise ConfigurationError(f"{type(engine).__name__} does not implement the Engine protocol")
        self.engine = engine
        self.mode: Mode = mode
        if entities is None or isinstance(entities, EntityProvider):
            self.entity_provider: EntityProvider | None = entities
        else:
            self.entity_provider = StaticEntityProvider(entities)
        self.audit_sinks: tuple[AuditSink, ...] = (
            tuple(audit) if audit is not None else (LoggingSink(),)
        )
        self.record_requests = record_requests
        self.tool_entity_type = tool_entity_type
        if not isinstance(disclose_reasons, bool):
            raise ConfigurationError("disclose_reasons must be True or False")
        self.disclose_reasons = disclose_reasons
        self.tools: dict[str, ToolSpec] = {}
        if sessions is not None and not isinstance(sessions, SessionConfig):
            raise ConfigurationError("sessions= takes an agentauthz.session._session.SessionConfig")
        self.session_config = sessions or SessionConfig()
        store = self.session_config.store
        self.session_store: SessionStore = store if store is not None else MemorySessionStore()
        self._session_schema_cache: SessionSchema | None = None
        if sessions is not None:  # the tools (and the sums they declare) register later
            self._session_schema().check(ProducedFacts())

    @classmethod
    def from_directory(cls, path: str | Path, **options: Any) -> Authorizer:
        """An Authorizer over a policy store directory on the embedded engine."""
        from agentauthz.engines.local import LocalEngine

        return cls(LocalEngine(PolicyStore.from_directory(path)), **options)

    @classmethod
    def from_text(cls, policies: str, *, schema: str | None = None,
                  entities: Sequence[Entity] = (), **options: Any) -> Authorizer:
        """An Authorizer over policy text on the embedded engine."""
        from agentauthz.engines.local import LocalEngine

        store = PolicyStore.from_text(policies, schema=schema, entities=entities)
        return cls(LocalEngine(store), **options)

    # -- identity ------------------------------------------------------------------

    @contextmanager
    def acting_as(
        self, principal: Entity | EntityUID, *, correlation_id: str | None = None
    ) -> Iterator[Identity]:
        """Bind the end user for the calls made inside the block (thread- and task-safe).

        The principal must come from the application (a verified token, its
        session), never from tool arguments or model output.
        """
        if isinstance(principal, Entity):
            identity = Identity(principal.uid, principal, correlation_id)
        elif isinstance(principal, EntityUID):
            identity = Identity(principal, None, correlation_id)
        else:
            raise IdentityError(
                f"acting_as needs an Entity or EntityUID, not {type(principal).__name__}"
            )
        token = _identity.set(identity)
        try:
            yield identity
        finally:
            _identity.reset(token)

    @contextmanager
    def bound_to(
        self,
        principal: Entity | EntityUID | None,
        *,
        source: str = "the configured principal",
        correlation_id: str | None = None,
    ) -> Iterator[Identity | None]:
        """Bind a principal an integration received from the application, for the block.

        ``None`` keeps whatever :meth:`acting_as` bound (possibly nothing: the
        call is then refused with IdentityError when it is decided). A
        principal that differs from one already bound is refused: two
        identities for one call is a bug, and guessing would fail open.

        Args:
            principal: the end user the integration was given, or None.
            source: where it came from, for error messages.
            correlation_id: audit correlation id when this binds a new identity
                (e.g. the agent's session id).

        Raises:
            IdentityError: the value is not an Entity or EntityUID (a string or
                dict may come from a client and is never parsed), or it conflicts
                with the bound end user.
        """
        current = _identity.get()
        if principal is None:
            yield current
            return
        if not isinstance(principal, (Entity, EntityUID)):
            raise IdentityError(
                f"{source} must be an Entity or EntityUID set by the application, "
                f"not {type(principal).__name__}"
            )
        uid = principal.uid if isinstance(principal, Entity) else principal
        if current is not None and current.uid != uid:
            raise IdentityError(f"two end users for one call: {current.uid} (bound) and {uid} ({source})")
        if current is not None and (current.entity is not None or isinstance(principal, EntityUID)):
            yield current  # already bound, with at least as much as the integration knows
            return
        correlation = current.correlation_id if current is not None else correlation_id
        with self.acting_as(principal, correlation_id=correlation) as identity:
            yield identity

    @property
    def identity(self) -> Identity | None:
        """The identity bound in this context, if any."""
        return _identity.get()

    def current_principal(self) -> EntityUID:
        """The bound principal's uid.

        Raises:
            IdentityError: no principal is bound.
        """
        identity = _identity.get()
        if identity is None:
            raise IdentityError("no end user is bound: wrap the call in authz.acting_as(user)")
        return identity.uid

    # -- sessions ------------------------------------------------------------------

    @contextmanager
    def session(self, session: str | Session) -> Iterator[Session]:
        """Bind a session (one conversation) for the calls made inside the block.

        While it is bound, every request carries ``context.session`` (see
        :mod:`agentauthz.session._session`), the retrieval filter records the labels of
        what it lets through, and tool calls are counted once they complete.
        Like the identity it is a contextvar: thread- and task-safe.

        The session belongs to the end user whose decision or write creates
        it; used for another end user it refuses the request with
        IdentityError and an audit event (a session id is only a name). The
        handle acts for the end user bound when it is opened (or, if none is,
        for the one bound when it is used).

        Args:
            session: the application's conversation id, or a :class:`Session`.

        Example:
            >>> authz = Authorizer.from_text(
            ...     'forbid(principal, action == Action::"email", resource)'
            ...     ' when { context has session && context.session.seen.contains("secret") };'
            ...     'permit(principal, action, resource);', audit=[])
            >>> docs = [Entity(uid=EntityUID("Doc", "d"), attrs={"labels": ["secret"]})]
            >>> with authz.acting_as(EntityUID("User", "u")), authz.session("c-1") as s:
            ...     before = authz.authorize(action="email", resource=EntityUID("Tool", "email")).allowed
            ...     _ = authz.filter(docs, action="read", resource=lambda doc: doc)
            ...     after = authz.authorize(action="email", resource=EntityUID("Tool", "email")).allowed
            >>> before, after, sorted(s.state().seen)
            (True, False, ['secret'])
        """
        if isinstance(session, Session):
            bound = session
        elif isinstance(session, str):
            identity = _identity.get()  # the handle acts for the end user bound now, if one is
            bound = Session(session, self.session_store, self.session_config,
                            owner=identity.uid if identity is not None else None,
                            on_refusal=self._session_refused)
        else:
            raise ConfigurationError(f"a session is an id string or a Session, not {type(session).__name__}")
        with bind_session(bound):
            yield bound

    @contextmanager
    def session_bound_to(
        self, session: str | Session | None, *, source: str = "the configured session"
    ) -> Iterator[Session | None]:
        """Bind a session an integration received from the application, for the block.

        ``None`` keeps whatever :meth:`session` bound (possibly nothing). The
        same session id as the bound one keeps it; a different one is refused.

        Raises:
            ConfigurationError: the value is not an id string or a Session, or
                it names another session than the bound one.
        """
        current = current_session()
        if session is None:
            yield current
            return
        if not isinstance(session, (str, Session)) or (isinstance(session, str) and not session):
            raise ConfigurationError(
                f"{source} must be a session id string or a Session, not {type(session).__name__}")
        wanted = session if isinstance(session, str) else session.id
        if current is not None:
            if current.id != wanted:
                raise ConfigurationError(
                    f"two sessions for one call: {current.id!r} (bound) and {wanted!r} ({source})")
            yield current
            return
        with self.session(session) as bound:
            yield bound

    @property
    def current_session(self) -> Session | None:
        """The session bound in this context, if any."""
        return current_session()

    def _session_schema(self) -> SessionSchema:
        store = getattr(self.engine, "store", None)
        snapshot = store.snapshot if isinstance(store, PolicyStore) else None
        key = snapshot.fingerprint if snapshot is not None else None
        cached = self._session_schema_cache
        if cached is None or cached.key != key:
            schema, source = self.session_config.schema, "SessionConfig.schema"
            if schema is None and snapshot is not None:
                schema, source = snapshot.schema_text, snapshot.schema_source
            cached = SessionSchema(key, schema, source, snapshot.policies if snapshot is not None else ())
            self._session_schema_cache = cached
        return cached

    def _produced_facts(self) -> ProducedFacts:
        return ProducedFacts.of(self.tools.values(), self.session_config.sums)

    def _session_shape(self, action: EntityUID) -> SessionShape | None:
        """The action's ``context.session`` shape, once every fact read is known to be filled."""
        known = self._session_schema()
        known.check(self._produced_facts())
        return known.shape(action)

    def _session_facts(self, session: Session, principal: EntityUID) -> tuple[SessionFacts, int, float]:
        """The session's facts, version and the time, for ``principal``.

        Raises:
            IdentityError: the session belongs to another end user.
        """
        config = self.session_config
        now = config.clock()
        since = now - config.window.total_seconds()
        snapshot = session.store.load(session.id, since=since, history=config.history)
        if not session.belongs_to(snapshot, principal):
            raise foreign_session(session.id)
        facts = SessionFacts.of(snapshot, history=config.history, since=since)
        return facts, snapshot.version, now

    def _loaded(self, session: Session, requests: list[Request]) -> tuple[SessionFacts, int, float]:
        """The session's facts for these requests (one principal), or their audited refusal.

        Raises:
            IdentityError: the session belongs to another end user.
            _Refused: the store failed: the requests are denied.
        """
        try:
            return self._session_facts(session, requests[0].principal)
        except IdentityError as exc:
            exc.decision = self._deny_unasked(requests, FOREIGN_SESSION)[0]
            raise
        except Exception as exc:  # a failing store denies, never decides on missing facts
            raise _Refused(self._deny_unasked(requests, _store_failure(exc))) from exc

    def _deny_unasked(self, requests: list[Request], why: str) -> list[Decision]:
        """Deny requests the session refused, one audit event each (enforced in shadow mode too)."""
        decisions = [Decision(allowed=False, errors=(why,), id=_decision_id()) for _ in requests]
        sinks = self._active_sinks()
        if sinks:
            for request, decision in zip(requests, decisions, strict=True):
                self._emit(sinks, self._event(request, decision, 0, []))
        return decisions

    def _session_refused(self, principal: EntityUID, operation: str, session: Session) -> None:
        """Audit an operation of the application on a session that belongs to another end user."""
        request = Request(principal=principal, action=EntityUID("Action", f"session.{operation}"),
                          resource=EntityUID("Session", session.id))
        decision = Decision.deny(FOREIGN_SESSION)
        sinks = self._active_sinks()
        if sinks:
            self._emit(sinks, dataclasses.replace(self._event(request, decision, 0, []), session=session.id))

    _action_name = staticmethod(action_name)

    def _session_record(self, shape: SessionShape, facts: SessionFacts, principal: EntityUID,
                        action: EntityUID, resource: EntityUID, context: Mapping[str, Any]) -> dict[str, Any]:
        approved = any(approval_covers(a, principal, action, resource, context) for a in facts.approvals)
        if shape is not FULL_SHAPE:
            return session_record(facts, shape, approved=approved)
        actions = {self._action_name(spec.action) for spec in self.tools.values()} | {action.id}
        kinds: dict[str, dict[str, str]] = {}
        for spec in self.tools.values():
            for name in spec.sums:
                kind = spec.input_type["attributes"].get(name, {})
                kinds.setdefault(self._action_name(spec.action), {})[name] = (
                    "decimal" if kind.get("name") == "decimal" else "Long")
        for name, arguments in self.session_config.sums.items():
            for argument in arguments:
                kinds.setdefault(self._action_name(name), {}).setdefault(argument, "Long")
        return session_record(facts, shape, approved=approved, actions=actions, sum_kinds=kinds)

    def _with_session(self, context: dict[str, Any], principal: EntityUID, action: EntityUID,
                      resource: EntityUID, facts: SessionFacts | None) -> None:
        session = current_session()
        if session is None:
            return
        if "session" in context:
            raise ConfigurationError(
                "context['session'] comes from the bound session: do not set it as well")
        shape = self._session_shape(action)
        if shape is None:
            return  # the action declares no context.session
        if facts is None:
            facts = self._loaded(session, [Request(principal, action, resource, dict(context))])[0]
        context["session"] = self._session_record(shape, facts, principal, action, resource, context)

    def _entities_by_uid(
        self, uids: Iterable[EntityUID], given: Mapping[EntityUID, Entity]
    ) -> dict[EntityUID, Entity]:
        uids = list(uids)
        found = {uid: given[uid] for uid in uids if uid in given}
        missing = [uid for uid in uids if uid not in found]
        store = getattr(self.engine, "store", None)
        if missing and isinstance(store, PolicyStore):
            index = store.snapshot.entity_index
            found.update({uid: index[uid] for uid in missing if uid in index})
        missing = [uid for uid in missing if uid not in found]
        if missing and self.entity_provider is not None:
            for entity in self.entity_provider.get_entities(missing):
                found.setdefault(entity.uid, entity)
        return found

    def _labels(self, resources: Iterable[EntityUID], given: Mapping[EntityUID, Entity]) -> set[str]:
        wanted = list(dict.fromkeys(resources))
        labels: set[str] = set()
        for entity in self._entities_by_uid(wanted, given).values():
            labels |= labels_of(entity, self.session_config.labels)
        return labels

    def _recorded(self, items: Sequence[T], groups: ResourceGroups, result: FilterResult[T],
                  held: list[tuple[list[AuditSink], AuditEvent]] | None) -> FilterResult[T]:
        """Record what the filter let through in the bound session, then release its audit events.

        If the store cannot record it, nothing is let through: the model must
        not read what the session would not know it read.
        """
        if held is None:
            return result
        try:
            self._record_seen(result, groups)
        except IdentityError as exc:
            exc.decision = self._refused_by_session(held, FOREIGN_SESSION)
            raise
        except Exception as exc:  # unrecorded reads would escape the session's rules: deny them
            why = _store_failure(exc)
            self._refused_by_session(held, why)
            return self._filter_result(items, groups, [Decision.deny(why)] * len(groups.uids))
        self._release_held(held)
        return result

    def _record_seen(self, result: FilterResult[Any], groups: ResourceGroups) -> None:
        session = current_session()
        if session is None:
            return
        read = [uid for uid, decision in zip(result.resources, result.decisions, strict=True)
                if uid is not None and decision.admits]
        labels = self._labels(read, groups.entities)
        if labels:
            session.store.add_labels(session.id, labels, owner=str(self.current_principal()))

    # -- decisions -----------------------------------------------------------------

    def authorize(
        self,
        *,
        action: str | EntityUID,
        resource: EntityUID | Entity,
        principal: EntityUID | Entity | None = None,
        context: Mapping[str, Any] | None = None,
        entities: Sequence[Entity] = (),
    ) -> Decision:
        """Decide one request. The principal defaults to the bound end user.

        Raises:
            IdentityError: no principal given and none bound.
        """
        try:
            request, extra = self._request(principal, action, resource, context)
        except _Refused as refused:
            return refused.decisions[0]
        return self._decide([request], [*extra, *entities])[0]

    async def aauthorize(
        self,
        *,
        action: str | EntityUID,
        resource: EntityUID | Entity,
        principal: EntityUID | Entity | None = None,
        context: Mapping[str, Any] | None = None,
        entities: Sequence[Entity] = (),
    ) -> Decision:
        """Async twin of :meth:`authorize`."""
        try:
            request, extra = self._request(principal, action, resource, context)
        except _Refused as refused:
            return refused.decisions[0]
        return (await self._adecide([request], [*extra, *entities]))[0]

    def authorize_many(
        self, requests: Sequence[Request], *, entities: Sequence[Entity] = ()
    ) -> list[Decision]:
        """Decide a batch in one engine call; decisions come back in request order.

        The requests are decided as given: a bound session adds no ``context.session``.
        """
        return self._decide([self._resolve(r) for r in requests], list(entities))

    async def aauthorize_many(
        self, requests: Sequence[Request], *, entities: Sequence[Entity] = ()
    ) -> list[Decision]:
        """Async twin of :meth:`authorize_many`."""
        return await self._adecide([self._resolve(r) for r in requests], list(entities))

    # -- retrieval -----------------------------------------------------------------

    def filter(
        self,
        items: Sequence[T],
        *,
        action: str | EntityUID,
        resource: ResourceOf,
        context: Mapping[str, Any] | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> FilterResult[T]:
        """Keep the items the bound end user may ``action``, in input order.

        ``resource`` maps an item to its Cedar resource (an Entity built from
        the item's metadata, or an EntityUID of a stored entity). Items that map
        to the same uid (chunks of one document) share one decision. An item
        whose resource cannot be built is dropped and counted. In a bound
        session (:meth:`session`) the requests carry ``context.session``, and
        the labels of the resources let through are recorded as seen.

        Example:
            >>> authz = Authorizer.from_text(
            ...     'permit(principal, action, resource) when { resource.public };')
            >>> docs = [{"id": "a", "public": True}, {"id": "b", "public": False}]
            >>> with authz.acting_as(EntityUID("User", "u")):
            ...     result = authz.filter(docs, action="read", resource=lambda d: Entity(
            ...         uid=EntityUID("Doc", d["id"]), attrs={"public": d["public"]}))
            >>> [d["id"] for d in result.allowed], result.denied
            (['a'], 1)

        Raises:
            IdentityError: no end user is bound.
        """
        groups = group_by_resource(items, resource, self._stored_entities)
        try:
            requests, overlay = self._filter_requests(groups, action, context)
        except _Refused as refused:
            return self._filter_result(items, groups, refused.decisions)
        held: list[tuple[list[AuditSink], AuditEvent]] | None = [] if current_session() is not None else None
        decisions: list[Decision] = []
        for start in range(0, len(requests), max(1, page_size)):
            page = requests[start : start + page_size]
            decisions.extend(self._decide(page, self._page_entities(page, overlay), hold=held))
        return self._recorded(items, groups, self._filter_result(items, groups, decisions), held)

    async def afilter(
        self,
        items: Sequence[T],
        *,
        action: str | EntityUID,
        resource: ResourceOf,
        context: Mapping[str, Any] | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> FilterResult[T]:
        """Async twin of :meth:`filter`."""
        groups = group_by_resource(items, resource, self._stored_entities)
        try:
            requests, overlay = self._filter_requests(groups, action, context)
        except _Refused as refused:
            return self._filter_result(items, groups, refused.decisions)
        held: list[tuple[list[AuditSink], AuditEvent]] | None = [] if current_session() is not None else None
        decisions: list[Decision] = []
        for start in range(0, len(requests), max(1, page_size)):
            page = requests[start : start + page_size]
            decisions.extend(await self._adecide(page, self._page_entities(page, overlay), hold=held))
        return self._recorded(items, groups, self._filter_result(items, groups, decisions), held)

    def _stored_entities(self, uids: list[EntityUID]) -> dict[EntityUID, Entity]:
        """The entities the engine's store or the entity provider hold for these uids."""
        found: dict[EntityUID, Entity] = {}
        store = getattr(self.engine, "store", None)
        if isinstance(store, PolicyStore):
            index = store.snapshot.entity_index
            found.update((uid, index[uid]) for uid in uids if uid in index)
        missing = [uid for uid in uids if uid not in found]
        if self.entity_provider is not None and missing:
            found.update((entity.uid, entity) for entity in self.entity_provider.get_entities(missing))
        return found

    def _retrieval_scope(self, action: str | EntityUID, context: Mapping[str, Any] | None,
                         uids: Sequence[EntityUID] = ()) -> RetrievalScope:
        """Principal, action, entity and per-resource context of a retrieval's requests.

        The one place they are built: :meth:`filter` decides with them and the
        pre-filter compiler compiles with them, so both see the bound session.
        ``uids`` are the resources to be decided: if the session refuses them,
        each gets its audited denial (the pre-filter's refusal is one event).

        Raises:
            IdentityError: no end user is bound, or the session belongs to another.
            ConfigurationError: ``context`` sets ``session`` while a session is bound.
            _Refused: the session store failed: the requests are denied (audited).
        """
        principal = self.current_principal()
        identity = _identity.get()
        given = (identity.entity,) if identity and identity.entity else ()
        resolved = self.engine.resolve_action(action)
        base_context = dict(context) if context else {}
        base = Request(principal=principal, action=resolved, resource=principal, context=base_context)
        session = current_session()
        if session is None:
            return RetrievalScope(principal, resolved, given, base)
        if "session" in base_context:
            raise ConfigurationError(
                "context['session'] comes from the bound session: do not set it as well")
        # Loaded whatever the action declares: what the filter lets through is recorded in it.
        facts = self._loaded(session, [base.replace(resource=uid) for uid in uids] or [base])[0]
        shape = self._session_shape(resolved)
        if shape is None:
            return RetrievalScope(principal, resolved, given, base)
        named: dict[EntityUID, None] = {}
        for approval in facts.approvals:
            try:
                named[EntityUID.parse(approval.resource)] = None
            except AuthzError:
                continue  # not a uid's text: no resource's text equals it

        def with_session(resource: EntityUID) -> dict[str, Any]:
            return {**base_context, "session": self._session_record(
                shape, facts, principal, resolved, resource, base_context)}

        return RetrievalScope(principal, resolved, given, base, with_session, tuple(named))

    def _filter_requests(
        self, groups: ResourceGroups, action: str | EntityUID, context: Mapping[str, Any] | None
    ) -> tuple[list[Request], list[Entity]]:
        scope = self._retrieval_scope(action, context, groups.uids)
        requests = [scope.request(uid) for uid in groups.uids]
        return requests, [*scope.entities, *groups.entities.values()]

    @staticmethod
    def _page_entities(page: list[Request], overlay: list[Entity]) -> list[Entity]:
        wanted = {request.resource for request in page}
        return [entity for entity in overlay if entity.uid in wanted or entity.uid == page[0].principal]

    @staticmethod
    def _filter_result(
        items: Sequence[T], groups: ResourceGroups, decisions: list[Decision]
    ) -> FilterResult[T]:
        by_uid = dict(zip(groups.uids, decisions, strict=True))
        allowed: list[T] = []
        per_item: list[Decision] = []
        for index, (item, uid) in enumerate(zip(items, groups.item_uids, strict=True)):
            decision = by_uid.get(uid) if uid is not None else None
            if decision is None:
                decision = Decision.deny(groups.errors.get(index, "no decision"))
            per_item.append(decision)
            if decision.admits:
                allowed.append(item)
        return FilterResult(
            allowed=allowed,
            denied=len(items) - len(allowed),
            decisions=tuple(per_item),
            unresolved=len(groups.errors),
            resources=tuple(groups.item_uids),
        )

    # -- tools ---------------------------------------------------------------------

    @overload
    def guard(self, action: F) -> F: ...

    @overload
    def guard(
        self,
        action: str | EntityUID | None = None,
        *,
        resource: ResourceSpec = None,
        resource_types: Iterable[str] = (),
        context: ContextSpec = None,
        on_deny: OnDeny = "raise",
        name: str | None = None,
        sum_arguments: Iterable[str] = (),
    ) -> Callable[[F], F]: ...

    def guard(
        self,
        action: str | EntityUID | Callable[..., Any] | None = None,
        *,
        resource: ResourceSpec = None,
        resource_types: Iterable[str] = (),
        context: ContextSpec = None,
        on_deny: OnDeny = "raise",
        name: str | None = None,
        sum_arguments: Iterable[str] = (),
    ) -> Any:
        """Authorize every call of a tool function (sync or async) for the bound end user.

        The arguments are validated against the signature and sent as
        ``context.input``; the action defaults to the tool name and the
        resource to ``Tool::"<tool name>"``.

        Args:
            action: Cedar action name or uid (default: the tool name).
            resource: a fixed EntityUID/Entity, or a callable of the validated
                arguments returning one (e.g. the account being debited).
            resource_types: entity types the resource can have (for schema
                generation when ``resource`` is a callable).
            context: extra context, fixed or a callable of the validated arguments.
            on_deny: ``"raise"`` raises AccessDenied; ``"message"`` returns a
                short refusal the model can read (:func:`refusal_message`: the
                decision's id; the policy ids only with ``disclose_reasons``).
            name: tool name (default: the function name).
            sum_arguments: int or decimal arguments a bound session adds up
                over the calls that complete (``context.session.totals.<action>.<argument>``).

        With a session bound (:meth:`session`) the call is decided with
        ``context.session`` and counted in the session once the function
        returns; a denied call, or one that raises, does not count.

        The function runs with the validated arguments the policy evaluated
        (:meth:`ToolSpec.arguments`: coerced values, defaults filled in);
        arguments it does not declare are refused, and the refusal is audited.

        Raises:
            IdentityError: at call time, when no end user is bound.
            AccessDenied: at call time, when denied and ``on_deny="raise"``.
            InvalidArguments: at call time, for arguments that fail validation
                (with ``on_deny="message"`` a refusal is returned instead).
            ConfigurationError: at decoration time, for a signature with no Cedar mapping.

        Example:
            >>> authz = Authorizer.from_text(
            ...     'permit(principal, action == Action::"add", resource) when { context.input.a < 10 };')
            >>> @authz.guard
            ... def add(a: int, b: int) -> int:
            ...     return a + b
            >>> with authz.acting_as(EntityUID("User", "alice")):
            ...     add(2, 3)
            5
        """
        if callable(action) and not isinstance(action, (str, EntityUID)):
            return self.guard()(action)
        if on_deny not in ("raise", "message"):
            raise ConfigurationError(f"on_deny must be 'raise' or 'message', not {on_deny!r}")
        chosen_action = action

        def decorate(fn: F) -> F:
            spec = build_spec(
                fn, name=name, action=chosen_action, resource=resource,
                resource_types=tuple(resource_types), context=context, on_deny=on_deny,
                sums=tuple(sum_arguments),
            )
            self.tools[spec.name] = spec
            if inspect.iscoroutinefunction(fn):

                async def guarded_async(*args: Any, **kwargs: Any) -> Any:
                    prepared = self._prepare_tool_call(spec, fn, args, kwargs)
                    if isinstance(prepared, str):
                        return prepared
                    arguments, decision_inputs = prepared
                    call = await self._abegin(decision_inputs, arguments, spec, None)
                    if not call.admits:
                        return self._refuse(spec, call.decision)
                    with call:
                        return await fn(**arguments)

                return wraps_tool(fn, guarded_async, spec)

            def guarded(*args: Any, **kwargs: Any) -> Any:
                prepared = self._prepare_tool_call(spec, fn, args, kwargs)
                if isinstance(prepared, str):
                    return prepared
                arguments, decision_inputs = prepared
                call = self._begin(decision_inputs, arguments, spec, None)
                if not call.admits:
                    return self._refuse(spec, call.decision)
                with call:
                    return fn(**arguments)

            return wraps_tool(fn, guarded, spec)

        return decorate

    def validate_tools(
        self,
        *,
        stub: str | Mapping[str, Any] | None = None,
        principal_types: Sequence[str] = (),
        namespace: str | None = None,
        store: PolicyStore | None = None,
    ) -> None:
        """Check the store against the registered tools, reporting every problem at once.

        Call it once the tools are registered (at startup). It names, each with
        its ``file:line``:

        * every tool whose action the store's schema does not declare (no call
          of it could be decided), with the declaration to add at that line;
        * every ``context.session`` fact the schema declares or a policy reads
          that nothing fills (a total of an argument no tool or
          ``SessionConfig.sums`` adds up);
        * every policy that does not validate against the schema generated for
          the tools: a misspelled tool action or argument
          (``context.input.ammount``), which would otherwise never apply.

        Args:
            stub: schema declaring the principal and resource types; default:
                the store's own schema (its tool actions are regenerated).
            principal_types: entity types that call tools (default: those the
                stub annotates ``@mcp_principal``).
            namespace: namespace of the tool actions, when the stub has several.
            store: the policies to check; default: the engine's store.

        Raises:
            PolicyError: one ``file:line: message`` per problem (``.problems``).
            ConfigurationError: no store or stub to check against.

        Example:
            >>> from agentauthz import PolicyError
            >>> authz = Authorizer.from_text("permit(principal, action, resource);", schema=
            ...     "entity User, Tool; action search appliesTo { principal: User, resource: Tool };")
            >>> @authz.guard
            ... def send_email(to: str) -> str:
            ...     return "sent"
            >>> try:
            ...     authz.validate_tools(principal_types=["User"])
            ... except PolicyError as exc:
            ...     print(exc.problems[0].split(": add: ")[0])
            <schema>:2: tool 'send_email' has no action in the schema, so no call of it can be decided
        """
        store = store or getattr(self.engine, "store", None)
        if not isinstance(store, PolicyStore):
            raise ConfigurationError("validate_tools needs the policies: pass store=PolicyStore...")
        stub = stub if stub is not None else store.schema_text
        if stub is None:
            raise ConfigurationError("validate_tools needs a schema stub declaring the entity types")
        validate_policies_for_tools(
            store, self.tools, stub, principal_types=principal_types, namespace=namespace,
            tool_type=self.tool_entity_type, session_sums=self.session_config.sums,
        )

    def authorize_tool_call(self, tool: Any, arguments: Mapping[str, Any]) -> Decision:
        """Decide one call of a guarded tool with these arguments, without running it.

        Raises:
            InvalidArguments: the arguments do not validate (the refusal is audited).
            IdentityError: no end user is bound.
        """
        return self.begin_tool_call(tool, arguments, record=False).decision

    async def aauthorize_tool_call(self, tool: Any, arguments: Mapping[str, Any]) -> Decision:
        """Async twin of :meth:`authorize_tool_call`."""
        return (await self.abegin_tool_call(tool, arguments, record=False)).decision

    def begin_tool_call(self, tool: Any, arguments: Mapping[str, Any], *,
                        call_id: str | None = None, record: bool = True) -> ToolCall:
        """Decide a call of a guarded tool that the caller runs, and count it when it completes.

        For integrations that run the tool themselves: run it inside
        ``with call:`` when ``call.admits``, with exactly ``call.arguments``:
        the validated arguments the policy evaluated (coerced values, defaults
        filled in), never the raw ones. Leaving the block counts the call in
        the bound session, an exception (or ``call.fail()``) releases it.
        Without a session this is :meth:`authorize_tool_call`.

        Args:
            tool: a guarded tool, its ToolSpec or its name.
            arguments: the arguments the model chose. One the tool does not
                declare is refused.
            call_id: the id the caller gave the call (e.g. the model's tool
                call id): a label in the session, never its key. A call with
                the same id in flight or completed in the session refuses this
                one (a released call may be retried under its id).
            record: False decides without reserving the call in the bound
                session (for a call run elsewhere, such as a Bedrock return of
                control): ``context.session`` is still given to the policies.

        A store that fails before the tool runs denies the call
        (``call.decision.errors`` says so, and so does its audit event).

        Raises:
            InvalidArguments: the arguments do not validate; the refusal is
                audited and ``exc.decision`` carries its id.
            IdentityError: no end user is bound, or the bound session belongs
                to another end user.

        Example:
            >>> authz = Authorizer.from_text('permit(principal, action, resource);', audit=[])
            >>> @authz.guard
            ... def ping(host: str) -> str:
            ...     return "pong"
            >>> with authz.acting_as(EntityUID("User", "u")), authz.session("c") as s:
            ...     call = authz.begin_tool_call("ping", {"host": "a"}, call_id="t-1")
            ...     with call:
            ...         pass  # run the tool here
            ...     s.state().calls, call.arguments
            ({'ping': 1}, {'host': 'a'})
        """
        spec = self._spec(tool)
        validated, inputs = self._checked_call(spec, arguments)
        if record:
            call = self._begin(inputs, validated, spec, call_id)
        else:
            call = ToolCall(self.authorize(**inputs), call_id=uuid.uuid4().hex, external_id=call_id)
        call.arguments = validated
        return call

    async def abegin_tool_call(self, tool: Any, arguments: Mapping[str, Any], *,
                               call_id: str | None = None, record: bool = True) -> ToolCall:
        """Async twin of :meth:`begin_tool_call`."""
        spec = self._spec(tool)
        validated, inputs = self._checked_call(spec, arguments)
        if record:
            call = await self._abegin(inputs, validated, spec, call_id)
        else:
            call = ToolCall(await self.aauthorize(**inputs), call_id=uuid.uuid4().hex, external_id=call_id)
        call.arguments = validated
        return call

    def begin_call(self, *, action: str | EntityUID, resource: EntityUID | Entity,
                   context: Mapping[str, Any] | None = None, call_id: str | None = None) -> ToolCall:
        """Like :meth:`begin_tool_call`, for a call that is no guarded tool.

        Its arguments, if any, are ``context["input"]``.
        """
        request_context = dict(context or {})
        given = request_context.get("input")
        inputs = {"action": action, "resource": resource, "context": request_context}
        return self._begin(inputs, given if isinstance(given, Mapping) else None, None, call_id)

    async def abegin_call(self, *, action: str | EntityUID, resource: EntityUID | Entity,
                          context: Mapping[str, Any] | None = None, call_id: str | None = None) -> ToolCall:
        """Async twin of :meth:`begin_call`."""
        request_context = dict(context or {})
        given = request_context.get("input")
        inputs = {"action": action, "resource": resource, "context": request_context}
        return await self._abegin(inputs, given if isinstance(given, Mapping) else None, None, call_id)

    def _call_plan(self, inputs: Mapping[str, Any], arguments: Mapping[str, Any] | None,
                   spec: ToolSpec | None) -> tuple[EntityUID, dict[str, Any], frozenset[str]]:
        """The call's action uid, summed argument values and the labels it reads."""
        action = self.engine.resolve_action(inputs["action"])
        names = list(spec.sums) if spec is not None else []
        # What any registered tool or the configuration sums for this action, whatever the
        # path of this call: a total that some calls of its action skip would undercount.
        names.extend(sorted((self._produced_facts().sums or {}).get(action.id, ())))
        sums: dict[str, Any] = {}
        for name in dict.fromkeys(names):
            try:
                value = summed_value((arguments or {}).get(name), f"argument {name!r} of {action.id!r}")
            except InvalidValueError as exc:
                raise ConfigurationError(f"summed arguments (SessionConfig.sums): {exc}") from None
            if value is not None:
                sums[name] = value
        labels: frozenset[str] = frozenset()
        if action.id in self.session_config.reads or str(action) in self.session_config.reads:
            resource = inputs["resource"]
            given = {resource.uid: resource} if isinstance(resource, Entity) else {}
            uid = resource.uid if isinstance(resource, Entity) else resource
            labels = frozenset(self._labels([uid], given))
        return action, sums, labels

    def _attempt(self, session: Session, inputs: Mapping[str, Any], action: EntityUID,
                 ) -> tuple[Request, list[Entity], int, float]:
        """The call's request on the session's current facts, with their version and the time."""
        principal, _ = self._principal(None, action, inputs["resource"])
        resource = inputs["resource"]
        bare = Request(principal, action, resource.uid if isinstance(resource, Entity) else resource,
                       dict(inputs["context"] or {}))
        facts, version, now = self._loaded(session, [bare])
        request, extra = self._request(None, action, resource, inputs["context"], facts=facts)
        return request, extra, version, now

    def _admit(self, session: Session, call: ToolCall, request: Request,
               plan: tuple[EntityUID, dict[str, Any], frozenset[str]], version: int, now: float) -> str:
        record = call_record(call.call_id, plan[0], request.resource, now, plan[1], plan[2],
                             external_id=call.external_id)
        return session.store.admit(session.id, record, owner=str(request.principal), version=version)

    def _refused_by_session(self, held: list[tuple[list[AuditSink], AuditEvent]], why: str) -> Decision:
        """Deny what was decided but cannot go ahead in the session: its held events say so."""
        decision = Decision(allowed=False, errors=(why,),
                            id=held[0][1].decision_id if held else _decision_id())
        for sinks, event in held:
            self._emit(sinks, dataclasses.replace(event, decision="deny", enforced=True,
                                                  errors=decision.errors))
        return decision

    def _admission(self, session: Session, call: ToolCall, request: Request,
                   plan: tuple[EntityUID, dict[str, Any], frozenset[str]], version: int, now: float,
                   held: list[tuple[list[AuditSink], AuditEvent]]) -> ToolCall | None:
        """The call's outcome, or None when the session changed and it must be decided again."""
        if not call.admits:
            self._release_held(held)
            return call
        try:
            admission = self._admit(session, call, request, plan, version, now)
        except IdentityError as exc:
            exc.decision = self._refused_by_session(held, FOREIGN_SESSION)
            raise
        except Exception as exc:  # the store failed before the tool ran: the call does not run
            return self._unreserved(call, self._refused_by_session(held, _store_failure(exc)))
        if admission == "changed":
            return None
        if admission != "admitted":
            why = _REPEATED if admission == "completed" else _IN_FLIGHT
            return self._unreserved(call, self._refused_by_session(held, why))
        self._release_held(held)
        return ToolCall(call.decision, call_id=call.call_id, session=session, reserved=True,
                        external_id=call.external_id)

    @staticmethod
    def _unreserved(call: ToolCall, decision: Decision) -> ToolCall:
        return ToolCall(decision, call_id=call.call_id, external_id=call.external_id)

    def _release_held(self, held: list[tuple[list[AuditSink], AuditEvent]]) -> None:
        for sinks, event in held:
            self._emit(sinks, event)

    def _begin(self, inputs: Mapping[str, Any], arguments: Mapping[str, Any] | None,
               spec: ToolSpec | None, call_id: str | None) -> ToolCall:
        # Our own key for the call; the caller's id (the model's) is only a label.
        key, session = uuid.uuid4().hex, current_session()
        if session is None:
            return ToolCall(self.authorize(**inputs), call_id=key, external_id=call_id)
        plan = self._call_plan(inputs, arguments, spec)
        held: list[tuple[list[AuditSink], AuditEvent]] = []
        for attempt in range(self.session_config.max_attempts):
            held.clear()
            try:
                request, extra, version, now = self._attempt(session, inputs, plan[0])
            except _Refused as refused:
                return ToolCall(refused.decisions[0], call_id=key, external_id=call_id)
            decision = self._decide([request], extra, hold=held)[0]
            decided = ToolCall(decision, call_id=key, session=session, external_id=call_id)
            outcome = self._admission(session, decided, request, plan, version, now, held)
            if outcome is not None:
                return outcome
            if attempt:
                time.sleep(random.uniform(0, 0.0005 * min(attempt, 20)))
        return ToolCall(self._refused_by_session(held, _BUSY), call_id=key, external_id=call_id)

    async def _abegin(self, inputs: Mapping[str, Any], arguments: Mapping[str, Any] | None,
                      spec: ToolSpec | None, call_id: str | None) -> ToolCall:
        key, session = uuid.uuid4().hex, current_session()
        if session is None:
            return ToolCall(await self.aauthorize(**inputs), call_id=key, external_id=call_id)
        plan = self._call_plan(inputs, arguments, spec)
        held: list[tuple[list[AuditSink], AuditEvent]] = []
        for attempt in range(self.session_config.max_attempts):
            held.clear()
            try:
                request, extra, version, now = self._attempt(session, inputs, plan[0])
            except _Refused as refused:
                return ToolCall(refused.decisions[0], call_id=key, external_id=call_id)
            decision = (await self._adecide([request], extra, hold=held))[0]
            decided = ToolCall(decision, call_id=key, session=session, external_id=call_id)
            outcome = self._admission(session, decided, request, plan, version, now, held)
            if outcome is not None:
                return outcome
            await asyncio.sleep(random.uniform(0, 0.0005 * min(attempt, 20)) if attempt else 0)
        return ToolCall(self._refused_by_session(held, _BUSY), call_id=key, external_id=call_id)

    def permitted_tools(self, tools: Iterable[Any]) -> list[Any]:
        """The tools the bound user could call with some arguments, in input order.

        Each tool's policies are partially evaluated with the arguments (and a
        computed resource) unknown; a tool is dropped only when every call of
        it is certainly denied. This shapes what the model sees; it never
        decides a call: each call is still fully authorized.

        Unguarded tools are dropped (nothing could authorize them).

        Raises:
            IdentityError: no end user is bound.
        """
        principal = self.current_principal()
        identity = _identity.get()
        extra = [identity.entity] if identity and identity.entity else []
        evaluate = getattr(self.engine, "may_allow", None)
        kept = []
        for tool in tools:
            spec = (tool if isinstance(tool, ToolSpec) else spec_of(tool)
                    or self.tools.get(getattr(tool, "name", None) or ""))
            if spec is None:
                continue
            if evaluate is None:
                kept.append(tool)
                continue
            resource = None
            if spec.resource is None:
                resource = EntityUID(self.tool_entity_type, spec.name)
            elif isinstance(spec.resource, (EntityUID, Entity)):
                resource = spec.resource.uid if isinstance(spec.resource, Entity) else spec.resource
                if isinstance(spec.resource, Entity):
                    extra = [*extra, spec.resource]
            action = self.engine.resolve_action(spec.action)
            roots = [principal] + ([resource] if resource else [])
            try:
                entities = self._entities_for_roots(roots, extra)
                if evaluate(principal, action, resource, entities):
                    kept.append(tool)
            except Exception:  # partial evaluation failing hides the tool, never shows more
                continue
        return kept

    def _spec(self, tool: Any) -> ToolSpec:
        spec = tool if isinstance(tool, ToolSpec) else spec_of(tool)
        if spec is None and isinstance(tool, str):
            spec = self.tools.get(tool)
        if spec is None:
            raise ConfigurationError(f"{tool!r} is not a tool guarded by this Authorizer")
        return spec

    def _checked_call(self, spec: ToolSpec, arguments: Mapping[str, Any] | Callable[[], Mapping[str, Any]],
                      ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The validated arguments of one call and the request deciding it (the one path of every call).

        ``context.input`` is built from the very values the tool then runs
        with. Arguments that do not validate, or whose resource or context
        cannot be built, are an audited refusal.

        Raises:
            IdentityError: no end user is bound (audited): checked first, so a
                call without one never reads as a mere argument problem.
            InvalidArguments: carrying the audited refusal.
        """
        if _identity.get() is None:
            self.audit_missing_identity(spec.action, EntityUID(self.tool_entity_type, spec.name))
            self.current_principal()  # raises IdentityError
        try:
            validated = spec.arguments(arguments() if callable(arguments) else arguments)
            return validated, self._tool_request(spec, validated)
        except InvalidArguments:
            raise
        except InvalidValueError as exc:
            fixed = spec.resource if isinstance(spec.resource, (EntityUID, Entity)) else None
            refusal = self.audit_refusal(
                action=spec.action, resource=fixed or EntityUID(self.tool_entity_type, spec.name),
                reason=str(exc))
            raise InvalidArguments(str(exc), refusal) from None

    def _tool_request(self, spec: ToolSpec, arguments: dict[str, Any]) -> dict[str, Any]:
        context = spec.context_for(arguments)
        context["input"] = tool_input(arguments)
        return {
            "action": spec.action,
            "resource": spec.resource_for(arguments, self.tool_entity_type),
            "context": context,
        }

    def _prepare_tool_call(
        self, spec: ToolSpec, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> str | tuple[dict[str, Any], dict[str, Any]]:
        try:
            return self._checked_call(spec, lambda: bind_arguments(fn, args, kwargs, spec.name))
        except InvalidArguments as exc:
            if spec.on_deny == "message":
                return self.refusal(spec.name, exc.decision, kind="invalid")
            raise

    def _refuse(self, spec: ToolSpec, decision: Decision) -> str:
        if spec.on_deny == "message":
            return self.refusal(spec.name, decision)
        raise AccessDenied(decision, subject=f"tool '{spec.name}'")

    def refusal(self, tool: str, decision: Decision, *, kind: RefusalKind = "denied") -> str:
        """The refusal a model reads for a refused call of ``tool`` (see :func:`refusal_message`).

        Generic, naming the decision's opaque id; with ``disclose_reasons`` it
        adds the determining policy ids (or the problems of invalid arguments).

        Example:
            >>> authz = Authorizer.from_text('@id("no-wipe") forbid(principal, action, resource);', audit=[])
            >>> with authz.acting_as(EntityUID("User", "u")):
            ...     refused = authz.authorize(action="wipe", resource=EntityUID("Tool", "wipe"))
            >>> authz.refusal("wipe", refused) == (
            ...     f"Tool 'wipe' is not permitted for this user (decision {refused.id}). Do not retry it.")
            True
        """
        return refusal_message(tool, decision, kind=kind, disclose=self.disclose_reasons)

    # -- internals -----------------------------------------------------------------

    def _principal(self, principal: EntityUID | Entity | None, action: str | EntityUID,
                   resource: EntityUID | Entity) -> tuple[EntityUID, list[Entity]]:
        """The request's principal (default: the bound end user) and the entity it brings."""
        if principal is None:
            identity = _identity.get()
            if identity is None:
                raise IdentityError("no end user is bound: wrap the call in authz.acting_as(user)",
                                    decision=self.audit_missing_identity(action, resource))
            return identity.uid, [identity.entity] if identity.entity is not None else []
        if isinstance(principal, Entity):
            return principal.uid, [principal]
        return principal, []

    def _request(
        self,
        principal: EntityUID | Entity | None,
        action: str | EntityUID,
        resource: EntityUID | Entity,
        context: Mapping[str, Any] | None,
        facts: SessionFacts | None = None,
    ) -> tuple[Request, list[Entity]]:
        principal_uid, extra = self._principal(principal, action, resource)
        if isinstance(resource, Entity):
            extra.append(resource)
            resource_uid = resource.uid
        else:
            resource_uid = resource
        action_uid = self.engine.resolve_action(action)
        request_context = dict(context) if context else {}
        self._with_session(request_context, principal_uid, action_uid, resource_uid, facts)
        request = Request(
            principal=principal_uid,
            action=action_uid,
            resource=resource_uid,
            context=request_context,
        )
        return request, extra

    def _resolve(self, request: Request) -> Request:
        if isinstance(request.action, str):
            return request.replace(action=self.engine.resolve_action(request.action))
        return request

    def _entities_for(self, requests: Sequence[Request], given: list[Entity]) -> list[Entity]:
        if self.entity_provider is None:
            return given
        roots: list[EntityUID] = []
        for request in requests:
            roots.append(request.principal)
            roots.append(request.resource)
            roots.extend(referenced_uids(request.context))
        return self._entities_for_roots(roots, given)

    def _entities_for_roots(self, roots: list[EntityUID], given: list[Entity]) -> list[Entity]:
        if self.entity_provider is None:
            return given
        known = {entity.uid: entity for entity in given}
        return entity_slice(self.entity_provider, roots, known)

    def _decide(self, requests: list[Request], entities: list[Entity],
                hold: list[tuple[list[AuditSink], AuditEvent]] | None = None) -> list[Decision]:
        started = time.perf_counter_ns()
        sliced = entities
        try:
            sliced = self._entities_for(requests, entities)
            decisions = self.engine.decide(requests, sliced)
        except AuthzError:
            raise
        except Exception as exc:  # a failing engine or provider must deny, never allow
            decisions = [_failure(exc)] * len(requests)
        return self._finish(requests, entities, decisions, started, sliced, hold)

    async def _adecide(self, requests: list[Request], entities: list[Entity],
                       hold: list[tuple[list[AuditSink], AuditEvent]] | None = None) -> list[Decision]:
        started = time.perf_counter_ns()
        sliced = entities
        try:
            sliced = self._entities_for(requests, entities)
            decisions = await self.engine.adecide(requests, sliced)
        except AuthzError:
            raise
        except Exception as exc:  # a failing engine or provider must deny, never allow
            decisions = [_failure(exc)] * len(requests)
        return self._finish(requests, entities, decisions, started, sliced, hold)

    def _finish(
        self,
        requests: list[Request],
        entities: list[Entity],
        decisions: list[Decision],
        started: int,
        sliced: list[Entity] | None = None,
        hold: list[tuple[list[AuditSink], AuditEvent]] | None = None,
    ) -> list[Decision]:
        if len(decisions) != len(requests):
            decisions = [Decision.deny("engine returned a wrong number of decisions")] * len(requests)
        elif not all(type(d) is Decision for d in decisions):  # a bool, a look-alike: a broken engine
            decisions = [Decision.deny("engine returned something other than a Decision")] * len(requests)
        # Only shadow mode lets a denied call go ahead. Every decision gets its own id.
        enforced = self.mode != "shadow"
        decisions = [Decision(d.allowed, d.reasons, d.errors, enforced, d.policy_version, _decision_id())
                     for d in decisions]
        sinks = self._active_sinks()
        if sinks:
            elapsed_us = (time.perf_counter_ns() - started) // 1000
            # Shadow policies only inform the audit trail: evaluated when someone listens.
            shadow = shadow_outcomes(self.engine, requests, sliced if sliced is not None else entities,
                                     decisions)
            for index, (request, decision) in enumerate(zip(requests, decisions, strict=True)):
                event = self._event(request, decision, elapsed_us, entities)
                if shadow is not None:
                    event = dataclasses.replace(event, shadow=shadow[index])
                if hold is not None:
                    hold.append((sinks, event))
                else:
                    self._emit(sinks, event)
        return decisions

    def _active_sinks(self) -> list[AuditSink]:
        return [sink for sink in (*self.audit_sinks, *global_sinks()) if sink.enabled]

    def _event(
        self, request: Request, decision: Decision, elapsed_us: int, entities: list[Entity]
    ) -> AuditEvent:
        identity = _identity.get()
        correlation = identity.correlation_id if identity and identity.correlation_id else None
        session = current_session()
        return AuditEvent(
            principal=str(request.principal),
            action=str(request.action),
            resource=str(request.resource),
            decision=decision.outcome,
            enforced=decision.enforced,
            reasons=decision.reasons,
            errors=decision.errors,
            fingerprint=decision.policy_version or self.engine.fingerprint,
            engine=self.engine.name,
            mode=self.mode,
            elapsed_us=elapsed_us,
            correlation_id=correlation or uuid.uuid4().hex,
            timestamp=time.time(),
            request=(
                {"request": request.to_cedar(), "entities": [e.to_cedar() for e in entities]}
                if self.record_requests else None
            ),
            session=session.id if session is not None else None,
            decision_id=decision.id,
        )

    def audit_missing_identity(self, action: str | EntityUID, resource: EntityUID | Entity) -> Decision:
        """Record a call refused because no end user was bound (a denial without principal).

        The Authorizer does this itself; integrations that refuse a call before
        asking it (an invalid token, say) call it to keep the audit trail whole.

        Returns:
            The audited refusal (its ``id`` is the event's ``decision_id``).
        """
        return self._audit_refusal(None, action, resource, "no end user bound", None)

    def audit_refusal(self, *, action: str | EntityUID, resource: EntityUID | Entity,
                      reason: str) -> Decision:
        """Record a call refused before any policy was evaluated, for the bound end user.

        For integrations that refuse a call themselves: a tool the agent does
        not have, arguments that cannot be read. The Authorizer does this itself
        for invalid tool arguments. Every refusal is then one audit event, like
        every decision.

        Args:
            action: the action the call would have been (a name that is no
                action of the schema is recorded as given).
            resource: the resource it would have touched.
            reason: why it was refused (the event's ``errors``; no values).

        Returns:
            The audited refusal: a denial carrying ``reason`` and the event's id.

        Example:
            >>> from agentauthz._audit import MemorySink
            >>> sink = MemorySink()
            >>> authz = Authorizer.from_text("permit(principal, action, resource);", audit=[sink])
            >>> refused = authz.audit_refusal(action="wipe", resource=EntityUID("Tool", "wipe"),
            ...                               reason="unknown tool")
            >>> refused.allowed, sink.events[0].errors, sink.events[0].decision_id == refused.id
            (False, ('unknown tool',), True)
        """
        identity = _identity.get()
        try:
            action_text = str(self.engine.resolve_action(action))
        except Exception:  # a name no schema declares (what a model invented): recorded as written
            action_text = str(action)
        correlation = identity.correlation_id if identity is not None else None
        return self._audit_refusal(identity.uid if identity is not None else None, action_text, resource,
                                   reason, correlation)

    def _audit_refusal(self, principal: EntityUID | None, action: str | EntityUID,
                       resource: EntityUID | Entity, reason: str, correlation: str | None) -> Decision:
        decision = Decision(allowed=False, errors=(truncate(reason),), id=_decision_id())
        sinks = self._active_sinks()
        if sinks:
            uid = resource.uid if isinstance(resource, Entity) else resource
            session = current_session()
            event = AuditEvent(
                principal=str(principal) if principal is not None else None, action=str(action),
                resource=str(uid), decision="deny", enforced=True, reasons=(), errors=decision.errors,
                fingerprint=self.engine.fingerprint, engine=self.engine.name, mode=self.mode,
                elapsed_us=0, correlation_id=correlation or uuid.uuid4().hex, timestamp=time.time(),
                session=session.id if session is not None else None, decision_id=decision.id,
            )
            self._emit(sinks, event)
        return decision

    @staticmethod
    def _emit(sinks: list[AuditSink], event: AuditEvent) -> None:
        for sink in sinks:
            try:
                sink.emit(event)
            except Exception:  # an audit sink must not turn a decision into a crash
                import logging

                logging.getLogger("agentauthz").exception("audit sink %r failed", sink)


def _decision_id() -> str:
    """An opaque, unguessable id for one decision (128 random bits)."""
    return secrets.token_hex(16)


def _failure(exc: Exception) -> Decision:
    return Decision.deny(f"authorization failed: {type(exc).__name__}: {truncate(redact(str(exc)))}")
