"""The Authorizer: binds the end user, gathers entities, asks the engine, audits.

It is the one place where a request becomes a decision, so the fail-closed
rules live here: no principal raises :class:`IdentityError`; an engine that
raises, answers NoDecision or errors yields a denying decision.
"""

from __future__ import annotations

import asyncio
import contextvars
import dataclasses
import inspect
import random
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar, overload

from agentauthz._audit import AuditEvent, AuditSink, LoggingSink, global_sinks
from agentauthz._entities import EntityProvider, StaticEntityProvider, entity_slice, referenced_uids
from agentauthz._errors import (
    AccessDenied,
    AuthzError,
    ConfigurationError,
    IdentityError,
    InvalidValueError,
)
from agentauthz._model import Decision, Entity, EntityUID, Request
from agentauthz._policies import PolicyStore, redact, truncate
from agentauthz._retrieval import (
    FilterResult,
    ResourceGroups,
    ResourceOf,
    RetrievalScope,
    group_by_resource,
)
from agentauthz._schemagen import validate_policies_for_tools
from agentauthz._shadow import shadow_outcomes
from agentauthz._tools import (
    ContextSpec,
    OnDeny,
    ResourceSpec,
    ToolSpec,
    bind_arguments,
    build_spec,
    refusal_message,
    spec_of,
    tool_input,
    wraps_tool,
)
from agentauthz.engines.base import Engine
from agentauthz.session import (
    FULL_SHAPE,
    MemorySessionStore,
    SchemaShapes,
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

__all__ = ["Authorizer", "Identity"]

Mode = Literal["enforce", "shadow"]
F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")
# Requests per engine call when filtering: bounds memory and latency per call.
DEFAULT_PAGE_SIZE = 500
_MODES = ("enforce", "shadow")
_BUSY = "the session kept changing while the call was decided; try again"


@dataclass(frozen=True)
class Identity:
    """The end user an agent acts for, as bound by :meth:`Authorizer.acting_as`."""

    uid: EntityUID
    entity: Entity | None
    correlation_id: str | None


_identity: contextvars.ContextVar[Identity | None] = contextvars.ContextVar(
    "agentauthz_identity", default=None
)


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
        sessions: how sessions are recorded (:class:`~agentauthz.session.SessionConfig`:
            store, label attribute, window, summed arguments); see :meth:`session`.

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
        self.tools: dict[str, ToolSpec] = {}
        if sessions is not None and not isinstance(sessions, SessionConfig):
            raise ConfigurationError("sessions= takes an agentauthz.session.SessionConfig")
        self.session_config = sessions or SessionConfig()
        store = self.session_config.store
        self.session_store: SessionStore = store if store is not None else MemorySessionStore()
        self._shapes: tuple[object, SchemaShapes] | None = None

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
        :mod:`agentauthz.session`), the retrieval filter records the labels of
        what it lets through, and tool calls are counted once they complete.
        Like the identity it is a contextvar: thread- and task-safe.

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
            bound = Session(session, self.session_store, self.session_config)
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

    def _session_shape(self, action: EntityUID) -> SessionShape | None:
        schema = self.session_config.schema
        key: object = "config"
        if schema is None:
            store = getattr(self.engine, "store", None)
            if not isinstance(store, PolicyStore) or store.schema_text is None:
                return FULL_SHAPE
            schema, key = store.schema_text, store.fingerprint
        cached = self._shapes
        if cached is None or cached[0] != key:
            cached = (key, SchemaShapes(schema))
            self._shapes = cached
        return cached[1].shape(action)

    def _session_facts(self, session: Session, exclude: str | None = None) -> tuple[SessionFacts, int, float]:
        config = self.session_config
        now = config.clock()
        since = now - config.window.total_seconds()
        snapshot = session.store.load(session.id, now=now, since=since, history=config.history)
        facts = SessionFacts.of(snapshot, history=config.history, exclude=exclude, since=since)
        return facts, snapshot.version, now

    @staticmethod
    def _action_name(action: str | EntityUID) -> str:
        if isinstance(action, EntityUID):
            return action.id
        return EntityUID.parse(action).id if '::"' in action else action

    def _session_record(self, shape: SessionShape, facts: SessionFacts, action: EntityUID,
                        resource: EntityUID, context: Mapping[str, Any]) -> dict[str, Any]:
        approved = any(approval_covers(a, action, resource, context) for a in facts.approvals)
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

    def _with_session(self, context: dict[str, Any], action: EntityUID, resource: EntityUID,
                      facts: SessionFacts | None) -> None:
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
            facts = self._session_facts(session)[0]
        context["session"] = self._session_record(shape, facts, action, resource, context)

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

    def _record_seen(self, result: FilterResult[Any], groups: ResourceGroups) -> None:
        session = current_session()
        if session is None:
            return
        read = [uid for uid, decision in zip(result.resources, result.decisions, strict=True)
                if uid is not None and decision.admits]
        labels = self._labels(read, groups.entities)
        if labels:
            session.store.add_labels(session.id, labels)

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
        request, extra = self._request(principal, action, resource, context)
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
        request, extra = self._request(principal, action, resource, context)
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
        requests, overlay = self._filter_requests(groups, action, context)
        decisions: list[Decision] = []
        for start in range(0, len(requests), max(1, page_size)):
            page = requests[start : start + page_size]
            decisions.extend(self._decide(page, self._page_entities(page, overlay)))
        result = self._filter_result(items, groups, decisions)
        self._record_seen(result, groups)
        return result

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
        requests, overlay = self._filter_requests(groups, action, context)
        decisions: list[Decision] = []
        for start in range(0, len(requests), max(1, page_size)):
            page = requests[start : start + page_size]
            decisions.extend(await self._adecide(page, self._page_entities(page, overlay)))
        result = self._filter_result(items, groups, decisions)
        self._record_seen(result, groups)
        return result

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

    def _retrieval_scope(self, action: str | EntityUID, context: Mapping[str, Any] | None) -> RetrievalScope:
        """Principal, action, entity and per-resource context of a retrieval's requests.

        The one place they are built: :meth:`filter` decides with them and the
        pre-filter compiler compiles with them, so both see the bound session.

        Raises:
            IdentityError: no end user is bound.
            ConfigurationError: ``context`` sets ``session`` while a session is bound.
        """
        principal = self.current_principal()
        identity = _identity.get()
        given = (identity.entity,) if identity and identity.entity else ()
        resolved = self.engine.resolve_action(action)
        base_context = dict(context) if context else {}
        base = Request(principal=principal, action=resolved, resource=principal, context=base_context)
        session = current_session()
        shape = self._session_shape(resolved) if session is not None else None
        if session is None or shape is None:
            return RetrievalScope(principal, resolved, given, base)
        if "session" in base_context:
            raise ConfigurationError(
                "context['session'] comes from the bound session: do not set it as well")
        facts = self._session_facts(session)[0]
        named: dict[EntityUID, None] = {}
        for approval in facts.approvals:
            if approval.resource is not None:
                try:
                    named[EntityUID.parse(approval.resource)] = None
                except AuthzError:
                    continue  # not a uid's text: no resource's text equals it

        def with_session(resource: EntityUID) -> dict[str, Any]:
            return {**base_context,
                    "session": self._session_record(shape, facts, resolved, resource, base_context)}

        return RetrievalScope(principal, resolved, given, base, with_session, tuple(named))

    def _filter_requests(
        self, groups: ResourceGroups, action: str | EntityUID, context: Mapping[str, Any] | None
    ) -> tuple[list[Request], list[Entity]]:
        scope = self._retrieval_scope(action, context)
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
                short refusal the model can read, naming the determining policies.
            name: tool name (default: the function name).
            sum_arguments: int or decimal arguments a bound session adds up
                over the calls that complete (``context.session.totals.<action>.<argument>``).

        With a session bound (:meth:`session`) the call is decided with
        ``context.session`` and counted in the session once the function
        returns; a denied call, or one that raises, does not count.

        Raises:
            IdentityError: at call time, when no end user is bound.
            AccessDenied: at call time, when denied and ``on_deny="raise"``.
            InvalidValueError: at call time, for arguments that fail validation
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
                    request_args, decision_inputs = prepared
                    call = await self._abegin(decision_inputs, request_args, spec, None)
                    if not call.admits:
                        return self._refuse(spec, call.decision)
                    with call:
                        return await fn(**request_args)

                return wraps_tool(fn, guarded_async, spec)

            def guarded(*args: Any, **kwargs: Any) -> Any:
                prepared = self._prepare_tool_call(spec, fn, args, kwargs)
                if isinstance(prepared, str):
                    return prepared
                request_args, decision_inputs = prepared
                call = self._begin(decision_inputs, request_args, spec, None)
                if not call.admits:
                    return self._refuse(spec, call.decision)
                with call:
                    return fn(**request_args)

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
        """Check the policies against the schema generated for the guarded tools.

        Call it once the tools are decorated (at startup): a policy that names a
        misspelled tool action or argument (``context.input.ammount``) fails
        here with its ``file:line`` instead of silently never applying.

        Args:
            stub: schema declaring the principal and resource types; default:
                the store's own schema (its tool actions are regenerated).
            principal_types: entity types that call tools (default: those the
                stub annotates ``@mcp_principal``).
            namespace: namespace of the tool actions, when the stub has several.
            store: the policies to check; default: the engine's store.

        Raises:
            PolicyError: one ``file:line: message`` per problem.
            ConfigurationError: no store or stub to check against.
        """
        store = store or getattr(self.engine, "store", None)
        if not isinstance(store, PolicyStore):
            raise ConfigurationError("validate_tools needs the policies: pass store=PolicyStore...")
        stub = stub if stub is not None else store.schema_text
        if stub is None:
            raise ConfigurationError("validate_tools needs a schema stub declaring the entity types")
        names = {self._action_name(spec.action) for spec in self.tools.values()}
        validate_policies_for_tools(
            store, self.tools, stub, principal_types=principal_types, namespace=namespace,
            tool_type=self.tool_entity_type,
            session_sums={name: list(arguments) for name, arguments in self.session_config.sums.items()
                          if name in names},
        )

    def authorize_tool_call(self, tool: Any, arguments: Mapping[str, Any]) -> Decision:
        """Decide one call of a guarded tool with these arguments, without running it."""
        spec = self._spec(tool)
        validated = self._validated(spec, arguments)
        return self.authorize(**self._tool_request(spec, validated))

    async def aauthorize_tool_call(self, tool: Any, arguments: Mapping[str, Any]) -> Decision:
        """Async twin of :meth:`authorize_tool_call`."""
        spec = self._spec(tool)
        validated = self._validated(spec, arguments)
        return await self.aauthorize(**self._tool_request(spec, validated))

    def begin_tool_call(self, tool: Any, arguments: Mapping[str, Any], *,
                        call_id: str | None = None) -> ToolCall:
        """Decide a call of a guarded tool that the caller runs, and count it when it completes.

        For integrations that run the tool themselves: run it inside
        ``with call:`` when ``call.admits``; leaving the block counts the call
        in the bound session, an exception (or ``call.fail()``) releases it.
        Without a session this is :meth:`authorize_tool_call`.

        Args:
            tool: a guarded tool, its ToolSpec or its name.
            arguments: the arguments the model chose.
            call_id: the call's id (e.g. the model's tool call id): a call id
                completed before is never counted again.

        Raises:
            InvalidValueError: the arguments do not validate.
            IdentityError: no end user is bound.

        Example:
            >>> authz = Authorizer.from_text('permit(principal, action, resource);', audit=[])
            >>> @authz.guard
            ... def ping(host: str) -> str:
            ...     return "pong"
            >>> with authz.acting_as(EntityUID("User", "u")), authz.session("c") as s:
            ...     call = authz.begin_tool_call("ping", {"host": "a"}, call_id="t-1")
            ...     with call:
            ...         pass  # run the tool here
            ...     s.state().calls
            {'ping': 1}
        """
        spec = self._spec(tool)
        validated = self._validated(spec, arguments)
        return self._begin(self._tool_request(spec, validated), validated, spec, call_id)

    async def abegin_tool_call(self, tool: Any, arguments: Mapping[str, Any], *,
                               call_id: str | None = None) -> ToolCall:
        """Async twin of :meth:`begin_tool_call`."""
        spec = self._spec(tool)
        validated = self._validated(spec, arguments)
        return await self._abegin(self._tool_request(spec, validated), validated, spec, call_id)

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
        for key in (action.id, str(action)):
            names.extend(self.session_config.sums.get(key, ()))
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

    def _attempt(self, session: Session, inputs: Mapping[str, Any], call_id: str, action: EntityUID,
                 ) -> tuple[Request, list[Entity], int, float]:
        facts, version, now = self._session_facts(session, exclude=call_id)
        request, extra = self._request(None, action, inputs["resource"], inputs["context"], facts=facts)
        return request, extra, version, now

    def _admit(self, session: Session, call_id: str, request: Request,
               plan: tuple[EntityUID, dict[str, Any], frozenset[str]], version: int, now: float) -> str:
        record = call_record(call_id, plan[0], request.resource, now, plan[1], plan[2])
        lease = now + self.session_config.lease.total_seconds()
        return session.store.admit(session.id, record, version=version, lease_until=lease)

    def _refused_by_session(self, held: list[tuple[list[AuditSink], AuditEvent]], call_id: str,
                            why: str) -> ToolCall:
        decision = Decision.deny(why)
        for sinks, event in held:
            self._emit(sinks, dataclasses.replace(event, decision="deny", enforced=True,
                                                  errors=decision.errors))
        return ToolCall(decision, call_id=call_id)

    def _admission(self, session: Session, call_id: str, request: Request, decision: Decision,
                   plan: tuple[EntityUID, dict[str, Any], frozenset[str]], version: int, now: float,
                   held: list[tuple[list[AuditSink], AuditEvent]]) -> ToolCall | None:
        """The call's outcome, or None when the session changed and it must be decided again."""
        if not decision.admits:
            self._release_held(held)
            return ToolCall(decision, call_id=call_id, session=session)
        admission = self._admit(session, call_id, request, plan, version, now)
        if admission == "changed":
            return None
        if admission == "completed":
            return self._refused_by_session(
                held, call_id, f"call {call_id!r} already completed in this session: it does not run again")
        self._release_held(held)
        return ToolCall(decision, call_id=call_id, session=session, reserved=True)

    def _release_held(self, held: list[tuple[list[AuditSink], AuditEvent]]) -> None:
        for sinks, event in held:
            self._emit(sinks, event)

    def _begin(self, inputs: Mapping[str, Any], arguments: Mapping[str, Any] | None,
               spec: ToolSpec | None, call_id: str | None) -> ToolCall:
        call_id = call_id or uuid.uuid4().hex
        session = current_session()
        if session is None:
            return ToolCall(self.authorize(**inputs), call_id=call_id)
        plan = self._call_plan(inputs, arguments, spec)
        held: list[tuple[list[AuditSink], AuditEvent]] = []
        for attempt in range(self.session_config.max_attempts):
            held.clear()
            request, extra, version, now = self._attempt(session, inputs, call_id, plan[0])
            decision = self._decide([request], extra, hold=held)[0]
            outcome = self._admission(session, call_id, request, decision, plan, version, now, held)
            if outcome is not None:
                return outcome
            if attempt:
                time.sleep(random.uniform(0, 0.0005 * min(attempt, 20)))
        return self._refused_by_session(held, call_id, _BUSY)

    async def _abegin(self, inputs: Mapping[str, Any], arguments: Mapping[str, Any] | None,
                      spec: ToolSpec | None, call_id: str | None) -> ToolCall:
        call_id = call_id or uuid.uuid4().hex
        session = current_session()
        if session is None:
            return ToolCall(await self.aauthorize(**inputs), call_id=call_id)
        plan = self._call_plan(inputs, arguments, spec)
        held: list[tuple[list[AuditSink], AuditEvent]] = []
        for attempt in range(self.session_config.max_attempts):
            held.clear()
            request, extra, version, now = self._attempt(session, inputs, call_id, plan[0])
            decision = (await self._adecide([request], extra, hold=held))[0]
            outcome = self._admission(session, call_id, request, decision, plan, version, now, held)
            if outcome is not None:
                return outcome
            await asyncio.sleep(random.uniform(0, 0.0005 * min(attempt, 20)) if attempt else 0)
        return self._refused_by_session(held, call_id, _BUSY)

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

    @staticmethod
    def _validated(spec: ToolSpec, arguments: Mapping[str, Any]) -> dict[str, Any]:
        model = spec.validate(arguments)
        return {name: getattr(model, name) for name in spec.parameters}

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
        self.current_principal()  # no end user, no call: raises IdentityError
        try:
            arguments = self._validated(spec, bind_arguments(fn, args, kwargs, spec.name))
        except AuthzError as exc:
            if spec.on_deny == "message":
                return f"Tool '{spec.name}' was not called: {exc}"
            raise
        return arguments, self._tool_request(spec, arguments)

    @staticmethod
    def _refuse(spec: ToolSpec, decision: Decision) -> str:
        if spec.on_deny == "message":
            return refusal_message(spec.name, decision.reasons, decision.errors)
        raise AccessDenied(decision, subject=f"tool '{spec.name}'")

    # -- internals -----------------------------------------------------------------

    def _request(
        self,
        principal: EntityUID | Entity | None,
        action: str | EntityUID,
        resource: EntityUID | Entity,
        context: Mapping[str, Any] | None,
        facts: SessionFacts | None = None,
    ) -> tuple[Request, list[Entity]]:
        extra: list[Entity] = []
        if principal is None:
            identity = _identity.get()
            if identity is None:
                self.audit_missing_identity(action, resource)
                raise IdentityError(
                    "no end user is bound: wrap the call in authz.acting_as(user)"
                )
            principal_uid = identity.uid
            if identity.entity is not None:
                extra.append(identity.entity)
        elif isinstance(principal, Entity):
            principal_uid = principal.uid
            extra.append(principal)
        else:
            principal_uid = principal
        if isinstance(resource, Entity):
            extra.append(resource)
            resource_uid = resource.uid
        else:
            resource_uid = resource
        action_uid = self.engine.resolve_action(action)
        request_context = dict(context) if context else {}
        self._with_session(request_context, action_uid, resource_uid, facts)
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
        if self.mode == "shadow":
            decisions = [d.replace(enforced=False) for d in decisions]
        elif not all(d.enforced for d in decisions):  # only shadow mode lets a denied call go ahead
            decisions = [d if d.enforced else d.replace(enforced=True) for d in decisions]
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
        )

    def audit_missing_identity(self, action: str | EntityUID, resource: EntityUID | Entity) -> None:
        """Record a call refused because no end user was bound (a denial without principal).

        The Authorizer does this itself; integrations that refuse a call before
        asking it (an invalid token, say) call it to keep the audit trail whole.
        """
        sinks = self._active_sinks()
        if not sinks:
            return
        uid = resource.uid if isinstance(resource, Entity) else resource
        event = AuditEvent(
            principal=None, action=str(action), resource=str(uid), decision="deny",
            enforced=True, reasons=(), errors=("no end user bound",),
            fingerprint=self.engine.fingerprint, engine=self.engine.name, mode=self.mode,
            elapsed_us=0, correlation_id=uuid.uuid4().hex, timestamp=time.time(),
        )
        self._emit(sinks, event)

    @staticmethod
    def _emit(sinks: list[AuditSink], event: AuditEvent) -> None:
        for sink in sinks:
            try:
                sink.emit(event)
            except Exception:  # an audit sink must not turn a decision into a crash
                import logging

                logging.getLogger("agentauthz").exception("audit sink %r failed", sink)


def _failure(exc: Exception) -> Decision:
    return Decision.deny(f"authorization failed: {type(exc).__name__}: {truncate(redact(str(exc)))}")
