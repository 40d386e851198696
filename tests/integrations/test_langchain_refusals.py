"""One refusal and one missing-user error on every LangChain path.

Whether AuthzMiddleware or an AuthorizedTool refuses a call, sync or async,
inside an agent or called directly, the model reads the same ToolMessage
(status, name, call id, text shape); and every LangChain entry point called
without an end user raises the same IdentityError, naming both ways to bind one.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("langchain.agents")

from langchain.agents import create_agent
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import BaseTool, ToolException, tool
from langchain_core.vectorstores import InMemoryVectorStore

import agentauthz as az
import agentauthz._identity as az_identity
from agentauthz.integrations.langchain import AuthorizedRetriever, AuthorizedTool, AuthzMiddleware

POLICIES = Path(__file__).resolve().parents[2] / "policies"
CAROL = {"configurable": {"agentauthz_principal": az.EntityUID("User", "carol")}}
REFUSED = {
    "denied": {"to": "attacker@evil.example", "subject": "Q3 results"},
    "invalid": {"to": "dave@acme.example", "subject": "hi", "bcc": "attacker@evil.example"},
}


class Scripted(GenericFakeChatModel):
    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> Scripted:  # type: ignore[override]
        return self


def scripted(arguments: dict[str, Any]) -> Scripted:
    turn = AIMessage("", tool_calls=[{"name": "send_email", "args": arguments, "id": "call-0"}])
    return Scripted(messages=iter([turn, AIMessage("done")]))


def send_email_tool(ran: list[str], handle_tool_error: Any) -> BaseTool:
    @tool
    def send_email(to: str, subject: str) -> str:
        """Send an email on the user's behalf."""
        ran.append(to)
        return f"email to {to} sent"

    return send_email.model_copy(update={"handle_tool_error": handle_tool_error})


def shape(message: Any) -> tuple[str, str, str | None, str | None, str]:
    """What the model reads, the decision's opaque id left out."""
    assert isinstance(message, ToolMessage), message
    return (type(message).__name__, message.status, message.name, message.tool_call_id,
            re.sub(r"decision [0-9a-f]+", "decision <id>", str(message.content)))


def refusals(authz: az.Authorizer, plain: BaseTool, arguments: dict[str, Any]) -> dict[str, Any]:
    """The refusal of one call on every path: middleware and AuthorizedTool, sync and async."""

    def agent_run(tools: list[BaseTool], middleware: list[AuthzMiddleware], use_async: bool) -> Any:
        agent = create_agent(scripted(arguments), tools=tools, middleware=middleware)
        run = agent.ainvoke if use_async else agent.invoke
        result = run({"messages": [("user", "mail")]}, config=CAROL)
        result = asyncio.run(result) if use_async else result
        [message] = [m for m in result["messages"] if isinstance(m, ToolMessage)]
        return message

    wrapped = AuthorizedTool(tool=plain, authz=authz)
    call = {"type": "tool_call", "id": "call-0", "name": "send_email", "args": arguments}
    return {
        "middleware": agent_run([plain], [AuthzMiddleware(authz)], False),
        "middleware async": agent_run([plain], [AuthzMiddleware(authz)], True),
        "AuthorizedTool in an agent": agent_run([wrapped], [], False),
        "AuthorizedTool in an agent async": agent_run([wrapped], [], True),
        "AuthorizedTool under the middleware": agent_run([wrapped], [AuthzMiddleware(authz)], False),
        "AuthorizedTool": wrapped.invoke(call, config=CAROL),
        "AuthorizedTool async": asyncio.run(wrapped.ainvoke(call, config=CAROL)),
    }


def handled(exc: ToolException) -> str:
    return f"Refused: {exc}"


@pytest.mark.parametrize("kind", sorted(REFUSED))
@pytest.mark.parametrize("handle_tool_error", [False, True, "That is not allowed.", handled],
                         ids=["no-handler", "handler-true", "handler-text", "handler-callable"])
def test_the_middleware_and_authorized_tool_refuse_with_the_same_message(
    kind: str, handle_tool_error: Any
) -> None:
    authz = az.Authorizer.from_directory(POLICIES)
    ran: list[str] = []
    by_path = refusals(authz, send_email_tool(ran, handle_tool_error), REFUSED[kind])
    shapes = {path: shape(message) for path, message in by_path.items()}
    assert len(set(shapes.values())) == 1, shapes
    _, status, name, call_id, content = shapes["middleware"]
    assert (status, name, call_id) == ("error", "send_email", "call-0")
    expected = {
        "denied": "Tool 'send_email' is not permitted for this user (decision <id>). Do not retry it.",
        "invalid": "Tool 'send_email' was not called: its arguments do not match the tool's schema "
                   "(decision <id>). Check them against the schema before calling it again.",
    }[kind]
    if handle_tool_error == "That is not allowed.":
        expected = "That is not allowed."
    elif handle_tool_error is handled:
        expected = f"Refused: {expected}"
    assert content == expected
    assert ran == []


