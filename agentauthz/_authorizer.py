"""The Authorizer: binds the end user, gathers entities, asks the engine, audits.

It is the one place where a request becomes a decision, so the fail-closed
rules live here: no principal raises :class:`IdentityError`; an engine that
raises, answers NoDecision or errors yields a denying decision.
"""

from __future__ import annotations

import contextvars
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from agentauthz._audit import AuditEvent, AuditSink, LoggingSink, global_sinks
from agentauthz._entities import EntityProvider, StaticEntityProvider, entity_slice, referenced_uids
from agentauthz._errors import AuthzError, ConfigurationError, IdentityError
from agentauthz._model import Decision, Entity, EntityUID, Request
from agentauthz._policies import PolicyStore, truncate
from agentauthz.engines.base import Engine

__all__ = ["Authorizer", "Identity"]

Mode = Literal["enforce", "shadow"]
_MODES = ("enforce", "shadow")


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
        """Decide a batch in one engine call; decisions come back in request order."""
        return self._decide([self._resolve(r) for r in requests], list(entities))

    async def aauthorize_many(
        self, requests: Sequence[Request], *, entities: Sequence[Entity] = ()
    ) -> list[Decision]:
        """Async twin of :meth:`authorize_many`."""
        return await self._adecide([self._resolve(r) for r in requests], list(entities))

    # -- internals -----------------------------------------------------------------

    def _request(
        self,
        principal: EntityUID | Entity | None,
        action: str | EntityUID,
        resource: EntityUID | Entity,
        context: Mapping[str, Any] | None,
    ) -> tuple[Request, list[Entity]]:
        extra: list[Entity] = []
        if principal is None:
            identity = _identity.get()
            if identity is None:
                self._audit_missing_identity(action, resource)
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
        request = Request(
            principal=principal_uid,
            action=self.engine.resolve_action(action),
            resource=resource_uid,
            context=dict(context) if context else {},
        )
        return request, extra

    def _resolve(self, request: Request) -> Request:
        if isinstance(request.action, str):
            return request.model_copy(update={"action": self.engine.resolve_action(request.action)})
        return request

    def _entities_for(self, requests: Sequence[Request], given: list[Entity]) -> list[Entity]:
        if self.entity_provider is None:
            return given
        roots: list[EntityUID] = []
        for request in requests:
            roots.append(request.principal)
            roots.append(request.resource)
            roots.extend(referenced_uids(request.context))
        known = {entity.uid: entity for entity in given}
        return entity_slice(self.entity_provider, roots, known)

    def _decide(self, requests: list[Request], entities: list[Entity]) -> list[Decision]:
        started = time.perf_counter_ns()
        try:
            decisions = self.engine.decide(requests, self._entities_for(requests, entities))
        except AuthzError:
            raise
        except Exception as exc:  # a failing engine or provider must deny, never allow
            decisions = [_failure(exc)] * len(requests)
        return self._finish(requests, entities, decisions, started)

    async def _adecide(self, requests: list[Request], entities: list[Entity]) -> list[Decision]:
        started = time.perf_counter_ns()
        try:
            decisions = await self.engine.adecide(requests, self._entities_for(requests, entities))
        except AuthzError:
            raise
        except Exception as exc:  # a failing engine or provider must deny, never allow
            decisions = [_failure(exc)] * len(requests)
        return self._finish(requests, entities, decisions, started)

    def _finish(
        self,
        requests: list[Request],
        entities: list[Entity],
        decisions: list[Decision],
        started: int,
    ) -> list[Decision]:
        if len(decisions) != len(requests):
            decisions = [Decision.deny("engine returned a wrong number of decisions")] * len(requests)
        if self.mode == "shadow":
            decisions = [d.model_copy(update={"enforced": False}) for d in decisions]
        sinks = self._active_sinks()
        if sinks:
            elapsed_us = (time.perf_counter_ns() - started) // 1000
            for request, decision in zip(requests, decisions, strict=True):
                self._emit(sinks, self._event(request, decision, elapsed_us, entities))
        return decisions

    def _active_sinks(self) -> list[AuditSink]:
        return [sink for sink in (*self.audit_sinks, *global_sinks()) if sink.enabled]

    def _event(
        self, request: Request, decision: Decision, elapsed_us: int, entities: list[Entity]
    ) -> AuditEvent:
        identity = _identity.get()
        correlation = identity.correlation_id if identity and identity.correlation_id else None
        return AuditEvent(
            principal=str(request.principal),
            action=str(request.action),
            resource=str(request.resource),
            decision=decision.outcome,
            enforced=decision.enforced,
            reasons=decision.reasons,
            errors=decision.errors,
            fingerprint=self.engine.fingerprint,
            engine=self.engine.name,
            mode=self.mode,
            elapsed_us=elapsed_us,
            correlation_id=correlation or uuid.uuid4().hex,
            timestamp=time.time(),
            request=(
                {"request": request.to_cedar(), "entities": [e.to_cedar() for e in entities]}
                if self.record_requests else None
            ),
        )

    def _audit_missing_identity(self, action: str | EntityUID, resource: EntityUID | Entity) -> None:
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
    return Decision.deny(f"authorization failed: {type(exc).__name__}: {truncate(str(exc))}")
