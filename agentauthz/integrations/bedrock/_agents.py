"""Amazon Bedrock Agents: action-group Lambda handlers and return of control, authorized.

Re-exported by :mod:`agentauthz.integrations.bedrock`; import it from there.

Every function (or API operation) an agent invokes becomes one Cedar request:
the end user from the session attributes the *application* set (or a token it
put there, verified by the application's verifier), one action per function,
the parameters, converted by their declared types, in ``context.input``. A
denied call never reaches the handler; the agent gets a refusal the model can
read (``authz.refusal``: the decision's id, not its policies). The handler
reads the arguments from ``invocation.arguments``: exactly what the policy
evaluated (for an operation decided by a tool's spec, validated by it).
Events are plain dicts: nothing here imports boto3.
"""

from __future__ import annotations

import copy
import inspect
import json
import logging
import math
import re
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol, TypeAlias, cast, overload

from agentauthz._authorizer import Authorizer
from agentauthz._errors import (
    AccessDenied,
    ConfigurationError,
    IdentityError,
    InvalidArguments,
    InvalidValueError,
)
from agentauthz._identity import Identity
from agentauthz._model import Decision, Entity, EntityUID, float_to_decimal
from agentauthz.session._session import ToolCall
from agentauthz.tools._spec import RefusalKind, ToolSpec, spec_of, tool_input

__all__ = [
    "ActionInvocation",
    "ReturnControlAuthorization",
    "TokenVerifier",
    "aauthorize_return_control",
    "action_group_handler",
    "authorize_return_control",
]

_log = logging.getLogger("agentauthz")

Principal: TypeAlias = Entity | EntityUID
PrincipalOf: TypeAlias = Callable[[dict[str, Any]], "Entity | EntityUID | None"]
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
SessionOf: TypeAlias = bool | Callable[[dict[str, Any]], "str | None"]
Tools: TypeAlias = Mapping[str, Any] | Iterable[Any] | None
Response: TypeAlias = dict[str, Any]

MESSAGE_VERSION = "1.0"
# Parts of a Lambda event the application or Bedrock set; the model writes none of them.
_TRUSTED_KEYS = ("messageVersion", "agent", "sessionId", "sessionAttributes")
_INTEGER = re.compile(r"[+-]?[0-9]+")
_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1
_BEARER = re.compile(r"bearer\s+", re.I)
_CONFIRMATION_TYPES = ("USER_CONFIRMATION", "USER_CONFIRMATION_AND_RESULT")

Status = Literal["allowed", "denied", "no-identity", "invalid", "unknown"]


class TokenVerifier(Protocol):
    """Turns a token the application put in the session attributes into the end user.

    Any callable ``token -> Entity | EntityUID`` fits (a function, or an object
    with ``__call__`` such as the library's JWT verifier). It must check the
    signature, issuer, audience and expiry, and raise on any problem: a raise
    (of any exception) denies the call. It may return an awaitable when the
    handler is async.

    Example:
        >>> import agentauthz as az
        >>> def verify(token: str) -> az.EntityUID:
        ...     if token != "valid-demo-token":
        ...         raise ValueError("bad token")
        ...     return az.EntityUID("User", "alice")
        >>> verify("valid-demo-token")
        EntityUID(type='User', id='alice')
    """

    def __call__(self, token: str, /) -> Entity | EntityUID | Awaitable[Entity | EntityUID]:
        """Verify ``token``; return the end user or raise."""
        ...


# -- invocations -----------------------------------------------------------------


@dataclass(frozen=True)
class ActionInvocation:
    """One function or API operation an agent invokes, as parsed and decided.

    Built from an action-group Lambda event or from one entry of a
    ``returnControl`` payload's ``invocationInputs``.

    Attributes:
        kind: ``"function"`` (function-details group) or ``"api"`` (OpenAPI group).
        action_group: the action group's name.
        function: the function name (function groups).
        api_path: the API path (OpenAPI groups), e.g. ``"/orders/{orderId}"``.
        http_method: the HTTP method (OpenAPI groups), e.g. ``"POST"``.
        arguments: the parameters (and, for OpenAPI groups, the JSON request body
            properties) converted by their declared types: ``integer`` -> int,
            ``number`` -> float (a Cedar decimal in ``context.input``),
            ``boolean`` -> bool, ``array`` -> list, ``object`` -> dict,
            anything else -> str; for an operation decided by a tool's spec
            (``tools=``), the spec's validated arguments (undeclared parameters
            are refused, values coerced to the tool's types). Handlers must use
            these, never the event's ``parameters``: they are what was authorized.
        raw: the event (Lambda) or invocation input (return of control) it came from.
        agent_id: the ``agentId`` of a return-of-control input (multi-agent collaboration).
        action: the Cedar action the call was decided as.
        resource: the Cedar resource the call was decided on.
        principal: the end user the call was decided for.
        decision: the Cedar decision; for a call refused before policies were
            evaluated (malformed parameters, unknown operation, no identity), the
            audited refusal. Its ``id`` is the audit event's ``decision_id``.
        status: ``"allowed"``, ``"denied"`` (by policy), ``"no-identity"``,
            ``"invalid"`` (malformed parameters) or ``"unknown"`` (an operation
            this handler does not authorize).
        refusal: the text the model reads when the call was refused
            (``authz.refusal``: generic, naming the decision's id).

    Example:
        >>> inv = ActionInvocation.from_event({
        ...     "messageVersion": "1.0", "actionGroup": "orders", "function": "issue_refund",
        ...     "parameters": [{"name": "amount", "type": "integer", "value": "300"},
        ...                    {"name": "express", "type": "boolean", "value": "true"}]})
        >>> inv.operation, inv.arguments
        ('issue_refund', {'amount': 300, 'express': True})
    """

    kind: Literal["function", "api"]
    action_group: str
    function: str | None = None
    api_path: str | None = None
    http_method: str | None = None
    arguments: dict[str, Any] = field(default_factory=dict)
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False)
    agent_id: str | None = None
    action: str | EntityUID | None = None
    resource: EntityUID | Entity | None = None
    principal: EntityUID | None = None
    decision: Decision | None = None
    status: Status | None = None
    refusal: str | None = None

    @classmethod
    def from_event(cls, event: Mapping[str, Any]) -> ActionInvocation:
        """Parse an action-group Lambda event (or a return-of-control invocation input).

        Raises:
            InvalidValueError: the event is not an action-group invocation, or a
                parameter value does not match its declared type (the message
                names the parameter and the type, never the value).
        """
        return _with_arguments(_envelope(event))

    @property
    def operation(self) -> str:
        """The function name, or ``"METHOD /path"`` for an API operation."""
        if self.kind == "function":
            return self.function or ""
        return f"{self.http_method or ''} {self.api_path or ''}"

    @property
    def allowed(self) -> bool:
        """Whether the call may run (allowed, or decided in shadow mode)."""
        return self.status == "allowed"

    def response(self, body: Any = "", *, status_code: int = 200) -> Response:
        """The Lambda response returning ``body`` to the agent, shaped for this group kind.

        ``body`` is sent as is when it is a string, as JSON otherwise. For an
        OpenAPI group ``status_code`` is the ``httpStatusCode``; a function
        group has none.

        Example:
            >>> inv = ActionInvocation.from_event(
            ...     {"actionGroup": "g", "apiPath": "/orders", "httpMethod": "GET"})
            >>> inv.response({"orders": []})["response"]["responseBody"]
            {'application/json': {'body': '{"orders": []}'}}
        """
        text = _body_text(body)
        if self.kind == "function":
            return _function_response(self, text, None)
        return _api_response(self, text, status_code)

    def result(self, body: Any = "", *, status_code: int = 200) -> dict[str, Any]:
        """The ``returnControlInvocationResults`` entry returning ``body`` for this invocation.

        For an invocation the application ran after :func:`authorize_return_control`.
        """
        text = _body_text(body)
        if self.kind == "function":
            member: dict[str, Any] = {
                "actionGroup": self.action_group,
                "function": self.function or "",
                "responseBody": {"TEXT": {"body": text}},
            }
            key = "functionResult"
        else:
            member = {
                "actionGroup": self.action_group,
                "apiPath": self.api_path or "",
                "httpMethod": self.http_method or "",
                "httpStatusCode": status_code,
                "responseBody": {"application/json": {"body": text}},
            }
            key = "apiResult"
        if self.agent_id is not None:
            member["agentId"] = self.agent_id
        return {key: member}


