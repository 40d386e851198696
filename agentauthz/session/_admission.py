"""The Authorizer's session part: binding a session, its facts in each request, admitting each call.

:class:`SessionAdmission` is created by the Authorizer on first use (an
application without sessions never imports this wing) and does what
:meth:`Authorizer.session`, ``context.session`` and :meth:`Authorizer.begin_tool_call`
need of the bound session:

* binding: a session id or :class:`Session` for a block, refusing a second one;
* facts: the bound session's facts loaded for a request's principal (another
  end user's session is refused with IdentityError), cut to the shape the
  request's action declares, checked against what the configuration fills;
* admission: a call is decided on the session's facts and admitted with a
  compare-and-swap on the session's version; when the session changed under
  it, it is decided again (with a growing random pause), and denied after
  ``SessionConfig.max_attempts``. A store that fails before the tool runs
  denies the call. Each decision keeps exactly one audit event: events are
  held until the admission's outcome is known.
* approvals: a call denied only by approvable forbids, which an approval would
  let run, is held for a person's approval (:mod:`agentauthz.session._approvals`);
  admitting a call decided on a single-use approval uses it up.

It makes no engine call itself: :meth:`SessionAdmission.begin` is a plan
(:mod:`agentauthz._plans`) that ``Authorizer._run`` or ``Authorizer._arun`` drives.
"""

from __future__ import annotations

import dataclasses
import random
import uuid
from collections.abc import Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from agentauthz._errors import ConfigurationError, IdentityError, InvalidValueError
from agentauthz._identity import bound_identity, bound_session
from agentauthz._model import Decision, Entity, EntityUID, Request
from agentauthz._plans import Ask, Held, Plan, Refused
from agentauthz.policy._store import PolicySnapshot, PolicyStore, redact, truncate
from agentauthz.session._approvals import ApprovalRequest, approval_probe
from agentauthz.session._facts import (
    ProducedFacts,
    SessionSchema,
    action_name,
    attributes_read,
    fixed_snapshot,
    provenance_problems,
)
from agentauthz.session._provenance import RETRIEVED, ProvenanceStore, argument_provenance, source_keys
from agentauthz.session._session import (
    FULL_SHAPE,
    Approval,
    Session,
    SessionFacts,
    SessionShape,
    ToolCall,
    approval_covers,
    bind_session,
    call_key,
    call_record,
    covering_approval,
    labels_of,
    session_record,
    summed_value,
)
from agentauthz.session._stores import FOREIGN_SESSION, foreign_session

if TYPE_CHECKING:
    from agentauthz._authorizer import Authorizer
    from agentauthz.tools._spec import ToolSpec

__all__ = ["STORE_FAILED", "CallPlan", "SessionAdmission", "store_failure"]

BUSY = "the session kept changing while the call was decided; try again"
REPEATED = "a call with this id already completed in this session: it does not run again"
IN_FLIGHT = "a call with this id is already running in this session: it does not run twice"

CallPlan = tuple[EntityUID, dict[str, Any], frozenset[str]]
"""A call's action uid, the values of its summed arguments, and the labels it reads."""


STORE_FAILED = "session store failed"
"""How the error of a decision denied because the session store failed begins (metrics count them)."""


def store_failure(exc: BaseException) -> str:
    """The error a decision carries when the session store failed (no values, truncated)."""
    return f"{STORE_FAILED}: {type(exc).__name__}: {truncate(redact(str(exc)))}"