# -- no end user ------------------------------------------------------------------------------

KEY = "tenant_user"
NO_END_USER = (f"{az_identity.NO_END_USER}; this LangChain path reads "
               "RunnableConfig['configurable']['tenant_user']")


def identity_paths(authz: az.Authorizer, ran: list[str]) -> dict[str, Callable[[], Any]]:
    """Every LangChain entry point, called with no end user bound (principal key: KEY)."""
    plain = send_email_tool(ran, False)
    wrapped = AuthorizedTool(tool=plain, authz=authz, principal_key=KEY)
    call = {"type": "tool_call", "id": "call-0", "name": "send_email", "args": REFUSED["denied"]}
    store = InMemoryVectorStore(DeterministicFakeEmbedding(size=8))
    store.add_documents([Document("handbook", id="acme-handbook")])
    retriever = AuthorizedRetriever(retriever=store, authz=authz, principal_key=KEY,
                                    resource=lambda doc: az.EntityUID("Document", doc.id or ""))
    deciding, filtering = AuthzMiddleware(authz, principal_key=KEY, filter_tools=False), \
        AuthzMiddleware(authz, principal_key=KEY)

    def agent(tools: list[BaseTool], middleware: list[AuthzMiddleware], use_async: bool = False) -> Any:
        built = create_agent(scripted(REFUSED["denied"]), tools=tools, middleware=middleware)
        if use_async:
            return asyncio.run(built.ainvoke({"messages": [("user", "mail")]}, config={"configurable": {}}))
        return built.invoke({"messages": [("user", "mail")]})

    return {
        "AuthorizedTool.invoke": lambda: wrapped.invoke(REFUSED["denied"]),
        "AuthorizedTool.invoke a tool call": lambda: wrapped.invoke(call, config={"configurable": {}}),
        "AuthorizedTool.ainvoke": lambda: asyncio.run(wrapped.ainvoke(REFUSED["denied"])),
        "AuthorizedTool in an agent": lambda: agent([wrapped], []),
        "middleware wrap_tool_call": lambda: agent([plain], [deciding]),
        "middleware awrap_tool_call": lambda: agent([plain], [deciding], use_async=True),
        "middleware wrap_model_call": lambda: agent([plain], [filtering]),
        "middleware awrap_model_call": lambda: agent([plain], [filtering], use_async=True),
        "AuthorizedRetriever.invoke": lambda: retriever.invoke("handbook"),
        "AuthorizedRetriever.ainvoke": lambda: asyncio.run(retriever.ainvoke("handbook")),
        "AuthorizedRetriever.retrieve_with_stats": lambda: retriever.retrieve_with_stats("handbook"),
        "AuthorizedRetriever.aretrieve_with_stats": lambda: asyncio.run(
            retriever.aretrieve_with_stats("handbook")),
        "AuthorizedRetriever.compile_prefilter": retriever.compile_prefilter,
    }


def test_every_langchain_path_without_an_end_user_raises_the_same_identity_error_naming_both_ways() -> None:
    recorder = az.MemorySink()
    authz = az.Authorizer.from_directory(POLICIES, audit=[recorder])
    ran: list[str] = []
    messages = {}
    for path, attempt in identity_paths(authz, ran).items():
        with pytest.raises(az.IdentityError) as refused:
            attempt()
        messages[path] = str(refused.value)
    assert messages == dict.fromkeys(messages, NO_END_USER)
    assert ran == []


def test_a_tool_call_refused_for_want_of_an_end_user_keeps_its_one_audit_event() -> None:
    recorder = az.MemorySink()
    authz = az.Authorizer.from_directory(POLICIES, audit=[recorder])
    paths = identity_paths(authz, [])
    for path in ("AuthorizedTool.invoke", "middleware wrap_tool_call", "middleware awrap_tool_call"):
        recorder.events.clear()
        with pytest.raises(az.IdentityError, match="acting_as"):
            paths[path]()
        [event] = recorder.events
        assert event.decision == "deny" and event.principal is None, path


def test_an_identity_error_of_a_bound_user_is_not_rewritten() -> None:
    authz = az.Authorizer.from_directory(POLICIES)
    wrapped = AuthorizedTool(tool=send_email_tool([], False), authz=authz)
    config = {"configurable": {"agentauthz_principal": az.EntityUID("User", "carol")}}
    dave = az.EntityUID("User", "dave")
    with authz.acting_as(dave), pytest.raises(az.IdentityError, match="two end users"):
        wrapped.invoke(REFUSED["denied"], config=config)
