"""Bedrock Agents invocations decided: each becomes one Cedar request, refused unless Cedar allows it.

:class:`Rules` holds how an invocation becomes a request (``action=``,
``resource=``, ``context=``, ``tools=``, shared by the Lambda handler and
return of control). :func:`begin` prepares the request (parameters converted,
the action, resource and context built) and asks the Authorizer; every
failure on the way (malformed parameters, an operation nobody configured, a
failing mapping or resource callable) refuses the call with an audited
decision, and :func:`abegin` is the same with ``await``. A refusal carries the
one text the model reads (``authz.refusal``).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, TypeAlias

from agentauthz._authorizer import Authorizer
from agentauthz._errors import ConfigurationError, IdentityError, InvalidArguments, InvalidValueError
from agentauthz._model import Decision, Entity, EntityUID
from agentauthz.integrations.bedrock._events import ActionInvocation, Status, with_arguments
from agentauthz.session._provenance import ResultLabel
from agentauthz.session._session import ToolCall
from agentauthz.tools._settings import ToolSettings
from agentauthz.tools._spec import RefusalKind, ToolSpec, spec_of, tool_input

__all__ = [
    "ActionOf",
    "ContextOf",
    "ResourceOf",
    "Rules",
    "Tools",
    "abegin",
    "adecide",
    "begin",
    "decide",
    "no_identity",
    "refused",
    "unscreened",
]

_log = logging.getLogger("agentauthz")

ActionOf: TypeAlias = (
    Callable[[Mapping[str, Any]], "str | EntityUID"] | Mapping[str, "str | EntityUID"] | None
)
ResourceOfArguments: TypeAlias = Callable[[dict[str, Any]], "EntityUID | Entity"]
ResourceOf: TypeAlias = (
    Callable[["ActionInvocation"], "EntityUID | Entity | None"]
    | Mapping[str, "EntityUID | Entity | ResourceOfArguments"]
    | None
)
ContextOf: TypeAlias = Callable[["ActionInvocation"], Mapping[str, Any]] | None
Tools: TypeAlias = Mapping[str, Any] | Iterable[Any] | None


def _spec(tool: Any) -> ToolSpec:
    found = tool if isinstance(tool, ToolSpec) else spec_of(tool)
    if found is None:
        raise ConfigurationError(
            f"{tool!r} is not a guarded tool (use @authz.guard, AuthorizedTool or a ToolSpec)"
        )
    return found


def _deprecated_mappings(action: ActionOf, resource: ResourceOf) -> dict[str, ToolSettings]:
    """The settings the deprecated ``action=``/``resource=`` mappings by operation stand for."""
    given = {option: mapping for option, mapping in (("action", action), ("resource", resource))
             if isinstance(mapping, Mapping)}
    if not given:
        return {}
    warnings.warn(
        f"the mappings by operation of {'=, '.join(given)}= are deprecated: pass tools={{operation: "
        "ToolSettings(action=..., resource=...)} (agentauthz.ToolSettings); they go in the next release",
        DeprecationWarning, stacklevel=4)
    options: dict[str, dict[str, Any]] = {}
    for option, mapping in given.items():
        for key, value in mapping.items():
            options.setdefault(str(key), {})[option] = value
    return {key: ToolSettings(**chosen) for key, chosen in options.items()}


def _checked_settings(key: str, settings: ToolSettings) -> ToolSettings:
    if settings.sum_arguments:
        raise ConfigurationError(
            f"tools={{{key!r}: ToolSettings(sum_arguments=...)}}: summing needs the tool's argument types; "
            "give a guarded tool or a ToolSpec for this operation")
    if settings.guardrail is not None:  # ignored, a policy reading its fact would meet an error instead
        raise ConfigurationError(
            f"tools={{{key!r}: ToolSettings(guardrail=...)}}: a guardrail screens the arguments and result "
            "of a guarded tool; give a guarded tool or a ToolSpec with the guardrail for this operation")
    return settings


@dataclass(frozen=True)
class Rules:
    """How invocations become Cedar requests (shared by the handler and return of control).

    ``settings`` holds a :class:`ToolSettings` per operation; ``only_named``
    (the deprecated ``action=`` mapping) refuses operations no setting names.
    """

    authz: Authorizer
    action: ActionOf
    resource: ResourceOf
    context: ContextOf
    tools: dict[str, ToolSpec]
    settings: dict[str, ToolSettings] = field(default_factory=dict)
    only_named: bool = False

    @classmethod
    def build(cls, authz: Authorizer, action: ActionOf, resource: ResourceOf, context: ContextOf,
              tools: Tools) -> Rules:
        if not isinstance(authz, Authorizer):
            raise ConfigurationError("the Bedrock Agents integration needs an agentauthz Authorizer")
        if action is not None and not callable(action) and not isinstance(action, Mapping):
            raise ConfigurationError("action= must be a callable of the event")
        if resource is not None and not callable(resource) and not isinstance(resource, Mapping):
            raise ConfigurationError("resource= must be a callable of the invocation")
        if context is not None and not callable(context):
            raise ConfigurationError("context= must be a callable of the invocation")
        settings: dict[str, ToolSettings] = {}
        specs: dict[str, ToolSpec] = {}
        if isinstance(tools, Mapping):
            for key, tool in tools.items():
                if isinstance(tool, ToolSettings):
                    settings[str(key)] = _checked_settings(str(key), tool)
                else:
                    specs[str(key)] = _spec(tool)
        elif isinstance(tools, (str, bytes)):
            raise ConfigurationError("tools= must be guarded tools or a mapping by operation of "
                                     "ToolSettings or guarded tools")
        elif tools is not None:
            specs = {spec.name: spec for spec in map(_spec, tools)}
        deprecated = _deprecated_mappings(action, resource)
        both = sorted(set(deprecated) & (set(settings) | set(specs)))
        if both:
            raise ConfigurationError(
                f"tools= and the deprecated action=/resource= mappings both configure {', '.join(both)}: "
                "keep only tools=")
        settings.update(deprecated)
        for spec in specs.values():  # registered, so that validate_tools checks it too
            authz.tools.setdefault(spec.name, spec)
        return cls(authz, None if isinstance(action, Mapping) else action,
                   None if isinstance(resource, Mapping) else resource, context, specs, settings,
                   only_named=isinstance(action, Mapping))

    @staticmethod
    def keys(invocation: ActionInvocation) -> tuple[str, str]:
        return f"{invocation.action_group}__{invocation.operation}", invocation.operation

    def lookup(self, mapping: Mapping[str, Any], invocation: ActionInvocation) -> Any:
        for key in self.keys(invocation):
            if key in mapping:
                return mapping[key]
        return None

    def spec_for(self, invocation: ActionInvocation) -> ToolSpec | None:
        found = self.lookup(self.tools, invocation)
        return found if isinstance(found, ToolSpec) else None

    def action_for(self, invocation: ActionInvocation) -> str | EntityUID | None:
        """The Cedar action, or None for an operation that is refused (see ``only_named``)."""
        named: ToolSettings | None = self.lookup(self.settings, invocation)
        if named is not None and named.action is not None:
            chosen: Any = named.action
        elif self.only_named:
            return None
        elif callable(self.action):
            chosen = self.action(invocation.raw)
        else:
            return self.keys(invocation)[0]
        if chosen is None:
            return None
        if not isinstance(chosen, (str, EntityUID)) or not chosen:
            raise ConfigurationError(f"the action of {invocation.operation!r} must be a str or EntityUID")
        return chosen

    def resource_for(self, invocation: ActionInvocation) -> EntityUID | Entity:
        named: ToolSettings | None = self.lookup(self.settings, invocation)
        chosen: Any = None
        if named is not None and named.resource is not None:
            chosen = named.resource
            if callable(chosen) and not isinstance(chosen, (EntityUID, Entity)):
                chosen = chosen(dict(invocation.arguments))
        elif callable(self.resource):
            chosen = self.resource(invocation)
        if chosen is None:
            return EntityUID(self.authz.tool_entity_type, _action_name(invocation.action))
        if not isinstance(chosen, (EntityUID, Entity)):
            raise ConfigurationError(
                f"the resource of {invocation.operation!r} must be an EntityUID or Entity"
            )
        return chosen

    def context_for(self, invocation: ActionInvocation) -> dict[str, Any]:
        extra = dict(self.context(invocation)) if self.context is not None else {}
        named: ToolSettings | None = self.lookup(self.settings, invocation)
        if named is not None and named.context is not None:
            given = named.context
            extra.update(given(dict(invocation.arguments)) if callable(given) else given)
        if "input" in extra:
            raise ConfigurationError("context= must not set 'input': it holds the parameters")
        extra["input"] = tool_input(invocation.arguments)
        return extra


def _action_name(action: str | EntityUID | None) -> str:
    if isinstance(action, EntityUID):
        return action.id
    if action and '::"' in action:
        return EntityUID.parse(action).id
    return action or ""



_KINDS: dict[Status, RefusalKind] = {
    "denied": "denied", "invalid": "invalid", "unknown": "unknown", "no-identity": "no-identity",
    "approval": "approval",
}


def refused(rules: Rules, invocation: ActionInvocation, status: Status,
             decision: Decision) -> ActionInvocation:
    """The invocation refused with ``decision``, carrying the one refusal text the model reads."""
    text = rules.authz.refusal(invocation.operation, decision, kind=_KINDS[status])
    return replace(invocation, status=status, refusal=text, decision=decision)


def _audited(rules: Rules, invocation: ActionInvocation, reason: str) -> Decision:
    """Audit a refusal made before any policy was evaluated, named as well as the call is known."""
    action = invocation.action or _guessed_action(rules, invocation)
    resource = invocation.resource or EntityUID(rules.authz.tool_entity_type, _action_name(action))
    return rules.authz.audit_refusal(action=action, resource=resource, reason=reason)


def no_identity(rules: Rules, invocation: ActionInvocation,
                 error: IdentityError | None = None) -> ActionInvocation:
    """Refuse a call without a valid end user, audited once: by the Authorizer if it did, else here."""
    decision = error.decision if error is not None else None
    if decision is None:
        action = _action_name(_guessed_action(rules, invocation))
        decision = rules.authz.audit_missing_identity(action, EntityUID(rules.authz.tool_entity_type, action))
    return refused(rules, invocation, "no-identity", decision)


def _invalid(rules: Rules, invocation: ActionInvocation, problem: str) -> ActionInvocation:
    return refused(rules, invocation, "invalid", _audited(rules, invocation, problem))


def _unknown(rules: Rules, invocation: ActionInvocation) -> ActionInvocation:
    return refused(rules, invocation, "unknown", _audited(rules, invocation, "unknown operation"))


def _settled(rules: Rules, invocation: ActionInvocation, decision: Decision) -> ActionInvocation:
    if decision.admits:
        return replace(invocation, status="allowed", decision=decision, refusal=None)
    return refused(rules, invocation, "denied", decision)


def _unbuildable(rules: Rules, invocation: ActionInvocation, exc: Exception) -> ActionInvocation:
    _log.error("Bedrock action %r: the request could not be built (%s)",
               invocation.operation, type(exc).__name__)
    decision = _audited(rules, invocation, f"the request could not be built ({type(exc).__name__})")
    return refused(rules, invocation, "denied", decision)



def unscreened(rules: Rules, invocation: ActionInvocation, what: str, exc: Exception) -> ActionInvocation:
    """Refuse a call because a guardrail could not assess ``what`` or its findings not be recorded."""
    _log.warning("Bedrock action %r: %s could not be screened (%s)", invocation.operation, what,
                 type(exc).__name__)
    return refused(rules, invocation, "denied",
                   _audited(rules, invocation, f"{what} could not be screened ({type(exc).__name__})"))


def _guessed_action(rules: Rules, invocation: ActionInvocation) -> str | EntityUID:
    """The action a call not decided would have been, for its audit event."""
    try:
        spec = rules.spec_for(invocation)
        action = spec.action if spec is not None else rules.action_for(invocation)
        return action or rules.keys(invocation)[0]
    except Exception:  # auditing names the call as well as it can; it never fails it
        return rules.keys(invocation)[0]


@dataclass(frozen=True)
class _Request:
    """What one invocation asks the Authorizer: a tool's spec and arguments, or ``authorize``'s keywords."""

    spec: ToolSpec | None = None
    arguments: dict[str, Any] = field(default_factory=dict)
    keywords: dict[str, Any] = field(default_factory=dict)
    #: ``ToolSettings(provenance=...)`` of the operation: how its results are labelled in the session.
    result_label: ResultLabel | None = None

    def send(self, authz: Authorizer, *, record: bool, call_id: str | None) -> ToolCall | Decision:
        """Decide; with ``record``, begin the call the handler runs (counted in the session)."""
        if self.spec is not None:
            return authz.begin_tool_call(self.spec, self.arguments, call_id=call_id, record=record)
        if record:
            return authz.begin_call(**self.keywords, call_id=call_id)
        return authz.authorize(**self.keywords)

    async def asend(self, authz: Authorizer, *, record: bool, call_id: str | None) -> ToolCall | Decision:
        """Async twin of :meth:`send`."""
        if self.spec is not None:
            return await authz.abegin_tool_call(self.spec, self.arguments, call_id=call_id, record=record)
        if record:
            return await authz.abegin_call(**self.keywords, call_id=call_id)
        return await authz.aauthorize(**self.keywords)


def _prepared(rules: Rules, invocation: ActionInvocation) -> tuple[ActionInvocation, _Request | None]:
    """Convert the parameters and build the request; no request: the invocation is refused and settled."""
    try:
        invocation = with_arguments(invocation)
    except InvalidValueError as exc:
        return _invalid(rules, invocation, str(exc)), None
    spec = rules.spec_for(invocation)
    try:
        if spec is not None:
            invocation = replace(invocation, action=spec.action)
            return invocation, _Request(spec=spec, arguments=dict(invocation.arguments))
        action = rules.action_for(invocation)
        if action is None:
            return _unknown(rules, invocation), None
        invocation = replace(invocation, action=action)
        invocation = replace(invocation, resource=rules.resource_for(invocation))
        context = rules.context_for(invocation)
    except InvalidValueError as exc:
        return _invalid(rules, invocation, str(exc)), None
    except Exception as exc:  # a failing mapping refuses the call; it never lets it through
        return _unbuildable(rules, invocation, exc), None
    assert invocation.resource is not None and invocation.action is not None
    named: ToolSettings | None = rules.lookup(rules.settings, invocation)
    return invocation, _Request(keywords={"action": invocation.action, "resource": invocation.resource,
                                          "context": context},
                                result_label=named.provenance if named is not None else None)


def _failed(rules: Rules, invocation: ActionInvocation, exc: Exception) -> ActionInvocation:
    """The invocation refused because deciding it raised (an IdentityError is not caught here)."""
    if isinstance(exc, InvalidArguments):  # audited by the Authorizer
        return refused(rules, invocation, "invalid", exc.decision)
    if isinstance(exc, InvalidValueError):
        return _invalid(rules, invocation, str(exc))
    return _unbuildable(rules, invocation, exc)  # a failing resource callable refuses the call


def _answered(rules: Rules, invocation: ActionInvocation, request: _Request, answer: ToolCall | Decision,
              record: bool) -> tuple[ActionInvocation, ToolCall | None]:
    """The invocation settled by the Authorizer's answer, and the call to count (with ``record``)."""
    if isinstance(answer, Decision):
        decision, call = answer, None
    else:
        decision, call = answer.decision, (answer if record else None)
        if request.result_label is not None:
            answer.result_label = request.result_label
        if request.spec is not None:
            # The handler runs with what the spec validated, never with the raw parameters.
            invocation = replace(invocation, arguments=answer.arguments)
            invocation = replace(invocation, resource=_resource_of(rules, invocation, request.spec))
    invocation = replace(invocation, principal=rules.authz.current_principal())
    if not isinstance(answer, Decision) and answer.approval is not None:
        held = refused(rules, invocation, "approval", decision)
        return replace(held, approval=answer.approval), call
    return _settled(rules, invocation, decision), call