def _body_text(body: Any) -> str:
    if isinstance(body, str):
        return body
    if body is None:
        return ""
    return json.dumps(body, default=str)


def _envelope(raw: Mapping[str, Any], kind: str | None = None) -> ActionInvocation:
    """Kind, group and operation of an invocation; parameters are converted later."""
    if not isinstance(raw, Mapping):
        raise InvalidValueError(f"an action-group invocation is a JSON object, not {type(raw).__name__}")
    group = raw.get("actionGroup")
    if not isinstance(group, str) or not group:
        raise InvalidValueError("not a Bedrock Agents action-group invocation: no actionGroup")
    agent_id = raw.get("agentId") if isinstance(raw.get("agentId"), str) else None
    if kind == "function" or (kind is None and "function" in raw):
        function = raw.get("function")
        if not isinstance(function, str) or not function:
            raise InvalidValueError("action-group invocation: 'function' must be a non-empty string")
        return ActionInvocation(kind="function", action_group=group, function=function, raw=raw,
                                agent_id=agent_id)
    if kind == "api" or (kind is None and "apiPath" in raw):
        path, method = raw.get("apiPath"), raw.get("httpMethod")
        if not isinstance(path, str) or not path or not isinstance(method, str) or not method:
            raise InvalidValueError("action-group invocation: 'apiPath' and 'httpMethod' must be strings")
        return ActionInvocation(kind="api", action_group=group, api_path=path,
                                http_method=method.upper(), raw=raw, agent_id=agent_id)
    raise InvalidValueError(
        "not a Bedrock Agents action-group invocation: neither 'function' nor 'apiPath'"
    )


def _with_arguments(invocation: ActionInvocation) -> ActionInvocation:
    raw = invocation.raw
    entries: list[Any] = []
    parameters = raw.get("parameters")
    if parameters is not None:
        if not isinstance(parameters, list):
            raise InvalidValueError("'parameters' must be a list of {name, type, value}")
        entries.extend(parameters)
    if invocation.kind == "api":
        entries.extend(_body_properties(raw.get("requestBody")))
    arguments: dict[str, Any] = {}
    for entry in entries:
        if not isinstance(entry, Mapping) or not isinstance(entry.get("name"), str):
            raise InvalidValueError("every parameter must be an object with a string 'name'")
        name = entry["name"]
        if name in arguments:
            raise InvalidValueError(f"parameter {name!r} is given twice")
        arguments[name] = _convert(name, entry.get("type"), entry.get("value"))
    return replace(invocation, arguments=arguments)


def _body_properties(body: Any) -> list[Any]:
    if body is None:
        return []
    content = body.get("content") if isinstance(body, Mapping) else None
    if not isinstance(content, Mapping):
        raise InvalidValueError("'requestBody' must hold a 'content' object")
    if not content:
        return []
    media = content.get("application/json")
    if media is None:
        kinds = ", ".join(sorted(map(str, content)))
        raise InvalidValueError(f"request body of type {kinds} is not supported (only application/json)")
    properties = media.get("properties") if isinstance(media, Mapping) else None
    if properties is None:
        return []
    if not isinstance(properties, list):
        raise InvalidValueError("'requestBody' properties must be a list of {name, type, value}")
    return properties


