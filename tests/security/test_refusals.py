"""Finding 13: a refused call tells the model a generic refusal and an opaque decision id, nothing else.

Every path that hands a model the text of a refusal is one entry of
``REFUSALS``: the guard with ``on_deny="message"``, LangChain's
``AuthorizedTool`` and ``AuthzMiddleware``, the Bedrock action-group handler
(function and OpenAPI groups, a guarded tool denied inside the handler) and
return of control. For each, and each kind of refusal it can give (denied by a
policy, invalid arguments, an unknown tool, no identity), the text holds no
policy id, no reason, no error text and no argument value, and names a
decision id that is the ``decision_id`` of the audit event holding the reasons.
``Authorizer(disclose_reasons=True)`` is the explicit opt-in that shows them.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from fastmcp import Client, FastMCP
from langchain.agents import create_agent
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import BaseTool, tool

import agentauthz as az
from agentauthz.integrations.bedrock import action_group_handler, authorize_return_control
from agentauthz.integrations.langchain import PRINCIPAL_KEY, AuthorizedTool, AuthzMiddleware
from agentauthz.integrations.mcp import AuthorizedClientSession
from agentauthz.integrations.mcp import AuthzMiddleware as MCPAuthzMiddleware
from tests.integrations.mcp_harness import call as mcp_call
from tests.integrations.mcp_harness import static_tokens

POLICIES = """
@id("exec-records-need-clearance")
forbid (principal, action, resource)
when { context has input && context.input has employee && context.input.employee == "e100" };