def _resource_of(rules: Rules, invocation: ActionInvocation, spec: ToolSpec) -> EntityUID | Entity | None:
    try:
        return spec.resource_for(invocation.arguments, rules.authz.tool_entity_type)
    except Exception:  # the decision already failed closed on it; this is for display only
        return None


def begin(rules: Rules, invocation: ActionInvocation, *, record: bool = True,
          call_id: str | None = None) -> tuple[ActionInvocation, ToolCall | None]:
    """Decide an invocation; with ``record``, the call the handler runs is counted in the session."""
    invocation, request = _prepared(rules, invocation)
    if request is None:
        return invocation, None
    try:
        answer = request.send(rules.authz, record=record, call_id=call_id)
    except IdentityError:
        raise
    except Exception as exc:  # deciding failed: the call is refused, never let through
        return _failed(rules, invocation, exc), None
    return _answered(rules, invocation, request, answer, record)


async def abegin(rules: Rules, invocation: ActionInvocation, *, record: bool = True,
                 call_id: str | None = None) -> tuple[ActionInvocation, ToolCall | None]:
    """Async twin of :func:`begin`."""
    invocation, request = _prepared(rules, invocation)
    if request is None:
        return invocation, None
    try:
        answer = await request.asend(rules.authz, record=record, call_id=call_id)
    except IdentityError:
        raise
    except Exception as exc:  # deciding failed: the call is refused, never let through
        return _failed(rules, invocation, exc), None
    return _answered(rules, invocation, request, answer, record)


def decide(rules: Rules, invocation: ActionInvocation) -> ActionInvocation:
    """Decide an invocation for the bound end user, recording nothing (return of control)."""
    return begin(rules, invocation, record=False)[0]


async def adecide(rules: Rules, invocation: ActionInvocation) -> ActionInvocation:
    """Async twin of :func:`decide`."""
    return (await abegin(rules, invocation, record=False))[0]