def _convert(name: str, declared: Any, value: Any) -> Any:
    """A parameter value (always a string in events) as the Python value of its declared type."""
    kind = declared.lower() if isinstance(declared, str) and declared else "string"
    where = f"parameter {name!r}"
    if value is None:
        raise InvalidValueError(f"{where} has no value")
    if not isinstance(value, str):
        return _typed(where, kind, value)
    text = value.strip()
    if kind == "integer":
        if not _INTEGER.fullmatch(text):
            raise InvalidValueError(f"{where} must be an integer")
        number = int(text)
        if not _LONG_MIN <= number <= _LONG_MAX:
            raise InvalidValueError(f"{where} is out of the 64-bit integer range")
        return number
    if kind == "number":
        try:
            real = float(text)
        except ValueError:
            raise InvalidValueError(f"{where} must be a number") from None
        if not math.isfinite(real):
            raise InvalidValueError(f"{where} must be a finite number")
        try:
            float_to_decimal(real)  # what context.input gets: checked here to name the parameter
        except InvalidValueError as exc:
            raise InvalidValueError(f"{where}: {exc}") from None
        return real
    if kind == "boolean":
        if text.lower() not in ("true", "false"):
            raise InvalidValueError(f"{where} must be true or false")
        return text.lower() == "true"
    if kind == "array":
        return _array(where, text)
    if kind == "object":
        try:
            record = json.loads(text)
        except (ValueError, RecursionError):  # nested past the parser's depth: not an object we take
            record = None
        if not isinstance(record, dict):
            raise InvalidValueError(f"{where} must be a JSON object")
        return record
    return value


def _typed(where: str, kind: str, value: Any) -> Any:
    """A value that already arrived typed (a test, a hand-built event): it must match its type."""
    checks: dict[str, Callable[[Any], bool]] = {
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool) and _LONG_MIN <= v <= _LONG_MAX,
        "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v),
        "boolean": lambda v: isinstance(v, bool),
        "array": lambda v: isinstance(v, list),
        "object": lambda v: isinstance(v, dict),
    }
    if kind in checks and checks[kind](value):
        return float(value) if kind == "number" else value
    article = "an" if kind in ("integer", "array", "object") else "a"
    raise InvalidValueError(f"{where} must be {article} {kind}")


def _array(where: str, text: str) -> list[Any]:
    """``"[1, 2]"``, ``'["a", "b"]'`` (JSON) or ``"[a, b]"`` (how Bedrock writes lists of strings)."""
    if not (text.startswith("[") and text.endswith("]")):
        raise InvalidValueError(f"{where} must be an array written [item, item, ...]")
    try:
        parsed = json.loads(text)
    except (ValueError, RecursionError):
        parsed = None
    if isinstance(parsed, list):
        return parsed
    inner = text[1:-1].strip()
    if not inner:
        return []
    items: list[Any] = []
    for item in (part.strip() for part in inner.split(",")):
        if len(item) >= 2 and item[0] == item[-1] and item[0] in "'\"":
            item = item[1:-1]
        elif not item or item[0] in "[{'\"" or item[-1] in "]}'\"":
            # Nested arrays or objects only come as JSON: a guess at their structure could
            # authorize something other than what the handler then reads.
            raise InvalidValueError(f"{where} must be an array of plain items, or JSON")
        items.append(item)
    return items


# -- configuration: event -> Cedar request ------------------------------------------------


def _spec(tool: Any) -> ToolSpec:
    found = tool if isinstance(tool, ToolSpec) else spec_of(tool)
    if found is None:
        raise ConfigurationError(
            f"{tool!r} is not a guarded tool (use @authz.guard, AuthorizedTool or a ToolSpec)"
        )
    return found


@dataclass(frozen=True)
class _Rules:
    """How invocations become Cedar requests (shared by the handler and return of control)."""

    authz: Authorizer
    action: ActionOf
    resource: ResourceOf
    context: ContextOf
    tools: dict[str, ToolSpec]

    @classmethod
    def build(cls, authz: Authorizer, action: ActionOf, resource: ResourceOf, context: ContextOf,
              tools: Tools) -> _Rules:
        if not isinstance(authz, Authorizer):
            raise ConfigurationError("the Bedrock Agents integration needs an agentauthz Authorizer")
        if action is not None and not callable(action) and not isinstance(action, Mapping):
            raise ConfigurationError("action= must be a callable of the event or a mapping by operation")
        if resource is not None and not callable(resource) and not isinstance(resource, Mapping):
            raise ConfigurationError(
                "resource= must be a callable of the invocation or a mapping by operation"
            )
        if context is not None and not callable(context):
            raise ConfigurationError("context= must be a callable of the invocation")
        if tools is None:
            specs: dict[str, ToolSpec] = {}
        elif isinstance(tools, Mapping):
            specs = {str(key): _spec(tool) for key, tool in tools.items()}
        elif isinstance(tools, (str, bytes)):
            raise ConfigurationError("tools= must be guarded tools or a mapping of them by operation")
        else:
            specs = {spec.name: spec for spec in map(_spec, tools)}
        for option, mapping in (("action", action), ("resource", resource)):
            if isinstance(mapping, Mapping):
                both = sorted(set(mapping) & set(specs))
                if both:
                    raise ConfigurationError(
                        f"{option}= and tools= both configure {', '.join(both)}: a tool's spec decides "
                        "its action and resource"
                    )
        for spec in specs.values():  # registered, so that validate_tools checks it too
            authz.tools.setdefault(spec.name, spec)
        return cls(authz, action, resource, context, specs)

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
        """The Cedar action, or None for an operation the mapping does not name."""
        if self.action is None:
            return self.keys(invocation)[0]
        if isinstance(self.action, Mapping):
            chosen = self.lookup(self.action, invocation)
        else:
            chosen = self.action(invocation.raw)
        if chosen is None:
            return None
        if not isinstance(chosen, (str, EntityUID)) or not chosen:
            raise ConfigurationError(f"the action of {invocation.operation!r} must be a str or EntityUID")
        return chosen

    def resource_for(self, invocation: ActionInvocation) -> EntityUID | Entity:
        chosen: Any = None
        if isinstance(self.resource, Mapping):
            chosen = self.lookup(self.resource, invocation)
            if callable(chosen) and not isinstance(chosen, (EntityUID, Entity)):
                chosen = chosen(dict(invocation.arguments))
        elif self.resource is not None:
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


# -- deciding ---------------------------------------------------------------------------


_KINDS: dict[Status, RefusalKind] = {
    "denied": "denied", "invalid": "invalid", "unknown": "unknown", "no-identity": "no-identity",
}


def _refused(rules: _Rules, invocation: ActionInvocation, status: Status,
             decision: Decision) -> ActionInvocation:
    """The invocation refused with ``decision``, carrying the one refusal text the model reads."""
    text = rules.authz.refusal(invocation.operation, decision, kind=_KINDS[status])
    return replace(invocation, status=status, refusal=text, decision=decision)