@id("staff-read-records")
permit (principal, action, resource);
"""
USER = az.EntityUID("User", "alice")
SECRET = "078-05-1120"
#: What each kind of refusal is about: the call the model makes, what must stay out of the text.
CALLS: dict[str, dict[str, Any]] = {
    "denied": {"employee": "e100"},
    "invalid": {"employee": "e1", "ssn": SECRET},
}
NEVER_SHOWN = ("exec-records-need-clearance", "staff-read-records", "e100", SECRET, "ssn",
               "unknown argument", "invalid arguments", "no end user", "unknown tool", "unknown operation")
DECISION_ID = re.compile(r"decision ([0-9a-f]{32})")


class Scripted(GenericFakeChatModel):
    def bind_tools(self, tools: Any, **kwargs: Any) -> Scripted:
        return self


def read_record_tool() -> BaseTool:
    @tool
    def read_record(employee: str) -> str:
        """Read an employee record."""
        return f"record of {employee}"

    return read_record


def bedrock_parameters(arguments: dict[str, Any]) -> list[dict[str, str]]:
    return [{"name": k, "type": "string", "value": v} for k, v in arguments.items()]


def function_event(arguments: dict[str, Any], *, function: str = "read_record",
                   user: str | None = "alice") -> dict[str, Any]:
    return {"messageVersion": "1.0", "actionGroup": "hr", "function": function,
            "sessionAttributes": {"userId": user} if user else {},
            "parameters": bedrock_parameters(arguments)}


def principal_of(event: dict[str, Any]) -> az.EntityUID:
    return az.EntityUID("User", event["sessionAttributes"]["userId"])


# -- every path a refusal reaches a model by, per kind of refusal -----------------------------------------


def guard(authz: az.Authorizer, kind: str) -> str:
    @authz.guard(on_deny="message")
    def read_record(employee: str) -> str:
        return "record"

    with authz.acting_as(USER):
        return str(read_record(**CALLS[kind]))


def authorized_tool(authz: az.Authorizer, kind: str) -> str:
    config = {"configurable": {PRINCIPAL_KEY: USER}}
    return str(AuthorizedTool(tool=read_record_tool(), authz=authz).invoke(CALLS[kind], config=config))


def authorized_tool_call(authz: az.Authorizer, kind: str) -> str:
    config = {"configurable": {PRINCIPAL_KEY: USER}}
    call = {"type": "tool_call", "id": "c-1", "name": "read_record", "args": CALLS[kind]}
    message = AuthorizedTool(tool=read_record_tool(), authz=authz).invoke(call, config=config)
    assert isinstance(message, ToolMessage) and message.status == "error"
    return str(message.content)


def middleware(authz: az.Authorizer, kind: str) -> str:
    name = "transfer_funds" if kind == "unknown" else "read_record"
    arguments = CALLS.get(kind, {"employee": "e1"})
    turn = AIMessage("", tool_calls=[{"name": name, "args": arguments, "id": "c-1"}])
    model = Scripted(messages=iter([turn, AIMessage("done")]))
    agent = create_agent(model, tools=[read_record_tool()], middleware=[AuthzMiddleware(authz)])
    result = agent.invoke({"messages": [("user", "hi")]}, config={"configurable": {PRINCIPAL_KEY: USER}})
    [message] = [m for m in result["messages"] if isinstance(m, ToolMessage)]
    assert message.status == "error"  # the same status as AuthorizedTool's refusals
    return str(message.content)


def _record_handler(authz: az.Authorizer, **options: Any) -> Callable[..., dict[str, Any]]:
    @action_group_handler(authz, principal=principal_of, **options)
    def handler(event: Any, context: Any, invocation: Any) -> str:
        return "record"

    return handler


def bedrock_function(authz: az.Authorizer, kind: str) -> str:
    @authz.guard
    def read_record(employee: str) -> str:
        return "record"

    handler = _record_handler(authz, tools=[read_record])
    if kind == "no-identity":
        event = function_event({"employee": "e1"}, user=None)
    elif kind == "unknown":
        event = function_event({}, function="wipe_records")
        handler = _record_handler(authz, tools={"read_record": az.ToolSettings(action="read_record")},
                                  action=lambda event: None)
    else:
        event = function_event(CALLS[kind])
    response = handler(event, None)["response"]["functionResponse"]
    assert response["responseState"] == "REPROMPT"
    return str(response["responseBody"]["TEXT"]["body"])


def bedrock_api(authz: az.Authorizer, kind: str) -> str:
    @authz.guard
    def read_record(employee: str) -> str:
        return "record"

    handler = _record_handler(authz, tools={"GET /records": read_record})
    arguments = {"employee": "e1"} if kind == "no-identity" else CALLS[kind]
    event = {"messageVersion": "1.0", "actionGroup": "hr-api", "apiPath": "/records", "httpMethod": "GET",
             "sessionAttributes": {} if kind == "no-identity" else {"userId": "alice"},
             "parameters": bedrock_parameters(arguments)}
    body = json.loads(handler(event, None)["response"]["responseBody"]["application/json"]["body"])
    assert set(body) == {"error", "message", "decision_id"}
    assert DECISION_ID.search(body["message"])[1] == body["decision_id"]  # type: ignore[index]
    return str(body["message"])


def bedrock_denied_inside(authz: az.Authorizer, kind: str) -> str:
    @authz.guard
    def read_record(employee: str) -> str:
        return "record"

    @action_group_handler(authz, principal=principal_of, action=lambda event: "lookup")
    def handler(event: Any, context: Any, invocation: Any) -> str:
        return read_record(**invocation.arguments)  # raises AccessDenied: the agent gets the refusal

    response = handler(function_event(CALLS[kind]), None)["response"]["functionResponse"]
    return str(response["responseBody"]["TEXT"]["body"])


def return_of_control(authz: az.Authorizer, kind: str) -> str:
    @authz.guard
    def read_record(employee: str) -> str:
        return "record"

    payload = {"invocationInputs": [{"functionInvocationInput": {
        "actionGroup": "hr", "function": "read_record", "parameters": bedrock_parameters(CALLS[kind])}}]}
    [result] = authorize_return_control(authz, payload, USER, tools=[read_record]).results
    return str(result["functionResult"]["responseBody"]["TEXT"]["body"])


def strands(authz: az.Authorizer, kind: str) -> str:
    """A Strands agent with AuthzIntervention: the model's call, or a direct call without an end user."""
    from strands import Agent
    from strands import tool as strands_tool

    from agentauthz.integrations.strands import PRINCIPAL_KEY as STRANDS_PRINCIPAL_KEY
    from agentauthz.integrations.strands import AuthzIntervention, ScriptedModel

    @strands_tool
    def read_record(employee: str) -> str:
        """Read an employee record."""
        return f"record of {employee}"

    name = "transfer_funds" if kind == "unknown" else "read_record"
    model = ScriptedModel([("tool", name, CALLS.get(kind, {"employee": "e1"}))])
    agent = Agent(model=model, tools=[read_record], interventions=[AuthzIntervention(authz)],
                  callback_handler=None)
    if kind == "no-identity":
        [result] = [agent.tool.read_record(employee="e1")]
    else:
        agent("hi", invocation_state={STRANDS_PRINCIPAL_KEY: USER})
        [result] = model.tool_results()
    assert result["status"] == "error"
    text = str(result["content"][0]["text"])
    assert text.startswith("DENIED: ")  # Strands' prefix of a refusal
    return text


def mcp_record_server(authz: az.Authorizer | None, *, auth: bool) -> FastMCP:
    """An MCP server with the read_record tool, behind AuthzMiddleware when an Authorizer is given."""
    middleware = [MCPAuthzMiddleware(authz)] if authz is not None else []
    server = FastMCP("hr", auth=static_tokens("alice") if auth else None, middleware=middleware)
    server.tool(read_record_tool().func)  # type: ignore[attr-defined]
    return server


def mcp_server(authz: az.Authorizer, kind: str) -> str:
    name = "transfer_funds" if kind == "unknown" else "read_record"
    identified = kind != "no-identity"  # a server without auth=: its requests carry no token
    result = mcp_call(mcp_record_server(authz, auth=identified), "t-alice" if identified else None, name,
                      CALLS.get(kind, {"employee": "e1"}))
    assert result.is_error  # a tool error result, never a JSON-RPC "internal error"
    return str(result.content[0].text)  # type: ignore[union-attr]


def mcp_client(authz: az.Authorizer, kind: str) -> str:
    name = "transfer_funds" if kind == "unknown" else "read_record"

    async def agent() -> Any:
        async with Client(mcp_record_server(None, auth=False)) as client:
            with authz.acting_as(USER):
                return await AuthorizedClientSession(client.session, authz).call_tool(
                    name, CALLS.get(kind, {"employee": "e1"}))

    result = asyncio.run(agent())
    assert result.is_error
    return str(result.content[0].text)


