"""Bedrock Agents events parsed: function-details and OpenAPI action groups, as :class:`ActionInvocation`.

An action-group Lambda event, or one ``invocationInputs`` entry of a
``returnControl`` payload, names its group and either a ``function`` (a
function-details group) or an ``apiPath`` and ``httpMethod`` (an OpenAPI
group). :func:`envelope` reads that much (:func:`return_control_inputs` for
each entry of a payload); :func:`with_arguments` converts the
parameters (and an OpenAPI request body's properties) by their declared types,
refusing a value that does not match (the message names the parameter and the
type, never the value).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypeAlias

from agentauthz._errors import InvalidValueError
from agentauthz._model import Decision, Entity, EntityUID, float_to_decimal
from agentauthz.integrations.bedrock._responses import (
    Response,
    body_text,
    handler_response,
    invocation_result,
)
from agentauthz.session._approvals import ApprovalRequest

__all__ = ["ActionInvocation", "Status", "envelope", "return_control_inputs", "with_arguments"]

Status: TypeAlias = Literal["allowed", "denied", "no-identity", "invalid", "unknown", "approval"]

_INTEGER = re.compile(r"[+-]?[0-9]+")
_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1


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
            ``"invalid"`` (malformed parameters), ``"unknown"`` (an operation
            this handler does not authorize) or ``"approval"`` (held until a
            person approves it: see ``approval``).
        refusal: the text the model reads when the call was refused
            (``authz.refusal``: generic, naming the decision's id).
        approval: for a held call, the request a person may grant
            (``authz.approve(invocation.approval)``); the agent's next call
            with the same arguments in the same session then runs once.

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
    approval: ApprovalRequest | None = None

    @classmethod
    def from_event(cls, event: Mapping[str, Any]) -> ActionInvocation:
        """Parse an action-group Lambda event (or a return-of-control invocation input).

        Raises:
            InvalidValueError: the event is not an action-group invocation, or a
                parameter value does not match its declared type (the message
                names the parameter and the type, never the value).
        """
        return with_arguments(envelope(event))

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
        return handler_response(self, body_text(body), status_code)

    def result(self, body: Any = "", *, status_code: int = 200) -> dict[str, Any]:
        """The ``returnControlInvocationResults`` entry returning ``body`` for this invocation.

        For an invocation the application ran after
        :func:`~agentauthz.integrations.bedrock.authorize_return_control`.
        """
        return invocation_result(self, body_text(body), status_code)




def envelope(raw: Mapping[str, Any], kind: str | None = None) -> ActionInvocation:
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


def with_arguments(invocation: ActionInvocation) -> ActionInvocation:
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


def return_control_inputs(
    return_control_event: Mapping[str, Any],
) -> tuple[str | None, list[ActionInvocation]]:
    """The ``invocationId`` and the invocations of a ``returnControl`` payload (or the event holding it)."""
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
            invocations.append(envelope(member["functionInvocationInput"], "function"))
        elif isinstance(member, Mapping) and isinstance(member.get("apiInvocationInput"), Mapping):
            invocations.append(envelope(member["apiInvocationInput"], "api"))
        else:
            raise InvalidValueError(
                "returnControl invocation input of an unsupported kind (expected "
                "functionInvocationInput or apiInvocationInput)"
            )
    return (invocation_id if isinstance(invocation_id, str) else None), invocations