def _audited(rules: _Rules, invocation: ActionInvocation, reason: str) -> Decision:
    """Audit a refusal made before any policy was evaluated, named as well as the call is known."""
    action = invocation.action or _guessed_action(rules, invocation)
    resource = invocation.resource or EntityUID(rules.authz.tool_entity_type, _action_name(action))
    return rules.authz.audit_refusal(action=action, resource=resource, reason=reason)


def _no_identity(rules: _Rules, invocation: ActionInvocation,
                 error: IdentityError | None = None) -> ActionInvocation:
    """Refuse a call without a valid end user, audited once: by the Authorizer if it did, else here."""
    decision = error.decision if error is not None else None
    if decision is None:
        action = _action_name(_guessed_action(rules, invocation))
        decision = rules.authz.audit_missing_identity(action, EntityUID(rules.authz.tool_entity_type, action))
    return _refused(rules, invocation, "no-identity", decision)


def _invalid(rules: _Rules, invocation: ActionInvocation, problem: str) -> ActionInvocation:
    return _refused(rules, invocation, "invalid", _audited(rules, invocation, problem))


def _unknown(rules: _Rules, invocation: ActionInvocation) -> ActionInvocation:
    return _refused(rules, invocation, "unknown", _audited(rules, invocation, "unknown operation"))


def _settled(rules: _Rules, invocation: ActionInvocation, decision: Decision) -> ActionInvocation:
    if decision.admits:
        return replace(invocation, status="allowed", decision=decision, refusal=None)
    return _refused(rules, invocation, "denied", decision)


def _unbuildable(rules: _Rules, invocation: ActionInvocation, exc: Exception) -> ActionInvocation:
    _log.error("Bedrock action %r: the request could not be built (%s)",
               invocation.operation, type(exc).__name__)
    decision = _audited(rules, invocation, f"the request could not be built ({type(exc).__name__})")
    return _refused(rules, invocation, "denied", decision)


def _prepared(rules: _Rules, invocation: ActionInvocation) -> tuple[ActionInvocation, Any]:
    """Convert the parameters and build the request.

    Returns the invocation and either None (the invocation was refused and is
    settled), a ``(spec, arguments)`` pair for ``begin_tool_call``, or the
    keyword arguments of ``authorize``.
    """
    try:
        invocation = _with_arguments(invocation)
    except InvalidValueError as exc:
        return _invalid(rules, invocation, str(exc)), None
    spec = rules.spec_for(invocation)
    try:
        if spec is not None:
            invocation = replace(invocation, action=spec.action)
            return invocation, (spec, dict(invocation.arguments))
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
    return invocation, {"action": invocation.action, "resource": invocation.resource, "context": context}


def _resource_of(rules: _Rules, invocation: ActionInvocation, spec: ToolSpec) -> EntityUID | Entity | None:
    try:
        return spec.resource_for(invocation.arguments, rules.authz.tool_entity_type)
    except Exception:  # the decision already failed closed on it; this is for display only
        return None


def _decide(rules: _Rules, invocation: ActionInvocation) -> ActionInvocation:
    """Decide a prepared invocation for the bound end user (sync)."""
    return _begin(rules, invocation, record=False)[0]


async def _adecide(rules: _Rules, invocation: ActionInvocation) -> ActionInvocation:
    """Async twin of :func:`_decide`."""
    return (await _abegin(rules, invocation, record=False))[0]


def _begin(rules: _Rules, invocation: ActionInvocation, *, record: bool = True,
           call_id: str | None = None) -> tuple[ActionInvocation, ToolCall | None]:
    """Decide an invocation; with ``record``, the call the handler runs is counted in the session."""
    invocation, request = _prepared(rules, invocation)
    if request is None:
        return invocation, None
    authz = rules.authz
    call: ToolCall | None = None
    try:
        if isinstance(request, tuple):
            spec, arguments = request
            decided = authz.begin_tool_call(spec, arguments, call_id=call_id, record=record)
            call, decision = (decided if record else None), decided.decision
            # The handler runs with what the spec validated, never with the raw parameters.
            invocation = replace(invocation, arguments=decided.arguments)
            invocation = replace(invocation, resource=_resource_of(rules, invocation, spec))
        elif record:
            call = authz.begin_call(**request, call_id=call_id)
            decision = call.decision
        else:
            decision = authz.authorize(**request)
    except InvalidArguments as exc:  # audited by the Authorizer
        return _refused(rules, invocation, "invalid", exc.decision), None
    except InvalidValueError as exc:
        return _invalid(rules, invocation, str(exc)), None
    except IdentityError:
        raise
    except Exception as exc:  # a failing resource callable refuses the call, never lets it through
        return _unbuildable(rules, invocation, exc), None
    return _settled(rules, replace(invocation, principal=authz.current_principal()), decision), call


async def _abegin(rules: _Rules, invocation: ActionInvocation, *, record: bool = True,
                  call_id: str | None = None) -> tuple[ActionInvocation, ToolCall | None]:
    """Async twin of :func:`_begin`."""
    invocation, request = _prepared(rules, invocation)
    if request is None:
        return invocation, None
    authz = rules.authz
    call: ToolCall | None = None
    try:
        if isinstance(request, tuple):
            spec, arguments = request
            decided = await authz.abegin_tool_call(spec, arguments, call_id=call_id, record=record)
            call, decision = (decided if record else None), decided.decision
            # The handler runs with what the spec validated, never with the raw parameters.
            invocation = replace(invocation, arguments=decided.arguments)
            invocation = replace(invocation, resource=_resource_of(rules, invocation, spec))
        elif record:
            call = await authz.abegin_call(**request, call_id=call_id)
            decision = call.decision
        else:
            decision = await authz.aauthorize(**request)
    except InvalidArguments as exc:  # audited by the Authorizer
        return _refused(rules, invocation, "invalid", exc.decision), None
    except InvalidValueError as exc:
        return _invalid(rules, invocation, str(exc)), None
    except IdentityError:
        raise
    except Exception as exc:  # a failing resource callable refuses the call, never lets it through
        return _unbuildable(rules, invocation, exc), None
    return _settled(rules, replace(invocation, principal=authz.current_principal()), decision), call