@dataclass(frozen=True)
class RefusalPath:
    name: str
    refuse: Callable[[az.Authorizer, str], str]
    kinds: tuple[str, ...] = ("denied", "invalid")


REFUSALS = [
    RefusalPath("guard on_deny=message", guard),
    RefusalPath("AuthorizedTool", authorized_tool),
    RefusalPath("AuthorizedTool tool call", authorized_tool_call),
    RefusalPath("AuthzMiddleware", middleware, ("denied", "invalid", "unknown")),
    RefusalPath("Bedrock function group", bedrock_function, ("denied", "invalid", "unknown", "no-identity")),
    RefusalPath("Bedrock OpenAPI group", bedrock_api, ("denied", "invalid", "no-identity")),
    RefusalPath("Bedrock guarded tool denied in the handler", bedrock_denied_inside, ("denied",)),
    RefusalPath("Bedrock return of control", return_of_control),
    RefusalPath("Strands AuthzIntervention", strands, ("denied", "invalid", "unknown", "no-identity")),
    RefusalPath("MCP server middleware", mcp_server, ("denied", "invalid", "unknown", "no-identity")),
    RefusalPath("MCP client session", mcp_client, ("denied", "invalid", "unknown")),
]
CASES = [pytest.param(path, kind, id=f"{path.name}-{kind}") for path in REFUSALS for kind in path.kinds]


@pytest.mark.parametrize(("path", "kind"), CASES)
def test_the_model_reads_a_generic_refusal_naming_the_audited_decision_id(
    path: RefusalPath, kind: str
) -> None:
    audit = az.MemorySink()
    text = path.refuse(az.Authorizer.from_text(POLICIES, audit=[audit]), kind)
    shown = DECISION_ID.sub("decision <id>", text)  # a random hex id may spell "e100" by chance
    for never in NEVER_SHOWN:
        assert never not in shown, (never, text)
    found = DECISION_ID.search(text)
    assert found is not None, text
    [event] = [e for e in audit.events if e.decision_id == found[1]]
    assert event.decision == "deny"
    if kind == "denied":
        assert event.reasons == ("exec-records-need-clearance",)
    else:
        assert event.errors  # why it was refused: in the audit event only


@pytest.mark.parametrize(("path", "kind"), [c for c in CASES if c.values[1] in ("denied", "invalid")])
def test_disclose_reasons_is_the_explicit_opt_in_that_shows_them(path: RefusalPath, kind: str) -> None:
    text = path.refuse(az.Authorizer.from_text(POLICIES, audit=[], disclose_reasons=True), kind)
    shown = "exec-records-need-clearance" if kind == "denied" else "ssn: unknown argument"
    assert shown in text and SECRET not in text


def test_evaluation_errors_are_never_shown_even_when_disclosing() -> None:
    authz = az.Authorizer.from_text(
        'permit(principal, action, resource) when { context.input.employee.salary > 5 };',
        audit=[], disclose_reasons=True)
    text = guard(authz, "denied")
    assert "could not be evaluated" in text and "salary" not in text


def test_decision_ids_are_unique_and_on_the_decision_and_its_audit_event() -> None:
    audit = az.MemorySink()
    authz = az.Authorizer.from_text(POLICIES, audit=[audit])
    with authz.acting_as(USER):
        decisions = [authz.authorize(action="read", resource=az.EntityUID("Doc", str(n))) for n in range(50)]
        decisions += authz.authorize_many([az.Request(USER, "read", az.EntityUID("Doc", "d"))] * 20)
    assert len({d.id for d in decisions}) == 70
    assert all(re.fullmatch(r"[0-9a-f]{32}", d.id) for d in decisions)
    assert [e.decision_id for e in audit.events] == [d.id for d in decisions]
    assert json.loads(audit.events[0].to_json())["decision_id"] == decisions[0].id


def test_an_audit_line_without_a_decision_keeps_its_old_shape() -> None:
    event = az.AuditEvent(principal=None, action="a", resource="r", decision="deny", enforced=True,
                          reasons=(), errors=(), fingerprint="f", engine="local", mode="enforce",
                          elapsed_us=0, correlation_id="c", timestamp=0.0)
    assert "decision_id" not in json.loads(event.to_json())


def test_a_session_refusal_keeps_the_id_of_the_decision_it_overrides() -> None:
    audit = az.MemorySink()
    authz = az.Authorizer.from_text(POLICIES, audit=[audit])

    @authz.guard(on_deny="message")
    def read_record(employee: str) -> str:
        return "record"

    with authz.acting_as(USER), authz.session("s-1") as session:
        call = authz.begin_tool_call(read_record, {"employee": "e1"}, call_id="t-1")
        with call:
            pass
        again = authz.begin_tool_call(read_record, {"employee": "e1"}, call_id="t-1")
    assert session.state().calls == {"read_record": 1}
    assert not again.admits and again.decision.id == audit.events[-1].decision_id
