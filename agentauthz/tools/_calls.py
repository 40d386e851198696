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
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, TypeVar

from agentauthz._audit import annotating
from agentauthz._errors import (
    AccessDenied,
    AuthzError,
    ConfigurationError,
    EngineError,
    GuardrailUnavailable,
    InvalidArguments,
    InvalidValueError,
)
from agentauthz._identity import bound_identity, bound_session
from agentauthz._model import Decision, Entity, EntityUID
from agentauthz._plans import Plan
from agentauthz.guardrails._detector import Detector
from agentauthz.guardrails._guardrail import Assessment, Guardrail
from agentauthz.policy._store import PolicyStore
from agentauthz.session._session import Session, ToolCall
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

if TYPE_CHECKING:
    from agentauthz._authorizer import Authorizer

__all__ = ["ToolCalls"]

F = TypeVar("F", bound=Callable[..., Any])
R = TypeVar("R")


class ToolCalls:
    """What an Authorizer does for tools (see the module docstring).

    Args:
        authz: the Authorizer it serves (its registered tools live in ``authz.tools``).
    """

    def __init__(self, authz: Authorizer) -> None:
        self.authz = authz

    # -- guarding ----------------------------------------------------------------------

    def guard(self, action: str | EntityUID | Callable[..., Any] | None, *, resource: ResourceSpec = None,
              resource_types: Iterable[str] = (), context: ContextSpec = None, on_deny: OnDeny = "raise",
              name: str | None = None, sum_arguments: Iterable[str] = (),
              guardrail: Guardrail | Detector | None = None) -> Any:
        """What :meth:`Authorizer.guard` returns: the decorator, or the guarded function (bare ``@guard``)."""
        if callable(action) and not isinstance(action, (str, EntityUID)):
            return self.guard(None)(action)
        if on_deny not in ("raise", "message"):
            raise ConfigurationError(f"on_deny must be 'raise' or 'message', not {on_deny!r}")
        authz = self.authz
        chosen_action = action
        screen = Guardrail.of(guardrail)

        def decorate(fn: F) -> F:
            spec = build_spec(
                fn, name=name, action=chosen_action, resource=resource,
                resource_types=tuple(resource_types), context=context, on_deny=on_deny,
                sums=tuple(sum_arguments),
            )
            if screen is not None:
                spec = replace(spec, guardrail=screen)
            authz.tools[spec.name] = spec
            if inspect.iscoroutinefunction(fn):

                async def guarded_async(*args: Any, **kwargs: Any) -> Any:
                    prepared = self._prepare(spec, fn, args, kwargs)
                    if isinstance(prepared, str):
                        return prepared
                    arguments, inputs = prepared
                    call = await authz._arun(self._begin(inputs, arguments, spec, None))
                    if not call.admits:
                        return self._refuse(spec, call.decision)
                    with call:
                        result = await fn(**arguments)
                    return await self.ascreened(spec, result)

                return wraps_tool(fn, guarded_async, spec)

            def guarded(*args: Any, **kwargs: Any) -> Any:
                prepared = self._prepare(spec, fn, args, kwargs)
                if isinstance(prepared, str):
                    return prepared
                arguments, inputs = prepared
                call = authz._run(self._begin(inputs, arguments, spec, None))
                if not call.admits:
                    return self._refuse(spec, call.decision)
                with call:
                    result = fn(**arguments)
                return self.screened(spec, result)

            return wraps_tool(fn, guarded, spec)

        return decorate

    def _prepare(
        self, spec: ToolSpec, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> str | tuple[dict[str, Any], dict[str, Any]]:
        """The validated arguments and request inputs of a guarded call, or its refusal for the model."""
        try:
            return self.checked(spec, lambda: bind_arguments(fn, args, kwargs, spec.name))
        except InvalidArguments as exc:
            if spec.on_deny == "message":
                return self.refusal(spec.name, exc.decision, kind="invalid")
            raise

    def _begin(self, inputs: dict[str, Any], arguments: Mapping[str, Any] | None, spec: ToolSpec,
               call_id: str | None) -> Plan[ToolCall]:
        """Decide and admit a call; its guardrail findings (no text) go in its audit event."""
        with annotating(inputs.get("audit")):
            return (yield from self.authz._sessions.begin(inputs, arguments, spec, call_id))

    def screened(self, spec: ToolSpec, result: R) -> R:
        """The result of a call, once its guardrail findings are recorded in the bound session.

        The labels (``guardrail:prompt_attack:high``) are recorded before the
        result is returned: if they cannot be, the result is not returned.

        Raises:
            GuardrailUnavailable: the detector failed and ``on_error="raise"``.
        """
        guardrail = spec.guardrail
        session = bound_session.get()
        if guardrail is not None and guardrail.outputs and session is not None:
            _see(session, guardrail.assess_value(result, "OUTPUT"))
        return result

    async def ascreened(self, spec: ToolSpec, result: R) -> R:
        """Async twin of :meth:`screened` (the detector's ``adetect``)."""
        guardrail = spec.guardrail
        session = bound_session.get()
        if guardrail is not None and guardrail.outputs and session is not None:
            _see(session, await guardrail.aassess_value(result, "OUTPUT"))
        return result

    def _refuse(self, spec: ToolSpec, decision: Decision) -> str:
        if spec.on_deny == "message":
            return self.refusal(spec.name, decision)
        raise AccessDenied(decision, subject=f"tool '{spec.name}'")

    def refusal(self, tool: str, decision: Decision, *, kind: RefusalKind = "denied") -> str:
        """The refusal a model reads (:meth:`Authorizer.refusal`)."""
        return refusal_message(tool, decision, kind=kind, disclose=self.authz.disclose_reasons)

    # -- calls the caller runs -----------------------------------------------------------

    def begin_tool_call(self, tool: Any, arguments: Mapping[str, Any], call_id: str | None,
                        record: bool) -> Plan[ToolCall]:
        """Decide a guarded tool's call; with ``record``, admit it (:meth:`Authorizer.begin_tool_call`)."""
        authz = self.authz
        spec = self.spec(tool)
        validated, inputs = self.checked(spec, arguments)
        if record:
            call = yield from self._begin(inputs, validated, spec, call_id)
        else:
            with annotating(inputs.get("audit")):
                decision = yield from authz._decision(None, inputs["action"], inputs["resource"],
                                                      inputs["context"])
            call = ToolCall(decision, call_id=uuid.uuid4().hex, external_id=call_id)
        call.arguments = validated
        return call

    def begin_call(self, action: str | EntityUID, resource: EntityUID | Entity,
                   context: Mapping[str, Any] | None, call_id: str | None) -> Plan[ToolCall]:
        """Decide and admit a call that is no guarded tool (:meth:`Authorizer.begin_call`)."""
        request_context = dict(context or {})
        given = request_context.get("input")
        inputs = {"action": action, "resource": resource, "context": request_context}
        arguments = given if isinstance(given, Mapping) else None
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
                ) -> tuple[dict[str, Any], dict[str, Any]]:
        """The validated arguments of one call and the request deciding it (the one path of every call).

        ``context.input`` is built from the very values the tool then runs
        with. Arguments that do not validate, or whose resource or context
        cannot be built, are an audited refusal.

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
            validated = spec.arguments(arguments() if callable(arguments) else arguments)
            return validated, self._request_inputs(spec, validated)
        except InvalidArguments:
            raise
        except GuardrailUnavailable as exc:
            fixed = spec.resource if isinstance(spec.resource, (EntityUID, Entity)) else None
            authz.audit_refusal(action=spec.action, reason=str(exc),
                                resource=fixed or EntityUID(authz.tool_entity_type, spec.name))
            raise
        except InvalidValueError as exc:
            fixed = spec.resource if isinstance(spec.resource, (EntityUID, Entity)) else None
            refusal = authz.audit_refusal(
                action=spec.action, resource=fixed or EntityUID(authz.tool_entity_type, spec.name),
                reason=str(exc))
            raise InvalidArguments(str(exc), refusal) from None

    def _request_inputs(self, spec: ToolSpec, arguments: dict[str, Any]) -> dict[str, Any]:
        context = spec.context_for(arguments)
        context["input"] = tool_input(arguments)
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
            # What the policy reads is what is assessed: context.input, never an injected argument.
            assessment = guardrail.assess_arguments(context["input"])
            context["guardrail"] = {"input": assessment.fact()}
            inputs["audit"] = {"guardrail": {"input": assessment.audit}}
        return inputs

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
        from agentauthz.tools._schema import validate_policies_for_tools  # schema generation: on first use

        authz = self.authz
        store = store or getattr(authz.engine, "store", None)
        if not isinstance(store, PolicyStore):
            raise ConfigurationError("validate_tools needs the policies: pass store=PolicyStore...")
        stub = stub if stub is not None else store.schema_text
        if stub is None:
            raise ConfigurationError("validate_tools needs a schema stub declaring the entity types")
        validate_policies_for_tools(
            store, authz.tools, stub, principal_types=principal_types, namespace=namespace,
            tool_type=authz.tool_entity_type, session_sums=authz.session_config.sums,
        )


def _see(session: Session, assessment: Assessment) -> None:
    """Record an assessment's labels in the session; if they cannot be, the result is withheld.

    Raises:
        EngineError: the session store failed (the model must not read what the session would not know).
    """
    labels = assessment.labels()
    if not labels:
        return
    try:
        session.see(*labels)
    except AuthzError:
        raise
    except Exception as exc:
        raise EngineError("the session store could not record a tool result's guardrail findings") from exc