def _failed_response(response: Response) -> bool:
    """Whether the handler's response reports a failed call (not counted in the session)."""
    body = response.get("response")
    if not isinstance(body, Mapping):
        return False
    function = body.get("functionResponse")
    if isinstance(function, Mapping) and function.get("responseState") in ("FAILURE", "REPROMPT"):
        return True
    status = body.get("httpStatusCode")
    return isinstance(status, int) and status >= 400


@contextmanager
def _session_bound(authz: Authorizer, session: SessionOf, event: Mapping[str, Any]) -> Iterator[None]:
    """Bind the session the event belongs to (its ``sessionId`` or what ``session=`` says)."""
    if session is False:
        with authz.session_bound_to(None):
            yield
        return
    session_id = _session_id(event) if session is True else session(_trusted(event))
    if session_id is None:
        raise IdentityError("the event names no session (sessionId) but sessions are on")
    with authz.session_bound_to(session_id, source="the event's session"):
        yield


def _call_id(lambda_context: Any) -> str | None:
    """Lambda's request id: a retried invocation keeps it, so it runs and counts at most once."""
    request_id = getattr(lambda_context, "aws_request_id", None)
    return request_id if isinstance(request_id, str) and request_id else None


def _uncounted() -> ToolCall:
    return ToolCall(Decision(allowed=True), call_id="")


def _run_counted(rules: _Rules, call: ToolCall | None, invocation: ActionInvocation,
                 run: Callable[[], Any]) -> Response:
    """Run the handler; the call counts in the session unless it raised or reported a failure."""
    with call if call is not None else _uncounted() as counted:
        try:
            result = run()
        except AccessDenied as exc:
            counted.fail()
            return _denied_inside(rules, invocation, exc)
        response = _wrapped(invocation, result)
        if _failed_response(response):
            counted.fail()
        return response


async def _arun_counted(rules: _Rules, call: ToolCall | None, invocation: ActionInvocation,
                        run: Callable[[], Awaitable[Any]]) -> Response:
    """Async twin of :func:`_run_counted`."""
    with call if call is not None else _uncounted() as counted:
        try:
            result = await run()
        except AccessDenied as exc:
            counted.fail()
            return _denied_inside(rules, invocation, exc)
        response = _wrapped(invocation, result)
        if _failed_response(response):
            counted.fail()
        return response


@contextmanager
def _bound(authz: Authorizer, principal: Principal | None, correlation_id: str | None,
           source: str) -> Iterator[Identity | None]:
    """Bind the end user for the block; the session id becomes the audit correlation id."""
    with authz.bound_to(principal, source=source, correlation_id=correlation_id) as bound:
        yield bound


def _guessed_action(rules: _Rules, invocation: ActionInvocation) -> str | EntityUID:
    """The action a call not decided would have been, for its audit event."""
    try:
        spec = rules.spec_for(invocation)
        action = spec.action if spec is not None else rules.action_for(invocation)
        return action or rules.keys(invocation)[0]
    except Exception:  # auditing names the call as well as it can; it never fails it
        return rules.keys(invocation)[0]


# -- Lambda responses -------------------------------------------------------------------


def _session(invocation: ActionInvocation) -> dict[str, Any]:
    """The event's session and prompt session attributes, passed back unchanged."""
    session: dict[str, Any] = {}
    for key in ("sessionAttributes", "promptSessionAttributes"):
        value = invocation.raw.get(key)
        session[key] = copy.deepcopy(dict(value)) if isinstance(value, Mapping) else {}
    return session


def _function_response(invocation: ActionInvocation, text: str, state: str | None) -> Response:
    function_response: dict[str, Any] = {"responseBody": {"TEXT": {"body": text}}}
    if state is not None:
        function_response["responseState"] = state
    return {
        "messageVersion": MESSAGE_VERSION,
        "response": {
            "actionGroup": invocation.action_group,
            "function": invocation.function or "",
            "functionResponse": function_response,
        },
        **_session(invocation),
    }


def _api_response(invocation: ActionInvocation, text: str, status_code: int) -> Response:
    return {
        "messageVersion": MESSAGE_VERSION,
        "response": {
            "actionGroup": invocation.action_group,
            "apiPath": invocation.api_path or "",
            "httpMethod": invocation.http_method or "",
            "httpStatusCode": status_code,
            "responseBody": {"application/json": {"body": text}},
        },
        **_session(invocation),
    }


_API_ERRORS: dict[str, tuple[int, str]] = {
    "invalid": (400, "invalid_request"),
    "no-identity": (403, "unauthenticated"),
    "unknown": (403, "unknown_operation"),
    "denied": (403, "forbidden"),
}


def _api_refusal_body(invocation: ActionInvocation) -> tuple[int, str]:
    status_code, error = _API_ERRORS[invocation.status or "denied"]
    body: dict[str, Any] = {"error": error, "message": invocation.refusal or ""}
    if invocation.decision is not None and invocation.decision.id:
        body["decision_id"] = invocation.decision.id
    return status_code, json.dumps(body)


def _refusal_response(invocation: ActionInvocation) -> Response:
    if invocation.kind == "function":
        return _function_response(invocation, invocation.refusal or "", "REPROMPT")
    status_code, text = _api_refusal_body(invocation)
    return _api_response(invocation, text, status_code)


def _is_response(result: Any) -> bool:
    return isinstance(result, Mapping) and "messageVersion" in result and "response" in result


def _wrapped(invocation: ActionInvocation, result: Any) -> Response:
    if _is_response(result):
        return dict(result)
    return invocation.response(result)


def _denied_inside(rules: _Rules, invocation: ActionInvocation, exc: AccessDenied) -> Response:
    """A guarded tool the handler called was denied: the agent gets the refusal."""
    return _refusal_response(_refused(rules, invocation, "denied", exc.decision))


# -- identity of the end user -----------------------------------------------------------------


