"""Amazon Bedrock Agents events as the service sends them, and reading the handler's answers."""

from __future__ import annotations

from typing import Any

import agentauthz as az

AGENT = {"name": "assistant", "id": "AGENT12345", "alias": "TSTALIASID", "version": "DRAFT"}


def params(**values: Any) -> list[dict[str, str]]:
    """Parameters as Bedrock sends them: every value a string, typed by its declared type."""
    out = []
    for name, value in values.items():
        if isinstance(value, tuple):
            kind, text = value
        elif isinstance(value, bool):
            kind, text = "boolean", str(value).lower()
        elif isinstance(value, int):
            kind, text = "integer", str(value)
        elif isinstance(value, float):
            kind, text = "number", repr(value)
        else:
            kind, text = "string", str(value)
        out.append({"name": name, "type": kind, "value": text})
    return out


def function_event(function: str, user: str | None = "bob", *, group: str = "orders",
                   session: dict[str, Any] | None = None, prompt: dict[str, Any] | None = None,
                   text: str = "please do it", **values: Any) -> dict[str, Any]:
    attributes = dict(session or {})
    if user is not None:
        attributes.setdefault("userId", user)
    return {
        "messageVersion": "1.0", "agent": AGENT, "inputText": text, "sessionId": "session-1",
        "actionGroup": group, "function": function, "parameters": params(**values),
        "sessionAttributes": attributes, "promptSessionAttributes": dict(prompt or {}),
    }


def api_event(method: str, path: str, user: str | None = "bob", *, group: str = "orders-api",
              query: dict[str, Any] | None = None, body: dict[str, Any] | None = None,
              prompt: dict[str, Any] | None = None, text: str = "please do it") -> dict[str, Any]:
    event: dict[str, Any] = {
        "messageVersion": "1.0", "agent": AGENT, "inputText": text, "sessionId": "session-2",
        "actionGroup": group, "apiPath": path, "httpMethod": method,
        "parameters": params(**(query or {})),
        "sessionAttributes": {} if user is None else {"userId": user},
        "promptSessionAttributes": dict(prompt or {}),
    }
    if body is not None:
        event["requestBody"] = {"content": {"application/json": {"properties": params(**body)}}}
    return event


def session_user(event: dict[str, Any]) -> az.EntityUID:
    return az.EntityUID("User", event["sessionAttributes"]["userId"])


def body_of(response: dict[str, Any]) -> str:
    answer = response["response"]
    if "functionResponse" in answer:
        return str(answer["functionResponse"]["responseBody"]["TEXT"]["body"])
    return str(answer["responseBody"]["application/json"]["body"])


def refused(response: dict[str, Any]) -> bool:
    answer = response["response"]
    if "functionResponse" in answer:
        return answer["functionResponse"].get("responseState") == "REPROMPT"
    return int(answer["httpStatusCode"]) >= 400


