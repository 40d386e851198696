"""What goes back to a Bedrock agent: Lambda responses and return-of-control results.

A function-details group answers ``functionResponse`` (a refusal with
``responseState: "REPROMPT"`` and the refusal as text), an OpenAPI group an
``httpStatusCode`` and a JSON ``responseBody`` (a refusal: 403, or 400 for
malformed parameters, with ``{"error", "message", "decision_id"}``). The
event's session attributes go back unchanged. The same shapes serve the
``returnControlInvocationResults`` entries of return of control.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:
    from agentauthz.integrations.bedrock._events import ActionInvocation

__all__ = [
    "MESSAGE_VERSION",
    "Response",
    "api_refusal_body",
    "body_text",
    "denied_result",
    "failed_response",
    "handler_response",
    "invocation_result",
    "refusal_response",
    "wrapped",
]

Response: TypeAlias = dict[str, Any]

MESSAGE_VERSION = "1.0"
_CONFIRMATION_TYPES = ("USER_CONFIRMATION", "USER_CONFIRMATION_AND_RESULT")


def body_text(body: Any) -> str:
    if isinstance(body, str):
        return body
    if body is None:
        return ""
    return json.dumps(body, default=str)


def _passed_back(invocation: ActionInvocation) -> dict[str, Any]:
    """The event's session and prompt session attributes, passed back unchanged."""
    session: dict[str, Any] = {}
    for key in ("sessionAttributes", "promptSessionAttributes"):
        value = invocation.raw.get(key)
        session[key] = copy.deepcopy(dict(value)) if isinstance(value, Mapping) else {}
    return session


def function_response(invocation: ActionInvocation, text: str, state: str | None) -> Response:
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
        **_passed_back(invocation),
    }


def api_response(invocation: ActionInvocation, text: str, status_code: int) -> Response:
    return {
        "messageVersion": MESSAGE_VERSION,
        "response": {
            "actionGroup": invocation.action_group,
            "apiPath": invocation.api_path or "",
            "httpMethod": invocation.http_method or "",
            "httpStatusCode": status_code,
            "responseBody": {"application/json": {"body": text}},
        },
        **_passed_back(invocation),
    }


_API_ERRORS: dict[str, tuple[int, str]] = {
    "invalid": (400, "invalid_request"),
    "no-identity": (403, "unauthenticated"),
    "unknown": (403, "unknown_operation"),
    "denied": (403, "forbidden"),
    "approval": (403, "approval_required"),
}


def api_refusal_body(invocation: ActionInvocation) -> tuple[int, str]:
    status_code, error = _API_ERRORS[invocation.status or "denied"]
    body: dict[str, Any] = {"error": error, "message": invocation.refusal or ""}
    if invocation.decision is not None and invocation.decision.id:
        body["decision_id"] = invocation.decision.id
    return status_code, json.dumps(body)


def refusal_response(invocation: ActionInvocation) -> Response:
    if invocation.kind == "function":
        return function_response(invocation, invocation.refusal or "", "REPROMPT")
    status_code, text = api_refusal_body(invocation)
    return api_response(invocation, text, status_code)


def _is_response(result: Any) -> bool:
    return isinstance(result, Mapping) and "messageVersion" in result and "response" in result


def wrapped(invocation: ActionInvocation, result: Any) -> Response:
    if _is_response(result):
        return dict(result)
    return invocation.response(result)


def handler_response(invocation: ActionInvocation, text: str, status_code: int) -> Response:
    """The Lambda response returning ``text``, shaped for the invocation's group kind."""
    if invocation.kind == "function":
        return function_response(invocation, text, None)
    return api_response(invocation, text, status_code)


def invocation_result(invocation: ActionInvocation, text: str, status_code: int) -> dict[str, Any]:
    """The ``returnControlInvocationResults`` entry returning ``text`` for ``invocation``."""
    if invocation.kind == "function":
        member: dict[str, Any] = {
            "actionGroup": invocation.action_group,
            "function": invocation.function or "",
            "responseBody": {"TEXT": {"body": text}},
        }
        key = "functionResult"
    else:
        member = {
            "actionGroup": invocation.action_group,
            "apiPath": invocation.api_path or "",
            "httpMethod": invocation.http_method or "",
            "httpStatusCode": status_code,
            "responseBody": {"application/json": {"body": text}},
        }
        key = "apiResult"
    if invocation.agent_id is not None:
        member["agentId"] = invocation.agent_id
    return {key: member}


def failed_response(response: Response) -> bool:
    """Whether the handler's response reports a failed call (not counted in the session)."""
    body = response.get("response")
    if not isinstance(body, Mapping):
        return False
    function = body.get("functionResponse")
    if isinstance(function, Mapping) and function.get("responseState") in ("FAILURE", "REPROMPT"):
        return True
    status = body.get("httpStatusCode")
    return isinstance(status, int) and status >= 400


def denied_result(invocation: ActionInvocation) -> dict[str, Any]:
    if invocation.kind == "function":
        result = invocation.result(invocation.refusal or "")
        member = result["functionResult"]
    else:
        status_code, text = api_refusal_body(invocation)
        result = invocation.result(text, status_code=status_code)
        member = result["apiResult"]
    member["responseState"] = "REPROMPT"
    if invocation.raw.get("actionInvocationType") in _CONFIRMATION_TYPES:
        member["confirmationState"] = "DENY"
    return result