def _trusted(event: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of the event the model cannot write: session attributes, session and agent ids.

    ``inputText``, ``parameters``, ``requestBody`` and ``promptSessionAttributes``
    are left out, so a principal callable cannot read them even by mistake.
    """
    return {key: copy.deepcopy(event[key]) for key in _TRUSTED_KEYS if key in event}


def _token(event: Mapping[str, Any], attribute: str) -> str | None:
    attributes = event.get("sessionAttributes")
    token = attributes.get(attribute) if isinstance(attributes, Mapping) else None
    if not isinstance(token, str):
        return None
    token = _BEARER.sub("", token.strip(), count=1).strip()
    return token or None


def _checked(value: Any) -> Principal | None:
    if value is None or isinstance(value, (Entity, EntityUID)):
        return value
    raise IdentityError(
        f"the end user must be an Entity or EntityUID built by the application, not {type(value).__name__}"
    )


@dataclass(frozen=True)
class _Identify:
    principal: PrincipalOf | None
    verify_token: TokenVerifier | None
    token_attribute: str

    def first(self, event: Mapping[str, Any]) -> Any:
        """The principal callable's or verifier's answer (possibly an awaitable)."""
        if self.verify_token is not None:
            token = _token(event, self.token_attribute)
            if token is None:
                return None
            return self.verify_token(token)
        assert self.principal is not None
        return self.principal(_trusted(event))

    def resolve(self, event: Mapping[str, Any]) -> Principal | None:
        try:
            value = self.first(event)
            if inspect.isawaitable(value):
                if inspect.iscoroutine(value):
                    value.close()
                raise IdentityError("the identity hook returned an awaitable to a sync handler")
            return _checked(value)
        except Exception as exc:  # an invalid or unreadable identity denies; it never raises out
            _log.info("Bedrock agent call refused: no valid end user (%s)", type(exc).__name__)
            return None

    async def aresolve(self, event: Mapping[str, Any]) -> Principal | None:
        try:
            value = self.first(event)
            if inspect.isawaitable(value):
                value = await value
            return _checked(value)
        except Exception as exc:  # an invalid or unreadable identity denies; it never raises out
            _log.info("Bedrock agent call refused: no valid end user (%s)", type(exc).__name__)
            return None


# -- the decorator --------------------------------------------------------------------------------


LambdaHandler: TypeAlias = Callable[[Mapping[str, Any], Any], Response]
AsyncLambdaHandler: TypeAlias = Callable[[Mapping[str, Any], Any], Awaitable[Response]]


class _Decorator(Protocol):
    @overload
    def __call__(self, fn: Callable[..., Coroutine[Any, Any, Any]], /) -> AsyncLambdaHandler: ...

    @overload
    def __call__(self, fn: Callable[..., Any], /) -> LambdaHandler: ...


def action_group_handler(
    authz: Authorizer,
    *,
    principal: PrincipalOf | None = None,
    verify_token: TokenVerifier | None = None,
    token_attribute: str = "token",
    action: ActionOf = None,
    resource: ResourceOf = None,
    context: ContextOf = None,
    tools: Tools = None,
    session: SessionOf = False,
) -> _Decorator:
    """Authorize every call of a Bedrock Agents action-group Lambda for the end user.

    The decorated ``handler(event, context)`` runs only when Cedar allows the
    call; its return value is wrapped in the response the agent expects
    (a string as is, anything else as JSON; a dict already shaped as a
    Bedrock response passes through). Declare a parameter named
    ``invocation`` to receive the :class:`ActionInvocation`, whose
    ``arguments`` hold the converted parameters that were authorized. The end
    user is bound (``authz.acting_as``) while the handler runs, so guarded
    tools it calls decide for the same user; an :class:`~agentauthz.AccessDenied`
    they raise becomes the refusal.

    How an invocation becomes a Cedar request:

    * **principal**: only from what the application that calls ``InvokeAgent``
      put in ``sessionAttributes``: ``principal=`` reads it (the callable gets
      only ``sessionAttributes``, ``sessionId``, ``agent`` and
      ``messageVersion``), or ``verify_token=`` checks the token stored under
      ``token_attribute`` (``"Bearer "`` prefix allowed). ``inputText``,
      ``parameters``, ``requestBody`` and ``promptSessionAttributes`` are
      written by or shown to the model and never name the user. No user, an
      exception, or a rejected token: the call is refused.
    * **action**: ``<actionGroup>__<function>`` or ``<actionGroup>__<METHOD> <apiPath>``
      by default; ``action=`` a callable of the event, or a mapping by
      operation (the function name or ``"METHOD /path"``, optionally prefixed
      ``"<actionGroup>__"``); an operation the mapping does not name is refused.
    * **resource**: ``Tool::"<action>"`` (type ``authz.tool_entity_type``) by
      default; ``resource=`` a callable of the :class:`ActionInvocation`
      (returning None keeps the default), or a mapping by operation to an
      EntityUID/Entity or a callable of the arguments.
    * **context**: ``{"input": <converted parameters>}`` plus what ``context=``
      (a callable of the invocation) adds.
    * **tools**: guarded tools (``@authz.guard``, AuthorizedTool, ToolSpec) by
      name, or a mapping by operation (``tools=authz.tools`` reuses every tool
      the Authorizer knows): such an operation is decided exactly as the tool's
      own guard decides it (validation, action, resource, context).
    * **session** (:mod:`agentauthz.session._session`): with ``session=True`` the
      invocation is decided in the session of the event's ``sessionId`` (or
      the id ``session=`` returns from the trusted part of the event), with
      ``context.session``, and counted in it once the handler returns a
      response that is not a failure (``responseState`` FAILURE/REPROMPT, HTTP
      status 400 or more); Lambda's request id keys the call, so a retried
      invocation counts once. Sessions must outlive one Lambda instance: give
      the Authorizer a shared store (``SessionConfig(store=...)``).

    A refused call returns ``responseState: "REPROMPT"`` with the refusal as
    text (function groups) or a JSON body ``{"error", "message", "decision_id"}``
    with ``httpStatusCode`` 403 (400 for malformed parameters) for OpenAPI
    groups. The refusal is ``authz.refusal(...)``: generic, naming the
    decision's id (the audit event's ``decision_id``); the determining policy
    ids only with ``Authorizer(disclose_reasons=True)``, values never. Every
    refusal is audited. Session attributes pass through unchanged.

    Args:
        authz: the Authorizer deciding the calls.
        principal: the end user from the trusted part of the event.
        verify_token: checks a token from the session attributes and returns the end user.
        token_attribute: session attribute holding the token.
        action: Cedar action per operation.
        resource: Cedar resource per invocation.
        context: extra context per invocation.
        tools: guarded tools whose specs decide their operations.
        session: record calls in the conversation's session (see above).

    Raises:
        ConfigurationError: at decoration time, for neither or both of
            ``principal``/``verify_token`` or a malformed option.
        InvalidValueError: at call time, for an event that is not an
            action-group invocation (the Lambda fails; the agent does nothing).

    Example:
        >>> import agentauthz as az
        >>> authz = az.Authorizer.from_text(
        ...     '@id("refunds") permit(principal, action == Action::"orders__issue_refund", resource)'
        ...     ' when { context.input.amount <= 500 };', audit=[])
        >>> @action_group_handler(
        ...     authz, principal=lambda event: az.EntityUID("User", event["sessionAttributes"]["userId"]))
        ... def handler(event, context, invocation):
        ...     return f"refunded {invocation.arguments['amount']}"
        >>> event = {"messageVersion": "1.0", "actionGroup": "orders", "function": "issue_refund",
        ...          "sessionAttributes": {"userId": "bob"},
        ...          "parameters": [{"name": "amount", "type": "integer", "value": "300"}]}
        >>> handler(event, None)["response"]["functionResponse"]
        {'responseBody': {'TEXT': {'body': 'refunded 300'}}}
        >>> event["parameters"][0]["value"] = "900"
        >>> handler(event, None)["response"]["functionResponse"]["responseState"]
        'REPROMPT'
    """
    if (principal is None) == (verify_token is None):
        raise ConfigurationError(
            "action_group_handler needs exactly one of principal= (a trusted session attribute) "
            "or verify_token= (a token verifier)"
        )
    for name, hook in (("principal", principal), ("verify_token", verify_token)):
        if hook is not None and not callable(hook):
            raise ConfigurationError(f"{name}= must be callable")
    if not isinstance(token_attribute, str) or not token_attribute:
        raise ConfigurationError("token_attribute must be a non-empty string")
    if not isinstance(session, bool) and not callable(session):
        raise ConfigurationError("session= must be True, False or a callable of the event")
    rules = _Rules.build(authz, action, resource, context, tools)
    identify = _Identify(principal, verify_token, token_attribute)

    def decorate(fn: Callable[..., Any]) -> Any:
        if not callable(fn):
            raise ConfigurationError("action_group_handler decorates a handler(event, context)")
        try:
            wants_invocation = "invocation" in inspect.signature(fn).parameters
        except (TypeError, ValueError):
            wants_invocation = False

        def arguments(invocation: ActionInvocation) -> dict[str, Any]:
            return {"invocation": invocation} if wants_invocation else {}

        if inspect.iscoroutinefunction(fn):

            async def handle_async(event: Mapping[str, Any], lambda_context: Any = None) -> Response:
                invocation = _envelope(event)
                user = await identify.aresolve(event)
                if user is None:
                    return _refusal_response(_no_identity(rules, invocation))
                try:
                    with _bound(authz, user, _session_id(event), "the session attributes"), \
                            _session_bound(authz, session, event):
                        invocation, call = await _abegin(rules, invocation,
                                                         call_id=_call_id(lambda_context))
                        if not invocation.allowed:
                            return _refusal_response(invocation)
                        return await _arun_counted(
                            rules, call, invocation,
                            lambda: fn(event, lambda_context, **arguments(invocation)))
                except IdentityError as exc:
                    return _refusal_response(_no_identity(rules, invocation, exc))

            return _named(fn, handle_async)

        def handle(event: Mapping[str, Any], lambda_context: Any = None) -> Response:
            invocation = _envelope(event)
            user = identify.resolve(event)
            if user is None:
                return _refusal_response(_no_identity(rules, invocation))
            try:
                with _bound(authz, user, _session_id(event), "the session attributes"), \
                        _session_bound(authz, session, event):
                    invocation, call = _begin(rules, invocation, call_id=_call_id(lambda_context))
                    if not invocation.allowed:
                        return _refusal_response(invocation)
                    return _run_counted(rules, call, invocation,
                                        lambda: fn(event, lambda_context, **arguments(invocation)))
            except IdentityError as exc:
                return _refusal_response(_no_identity(rules, invocation, exc))

        return _named(fn, handle)

    return cast(_Decorator, decorate)


def _session_id(event: Mapping[str, Any]) -> str | None:
    session = event.get("sessionId")
    return session if isinstance(session, str) and session else None


def _named(fn: Callable[..., Any], wrapper: Callable[..., Any]) -> Callable[..., Any]:
    for attribute in ("__module__", "__name__", "__qualname__", "__doc__"):
        try:
            setattr(wrapper, attribute, getattr(fn, attribute))
        except (AttributeError, TypeError):
            continue
    wrapper.__wrapped__ = fn  # type: ignore[attr-defined]
    return wrapper


# -- return of control ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ReturnControlAuthorization:
    """The invocations of a ``returnControl`` payload, split into allowed and denied.

    Unpacks as ``results, allowed = authorize_return_control(...)``.

    Attributes:
        invocation_id: the payload's ``invocationId`` (send it back in ``sessionState``).
        allowed: invocations the application may run, in payload order.
        denied: refused invocations, in payload order (``.refusal`` says why).
    """

    invocation_id: str | None
    allowed: tuple[ActionInvocation, ...]
    denied: tuple[ActionInvocation, ...]

    @property
    def results(self) -> list[dict[str, Any]]:
        """``returnControlInvocationResults`` entries for the denied invocations.

        Function inputs get a ``functionResult`` with ``responseState: "REPROMPT"``
        and the refusal as text; API inputs an ``apiResult`` with
        ``httpStatusCode`` 403 (400 for malformed parameters), a JSON body and
        ``responseState: "REPROMPT"``.
        """
        return [_denied_result(invocation) for invocation in self.denied]

    def session_state(self, results: Iterable[Mapping[str, Any]] = (), **extra: Any) -> dict[str, Any]:
        """The ``sessionState`` for the next ``InvokeAgent`` call.

        Args:
            results: the entries for the allowed invocations the application ran
                (see :meth:`ActionInvocation.result`).
            extra: more ``sessionState`` members (``sessionAttributes``, ...).
        """
        state: dict[str, Any] = dict(extra)
        if self.invocation_id is not None:
            state["invocationId"] = self.invocation_id
        state["returnControlInvocationResults"] = [*self.results, *(dict(r) for r in results)]
        return state

    def __iter__(self) -> Iterator[Any]:
        """``results, allowed = authorize_return_control(...)``."""
        return iter((self.results, list(self.allowed)))


def _denied_result(invocation: ActionInvocation) -> dict[str, Any]:
    if invocation.kind == "function":
        result = invocation.result(invocation.refusal or "")
        member = result["functionResult"]
    else:
        status_code, text = _api_refusal_body(invocation)
        result = invocation.result(text, status_code=status_code)
        member = result["apiResult"]
    member["responseState"] = "REPROMPT"
    if invocation.raw.get("actionInvocationType") in _CONFIRMATION_TYPES:
        member["confirmationState"] = "DENY"
    return result


def _inputs(return_control_event: Mapping[str, Any]) -> tuple[str | None, list[ActionInvocation]]:
    if not isinstance(return_control_event, Mapping):
        raise InvalidValueError("a returnControl payload is a JSON object")
    payload = return_control_event.get("returnControl", return_control_event)
    inputs = payload.get("invocationInputs") if isinstance(payload, Mapping) else None
    if not isinstance(inputs, list):
        raise InvalidValueError("not a returnControl payload: no 'invocationInputs' list")
    invocation_id = payload.get("invocationId")
    invocations = []
    for member in inputs:
        if isinstance(member, Mapping) and isinstance(member.get("functionInvocationInput"), Mapping):
            invocations.append(_envelope(member["functionInvocationInput"], "function"))
        elif isinstance(member, Mapping) and isinstance(member.get("apiInvocationInput"), Mapping):
            invocations.append(_envelope(member["apiInvocationInput"], "api"))
        else:
            raise InvalidValueError(
                "returnControl invocation input of an unsupported kind (expected "
                "functionInvocationInput or apiInvocationInput)"
            )
    return (invocation_id if isinstance(invocation_id, str) else None), invocations


def _split(invocation_id: str | None, decided: list[ActionInvocation]) -> ReturnControlAuthorization:
    return ReturnControlAuthorization(
        invocation_id=invocation_id,
        allowed=tuple(i for i in decided if i.allowed),
        denied=tuple(i for i in decided if not i.allowed),
    )


def authorize_return_control(
    authz: Authorizer,
    return_control_event: Mapping[str, Any],
    principal: Entity | EntityUID | None = None,
    *,
    action: ActionOf = None,
    resource: ResourceOf = None,
    context: ContextOf = None,
    tools: Tools = None,
) -> ReturnControlAuthorization:
    """Authorize every invocation of an agent's ``returnControl`` payload for the end user.

    For agents whose action groups use ``RETURN_CONTROL``: ``InvokeAgent``
    returns the functions or API operations to run instead of calling a
    Lambda. Each ``invocationInputs`` entry is decided like an action-group
    Lambda call (same ``action``/``resource``/``context``/``tools`` options
    as :func:`action_group_handler`); the application runs only the allowed
    ones and sends the denied ones' results back with its own.

    Args:
        authz: the Authorizer deciding the calls.
        return_control_event: the ``returnControl`` payload (``invocationId``,
            ``invocationInputs``) or the stream event holding it.
        principal: the end user the application calls ``InvokeAgent`` for;
            None uses the one bound with ``authz.acting_as``.
        action: Cedar action per operation.
        resource: Cedar resource per invocation.
        context: extra context per invocation.
        tools: guarded tools whose specs decide their operations.

    Returns:
        The allowed and denied invocations; ``.results`` holds the
        ``returnControlInvocationResults`` entries of the denied ones and
        ``.session_state(results)`` the next ``sessionState``.

    Raises:
        IdentityError: no principal given and none bound, or a principal that
            conflicts with the bound one.
        InvalidValueError: the payload is not a returnControl payload.

    Example:
        >>> import agentauthz as az
        >>> authz = az.Authorizer.from_text(
        ...     'permit(principal, action == Action::"search", resource);', audit=[])
        >>> payload = {"invocationId": "inv-1", "invocationInputs": [
        ...     {"functionInvocationInput": {"actionGroup": "kb", "function": "search",
        ...      "parameters": [{"name": "query", "type": "string", "value": "refunds"}]}},
        ...     {"functionInvocationInput": {"actionGroup": "kb", "function": "delete",
        ...      "parameters": []}}]}
        >>> results, allowed = authorize_return_control(
        ...     authz, payload, az.EntityUID("User", "alice"), action=lambda ev: ev["function"])
        >>> [i.function for i in allowed], results[0]["functionResult"]["responseState"]
        (['search'], 'REPROMPT')
    """
    rules = _Rules.build(authz, action, resource, context, tools)
    invocation_id, invocations = _inputs(return_control_event)
    checked = _checked(principal)
    with _bound(authz, checked, None, "the principal given to authorize_return_control"):
        authz.current_principal()  # no end user: IdentityError before anything is decided
        decided = [_decide(rules, invocation) for invocation in invocations]
    return _split(invocation_id, decided)


async def aauthorize_return_control(
    authz: Authorizer,
    return_control_event: Mapping[str, Any],
    principal: Entity | EntityUID | None = None,
    *,
    action: ActionOf = None,
    resource: ResourceOf = None,
    context: ContextOf = None,
    tools: Tools = None,
) -> ReturnControlAuthorization:
    """Async twin of :func:`authorize_return_control`."""
    rules = _Rules.build(authz, action, resource, context, tools)
    invocation_id, invocations = _inputs(return_control_event)
    checked = _checked(principal)
    with _bound(authz, checked, None, "the principal given to authorize_return_control"):
        authz.current_principal()
        decided = [await _adecide(rules, invocation) for invocation in invocations]
    return _split(invocation_id, decided)