class SessionAdmission:
    """What an Authorizer does with the bound session (see the module docstring).

    Args:
        authz: the Authorizer it serves (its engine, tools, configuration and audit).
    """

    def __init__(self, authz: Authorizer) -> None:
        self.authz = authz
        self._schema_cache: SessionSchema | None = None
        self._provenance_checked: object = None
        self._provenance_reads: tuple[PolicySnapshot, frozenset[str] | None] | None = None

    # -- binding -----------------------------------------------------------------------

    @contextmanager
    def open(self, session: str | Session) -> Iterator[Session]:
        """Bind a session for the block (:meth:`Authorizer.session`)."""
        authz = self.authz
        if isinstance(session, Session):
            bound = session
        elif isinstance(session, str):
            identity = bound_identity.get()  # the handle acts for the end user bound now, if one is
            bound = Session(session, authz.session_store, authz.session_config,
                            owner=identity.uid if identity is not None else None,
                            on_refusal=authz._session_refused)
        else:
            raise ConfigurationError(f"a session is an id string or a Session, not {type(session).__name__}")
        with bind_session(bound):
            yield bound

    @contextmanager
    def bound_to(self, session: str | Session | None, source: str) -> Iterator[Session | None]:
        """Bind a session an integration received, for the block (:meth:`Authorizer.session_bound_to`)."""
        current = bound_session.get()
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
        with self.open(session) as bound:
            yield bound

    # -- facts -------------------------------------------------------------------------

    def schema(self) -> SessionSchema:
        """The session shapes and fact reads of the engine's current store version."""
        authz = self.authz
        store = getattr(authz.engine, "store", None)
        snapshot = store.snapshot if isinstance(store, PolicyStore) else None
        key = snapshot.fingerprint if snapshot is not None else None
        cached = self._schema_cache
        if cached is None or cached.key != key:
            schema, source = authz.session_config.schema, "SessionConfig.schema"
            if schema is None and snapshot is not None:
                schema, source = snapshot.schema_text, snapshot.schema_source
            cached = SessionSchema(key, schema, source, snapshot.policies if snapshot is not None else ())
            self._schema_cache = cached
        return cached

    def produced_facts(self) -> ProducedFacts:
        """The facts the registered tools and the configuration fill."""
        return ProducedFacts.of(self.authz.tools.values(), self.authz.session_config.sums)

    def check_configuration(self) -> None:
        """Refuse, as the Authorizer is built, a session fact read that no configuration fills.

        Totals are left unchecked: the tools summing arguments register later.

        Raises:
            ConfigurationError: naming each such fact.
        """
        self.schema().check(ProducedFacts())

    def check_provenance(self) -> None:
        """Refuse policies that read ``context.provenance`` no request would carry (once per store version).

        Raises:
            ConfigurationError: naming each policy and what would fill it.
        """
        store = getattr(self.authz.engine, "store", None)
        if not isinstance(store, PolicyStore):
            return
        snapshot = store.snapshot
        if snapshot.fingerprint == self._provenance_checked:
            return
        config = self.authz.session_config.provenance
        problems = provenance_problems(snapshot.policies, config.tools if config is not None else None)
        if problems:
            raise ConfigurationError("policies read context.provenance that no request carries (a forbid "
                                     "would never apply): " + "; ".join(problems))
        self._provenance_checked = snapshot.fingerprint

    def shape(self, action: EntityUID) -> SessionShape | None:
        """The action's ``context.session`` shape, once every fact read is known to be filled."""
        known = self.schema()
        known.check(self.produced_facts())
        return known.shape(action)

    def facts(self, session: Session, principal: EntityUID, *,
              single_use: bool = False) -> tuple[SessionFacts, int, float]:
        """The session's facts, version and the time, for ``principal``.

        ``single_use``: the facts decide a call the session admits, so
        single-use approvals count (admitting the call uses one up).

        Raises:
            IdentityError: the session belongs to another end user.
        """
        config = self.authz.session_config
        now = config.clock()
        since = now - config.window.total_seconds()
        snapshot = session.store.load(session.id, since=since, history=config.history)
        if not session.belongs_to(snapshot, principal):
            raise foreign_session(session.id)
        facts = SessionFacts.of(snapshot, history=config.history, since=since, now=now,
                                single_use=single_use)
        return facts, snapshot.version, now

    def loaded(self, session: Session, requests: list[Request], *,
               single_use: bool = False) -> tuple[SessionFacts, int, float]:
        """The session's facts for these requests (one principal), or their audited refusal.

        Raises:
            IdentityError: the session belongs to another end user.
            Refused: the store failed: the requests are denied.
        """
        try:
            return self.facts(session, requests[0].principal, single_use=single_use)
        except IdentityError as exc:
            exc.decision = self.authz._deny_unasked(requests, FOREIGN_SESSION)[0]
            raise
        except Exception as exc:  # a failing store denies, never decides on missing facts
            raise Refused(self.authz._deny_unasked(requests, store_failure(exc))) from exc

    def record(self, shape: SessionShape, facts: SessionFacts, principal: EntityUID,
               action: EntityUID, resource: EntityUID, context: Mapping[str, Any]) -> dict[str, Any]:
        """The ``context.session`` record of one request."""
        authz = self.authz
        approved = any(approval_covers(a, principal, action, resource, context) for a in facts.approvals)
        if shape is not FULL_SHAPE:
            return session_record(facts, shape, approved=approved)
        actions = {action_name(spec.action) for spec in authz.tools.values()} | {action.id}
        kinds: dict[str, dict[str, str]] = {}
        for spec in authz.tools.values():
            for name in spec.sums:
                kind = spec.input_type["attributes"].get(name, {})
                kinds.setdefault(action_name(spec.action), {})[name] = (
                    "decimal" if kind.get("name") == "decimal" else "Long")
        for name, arguments in authz.session_config.sums.items():
            for argument in arguments:
                kinds.setdefault(action_name(name), {}).setdefault(argument, "Long")
        return session_record(facts, shape, approved=approved, actions=actions, sum_kinds=kinds)

    def add_to_context(self, session: Session | None, context: dict[str, Any], principal: EntityUID,
                       action: EntityUID, resource: EntityUID, facts: SessionFacts | None) -> None:
        """Put the bound session's record, and the provenance of a tracked tool's arguments, in a context.

        ``context.session`` goes in when the action declares one;
        ``context.provenance`` and ``context.provenance_all`` when
        ``SessionConfig.provenance`` tracks the action (with no session bound
        every argument has no label: nothing was registered).

        Raises:
            ConfigurationError: the context already sets ``session`` or a
                provenance attribute, or the schema declares no
                ``context.provenance`` for a tracked action.
            IdentityError: the session belongs to another end user.
            Refused: the store failed (the request's refusal is audited).
        """
        if session is not None:
            if "session" in context:
                raise ConfigurationError(
                    "context['session'] comes from the bound session: do not set it as well")
            shape = self.shape(action)
            if shape is not None:
                if facts is None:
                    facts = self.loaded(session, [Request(principal, action, resource, dict(context))])[0]
                context["session"] = self.record(shape, facts, principal, action, resource, context)
        if self.authz.session_config.provenance is not None:
            self._add_provenance(session, context, principal, action, resource, facts)

    def _add_provenance(self, session: Session | None, context: dict[str, Any], principal: EntityUID,
                        action: EntityUID, resource: EntityUID, facts: SessionFacts | None) -> None:
        config = self.authz.session_config.provenance
        assert config is not None
        self.check_provenance()
        for name in ("provenance", "provenance_all"):
            if name in context:
                raise ConfigurationError(
                    f"context[{name!r}] comes from the session's provenance: do not set it")
        if not config.tracks(action.id):
            return
        shapes = self.schema().shapes
        names: frozenset[str] | None = None
        if shapes is not None:
            names = shapes.provenance(action)
            if names is None and action.id not in config.tools:
                return  # tracked by "*": an action whose schema declares no provenance gets none
            if names is None:
                raise ConfigurationError(
                    f"Provenance.tools tracks {action} but the schema declares no context.provenance "
                    "for it: regenerate the schema (agentauthz schema generate) with the same configuration")
        arguments = context.get("input")
        arguments = arguments if isinstance(arguments, Mapping) else {}

        def bare() -> list[Request]:  # built only to audit a refusal: converting a context costs
            return [Request(principal, action, resource, dict(context))]

        if session is None:
            def lookup(keys: Collection[str]) -> Mapping[str, Collection[str]]:
                return {}
        else:
            if facts is None:
                self.loaded(session, bare())  # the session must be this end user's before it lends labels
            found = getattr(session.store, "provenance", None)  # not isinstance: a Protocol check is slow
            if not callable(found):
                raise ConfigurationError(f"{type(session.store).__name__} keeps no provenance")

            def lookup(keys: Collection[str]) -> Mapping[str, Collection[str]]:
                return found(session.id, keys)  # type: ignore[no-any-return]
        try:
            union, every = argument_provenance(arguments, lookup, config.extractors, names)
        except Exception as exc:  # a failing store denies, never decides on missing labels
            raise Refused(self.authz._deny_unasked(bare(), store_failure(exc))) from exc
        context["provenance"] = union  # whole: the audit event carries every argument's labels
        context["provenance_all"] = every if shapes is not None else self._read_only(every)

    def _read_only(self, every: dict[str, list[str]]) -> dict[str, list[str]]:
        """``context.provenance_all`` cut to the arguments the deciding policies read (no schema to satisfy).

        Whole when they are not known for sure (a store that reloads, another
        engine, the record used whole). Left-out arguments are those no policy
        names, so the decision is the same.
        """
        snapshot = fixed_snapshot(self.authz.engine)
        if snapshot is None:
            return every
        known = self._provenance_reads
        if known is None or known[0] is not snapshot:
            read = attributes_read(snapshot.policies, ("provenance_all",))
            known = self._provenance_reads = (snapshot, read)
        read = known[1]
        return every if read is None else {name: labels for name, labels in every.items() if name in read}

    def labels(self, resources: Iterable[EntityUID], given: Mapping[EntityUID, Entity]) -> set[str]:
        """The labels (``SessionConfig.labels``) of these resources, as given or stored."""
        wanted = list(dict.fromkeys(resources))
        labels: set[str] = set()
        for entity in self.authz._stored_entities(wanted, given).values():
            labels |= labels_of(entity, self.authz.session_config.labels)
        return labels

    # -- approvals ---------------------------------------------------------------------

    def grant(self, request: ApprovalRequest, granted_by: str | None) -> Approval:
        """Record a person's grant of a held call: a single-use approval, audited.

        Raises:
            ConfigurationError: ``request`` is no ApprovalRequest, or it expired.
            IdentityError: its session belongs to another end user.
        """
        authz = self.authz
        if not isinstance(request, ApprovalRequest):
            raise ConfigurationError(
                f"approve takes the ApprovalRequest of a held call, not {type(request).__name__}")
        left = request.expires_at - authz.session_config.clock()
        if left <= 0:
            raise ConfigurationError(
                f"approval request {request.id} expired: make the call again to ask anew")
        session = Session(request.session_id, authz.session_store, authz.session_config,
                          owner=request.principal, on_refusal=authz._session_refused)
        approval = session.approve(request.action, request.resource, arguments=request.arguments,
                                   granted_by=granted_by, expires_in=timedelta(seconds=left), once=True)
        self._audit_answer(request, "granted", granted_by)
        return approval

    def refuse(self, request: ApprovalRequest, refused_by: str | None = None) -> None:
        """Record that a person (or the approver) did not grant a held call: it stays denied."""
        self._audit_answer(request, "refused", refused_by)

    def _audit_answer(self, request: ApprovalRequest, answer: str, by: str | None) -> None:
        extra = {"approval": answer, "approval_request": request.id,
                 "approved_action": str(request.action), "approved_resource": str(request.resource)}
        if by is not None:
            extra["answered_by"] = by
        self.authz._audit_session_operation(request.principal, "approve", request.session_id,
                                            Decision(allowed=answer == "granted"), extra)
    def register_documents(self, session: Session, documents: Iterable[tuple[Any, EntityUID]],
                           given: Mapping[EntityUID, Entity]) -> None:
        """Register retrieved items let through as sources: label ``retrieved`` and their resource's labels.

        Raises:
            IdentityError: the session belongs to another end user.
        """
        config = self.authz.session_config.provenance
        store = session.store
        if config is None or not isinstance(store, ProvenanceStore):
            return
        keys: dict[str, set[str]] = {}
        for item, uid in documents:
            text = config.text_of(item)
            if not text:
                continue
            labels = {RETRIEVED, *self.labels([uid], given)}
            for key in source_keys(text, config.extractors):
                keys.setdefault(key, set()).update(labels)
        if keys:
            store.add_provenance(session.id, keys, owner=str(self.authz.current_principal()))

    # -- admitting a call --------------------------------------------------------------

    def begin(self, inputs: Mapping[str, Any], arguments: Mapping[str, Any] | None,
              spec: ToolSpec | None, call_id: str | None) -> Plan[ToolCall]:
        """Decide a call (``inputs``: action, resource, context) and admit it in the bound session.

        Without a session the call is only decided. ``call_id`` is the
        caller's id for it (a label); the call's key is agentauthz's own.
        """
        authz = self.authz
        session = bound_session.get()
        if session is None:
            decision = yield from authz._decision(None, inputs["action"], inputs["resource"],
                                                  inputs["context"])
            return ToolCall(decision, external_id=call_id)
        call = yield from self._admitted(session, call_key(), inputs, arguments, spec, call_id)
        call.action = authz.engine.resolve_action(inputs["action"]).id
        call.result_label = spec.provenance if spec is not None else None
        return call

    def _admitted(self, session: Session, key: str, inputs: Mapping[str, Any],
                  arguments: Mapping[str, Any] | None, spec: ToolSpec | None,
                  call_id: str | None) -> Plan[ToolCall]:
        """The call decided on the session's facts and admitted there (retried while it changes)."""
        authz = self.authz
        plan = self.call_plan(inputs, arguments, spec)
        held: Held = []
        for attempt in range(authz.session_config.max_attempts):
            held.clear()
            try:
                request, extra, version, now, facts = self._attempt(session, inputs, plan[0])
            except Refused as refused:
                return ToolCall(refused.decisions[0], call_id=key, external_id=call_id)
            decision = (yield Ask([request], extra, held))[0]
            decided = ToolCall(decision, call_id=key, session=session, external_id=call_id)
            if not decision.admits:
                decided.approval = yield from self._held_for_approval(session, request, extra, decision,
                                                                      held, now)
            used = _approval_used(request, facts)
            outcome = self._admission(session, decided, request, plan, version, now, held, used)
            if outcome is not None:
                return outcome
            yield random.uniform(0, 0.0005 * min(attempt, 20)) if attempt else 0.0
        return ToolCall(authz._deny_held(held, BUSY), call_id=key, external_id=call_id)

    def call_plan(self, inputs: Mapping[str, Any], arguments: Mapping[str, Any] | None,
                  spec: ToolSpec | None) -> CallPlan:
        """The call's action uid, summed argument values and the labels it reads."""
        config = self.authz.session_config
        action = self.authz.engine.resolve_action(inputs["action"])
        names = list(spec.sums) if spec is not None else []
        # What any registered tool or the configuration sums for this action, whatever the
        # path of this call: a total that some calls of its action skip would undercount.
        names.extend(sorted((self.produced_facts().sums or {}).get(action.id, ())))
        sums: dict[str, Any] = {}
        for name in dict.fromkeys(names):
            try:
                value = summed_value((arguments or {}).get(name), f"argument {name!r} of {action.id!r}")
            except InvalidValueError as exc:
                raise ConfigurationError(f"summed arguments (SessionConfig.sums): {exc}") from None
            if value is not None:
                sums[name] = value
        labels: frozenset[str] = frozenset()
        if action.id in config.reads or str(action) in config.reads:
            resource = inputs["resource"]
            given = {resource.uid: resource} if isinstance(resource, Entity) else {}
            uid = resource.uid if isinstance(resource, Entity) else resource
            labels = frozenset(self.labels([uid], given))
        return action, sums, labels

    def _attempt(self, session: Session, inputs: Mapping[str, Any], action: EntityUID,
                 ) -> tuple[Request, list[Entity], int, float, SessionFacts]:
        """The call's request on the session's current facts, with their version, the time and the facts."""
        authz = self.authz
        principal, _ = authz._principal(None, action, inputs["resource"])
        resource = inputs["resource"]
        bare = Request(principal, action, resource.uid if isinstance(resource, Entity) else resource,
                       dict(inputs["context"] or {}))
        # A store that cannot use an approval up atomically never counts a single-use one.
        single_use = getattr(session.store, "consumes_approvals", False) is True
        facts, version, now = self.loaded(session, [bare], single_use=single_use)
        request, extra = authz._request(None, action, resource, inputs["context"], facts=facts)
        return request, extra, version, now, facts

    def _held_for_approval(self, session: Session, request: Request, extra: list[Entity],
                           denial: Decision, held: Held, now: float) -> Plan[ApprovalRequest | None]:
        """The approval request of a denied call an approval would let run; None for a plain denial.

        The probe (the same request, approved) is no decision of the call: its
        audit event is dropped. The held call's event says it awaits approval.
        """
        probe = approval_probe(request, denial, self.authz._approvable_ids())
        if probe is None:
            return None
        if not (yield Ask([probe], extra, []))[0].allowed:
            return None  # something else denies it too: asking a person would change nothing
        expires_in = self.authz.session_config.approvals.expires_in
        pending = ApprovalRequest(
            id=uuid.uuid4().hex, session_id=session.id, principal=request.principal,
            action=self.authz.engine.resolve_action(request.action),
            resource=request.resource, arguments=dict(request.context.get("input") or {}),
            why=denial.reasons, expires_at=now + expires_in.total_seconds(), decision_id=denial.id)
        _mark(held, approval="required", approval_request=pending.id)
        return pending

    def _admission(self, session: Session, call: ToolCall, request: Request, plan: CallPlan,
                   version: int, now: float, held: Held, used: Approval | None) -> ToolCall | None:
        """The call's outcome, or None when the session changed and it must be decided again.

        ``used``: the approval the call was decided on; a single-use one is
        used up by the store in the transaction that admits the call.
        """
        authz = self.authz
        if not call.admits:
            authz._release_held(held)
            return call
        try:
            record = call_record(call.call_id, plan[0], request.resource, now, plan[1], plan[2],
                                 external_id=call.external_id, approval=used)
            admission = session.store.admit(session.id, record, owner=str(request.principal),
                                            version=version)
        except IdentityError as exc:
            exc.decision = authz._deny_held(held, FOREIGN_SESSION)
            raise
        except Exception as exc:  # the store failed before the tool ran: the call does not run
            return _unreserved(call, authz._deny_held(held, store_failure(exc)))
        if admission == "changed":
            return None
        if admission != "admitted":
            why = REPEATED if admission == "completed" else IN_FLIGHT
            return _unreserved(call, authz._deny_held(held, why))
        if used is not None:
            _mark(held, approval="used")
        authz._release_held(held)
        admitted = ToolCall(call.decision, call_id=call.call_id, session=session, reserved=True,
                            external_id=call.external_id)
        admitted.used_approval = used
        return admitted


def _approval_used(request: Request, facts: SessionFacts) -> Approval | None:
    """The approval a request was decided on (``context.session.approved``), if it was."""
    session = request.context.get("session")
    if not isinstance(session, Mapping) or session.get("approved") is not True:
        return None
    return covering_approval(facts.approvals, request.principal, request.action, request.resource,
                             request.context)


def _mark(held: Held, **extra: str) -> None:
    """Add to the held events' ``extra`` (what the call's approval did)."""
    held[:] = [(sinks, dataclasses.replace(event, extra={**event.extra, **extra})) for sinks, event in held]


def _unreserved(call: ToolCall, decision: Decision) -> ToolCall:
    return ToolCall(decision, call_id=call.call_id, external_id=call.external_id)
