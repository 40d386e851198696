"""The Authorizer's retrieval part: filter items, build a retrieval's scope, record what was seen.

:class:`RetrievalFilter` is created by the Authorizer on first use and does
what :meth:`Authorizer.filter` and the pre-filter compiler need:

* the retrieval's scope (:class:`RetrievalScope`): principal, action, the bound
  end user's entity and each resource's context, the bound session's
  ``context.session`` included, built in one place so that the filter and the
  pre-filter compiler decide alike;
* the filter itself: items grouped by resource, one decision per resource, in
  pages of ``page_size`` requests;
* in a bound session, the labels of what was let through recorded as seen
  before the decisions' audit events are released; if the store cannot record
  them, nothing is let through.

Its filter is a plan (:mod:`agentauthz._plans`): ``Authorizer.filter`` and
``Authorizer.afilter`` drive the same one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from agentauthz._audit import Operation
from agentauthz._collector import LARGE_BATCH, collector_paused
from agentauthz._errors import AuthzError, ConfigurationError, IdentityError
from agentauthz._identity import bound_identity, bound_session
from agentauthz._model import Decision, Entity, EntityUID, Request, SharedRequests
from agentauthz._plans import Ask, Held, Plan, Refused
from agentauthz.guardrails._guardrail import Guardrail
from agentauthz.retrieval._filter import (
    FilterResult,
    ResourceGroups,
    ResourceOf,
    RetrievalScope,
    group_by_resource,
)

if TYPE_CHECKING:
    from agentauthz._authorizer import Authorizer
    from agentauthz.guardrails._detector import Detector

__all__ = ["RetrievalFilter"]

T = TypeVar("T")


class RetrievalFilter:
    """What an Authorizer does for retrieval (see the module docstring).

    Args:
        authz: the Authorizer it serves.
    """

    def __init__(self, authz: Authorizer) -> None:
        self.authz = authz

    def filter(self, items: Sequence[T], action: str | EntityUID, resource: ResourceOf,
               context: Mapping[str, Any] | None, page_size: int,
               guardrail: Guardrail | Detector | None = None,
               limit: int | None = None) -> Plan[FilterResult[T]]:
        """Keep the items the bound end user may ``action`` (:meth:`Authorizer.filter`).

        With ``limit``, only the first ``limit`` permitted items are kept: only
        they are recorded in the session and screened by the guardrail.
        """
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
            raise ConfigurationError(f"limit must be an integer of at least 0, not {limit!r}")
        screen = Guardrail.of(guardrail)
        # A plan runs in its caller's context from start to close: the scope spans its steps.
        with self.authz._operation(Operation("filter")), \
                collector_paused(len(items) >= LARGE_BATCH):
            groups = group_by_resource(items, resource, self.authz._stored_entities)
            try:
                requests, overlay = self._requests(groups, action, context)
            except Refused as refused:
                return _result(items, groups, refused.decisions, limit)
            held: Held | None = [] if bound_session.get() is not None else None
            decisions: list[Decision] = []
            by_uid: dict[EntityUID, list[Entity]] = {}
            for entity in overlay:  # every one kept: two for one uid reach the engine, which refuses them
                by_uid.setdefault(entity.uid, []).append(entity)
            for start in range(0, len(requests), max(1, page_size)):
                page = requests[start : start + page_size]
                decisions.extend((yield Ask(page, _page_entities(page, by_uid), held)))
            return self._recorded(items, groups, _result(items, groups, decisions, limit), held, screen)

    def scope(self, action: str | EntityUID, context: Mapping[str, Any] | None,
              uids: Sequence[EntityUID] = ()) -> RetrievalScope:
        """Principal, action, entity and per-resource context of a retrieval's requests.

        The one place they are built: :meth:`filter` decides with them and the
        pre-filter compiler compiles with them, so both see the bound session.
        ``uids`` are the resources to be decided: if the session refuses them,
        each gets its audited denial (the pre-filter's refusal is one event).

        Raises:
            IdentityError: no end user is bound, or the session belongs to another.
            ConfigurationError: ``context`` sets ``session`` while a session is bound.
            Refused: the session store failed: the requests are denied (audited).
        """
        authz = self.authz
        principal = authz.current_principal()
        identity = bound_identity.get()
        given = (identity.entity,) if identity and identity.entity else ()
        resolved = authz.engine.resolve_action(action)
        base_context = dict(context) if context else {}
        base = Request(principal=principal, action=resolved, resource=principal, context=base_context)
        session = bound_session.get()
        if session is None:
            return RetrievalScope(principal, resolved, given, base)
        if "session" in base_context:
            raise ConfigurationError(
                "context['session'] comes from the bound session: do not set it as well")
        sessions = authz._sessions
        # Loaded whatever the action declares: what the filter lets through is recorded in it.
        facts = sessions.loaded(session, [base.replace(resource=uid) for uid in uids] or [base])[0]
        shape = sessions.shape(resolved)
        if shape is None:
            return RetrievalScope(principal, resolved, given, base)
        named: dict[EntityUID, None] = {}
        for approval in facts.approvals:
            try:
                named[EntityUID.parse(approval.resource)] = None
            except AuthzError:
                continue  # not a uid's text: no resource's text equals it

        def with_session(resource: EntityUID) -> dict[str, Any]:
            return {**base_context, "session": sessions.record(
                shape, facts, principal, resolved, resource, base_context)}

        return RetrievalScope(principal, resolved, given, base, with_session, tuple(named))

    def _requests(self, groups: ResourceGroups, action: str | EntityUID,
                  context: Mapping[str, Any] | None) -> tuple[Sequence[Request], list[Entity]]:
        scope = self.scope(action, context, groups.uids)
        return scope.requests(groups.uids), [*scope.entities, *groups.entities.values()]

    def _recorded(self, items: Sequence[T], groups: ResourceGroups, result: FilterResult[T],
                  held: Held | None, guardrail: Guardrail | None) -> FilterResult[T]:
        """Record what the filter let through in the bound session, then release its audit events.

        What was let through is ``result.allowed`` (a ``limit`` already applied):
        items permitted but withheld are neither recorded nor screened, so the
        session knows exactly what the model reads. With a guardrail, the
        findings in the text of what was let through are recorded too (session
        labels). If the store cannot record it, or the guardrail fails with
        ``on_error="raise"``, nothing is let through: the model must not read
        what the session would not know it read.
        """
        if held is None:
            return result
        from agentauthz.session._admission import store_failure  # a session is bound: its wing is loaded
        from agentauthz.session._stores import FOREIGN_SESSION

        authz = self.authz
        try:
            kept = _kept_resources(result)
            self._record_seen(result, kept, groups, guardrail)
            self._register_documents(result, kept, groups)
        except IdentityError as exc:
            exc.decision = authz._deny_held(held, FOREIGN_SESSION)
            raise
        except Exception as exc:  # unrecorded reads would escape the session's rules: deny them
            why = store_failure(exc)
            authz._deny_held(held, why)
            return _result(items, groups, [Decision.deny(why)] * len(groups.uids))
        authz._release_held(held)
        return result

    def _record_seen(self, result: FilterResult[Any], kept: list[EntityUID], groups: ResourceGroups,
                     guardrail: Guardrail | None) -> None:
        session = bound_session.get()
        if session is None:
            return
        labels = self.authz._sessions.labels(kept, groups.entities)
        if guardrail is not None:
            found = (guardrail.assess_value(item, "OUTPUT").labels() for item in result.allowed)
            labels |= {label for item_labels in found for label in item_labels}
        if labels:
            session.store.add_labels(session.id, labels, owner=str(self.authz.current_principal()))

    def _register_documents(self, result: FilterResult[Any], kept: list[EntityUID],
                            groups: ResourceGroups) -> None:
        """Register the text of each item let through as a source of the session (with provenance)."""
        session = bound_session.get()
        config = self.authz.session_config.provenance if session is not None else None
        if session is None or config is None:
            return
        documents = list(zip(result.allowed, kept, strict=True))
        self.authz._sessions.register_documents(session, documents, groups.entities)


def _kept_resources(result: FilterResult[Any]) -> list[EntityUID]:
    """The resource of each item in ``result.allowed``, in order.

    ``allowed`` holds the first permitted items (a ``limit`` cuts the rest), so
    its resources are those of the first ``len(allowed)`` admitted decisions.
    """
    admitted = [uid for uid, decision in zip(result.resources, result.decisions, strict=True)
                if uid is not None and decision.admits]
    return admitted[: len(result.allowed)]


def _page_entities(page: Sequence[Request], overlay: Mapping[EntityUID, list[Entity]]) -> list[Entity]:
    """The overlay entities one page needs (its principal's, its resources'): linear in the page."""
    if not overlay:
        return []
    resources = page.resources if isinstance(page, SharedRequests) else [request.resource for request in page]
    wanted = dict.fromkeys([page[0].principal, *resources])
    return [entity for uid in wanted for entity in overlay.get(uid, ())]


def _result(items: Sequence[T], groups: ResourceGroups, decisions: list[Decision],
            limit: int | None = None) -> FilterResult[T]:
    """One decision per item; the first ``limit`` permitted items kept (all without a limit)."""
    if len(groups.uids) == len(items) == len(decisions):
        per_item = decisions  # a resource per item, in the items' order: the decisions line up
    else:
        by_uid = dict(zip(groups.uids, decisions, strict=True))
        per_item = []
        for index, uid in enumerate(groups.item_uids):
            decision = by_uid.get(uid) if uid is not None else None
            per_item.append(decision if decision is not None
                            else Decision.deny(groups.errors.get(index, "no decision")))
    allowed: list[T] = []
    withheld = 0
    for item, decision in zip(items, per_item, strict=True):
        if not decision.admits:
            continue
        if limit is not None and len(allowed) >= limit:
            withheld += 1
        else:
            allowed.append(item)
    return FilterResult(
        allowed=allowed,
        denied=len(items) - len(allowed) - withheld,
        decisions=tuple(per_item),
        unresolved=len(groups.errors),
        resources=tuple(groups.item_uids),
        withheld=withheld,
    )
