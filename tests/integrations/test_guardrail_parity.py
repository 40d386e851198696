"""Every path a tool call takes screens the result of a tool with a guardrail before the model reads it.

Each entry of ``PATHS`` runs one call of ``fetch`` (whose page holds a prompt attack; its guardrail
assesses results only) for the user, in the session ``SESSION``, through one integration. Afterwards the
session must hold ``guardrail:prompt_attack:high``, so the policies refuse every later call. A new
runtime is one more entry: a path that forgets to screen fails here.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

import agentauthz as az
from tests.integrations.guardrail_cases import ATTACK, USER, authorizer, seen

SESSION = "parity"
SCREEN = az.Guardrail(az.LocalDetector(), inputs=False)


def page(url: str) -> str:
    return ATTACK


def via_guard(authz: az.Authorizer) -> None:
    fetch = authz.guard(guardrail=SCREEN)(page)
    with authz.acting_as(USER), authz.session(SESSION):
        fetch(url="https://evil.example")


def via_own_code(authz: az.Authorizer) -> None:
    authz.guard(name="fetch", guardrail=SCREEN)(page)
    with authz.acting_as(USER), authz.session(SESSION):
        call = authz.begin_tool_call("fetch", {"url": "https://evil.example"})
        with call:
            result = page("https://evil.example")
        authz.screen_tool_result("fetch", result)


def langchain_tool() -> Any:
    from langchain_core.tools import StructuredTool

    return StructuredTool.from_function(page, name="fetch", description="Fetch a page.")


def via_langchain_tool(authz: az.Authorizer) -> None:
    from agentauthz.integrations.langchain import authorize_tools

    settings = {"fetch": az.ToolSettings(guardrail=SCREEN)}
    [fetch] = authorize_tools([langchain_tool()], authz, settings=settings)
    with authz.acting_as(USER), authz.session(SESSION):
        fetch.invoke({"url": "https://evil.example"})


def via_langchain_middleware(authz: az.Authorizer) -> None:
    from langchain.agents import create_agent
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage

    from agentauthz.integrations.langchain import AuthzMiddleware

    class Model(GenericFakeChatModel):
        def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
            return self

    model = Model(messages=iter([
        AIMessage("", tool_calls=[{"name": "fetch", "args": {"url": "https://evil.example"}, "id": "1"}]),
        AIMessage("done")]))
    middleware = AuthzMiddleware(authz, settings={"fetch": az.ToolSettings(guardrail=SCREEN)})
    agent = create_agent(model, tools=[langchain_tool()], middleware=[middleware])
    agent.invoke({"messages": [("user", "read it")]},
                 config={"configurable": {"agentauthz_principal": USER, "agentauthz_session": SESSION}})


def via_bedrock_action_group(authz: az.Authorizer) -> None:
    from agentauthz.integrations.bedrock import action_group_handler
    from tests.integrations.bedrock_events import function_event, session_user

    fetch = authz.guard(guardrail=SCREEN)(page)

    @action_group_handler(authz, principal=session_user, session=lambda event: SESSION, tools=[fetch])
    def handler(event: dict[str, Any], context: Any, invocation: Any) -> str:
        return page(**invocation.arguments)

    handler(function_event("page", USER.id, url="https://evil.example"), None)


def mcp_server(authz: az.Authorizer | None) -> Any:
    from fastmcp import FastMCP

    from agentauthz.integrations.mcp import AuthzMiddleware
    from tests.integrations.mcp_harness import static_tokens

    middleware = [] if authz is None else [AuthzMiddleware(
        authz, session=lambda context: SESSION, tools={"fetch": az.ToolSettings(guardrail=SCREEN)})]
    server = FastMCP("desk", auth=static_tokens(USER.id), middleware=middleware)
    server.tool(page, name="fetch")
    return server


def via_mcp_server(authz: az.Authorizer) -> None:
    from tests.integrations.mcp_harness import call

    call(mcp_server(authz), f"t-{USER.id}", "fetch", {"url": "https://evil.example"})


def via_mcp_client(authz: az.Authorizer) -> None:
    from fastmcp import Client

    from agentauthz.integrations.mcp import AuthorizedClientSession

    async def agent() -> None:
        async with Client(mcp_server(None)) as client:
            session = AuthorizedClientSession(client.session, authz,
                                              tools={"fetch": az.ToolSettings(guardrail=SCREEN)})
            with authz.acting_as(USER), authz.session(SESSION):
                await session.call_tool("fetch", {"url": "https://evil.example"})

    asyncio.run(agent())


def via_strands(authz: az.Authorizer) -> None:
    from strands import Agent
    from strands.tools.decorator import tool

    from agentauthz.integrations.strands import PRINCIPAL_KEY, SESSION_KEY, AuthzIntervention, ScriptedModel

    fetch = tool(name="fetch", description="Fetch a page.")(page)
    model = ScriptedModel([("tool", "fetch", {"url": "https://evil.example"})])
    intervention = AuthzIntervention(authz, tools={"fetch": az.ToolSettings(guardrail=SCREEN)})
    Agent(model=model, tools=[fetch], interventions=[intervention], callback_handler=None)(
        "read it", invocation_state={PRINCIPAL_KEY: USER, SESSION_KEY: SESSION})


PATHS: dict[str, Callable[[az.Authorizer], None]] = {
    "guard": via_guard, "own code": via_own_code, "langchain tool": via_langchain_tool,
    "langchain middleware": via_langchain_middleware, "bedrock action group": via_bedrock_action_group,
    "mcp server": via_mcp_server, "mcp client": via_mcp_client, "strands": via_strands,
}


@pytest.mark.parametrize("path", sorted(PATHS))
def test_every_path_labels_an_injected_result_and_the_next_call_is_refused(path: str) -> None:
    sink = az.MemorySink()
    authz = authorizer(sink)
    PATHS[path](authz)
    assert "guardrail:prompt_attack:high" in seen(authz, SESSION)
    with authz.acting_as(USER), authz.session(SESSION):
        later = authz.authorize(action="send_email", resource=az.EntityUID("Tool", "send_email"))
    assert not later.allowed and later.reasons == ("halt-after-injected-document",)


# -- the user's own message ---------------------------------------------------------------------------


def said_to_own_code(authz: az.Authorizer) -> None:
    with authz.acting_as(USER), authz.session(SESSION):
        authz.screen_user_message(ATTACK, az.LocalDetector())


def said_to_langchain(authz: az.Authorizer) -> None:
    from langchain.agents import create_agent
    from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
    from langchain_core.messages import AIMessage

    from agentauthz.integrations.langchain import AuthzMiddleware

    model = GenericFakeChatModel(messages=iter([AIMessage("done")]))
    agent = create_agent(model, tools=[], middleware=[AuthzMiddleware(authz, guardrail=az.LocalDetector())])
    agent.invoke({"messages": [("user", ATTACK)]},
                 config={"configurable": {"agentauthz_principal": USER, "agentauthz_session": SESSION}})


def said_to_bedrock(authz: az.Authorizer) -> None:
    from agentauthz.integrations.bedrock import action_group_handler
    from tests.integrations.bedrock_events import function_event, session_user

    @action_group_handler(authz, principal=session_user, session=lambda event: SESSION,
                          guardrail=az.LocalDetector())
    def handler(event: dict[str, Any], context: Any) -> str:
        return "done"

    handler(function_event("lookup", USER.id, text=ATTACK), None)


def said_to_strands(authz: az.Authorizer) -> None:
    from strands import Agent

    from agentauthz.integrations.strands import PRINCIPAL_KEY, SESSION_KEY, AuthzIntervention, ScriptedModel

    intervention = AuthzIntervention(authz, guardrail=az.LocalDetector())
    Agent(model=ScriptedModel([]), tools=[], interventions=[intervention], callback_handler=None)(
        ATTACK, invocation_state={PRINCIPAL_KEY: USER, SESSION_KEY: SESSION})


SAID: dict[str, Callable[[az.Authorizer], None]] = {
    "own code": said_to_own_code, "langchain middleware": said_to_langchain, "bedrock action group":
    said_to_bedrock, "strands": said_to_strands,
}


@pytest.mark.parametrize("path", sorted(SAID))
def test_every_path_that_sees_the_users_message_labels_an_attack_in_it(path: str) -> None:
    authz = authorizer()
    SAID[path](authz)
    labels = seen(authz, SESSION)
    assert "guardrail:user:prompt_attack:high" in labels and "guardrail:prompt_attack:high" not in labels
    with authz.acting_as(USER), authz.session(SESSION):
        later = authz.authorize(action="send_email", resource=az.EntityUID("Tool", "send_email"))
    assert not later.allowed and later.reasons == ("halt-after-user-attack",)
