"""OpenTelemetry: a span and metrics for every decision path, read with the SDK's in-memory exporters.

Each test instruments with its own tracer and meter providers (never the global
ones), calls one decision path for real (``@guard``, LangChain, Bedrock, MCP,
``filter``, a retriever) and reads what was exported.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings

import agentauthz as az

pytest.importorskip("opentelemetry.sdk")
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from agentauthz.integrations.otel import OpenTelemetrySink, instrument, uninstrument
from agentauthz.session import MemorySessionStore, SessionConfig
from tests.security.support import FailingStore
from tests.strategies import marked_text

POLICIES = """
@id("alice-all") permit(principal == User::"alice", action, resource);
@id("bob-reads") permit(principal == User::"bob", action == Action::"read", resource);
@id("no-secrets") forbid(principal, action, resource) when { resource has secret && resource.secret };
"""
ALICE = az.EntityUID("User", "alice")
BOB = az.EntityUID("User", "bob")


@dataclass
class Telemetry:
    spans: InMemorySpanExporter
    reader: InMemoryMetricReader
    tracer_provider: TracerProvider

    def finished(self, name: str | None = None) -> list[ReadableSpan]:
        return [s for s in self.spans.get_finished_spans() if name is None or s.name == name]

    def metric_points(self, name: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        points: list[Any] = []
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        points.extend(metric.data.data_points)
        return points

    def counted(self, name: str, **attributes: Any) -> int:
        return sum(int(p.value) for p in self.metric_points(name)
                   if all(p.attributes.get(k) == v for k, v in attributes.items()))


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    instrument(tracer_provider=tracer_provider, meter_provider=MeterProvider(metric_readers=[reader]))
    try:
        yield Telemetry(spans, reader, tracer_provider)
    finally:
        uninstrument()


@pytest.fixture
def authz() -> az.Authorizer:
    return az.Authorizer.from_text(POLICIES)


def assert_decision_metrics(telemetry: Telemetry, allowed: int, denied: int) -> None:
    assert telemetry.counted("agentauthz.decisions", **{"agentauthz.decision": "allow"}) == allowed
    assert telemetry.counted("agentauthz.decisions", **{"agentauthz.decision": "deny"}) == denied
    durations = telemetry.metric_points("agentauthz.decision.duration")
    assert sum(p.count for p in durations) == allowed + denied


# -- the paths ---------------------------------------------------------------------------------


def test_a_guarded_tool_call_is_a_tool_span_holding_its_decision_span_with_genai_attributes(
        telemetry: Telemetry, authz: az.Authorizer) -> None:
    @authz.guard(action="read")
    def lookup(query: str) -> str:
        return "found"

    with authz.acting_as(BOB):
        assert lookup("q") == "found"
    [tool] = telemetry.finished("agentauthz.tool_call")
    [decision] = telemetry.finished("agentauthz.decision")
    assert decision.parent is not None and decision.parent.span_id == tool.context.span_id
    for span in (tool, decision):
        assert span.attributes is not None
        assert span.attributes["gen_ai.operation.name"] == "execute_tool"
        assert span.attributes["gen_ai.tool.name"] == "lookup"
    attributes = dict(decision.attributes or {})
    assert attributes["agentauthz.action"] == 'Action::"read"'
    assert attributes["agentauthz.principal.type"] == "User"
    assert attributes["agentauthz.decision"] == "allow"
    assert attributes["agentauthz.policy_ids"] == ("bob-reads",)
    assert attributes["agentauthz.engine"] == "local"
    assert attributes["agentauthz.policy_version"] == authz.engine.fingerprint
    assert isinstance(attributes["agentauthz.latency_us"], int)
    assert decision.end_time is not None and decision.start_time is not None
    assert decision.end_time - decision.start_time == attributes["agentauthz.latency_us"] * 1000
    assert_decision_metrics(telemetry, allowed=1, denied=0)


def test_a_denied_call_counts_under_the_forbid_that_decided_it_or_none(
        telemetry: Telemetry, authz: az.Authorizer) -> None:
    secret = az.Entity(uid=az.EntityUID("Doc", "s"), attrs={"secret": True})
    assert not authz.authorize(principal=ALICE, action="read", resource=secret).allowed
    assert not authz.authorize(principal=BOB, action="write", resource=az.EntityUID("Doc", "d")).allowed
    assert telemetry.counted("agentauthz.denials", **{"agentauthz.policy_id": "no-secrets"}) == 1
    assert telemetry.counted("agentauthz.denials", **{"agentauthz.policy_id": "(none)"}) == 1
    assert_decision_metrics(telemetry, allowed=0, denied=2)
    assert all("gen_ai.tool.name" not in (span.attributes or {}) for span in telemetry.finished())


def test_an_invalid_tool_call_is_refused_with_its_span(telemetry: Telemetry, authz: az.Authorizer) -> None:
    @authz.guard(action="read", on_deny="message")
    def count(limit: int) -> str:
        return "counted"

    with authz.acting_as(BOB):
        assert count("many") != "counted"  # type: ignore[arg-type]
    [decision] = telemetry.finished("agentauthz.decision")
    assert decision.attributes is not None and decision.attributes["agentauthz.decision"] == "deny"
    assert decision.attributes["gen_ai.tool.name"] == "count"
    assert decision.attributes["error.type"] == "decision_error"


def test_a_filter_is_one_span_over_one_decision_span_per_item(
        telemetry: Telemetry, authz: az.Authorizer) -> None:
    docs = [az.Entity(uid=az.EntityUID("Doc", f"d{i}"), attrs={"secret": i == 1}) for i in range(3)]
    with authz.acting_as(ALICE):
        result = authz.filter(docs, action="read", resource=lambda doc: doc)
    assert len(result.allowed) == 2
    [filtered] = telemetry.finished("agentauthz.filter")
    decisions = telemetry.finished("agentauthz.decision")
    assert len(decisions) == 3
    assert {span.parent.span_id for span in decisions if span.parent} == {filtered.context.span_id}
    attributes = dict(filtered.attributes or {})
    assert (attributes["agentauthz.decisions.allowed"], attributes["agentauthz.decisions.denied"]) == (2, 1)
    assert_decision_metrics(telemetry, allowed=2, denied=1)


def test_decision_spans_nest_under_the_agent_frameworks_active_span(
        telemetry: Telemetry, authz: az.Authorizer) -> None:
    # What LangChain's or Strands' OpenTelemetry instrumentation does: a span around the tool run.
    framework = telemetry.tracer_provider.get_tracer("agent-framework")

    @authz.guard(action="read")
    def lookup(query: str) -> str:
        return "found"

    with framework.start_as_current_span("execute_tool lookup") as outer, authz.acting_as(BOB):
        lookup("q")
        authz.authorize(principal=BOB, action="read", resource=az.EntityUID("Doc", "d"))
    [tool] = telemetry.finished("agentauthz.tool_call")
    direct = telemetry.finished("agentauthz.decision")[-1]
    assert tool.parent is not None and tool.parent.span_id == outer.get_span_context().span_id
    assert direct.parent is not None and direct.parent.span_id == outer.get_span_context().span_id
    assert tool.context.trace_id == outer.get_span_context().trace_id


@pytest.mark.asyncio
async def test_an_async_guarded_tool_nests_its_decision_under_its_tool_span(
        telemetry: Telemetry, authz: az.Authorizer) -> None:
    @authz.guard(action="read")
    async def lookup(query: str) -> str:
        return "found"

    with authz.acting_as(BOB):
        assert await lookup("q") == "found"
    [tool] = telemetry.finished("agentauthz.tool_call")
    [decision] = telemetry.finished("agentauthz.decision")
    assert decision.parent is not None and decision.parent.span_id == tool.context.span_id


def test_a_langchain_tool_call_has_its_spans(telemetry: Telemetry, authz: az.Authorizer) -> None:
    pytest.importorskip("langchain_core")
    from langchain_core.tools import tool

    from agentauthz.integrations.langchain import PRINCIPAL_KEY, authorize_tools

    @tool
    def search(query: str) -> str:
        """Search the documents."""
        return "results"

    [wrapped] = authorize_tools([search], authz)
    assert wrapped.invoke({"query": "q"}, config={"configurable": {PRINCIPAL_KEY: ALICE}}) == "results"
    [span] = telemetry.finished("agentauthz.tool_call")
    [decision] = telemetry.finished("agentauthz.decision")
    assert span.attributes is not None and span.attributes["gen_ai.tool.name"] == "search"
    assert decision.parent is not None and decision.parent.span_id == span.context.span_id
    assert_decision_metrics(telemetry, allowed=1, denied=0)


def test_a_bedrock_action_group_call_has_its_spans(telemetry: Telemetry, authz: az.Authorizer) -> None:
    from agentauthz.integrations.bedrock import action_group_handler
    from tests.integrations.bedrock_events import function_event, session_user

    @action_group_handler(authz, principal=session_user)
    def handler(event: dict[str, Any], context: Any) -> str:
        return "done"

    handler(function_event("lookup", user="alice", order_id="o-1"), None)
    handler(function_event("refund", user="bob", order_id="o-1"), None)
    decisions = telemetry.finished("agentauthz.decision")
    assert [span.attributes["agentauthz.decision"] for span in decisions if span.attributes] == [
        "allow", "deny"]
    assert all(span.parent is not None for span in decisions)
    tools = [span.attributes["gen_ai.tool.name"] for span in telemetry.finished("agentauthz.tool_call")
             if span.attributes]
    assert tools == ["orders__lookup", "orders__refund"]
    assert_decision_metrics(telemetry, allowed=1, denied=1)


def test_an_mcp_tool_call_has_its_spans(telemetry: Telemetry, authz: az.Authorizer) -> None:
    pytest.importorskip("fastmcp")
    from fastmcp import FastMCP

    from agentauthz.integrations.mcp import AuthzMiddleware
    from tests.integrations.mcp_harness import call, recording_tool, static_tokens

    received: list[dict[str, Any]] = []
    server = FastMCP("svc", auth=static_tokens("bob"), middleware=[AuthzMiddleware(authz)])
    server.add_tool(recording_tool("read", {"type": "object", "properties": {"q": {"type": "string"}}},
                                   received))
    server.add_tool(recording_tool("wipe", {"type": "object", "properties": {}}, received))
    assert not call(server, "t-bob", "read", {"q": "x"}).is_error
    assert call(server, "t-bob", "wipe", {}).is_error
    tools = {span.attributes["gen_ai.tool.name"] for span in telemetry.finished("agentauthz.tool_call")
             if span.attributes}
    assert {"read", "wipe"} <= tools
    assert telemetry.counted("agentauthz.decisions", **{"agentauthz.decision": "allow"}) >= 1
    assert telemetry.counted("agentauthz.denials", **{"agentauthz.policy_id": "(none)"}) >= 1


def test_a_strands_agent_tool_call_has_its_spans(telemetry: Telemetry, authz: az.Authorizer) -> None:
    pytest.importorskip("strands")
    from strands import Agent, tool

    from agentauthz.integrations.strands import PRINCIPAL_KEY, AuthzIntervention, ScriptedModel

    @tool
    def lookup_order(order_id: str) -> str:
        """Look an order up."""
        return "shipped"

    model = ScriptedModel([("tool", "lookup_order", {"order_id": "o-1"})])
    agent = Agent(model=model, tools=[lookup_order], interventions=[AuthzIntervention(authz)],
                  callback_handler=None)
    agent("where is my order", invocation_state={PRINCIPAL_KEY: ALICE})
    [span] = telemetry.finished("agentauthz.tool_call")
    [decision] = telemetry.finished("agentauthz.decision")
    assert span.attributes is not None and span.attributes["gen_ai.tool.name"] == "lookup_order"
    assert decision.parent is not None and decision.parent.span_id == span.context.span_id
    assert_decision_metrics(telemetry, allowed=1, denied=0)


def test_a_retrieval_is_a_span_with_its_counters_and_no_decision_metrics(
        telemetry: Telemetry, authz: az.Authorizer) -> None:
    pytest.importorskip("langchain_core")
    from langchain_core.documents import Document
    from langchain_core.retrievers import BaseRetriever

    from agentauthz.integrations.langchain import AuthorizedRetriever

    class Fixed(BaseRetriever):
        def _get_relevant_documents(self, query: str, *, run_manager: Any) -> list[Document]:
            return [Document(page_content=f"doc {i}", metadata={"id": f"d{i}", "secret": i == 0})
                    for i in range(3)]

    retriever = AuthorizedRetriever(
        retriever=Fixed(), authz=authz, action="read",
        resource=lambda doc: az.Entity(uid=az.EntityUID("Doc", doc.metadata["id"]),
                                       attrs={"secret": doc.metadata["secret"]}))
    with authz.acting_as(ALICE):
        assert len(retriever.invoke("q")) == 2
    [retrieval] = telemetry.finished("agentauthz.retrieval")
    assert retrieval.attributes is not None and retrieval.attributes["agentauthz.retrieval.returned"] == 2
    assert len(telemetry.finished("agentauthz.filter")) >= 1
    assert_decision_metrics(telemetry, allowed=2, denied=1)


def test_a_failing_session_store_is_counted_and_its_denial_traced(telemetry: Telemetry) -> None:
    store = FailingStore(MemorySessionStore())
    authz = az.Authorizer.from_text(POLICIES, sessions=SessionConfig(store=store))

    @authz.guard(action="read", on_deny="message")
    def lookup(query: str) -> str:
        return "found"

    store.failing["load"] = 1
    with authz.acting_as(BOB), authz.session("s"):
        assert lookup("q") != "found"
        assert lookup("q") == "found"
    assert telemetry.counted("agentauthz.session_store.errors") == 1
    assert_decision_metrics(telemetry, allowed=1, denied=1)


def test_a_stale_synced_copy_denies_with_its_span(telemetry: Telemetry) -> None:
    pytest.importorskip("boto3")
    from agentauthz.testing import LocalVerifiedPermissions

    store = az.PolicyStore.from_text('@id("all") permit(principal, action, resource);')
    with LocalVerifiedPermissions(store) as server, az.SyncedEngine(
            server.policy_store_id, client=server.client(), refresh_interval=None, max_age=0.05) as engine:
        import time

        time.sleep(0.1)
        authz = az.Authorizer(engine)
        assert not authz.authorize(principal=BOB, action="read", resource=az.EntityUID("Doc", "d")).allowed
    [decision] = telemetry.finished("agentauthz.decision")
    assert decision.attributes is not None and decision.attributes["agentauthz.engine"] == "avp-synced"
    assert decision.attributes["error.type"] == "decision_error"


# -- what spans never carry --------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(user=marked_text("Zu~"), value=marked_text("Zv~"))
def test_spans_and_metrics_never_carry_ids_or_attribute_values(user: str, value: str) -> None:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    sink = OpenTelemetrySink(tracer_provider=tracer_provider,
                             meter_provider=MeterProvider(metric_readers=[reader]))
    authz = az.Authorizer.from_text(
        '@id("p") permit(principal, action, resource) when { context.note == resource.label };',
        audit=[sink])
    principal = az.Entity(uid=az.EntityUID("User", user), attrs={"email": value})
    resource = az.Entity(uid=az.EntityUID("Doc", value), attrs={"label": value})
    with authz.acting_as(principal):
        authz.authorize(principal=principal.uid, action="read", resource=resource, context={"note": value})
        authz.filter([resource], action="read", resource=lambda doc: doc, context={"note": user})
    exported = [json.dumps(dict(span.attributes or {}), default=str) + span.name
                for span in spans.get_finished_spans()]
    metrics = reader.get_metrics_data()
    exported.append(metrics.to_json() if metrics else "")
    assert len(spans.get_finished_spans()) == 3
    for text in exported:
        for secret in (user, value, json.dumps(user)[1:-1], json.dumps(value)[1:-1]):
            assert secret not in text


# -- without the extra -------------------------------------------------------------------------


def test_importing_agentauthz_and_deciding_never_imports_opentelemetry() -> None:
    code = ("import sys, agentauthz as az\n"
            "authz = az.Authorizer.from_text('permit(principal, action, resource);')\n"
            "authz.authorize(principal=az.EntityUID('U', 'a'), action='r', resource=az.EntityUID('D', 'd'))\n"
            "print(any(name.startswith('opentelemetry') for name in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_without_opentelemetry_the_module_names_the_extra_to_install() -> None:
    code = ("import sys\nsys.modules['opentelemetry'] = None\n"
            "try:\n    import agentauthz.integrations.otel\nexcept ImportError as exc:\n    print(exc)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert 'pip install "agentauthz[otel]"' in out.stdout


def test_uninstrument_stops_the_spans(authz: az.Authorizer) -> None:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    instrument(tracer_provider=tracer_provider, meter_provider=MeterProvider())
    instrument(tracer_provider=tracer_provider, meter_provider=MeterProvider())  # replaces, never doubles
    authz.authorize(principal=BOB, action="read", resource=az.EntityUID("Doc", "d"))
    uninstrument()
    authz.authorize(principal=BOB, action="read", resource=az.EntityUID("Doc", "d"))
    assert len(spans.get_finished_spans()) == 1
