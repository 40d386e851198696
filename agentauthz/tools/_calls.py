"""The Authorizer's tool part: guarded tools, their calls, the tools a user may see, refusals.

:class:`ToolCalls` is created by the Authorizer on first use (``@authz.guard``,
``begin_tool_call``, ``permitted_tools``...) and holds what those need:

* one path for every call of a guarded tool: the end user checked first, the
  arguments validated against the tool's spec, and the request built from the
  very values the tool then runs with (an invalid call is an audited refusal);
* the call decided and, in a bound session, admitted there
  (:class:`~agentauthz.session._admission.SessionAdmission`);
* the refusal a model reads (generic, with the decision's opaque id);
* the tools a user could call with some arguments (partial evaluation), and
  the check of a store against the registered tools (``validate_tools``).

Its calls are plans (:mod:`agentauthz._plans`): a method and its async twin
drive the same one.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from agentauthz._audit import Operation, annotating
from agentauthz._errors import (
    AccessDenied,
    ApprovalRequired,
    ConfigurationError,
    GuardrailUnavailable,
    InvalidArguments,
    InvalidValueError,
    PolicyError,
)
from agentauthz._identity import bound_identity, bound_session
from agentauthz._model import Decision, Entity, EntityUID
from agentauthz._plans import Plan
from agentauthz.engines.local import LocalEngine, deciding_with
from agentauthz.guardrails._guardrail import INPUT_FACT_TYPE, Assessment
from agentauthz.guardrails._reads import InputFactReads
from agentauthz.guardrails._screening import record_labels
from agentauthz.policy._store import PolicySnapshot, PolicyStore
from agentauthz.session._approvals import ApprovalRequest
from agentauthz.session._provenance import ResultLabel
from agentauthz.session._session import ToolCall
from agentauthz.tools._settings import ToolSettings
from agentauthz.tools._spec import (
    OnDeny,
    RefusalKind,
    ToolSpec,
    bind_arguments,
    refusal_message,
    spec_of,
    wraps_tool,
)

if TYPE_CHECKING:
    from agentauthz._authorizer import Authorizer

__all__ = ["ToolCalls"]

F = TypeVar("F", bound=Callable[..., Any])
R = TypeVar("R")

_logger = logging.getLogger("agentauthz")


class ToolCalls:
    """What an Authorizer does for tools (see the module docstring).

    Args:
        authz: the Authorizer it serves (its registered tools live in ``authz.tools``).
    """

    def __init__(self, authz: Authorizer) -> None:
        self.authz = authz
        self._fact_reads: InputFactReads | None = None

    # -- guarding ----------------------------------------------------------------------

    def guard(self, action: str | EntityUID | Callable[..., Any] | None, *, settings: ToolSettings | None,
              name: str | None, on_deny: OnDeny | None, provenance: ResultLabel | None = None,
              **options: Any) -> Any:
        """What :meth:`Authorizer.guard` returns: the decorator, or the guarded function (bare ``@guard``).

        ``options`` (and ``provenance``) are the ToolSettings keywords given one by one
        (``resource=``...): they and ``settings=`` are one way of saying the same, so not both.
        """
        if callable(action) and not isinstance(action, (str, EntityUID)):
            return self.guard(None, settings=settings, name=name, on_deny=on_deny, provenance=provenance,
                              **options)(action)
        given = {key: value for key, value in {**options, "provenance": provenance}.items()
                 if value not in (None, ())}
        if action is not None:
            given["action"] = action
        if settings is None:
            settings = ToolSettings(**given)
        elif not isinstance(settings, ToolSettings):
            raise ConfigurationError("guard(settings=) takes an agentauthz.ToolSettings")
        elif given:
            raise ConfigurationError(f"guard takes settings= or {'=, '.join(sorted(given))}=, not both")
        fallback = ToolSettings(on_deny=on_deny).on_deny_or("raise")  # checked now, not at decoration
        authz = self.authz
        chosen = settings

        def decorate(fn: F) -> F:
            spec = chosen.spec_from_function(fn, name=name, on_deny=fallback)
            authz.tools[spec.name] = spec
            plan = _GuardPlan.of(fn, spec)
            if inspect.iscoroutinefunction(fn):

                async def guarded_async(*args: Any, **kwargs: Any) -> Any:
                    with authz._operation(plan.operation):
                        prepared = self._prepare(plan, args, kwargs, assess=False)
                        if isinstance(prepared, str):
                            return prepared
                        arguments, validated, inputs = prepared
                        await self._aassess_inputs(spec, inputs)
                        call = await self.aapproved(await self._adecided(inputs, arguments, spec),
                                                    lambda: self._adecided(inputs, arguments, spec))
                        call.arguments = validated
                    if not call.admits:
                        return self._refuse(spec, call)
                    with call:
                        result = await fn(**arguments)
                    call.record_result(result)  # before the result reaches the model
                    return await self.ascreened(spec, result)

                return wraps_tool(fn, guarded_async, spec)

            def guarded(*args: Any, **kwargs: Any) -> Any:
                with authz._operation(plan.operation):
                    prepared = self._prepare(plan, args, kwargs)
                    if isinstance(prepared, str):
                        return prepared
                    arguments, validated, inputs = prepared
                    call = self.approved(self._decided(inputs, arguments, spec),
                                         lambda: self._decided(inputs, arguments, spec))
                    call.arguments = validated
                if not call.admits:
                    return self._refuse(spec, call)
                with call:
                    result = fn(**arguments)
                call.record_result(result)  # before the result reaches the model
                return self.screened(spec, result)

            return wraps_tool(fn, guarded, spec)

        return decorate

    def _prepare(self, plan: _GuardPlan, args: tuple[Any, ...], kwargs: dict[str, Any], *,
                 assess: bool = True) -> str | tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        """What a guarded call runs with, the validated arguments and its request inputs; or its refusal.

        The caller of a guarded function is the application: it passes the
        injected arguments (``Annotated[T, az.Injected]``), which the function
        gets as given and the policy never sees (they are not among the validated ones).
        ``assess=False`` leaves the guardrail's assessment to the caller (:meth:`_aassess_inputs`).

        Raises:
            ConfigurationError: an injected argument without a default was not
                passed (before anything is decided: the application's mistake).
        """
        spec = plan.spec
        supplied: dict[str, Any] = {}

        def chosen() -> dict[str, Any]:  # bound once the end user is known to be bound
            bound = bind_arguments(plan.parameters, args, kwargs, spec.name)
            if spec.injected:
                supplied.update((name, bound.pop(name)) for name in spec.injected if name in bound)
                missing = [name for name in plan.needed if name not in supplied]
                if missing:
                    raise ConfigurationError(
                        f"tool {spec.name!r} needs {missing[0]!r}, which the application supplies "
                        "(it is az.Injected): pass it when calling the tool")
            return bound

        try:
            # Keywords alone, nothing injected: nothing to bind (the common call of a tool).
            validated, inputs = self.checked(spec, kwargs if not args and not spec.injected else chosen,
                                             assess=assess)
        except InvalidArguments as exc:
            if spec.on_deny == "message":
                return self.refusal(spec.name, exc.decision, kind="invalid")
            raise
        return ({**validated, **supplied} if supplied else validated), validated, inputs

    def _decided(self, inputs: dict[str, Any], arguments: Mapping[str, Any], spec: ToolSpec) -> ToolCall:
        """A guarded call decided and, in a bound session, admitted (:meth:`_begin`).

        Outside a session that is one decision, made as :meth:`Authorizer.authorize`
        makes it (the same request, context, checks and audit event), without a plan's steps.
        """
        authz = self.authz
        if bound_session.get() is not None:
            return authz._run(self._begin(inputs, arguments, spec, None))
        with self._deciding(inputs):
            decision = authz.authorize(action=inputs["action"], resource=inputs["resource"],
                                       context=inputs["context"])
        return ToolCall(decision)

    async def _adecided(self, inputs: dict[str, Any], arguments: Mapping[str, Any],
                        spec: ToolSpec) -> ToolCall:
        """Async twin of :meth:`_decided`."""
        authz = self.authz
        if bound_session.get() is not None:
            return await authz._arun(self._begin(inputs, arguments, spec, None))
        with self._deciding(inputs):
            decision = await authz.aauthorize(action=inputs["action"], resource=inputs["resource"],
                                              context=inputs["context"])
        return ToolCall(decision)

    def _begin(self, inputs: dict[str, Any], arguments: Mapping[str, Any] | None, spec: ToolSpec,
               call_id: str | None) -> Plan[ToolCall]:
        """Decide and admit a call; its guardrail findings (no text) go in its audit event."""
        with self._deciding(inputs):
            return (yield from self.authz._sessions.begin(inputs, arguments, spec, call_id))

    def screened(self, spec: ToolSpec, result: R) -> R:
        """The result of a call, once its guardrail findings are recorded in the bound session.

        The labels (``guardrail:prompt_attack:high``) are recorded before the
        result is returned: if they cannot be, the result is not returned.

        Raises:
            GuardrailUnavailable: the detector failed and ``on_error="raise"``.
        """
        guardrail = spec.guardrail
        if guardrail is None or not guardrail.outputs:
            return result
        session = bound_session.get()
        if session is not None:
            record_labels(session, guardrail.assess_value(result, "OUTPUT").labels(), "a tool result")
        return result

    async def ascreened(self, spec: ToolSpec, result: R) -> R:
        """Async twin of :meth:`screened` (the detector's ``adetect``)."""
        guardrail = spec.guardrail
        session = bound_session.get()
        if guardrail is not None and guardrail.outputs and session is not None:
            record_labels(session, (await guardrail.aassess_value(result, "OUTPUT")).labels(),
                          "a tool result")
        return result

    def _refuse(self, spec: ToolSpec, call: ToolCall) -> str:
        if spec.on_deny == "message":
            return self.refusal(spec.name, call.decision, kind="approval" if call.approval else "denied")
        if call.approval is not None:
            raise ApprovalRequired(call.decision, call.approval, subject=f"tool '{spec.name}'")
        raise AccessDenied(call.decision, subject=f"tool '{spec.name}'")

    def refusal(self, tool: str, decision: Decision, *, kind: RefusalKind = "denied") -> str:
        """The refusal a model reads (:meth:`Authorizer.refusal`)."""
        return refusal_message(tool, decision, kind=kind, disclose=self.authz.disclose_reasons)

    # -- approvals ---------------------------------------------------------------------

    def approved(self, call: ToolCall, again: Callable[[], ToolCall]) -> ToolCall:
        """The call, or, when it was held and the configured approver grants it, the call made ``again``.

        The approver answers True to grant, None to leave the call held (the
        request was queued for a person: the call raises ApprovalRequired, or
        reads "awaits approval"); anything else, or a coroutine (an async
        approver serves async calls only), refuses it. An exception it
        raises propagates and the call does not run: that is how LangGraph's
        ``interrupt()`` pauses a graph until a person answers.
        """
        request = call.approval
        if request is None:
            return call
        approver = self.authz.session_config.approvals.approver
        if approver is None:
            return call
        answer = approver(request)
        if inspect.isawaitable(answer):
            getattr(answer, "close", lambda: None)()
            _logger.error("approval request %s: an async approver cannot answer a sync call", request.id)
            answer = False
        return again() if self._record_answer(call, answer) else call

    async def aapproved(self, call: ToolCall, again: Callable[[], Awaitable[ToolCall]]) -> ToolCall:
        """Async twin of :meth:`approved`: the approver may also be a coroutine function."""
        request, approver = call.approval, self.authz.session_config.approvals.approver
        if request is None or approver is None:
            return call
        answer = approver(request)
        if inspect.isawaitable(answer):
            answer = await answer
        return await again() if self._record_answer(call, answer) else call

    def _record_answer(self, call: ToolCall, answer: object) -> bool:
        """Grant (only on ``True``) or refuse the held call, audited; whether it was granted.

        ``None`` leaves it held; a refused call is a plain denial from then on
        (nobody is asked again).
        """
        request: ApprovalRequest | None = call.approval
        if request is None or answer is None:
            return False
        if answer is True:
            self.authz.approve(request, granted_by="approver")
            return True
        self.authz.decline(request, declined_by="approver")
        call.approval = None
        return False

    # -- calls the caller runs -----------------------------------------------------------

    def begin_tool_call(self, tool: Any, arguments: Mapping[str, Any], call_id: str | None,
                        record: bool) -> Plan[ToolCall]:
        """Decide a guarded tool's call; with ``record``, admit it (:meth:`Authorizer.begin_tool_call`)."""
        authz = self.authz
        spec = self.spec(tool)
        # A plan runs in its caller's context from start to close: the scope spans its steps.
        with authz._operation(Operation("tool_call", spec.name)):
            validated, inputs = self.checked(spec, arguments)
            if record:
                call = yield from self._begin(inputs, validated, spec, call_id)
            else:
                with self._deciding(inputs):
                    decision = yield from authz._decision(None, inputs["action"], inputs["resource"],
                                                          inputs["context"])
                call = ToolCall(decision, external_id=call_id)
        call.arguments = validated
        return call

    def begin_call(self, action: str | EntityUID, resource: EntityUID | Entity,
                   context: Mapping[str, Any] | None, call_id: str | None) -> Plan[ToolCall]:
        """Decide and admit a call that is no guarded tool (:meth:`Authorizer.begin_call`)."""
        request_context = dict(context or {})
        given = request_context.get("input")
        inputs = {"action": action, "resource": resource, "context": request_context}
        arguments = given if isinstance(given, Mapping) else None
        name = action.id if isinstance(action, EntityUID) else action
        with self.authz._operation(Operation("tool_call", name)):
            return (yield from self.authz._sessions.begin(inputs, arguments, None, call_id))

    def spec(self, tool: Any) -> ToolSpec:
        """The spec of a guarded tool, given as the tool, its ToolSpec or its name.

        Raises:
            ConfigurationError: it is no tool guarded by this Authorizer.
        """
        spec = tool if isinstance(tool, ToolSpec) else spec_of(tool)
        if spec is None and isinstance(tool, str):
            spec = self.authz.tools.get(tool)
        if spec is None:
            raise ConfigurationError(f"{tool!r} is not a tool guarded by this Authorizer")
        return spec

    def checked(self, spec: ToolSpec, arguments: Mapping[str, Any] | Callable[[], Mapping[str, Any]],
                *, assess: bool = True) -> tuple[dict[str, Any], dict[str, Any]]:
        """The validated arguments of one call and the request deciding it (the one path of every call).

        ``context.input`` is built from the very values the tool then runs
        with. Arguments that do not validate, or whose resource or context
        cannot be built, are an audited refusal. ``assess=False``: the
        guardrail's assessment is left to the caller.

        Raises:
            IdentityError: no end user is bound (audited): checked first, so a
                call without one never reads as a mere argument problem.
            InvalidArguments: carrying the audited refusal.
            GuardrailUnavailable: the tool's detector failed and its guardrail
                says ``on_error="raise"`` (audited).
        """
        authz = self.authz
        if bound_identity.get() is None:
            authz.audit_missing_identity(spec.action, EntityUID(authz.tool_entity_type, spec.name))
            authz.current_principal()  # raises IdentityError
        try:
            validated, cedar_input = spec.call_arguments(arguments() if callable(arguments) else arguments)
            return validated, self._request_inputs(spec, validated, cedar_input, assess=assess)
        except InvalidArguments:
            raise
        except GuardrailUnavailable as exc:
            self._guardrail_refusal(spec, exc)
            raise
        except InvalidValueError as exc:
            fixed = spec.resource if isinstance(spec.resource, (EntityUID, Entity)) else None
            refusal = authz.audit_refusal(
                action=spec.action, resource=fixed or EntityUID(authz.tool_entity_type, spec.name),
                reason=str(exc))
            raise InvalidArguments(str(exc), refusal) from None

    def _request_inputs(self, spec: ToolSpec, arguments: dict[str, Any],
                        cedar_input: dict[str, Any], *, assess: bool = True) -> dict[str, Any]:
        context = spec.context_for(arguments)
        context["input"] = cedar_input
        inputs = {
            "action": spec.action,
            "resource": spec.resource_for(arguments, self.authz.tool_entity_type),
            "context": context,
        }
        guardrail = spec.guardrail
        if guardrail is not None and guardrail.inputs:
            if "guardrail" in context:
                raise ConfigurationError(
                    f"the context of tool {spec.name!r} must not set 'guardrail': its guardrail does")
            if assess:
                # What the policy reads is what is assessed: context.input, never an injected argument.
                self._add_guardrail(spec, inputs, guardrail.assess_arguments(context["input"]))
        return inputs

    async def _aassess_inputs(self, spec: ToolSpec, inputs: dict[str, Any]) -> None:
        """The guardrail part of :meth:`_request_inputs` for an async call: ``adetect``, the loop not blocked.

        Raises:
            GuardrailUnavailable: the detector failed and ``on_error="raise"`` (audited).
        """
        guardrail = spec.guardrail
        if guardrail is None or not guardrail.inputs:
            return
        try:
            assessment = await guardrail.aassess_arguments(inputs["context"]["input"])
        except GuardrailUnavailable as exc:
            self._guardrail_refusal(spec, exc)
            raise
        self._add_guardrail(spec, inputs, assessment)

    def _add_guardrail(self, spec: ToolSpec, inputs: dict[str, Any], assessment: Assessment) -> None:
        """``context.guardrail.input`` (the attributes a policy can read) and the findings for the audit.

        A request cut for a store that can reload keeps what it was cut for
        (``inputs["cut_for"]``): :meth:`_deciding` has that version decide it.
        """
        engine = self.authz.engine
        omitted: frozenset[str] = frozenset()
        if type(engine) is LocalEngine:  # only it knows which policies will read the request
            store = engine.store
            snapshot = store.snapshot
            omitted = self._fact_reads_of(snapshot).omitted(spec.action, engine.resolve_action)
            if omitted and store.reloadable:
                inputs["cut_for"] = (store, snapshot, assessment)
        # Converted to Cedar JSON once per assessment: a cached text's fact is not walked per call.
        inputs["context"]["guardrail"] = {"input": assessment.input_record(omitted)}
        inputs["audit"] = {"guardrail": {"input": assessment.audit}}

    def _fact_reads_of(self, snapshot: PolicySnapshot) -> InputFactReads:
        """Which attributes of the fact the policies of ``snapshot`` read (worked out once per version)."""
        reads = self._fact_reads
        if reads is None or reads.snapshot is not snapshot:
            reads = self._fact_reads = InputFactReads(snapshot, INPUT_FACT_TYPE["attributes"])
        return reads

    def _deciding(self, inputs: dict[str, Any]) -> AbstractContextManager[None]:
        """The block deciding ``inputs``: its guardrail findings annotate the audit event and, if its
        fact was cut for a version of a store that can reload, that version decides it.

        A reload since the request was cut (an approval waited for, a plan resumed)
        cuts it again for the version now current, which then decides it: a
        version never decides a request cut for another, whose policies could
        read an attribute the request lacks (and Cedar skips a ``forbid`` that errs).
        """
        cut_for = inputs.get("cut_for")
        if cut_for is None:
            return annotating(inputs.get("audit"))
        store, snapshot, assessment = cut_for
        current = store.snapshot
        if current is not snapshot:
            omitted = self._fact_reads_of(current).omitted(inputs["action"], self.authz.engine.resolve_action)
            inputs["context"]["guardrail"] = {"input": assessment.input_record(omitted)}
            inputs["cut_for"] = (store, current, assessment)
        return _PinnedAndAnnotated(store, current, inputs.get("audit"))

    def _guardrail_refusal(self, spec: ToolSpec, exc: GuardrailUnavailable) -> None:
        """Audit the refusal of a call whose detector failed (``on_error="raise"``)."""
        authz = self.authz
        fixed = spec.resource if isinstance(spec.resource, (EntityUID, Entity)) else None
        authz.audit_refusal(action=spec.action, reason=str(exc),
                            resource=fixed or EntityUID(authz.tool_entity_type, spec.name))

    # -- what the model is offered -----------------------------------------------------

    def permitted(self, tools: Iterable[Any]) -> list[Any]:
        """The tools the bound user could call with some arguments (:meth:`Authorizer.permitted_tools`)."""
        authz = self.authz
        principal = authz.current_principal()
        identity = bound_identity.get()
        extra = [identity.entity] if identity and identity.entity else []
        evaluate = getattr(authz.engine, "may_allow", None)
        kept = []
        for tool in tools:
            spec = (tool if isinstance(tool, ToolSpec) else spec_of(tool)
                    or authz.tools.get(getattr(tool, "name", None) or ""))
            if spec is None:
                continue
            if evaluate is None:
                kept.append(tool)
                continue
            resource = None
            if spec.resource is None:
                resource = EntityUID(authz.tool_entity_type, spec.name)
            elif isinstance(spec.resource, (EntityUID, Entity)):
                resource = spec.resource.uid if isinstance(spec.resource, Entity) else spec.resource
                if isinstance(spec.resource, Entity):
                    extra = [*extra, spec.resource]
            action = authz.engine.resolve_action(spec.action)
            roots = [principal] + ([resource] if resource else [])
            try:
                entities = authz._entities_for_roots(roots, extra)
                if evaluate(principal, action, resource, entities):
                    kept.append(tool)
            except Exception:  # partial evaluation failing hides the tool, never shows more
                continue
        return kept

    def validate(self, *, stub: str | Mapping[str, Any] | None, principal_types: Sequence[str],
                 namespace: str | None, store: PolicyStore | None) -> None:
        """Check the store against the registered tools (:meth:`Authorizer.validate_tools`)."""
        from agentauthz.session._facts import provenance_problems
        from agentauthz.tools._schema import validate_policies_for_tools  # schema generation: on first use

        authz = self.authz
        if store is None:
            store = getattr(authz.engine, "store", None)
        if not isinstance(store, PolicyStore):
            raise ConfigurationError("validate_tools needs the policies: pass store=PolicyStore...")
        config = authz.session_config.provenance
        problems = provenance_problems(store.policies, config.tools if config is not None else None)
        if problems:
            raise PolicyError(problems)
        stub = stub if stub is not None else store.schema_text
        if stub is None:
            raise ConfigurationError("validate_tools needs a schema stub declaring the entity types")
        validate_policies_for_tools(
            store, authz.tools, stub, principal_types=principal_types, namespace=namespace,
            tool_type=authz.tool_entity_type, session_sums=authz.session_config.sums,
            provenance=authz.session_config.provenance.tools if authz.session_config.provenance else (),
            agent_type=authz.agent.entity_type if authz.agent is not None else None,
        )


@dataclass(frozen=True, slots=True)
class _GuardPlan:
    """What every call of one guarded function shares, worked out once at decoration, not per call.

    Attributes:
        spec: the tool's spec.
        parameters: the names positional arguments bind to, in signature order.
        needed: the injected arguments without a default (the caller must pass them).
        operation: the scope of each call's decisions (spans, ``current_operation``).
    """

    spec: ToolSpec
    parameters: tuple[str, ...]
    needed: tuple[str, ...]
    operation: Operation

    @classmethod
    def of(cls, fn: Callable[..., Any], spec: ToolSpec) -> _GuardPlan:
        signature = inspect.signature(fn).parameters.values()
        return cls(spec=spec, parameters=tuple(parameter.name for parameter in signature),
                   needed=tuple(parameter.name for parameter in signature
                                if parameter.name in spec.injected and parameter.default is parameter.empty),
                   operation=Operation("tool_call", spec.name))


class _PinnedAndAnnotated(AbstractContextManager[None]):
    """:func:`~agentauthz.engines.local.deciding_with` and :func:`~agentauthz._audit.annotating` at once."""

    __slots__ = ("_annotated", "_pinned")

    def __init__(self, store: PolicyStore, snapshot: PolicySnapshot,
                 audit: Mapping[str, object] | None) -> None:
        self._pinned = deciding_with(store, snapshot)
        self._annotated = annotating(audit)

    def __enter__(self) -> None:
        self._pinned.__enter__()
        try:
            self._annotated.__enter__()
        except BaseException:
            self._pinned.__exit__(None, None, None)
            raise

    def __exit__(self, *exc_info: object) -> None:
        try:
            self._annotated.__exit__(None, None, None)
        finally:
            self._pinned.__exit__(None, None, None)
