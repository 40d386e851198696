"""Guardrails on the LangChain paths: the human message (AuthzMiddleware(guardrail=...)), tool results
(AuthzMiddleware, AuthorizedTool) and retrieved documents (AuthorizedRetriever), end to end."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from langchain.agents import create_agent
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import tool
from langchain_core.vectorstores import InMemoryVectorStore

import agentauthz as az
from agentauthz.integrations.langchain import AuthorizedRetriever, AuthzMiddleware, authorize_tools
from tests.integrations.guardrail_cases import (
    ATTACK,
    CLEAN_TEXT,
    USER,
    CountingDetector,
    DownDetector,
    LabelLosingStore,
    authorizer,
    seen,
)

sent: list[str] = []


@tool
def send_email(to: str) -> str:
    """Send an email."""
    sent.append(to)
    return "sent"


@tool
def fetch(url: str) -> str:
    """Fetch a web page."""
    return ATTACK if "evil" in url else CLEAN_TEXT


class Model(GenericFakeChatModel):
    def bind_tools(self, tools: Any, **kwargs: Any) -> Any:
        return self


def mail_twice() -> Model:
    return Model(messages=iter([
        AIMessage("", tool_calls=[{"name": "send_email", "args": {"to": "bob@example.com"}, "id": "1"}]),
        AIMessage("done")]))


def run(middleware: AuthzMiddleware, prompt: str, session: str | None = "chat-1",
        model: Model | None = None, tools: list[Any] | None = None) -> list[Any]:
    agent = create_agent(model or mail_twice(), tools=tools or [send_email], middleware=[middleware])
    configurable: dict[str, Any] = {"agentauthz_principal": USER}
    if session is not None:
        configurable["agentauthz_session"] = session
    answer = agent.invoke({"messages": [("user", prompt)]}, config={"configurable": configurable})
    return list(answer["messages"])


def refusals(messages: list[Any]) -> list[ToolMessage]:
    return [m for m in messages if isinstance(m, ToolMessage) and m.status == "error"]


@pytest.fixture(autouse=True)
def _no_mail() -> None:
    sent.clear()


# -- the human message -------------------------------------------------------------------------------


def test_a_prompt_attack_in_the_users_message_forbids_the_tool_calls_after_it() -> None:
    sink = az.MemorySink()
    authz = authorizer(sink)
    messages = run(AuthzMiddleware(authz, guardrail=az.LocalDetector()), ATTACK)
    assert sent == [] and len(refusals(messages)) == 1
    assert sink.events[-1].reasons == ("halt-after-user-attack",)
    labels = seen(authz, "chat-1")
    assert "guardrail:user:prompt_attack:high" in labels
    assert "guardrail:prompt_attack:high" not in labels  # the user's own words are not a document's


def test_a_clean_user_message_leaves_the_tool_calls_allowed() -> None:
    authz = authorizer()
    messages = run(AuthzMiddleware(authz, guardrail=az.LocalDetector()), "Mail bob the agenda")
    assert sent == ["bob@example.com"] and refusals(messages) == []
    assert not any(label.startswith("guardrail:") for label in seen(authz, "chat-1"))


def test_without_a_guardrail_the_users_message_is_not_assessed() -> None:
    authz = authorizer()
    run(AuthzMiddleware(authz), ATTACK)
    assert sent == ["bob@example.com"]


def test_each_human_message_is_assessed_once_per_session_across_model_calls() -> None:
    detector = CountingDetector()
    authz = authorizer()
    run(AuthzMiddleware(authz, guardrail=detector), "Mail bob the agenda")  # two model calls
    assert detector.texts == ["Mail bob the agenda"]


def test_a_detector_that_is_down_labels_the_session_unavailable_and_policies_refuse() -> None:
    sink = az.MemorySink()
    authz = authorizer(sink)
    run(AuthzMiddleware(authz, guardrail=DownDetector()), "Mail bob the agenda")
    assert sent == []
    assert sink.events[-1].reasons == ("halt-when-unassessed",)
    assert "guardrail:user:unavailable" in seen(authz, "chat-1")


def test_a_detector_that_is_down_with_on_error_raise_stops_the_run_before_the_model() -> None:
    authz = authorizer()
    model = mail_twice()
    with pytest.raises(az.GuardrailUnavailable):
        screen = az.Guardrail(DownDetector(), on_error="raise")
        run(AuthzMiddleware(authz, guardrail=screen), "hi", model=model)
    assert sent == []
    assert next(model.messages).tool_calls  # the model was never called: its first answer is still there


def test_labels_that_cannot_be_recorded_stop_the_run() -> None:
    authz = authorizer(store=LabelLosingStore())
    with pytest.raises(az.EngineError):
        run(AuthzMiddleware(authz, guardrail=az.LocalDetector()), ATTACK)
    assert sent == []


def test_a_guardrail_without_a_session_is_a_configuration_error_not_a_silent_pass() -> None:
    authz = authorizer()
    with pytest.raises(az.ConfigurationError, match="bind a session"):
        run(AuthzMiddleware(authz, guardrail=az.LocalDetector()), ATTACK, session=None)
    assert sent == []


def test_the_middleware_refuses_a_guardrail_of_the_wrong_type() -> None:
    with pytest.raises(az.ConfigurationError):
        AuthzMiddleware(authorizer(), guardrail="local")  # type: ignore[arg-type]


def test_the_async_agent_screens_the_users_message_too() -> None:
    authz = authorizer()
    agent = create_agent(mail_twice(), tools=[send_email],
                         middleware=[AuthzMiddleware(authz, guardrail=az.LocalDetector())])
    config: Any = {"configurable": {"agentauthz_principal": USER, "agentauthz_session": "chat-a"}}
    messages = asyncio.run(agent.ainvoke({"messages": [("user", ATTACK)]}, config=config))["messages"]
    assert sent == [] and len(refusals(messages)) == 1


# -- tool results ---------------------------------------------------------------------------------------


def fetch_then_mail(url: str) -> Model:
    return Model(messages=iter([
        AIMessage("", tool_calls=[{"name": "fetch", "args": {"url": url}, "id": "1"}]),
        AIMessage("", tool_calls=[{"name": "send_email", "args": {"to": "eve@example.com"}, "id": "2"}]),
        AIMessage("done")]))


def test_an_injected_tool_result_in_the_middleware_forbids_the_calls_after_it() -> None:
    sink = az.MemorySink()
    authz = authorizer(sink)
    middleware = AuthzMiddleware(authz, settings={"fetch": az.ToolSettings(guardrail=az.LocalDetector())})
    messages = run(middleware, "Summarise the page", model=fetch_then_mail("https://evil.example"),
                   tools=[fetch, send_email])
    assert sent == [] and [m.tool_call_id for m in refusals(messages)] == ["2"]
    assert sink.events[-1].reasons == ("halt-after-injected-document",)
    assert "guardrail:prompt_attack:high" in seen(authz, "chat-1")


def test_a_clean_tool_result_in_the_middleware_leaves_the_calls_allowed() -> None:
    authz = authorizer()
    middleware = AuthzMiddleware(authz, settings={"fetch": az.ToolSettings(guardrail=az.LocalDetector())})
    run(middleware, "Summarise the page", model=fetch_then_mail("https://news.example"),
        tools=[fetch, send_email])
    assert sent == ["eve@example.com"]


def test_a_tool_result_that_cannot_be_assessed_is_not_returned_with_on_error_raise() -> None:
    authz = authorizer()
    screen = az.Guardrail(DownDetector(), inputs=False, on_error="raise")  # the result only
    middleware = AuthzMiddleware(authz, settings={"fetch": az.ToolSettings(guardrail=screen)})
    with pytest.raises(az.GuardrailUnavailable):
        run(middleware, "Summarise", model=fetch_then_mail("https://news.example"), tools=[fetch, send_email])
    assert sent == []


def test_an_authorized_tool_labels_its_injected_result_and_the_next_call_is_refused() -> None:
    authz = authorizer()
    wrapped_fetch, wrapped_send = authorize_tools(
        [fetch, send_email], authz, on_deny="message",
        settings={"fetch": az.ToolSettings(guardrail=az.LocalDetector())})
    with authz.acting_as(USER), authz.session("chat-t"):
        assert wrapped_send.invoke({"to": "bob@example.com"}) == "sent"
        assert wrapped_fetch.invoke({"url": "https://evil.example"}) == ATTACK
        assert "not permitted" in wrapped_send.invoke({"to": "eve@example.com"})
    assert sent == ["bob@example.com"]


def test_an_async_authorized_tool_labels_its_result_with_the_detectors_async_path() -> None:
    authz = authorizer()
    settings = {"fetch": az.ToolSettings(guardrail=az.LocalDetector())}
    [wrapped] = authorize_tools([fetch], authz, settings=settings)

    async def call() -> Any:
        with authz.acting_as(USER), authz.session("chat-async"):
            return await wrapped.ainvoke({"url": "https://evil.example"})

    assert asyncio.run(call()) == ATTACK
    assert "guardrail:prompt_attack:high" in seen(authz, "chat-async")


def test_an_authorized_tools_result_whose_labels_cannot_be_recorded_is_not_returned() -> None:
    authz = authorizer(store=LabelLosingStore())
    settings = {"fetch": az.ToolSettings(guardrail=az.LocalDetector())}
    [wrapped] = authorize_tools([fetch], authz, settings=settings)
    with authz.acting_as(USER), authz.session("chat-lost"), pytest.raises(az.EngineError):
        wrapped.invoke({"url": "https://evil.example"})


# -- retrieved documents --------------------------------------------------------------------------------


def test_an_injected_retrieved_document_forbids_the_tool_calls_after_it() -> None:
    sink = az.MemorySink()
    authz = authorizer(sink)
    store = InMemoryVectorStore(DeterministicFakeEmbedding(size=8))
    store.add_texts([CLEAN_TEXT, ATTACK])
    retriever = AuthorizedRetriever(retriever=store, authz=authz, k=2, guardrail=az.LocalDetector(),
                                    resource=lambda doc: az.EntityUID("Doc", doc.id))
    [wrapped] = authorize_tools([send_email], authz, on_deny="message")
    with authz.acting_as(USER), authz.session("chat-rag"):
        assert wrapped.invoke({"to": "bob@example.com"}) == "sent"
        assert len(retriever.invoke("launch")) == 2
        assert "not permitted" in wrapped.invoke({"to": "eve@example.com"})
    assert sink.events[-1].reasons == ("halt-after-injected-document",)


def test_a_retriever_whose_guardrail_fails_with_on_error_raise_returns_nothing() -> None:
    authz = authorizer()
    store = InMemoryVectorStore(DeterministicFakeEmbedding(size=8))
    store.add_texts([CLEAN_TEXT])
    retriever = AuthorizedRetriever(retriever=store, authz=authz, k=1,
                                    guardrail=az.Guardrail(DownDetector(), on_error="raise"),
                                    resource=lambda doc: az.EntityUID("Doc", doc.id))
    with authz.acting_as(USER), authz.session("chat-rag-down"):
        assert retriever.invoke("launch") == []


def test_the_retriever_refuses_a_guardrail_of_the_wrong_type_when_it_is_built() -> None:
    store = InMemoryVectorStore(DeterministicFakeEmbedding(size=8))
    with pytest.raises(az.ConfigurationError):
        AuthorizedRetriever(retriever=store, authz=authorizer(), guardrail="local",
                            resource=lambda doc: az.EntityUID("Doc", doc.id))
