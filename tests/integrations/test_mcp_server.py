"""AuthzMiddleware on a real FastMCP server: streamable HTTP on 127.0.0.1 with signed JWTs, and in-process.

The module's main server runs once, on a real socket, verifying RS256 access tokens with FastMCP's
``JWTVerifier``; tests that need a server of their own serve it over the in-process HTTP app
(``asgi_server``: the same HTTP stack and bearer auth, no socket).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx2
import mcp_types as mt
import pytest
from fastmcp import Client, FastMCP
from fastmcp.server.context import Context
from mcp.shared.exceptions import MCPError

import agentauthz as az
from agentauthz.integrations.mcp import AuthzMiddleware
from agentauthz.integrations.mcp._identity import token_principal
from tests.integrations.mcp_harness import (
    ISSUER,
    Issuer,
    LiveServer,
    call,
    quiet_uvicorn,
    recording_tool,
    served,
    static_tokens,
)

POLICIES = """
@id("alice-everything") permit (principal == User::"alice", action, resource);
@id("bob-small-payments") permit (principal == User::"bob", action == Action::"pay", resource)
  when { context.input.amount <= 10 };
@id("bob-whoami") permit (principal == User::"bob", action == Action::"whoami", resource);
@id("bob-public") permit (principal == User::"bob", action == Action::"read_resource",
  resource == Resource::"data://public");
@id("carols-statement-is-hers") forbid (principal == User::"alice", action == Action::"read_resource",
  resource == Resource::"accounts://carol/statement");
@id("bob-greet") permit (principal == User::"bob", action == Action::"get_prompt",
  resource == Prompt::"greet")
  when { context.input.name != "Mallory" };
"""
DECISION = r"decision ([0-9a-f]{32})"


class Bank:
    """The module's server: its tools record what they received."""

    def __init__(self) -> None:
        self.audit = az.MemorySink()
        self.authz = az.Authorizer.from_text(POLICIES, audit=[self.audit], record_requests=True)
        self.issuer = Issuer()
        self.received: list[tuple[str, dict[str, Any]]] = []
        self.transfers: list[dict[str, Any]] = []  # what a tool known only by its JSON Schema receives
        server = FastMCP("bank", auth=self.issuer.verifier, middleware=[AuthzMiddleware(self.authz)])
        self.server = server
        received = self.received

        @server.tool
        def pay(amount: int, note: str = "", urgent: bool = False) -> str:
            received.append(("pay", {"amount": amount, "note": note, "urgent": urgent}))
            return f"paid {amount!r}"

        @server.tool
        def whoami() -> str:
            return str(self.authz.current_principal())  # the token's user stays bound while the tool runs

        @server.tool
        def admin_reset() -> str:
            received.append(("admin_reset", {}))
            return "reset"

        @server.tool
        def configure(settings: dict[str, Any]) -> str:  # a free-form object: no Cedar record type
            received.append(("configure", settings))
            return "configured"

        server.add_tool(recording_tool("transfer", {
            "type": "object", "required": ["amount"],
            "properties": {"amount": {"type": "integer"}, "memo": {"type": "string"}}}, self.transfers))

        @server.resource("data://public")
        def public() -> str:
            return "public data"

        @server.resource("data://payroll")
        def payroll() -> str:
            return "salaries"

        @server.resource("accounts://{owner}/statement")
        def statement(owner: str) -> str:
            return f"statement of {owner}"

        @server.prompt
        def greet(name: str) -> str:
            return f"Hello {name}"

        @server.prompt
        def audit_summary(period: str) -> str:
            return f"Summarise {period}"

    def events_since(self, mark: int) -> list[az.AuditEvent]:
        return self.audit.events[mark:]


@pytest.fixture(scope="module")
def bank() -> Iterator[tuple[Bank, LiveServer]]:
    state = Bank()
    with quiet_uvicorn(), LiveServer(state.server) as live:
        yield state, live


def tool_call(live: LiveServer, token: str | None, name: str, arguments: dict[str, Any]) -> mt.CallToolResult:
    async def run() -> mt.CallToolResult:
        async with live.client(token) as client:
            return await client.call_tool_mcp(name, arguments)

    return live.run(run)


def text_of(result: mt.CallToolResult) -> str:
    [content] = result.content
    assert isinstance(content, mt.TextContent)
    return content.text


def decision_id(text: str) -> str:
    import re

    found = re.search(DECISION, text)
    assert found is not None, text
    return found[1]


# -- tools/call ---------------------------------------------------------------------------------------


def test_an_allowed_call_runs_the_tool_with_exactly_the_arguments_the_policy_evaluated(
    bank: tuple[Bank, LiveServer]
) -> None:
    state, live = bank
    mark = len(state.audit.events)
    result = tool_call(live, state.issuer.token("bob"), "pay", {"amount": "7", "urgent": "false"})
    assert not result.is_error and text_of(result) == "paid 7"
    # coerced, defaults filled in
    assert state.received[-1] == ("pay", {"amount": 7, "note": "", "urgent": False})
    [event] = state.events_since(mark)
    assert (event.principal, event.action, event.resource, event.decision) == (
        'User::"bob"', 'Action::"pay"', 'Tool::"pay"', "allow")
    assert event.request is not None
    assert event.request["request"]["context"]["input"] == {"amount": 7, "note": "", "urgent": False}


def test_a_tool_known_by_its_json_schema_receives_the_validated_arguments_not_the_raw_ones(
    bank: tuple[Bank, LiveServer]
) -> None:
    state, live = bank
    alice = state.issuer.token("alice")
    assert not tool_call(live, alice, "transfer", {"amount": "12"}).is_error
    assert tool_call(live, alice, "transfer", {"amount": 1, "to": "x@evil.example"}).is_error
    assert state.transfers == [{"amount": 12}]  # an int, as evaluated; the undeclared "to" never arrived


def test_a_denied_call_is_a_tool_error_naming_the_audited_decision_and_the_tool_never_runs(
    bank: tuple[Bank, LiveServer]
) -> None:
    state, live = bank
    ran, mark = len(state.received), len(state.audit.events)
    result = tool_call(live, state.issuer.token("bob"), "pay", {"amount": "11"})
    assert result.is_error  # a tool error result, not a JSON-RPC error
    text = text_of(result)
    assert text.startswith("Tool 'pay' is not permitted for this user") and "bob-small" not in text
    [event] = state.events_since(mark)
    assert event.decision == "deny" and event.decision_id == decision_id(text)
    assert len(state.received) == ran


def test_an_argument_the_schema_does_not_declare_is_refused_and_never_reaches_the_tool(
    bank: tuple[Bank, LiveServer]
) -> None:
    state, live = bank
    ran, mark = len(state.received), len(state.audit.events)
    result = tool_call(live, state.issuer.token("alice"), "pay", {"amount": 5, "bcc": "x@evil.example"})
    assert result.is_error and "do not match the tool's schema" in text_of(result)
    [event] = state.events_since(mark)
    assert event.decision == "deny" and "bcc: unknown argument" in event.errors[0]
    assert event.decision_id == decision_id(text_of(result))
    assert len(state.received) == ran


def test_arguments_that_do_not_validate_are_an_audited_refusal(bank: tuple[Bank, LiveServer]) -> None:
    state, live = bank
    mark = len(state.audit.events)
    for arguments in ({"amount": "lots"}, {}, {"amount": 2**70}):
        result = tool_call(live, state.issuer.token("alice"), "pay", arguments)
        assert result.is_error and "do not match the tool's schema" in text_of(result)
    assert [e.decision for e in state.events_since(mark)] == ["deny"] * 3


def test_an_unknown_tool_is_refused_and_audited(bank: tuple[Bank, LiveServer]) -> None:
    state, live = bank
    mark = len(state.audit.events)
    result = tool_call(live, state.issuer.token("alice"), "transfer_funds", {"amount": 1})
    assert result.is_error and "is not available to this agent" in text_of(result)
    [event] = state.events_since(mark)
    assert (event.action, event.errors) == ('Action::"transfer_funds"', ("unknown tool",))


def test_a_tool_whose_schema_has_no_cedar_equivalent_is_hidden_and_refused(
    bank: tuple[Bank, LiveServer]
) -> None:
    state, live = bank
    result = tool_call(live, state.issuer.token("alice"), "configure", {"settings": {"debug": True}})
    assert result.is_error and "is not available to this agent" in text_of(result)
    assert ("configure", {"debug": True}) not in state.received
    assert "configure" not in listed(live, state.issuer.token("alice"))


@pytest.mark.parametrize("schema", [
    {"type": "object", "properties": {"model_dump": {"type": "string"}}},  # a pydantic BaseModel member
    {"type": "object", "properties": {"a": {"type": "string"}}, "$defs": "not a mapping"},
    {"type": "object", "properties": {"settings": {"type": "object"}}},  # no Cedar type
])
def test_a_tool_whose_schema_cannot_be_read_is_refused_as_unavailable_and_never_runs(
    schema: dict[str, Any]
) -> None:
    audit = az.MemorySink()
    received: list[dict[str, Any]] = []
    authz = az.Authorizer.from_text("permit(principal, action, resource);", audit=[audit])
    server = FastMCP("svc", auth=static_tokens("alice"), middleware=[AuthzMiddleware(authz)])
    server.add_tool(recording_tool("odd", schema, received))
    result = call(server, "t-alice", "odd", {})
    assert result.is_error and "is not available to this agent" in text_of(result)
    assert received == [] and [e.decision for e in audit.events] == ["deny"]


def listed(live: LiveServer, token: str | None) -> list[str]:
    async def run() -> list[str]:
        async with live.client(token) as client:
            return [tool.name for tool in await client.list_tools()]

    return live.run(run)


def test_the_tool_list_shows_each_user_only_the_tools_they_could_ever_call(
    bank: tuple[Bank, LiveServer]
) -> None:
    state, live = bank
    assert listed(live, state.issuer.token("alice")) == ["pay", "whoami", "admin_reset", "transfer"]
    assert listed(live, state.issuer.token("bob")) == ["pay", "whoami"]
    assert listed(live, state.issuer.token("carol")) == []


def test_a_tool_left_out_of_the_list_is_still_decided_when_named(bank: tuple[Bank, LiveServer]) -> None:
    state, live = bank
    ran, mark = len(state.received), len(state.audit.events)
    result = tool_call(live, state.issuer.token("bob"), "admin_reset", {})
    assert result.is_error and len(state.received) == ran
    assert [e.decision for e in state.events_since(mark)] == ["deny"]


def test_the_tool_runs_with_the_tokens_user_bound(bank: tuple[Bank, LiveServer]) -> None:
    state, live = bank
    assert text_of(tool_call(live, state.issuer.token("bob"), "whoami", {})) == 'User::"bob"'


# -- identity ---------------------------------------------------------------------------------------------


def test_a_request_without_a_valid_token_is_rejected_before_any_middleware(
    bank: tuple[Bank, LiveServer]
) -> None:
    state, live = bank
    mark = len(state.audit.events)

    async def post(headers: dict[str, str]) -> int:
        async with httpx2.AsyncClient() as http:
            response = await http.post(live.url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                                       headers={"Accept": "application/json, text/event-stream", **headers})
        return response.status_code

    assert live.run(lambda: post({})) == 401
    assert live.run(lambda: post({"Authorization": f"Bearer {state.issuer.foreign_token('alice')}"})) == 401
    assert state.events_since(mark) == []


def test_a_server_without_auth_refuses_every_request_and_audits_it() -> None:
    audit = az.MemorySink()
    authz = az.Authorizer.from_text(POLICIES, audit=[audit])
    server = FastMCP("open", middleware=[AuthzMiddleware(authz)])
    server.tool(lambda amount: "paid", name="pay")
    result = call(server, None, "pay", {"amount": 1})
    assert result.is_error and "identity is missing or could not be verified" in text_of(result)
    [event] = audit.events
    assert (event.principal, event.errors) == (None, ("no end user bound",))

    async def lists() -> tuple[list[Any], ...]:
        async with Client(server) as client:  # in-process: no HTTP, no token
            return (await client.list_tools(), await client.list_resources(), await client.list_prompts())

    assert asyncio.run(lists()) == ([], [], [])


def test_the_user_is_the_tokens_subject_never_its_client_id(bank: tuple[Bank, LiveServer]) -> None:
    state, live = bank
    token = state.issuer.token("mallory", client_id="alice", azp="alice")
    result = tool_call(live, token, "whoami", {})
    assert result.is_error
    assert state.audit.events[-1].principal == 'User::"mallory"'


def server_with(authz: az.Authorizer, **options: Any) -> FastMCP:
    server = FastMCP("svc", auth=static_tokens("alice", "bob", "carol"),
                     middleware=[AuthzMiddleware(authz, **options)])

    @server.tool
    def whoami() -> str:
        return str(authz.current_principal())

    return server


def test_principal_maps_the_verified_token_to_the_end_user() -> None:
    authz = az.Authorizer.from_text('permit(principal == Customer::"cust-bob", action, resource);', audit=[])
    server = server_with(authz, principal=lambda token: az.EntityUID("Customer", f"cust-{token.subject}"))
    assert text_of(call(server, "t-bob", "whoami", {})) == 'Customer::"cust-bob"'
    assert call(server, "t-alice", "whoami", {}).is_error


@pytest.mark.parametrize("mapping", [
    lambda token: 1 / 0,
    lambda token: "User::\"alice\"",  # a string is never parsed into a principal
    lambda token: None,
])
def test_a_mapping_that_fails_or_returns_no_entity_refuses_the_call(mapping: Any) -> None:
    audit = az.MemorySink()
    authz = az.Authorizer.from_text("permit(principal, action, resource);", audit=[audit])
    result = call(server_with(authz, principal=mapping), "t-alice", "whoami", {})
    assert result.is_error and "identity is missing" in text_of(result)
    assert audit.events[-1].principal is None


def test_an_async_mapping_is_awaited() -> None:
    authz = az.Authorizer.from_text('permit(principal == User::"bob", action, resource);', audit=[])

    async def principal(token: Any) -> az.EntityUID:
        return az.EntityUID("User", token.subject)

    assert text_of(call(server_with(authz, principal=principal), "t-bob", "whoami", {})) == 'User::"bob"'


def test_identity_maps_the_verified_claims_as_an_identity_source_does() -> None:
    issuer = Issuer()
    identity = az.TokenIdentity.oidc(issuer=ISSUER, jwks={"keys": []}, audiences=["assistant-mcp"],
                                     principal_entity_type="Employee", entity_id_prefix="idp",
                                     group_claim="groups", group_entity_type="Team")
    authz = az.Authorizer.from_text('permit(principal in Team::"idp|ops", action, resource);', audit=[])
    server = FastMCP("svc", auth=issuer.verifier, middleware=[AuthzMiddleware(authz, identity=identity)])

    @server.tool
    def whoami() -> str:
        return str(authz.current_principal())

    assert text_of(call(server, issuer.token("dana", groups=["ops"]), "whoami", {})) == 'Employee::"idp|dana"'
    assert call(server, issuer.token("erik", groups=["sales"]), "whoami", {}).is_error


def test_identity_refuses_a_token_of_another_issuer() -> None:
    claims = {"sub": "dana", "iss": "https://other.example"}
    token = type("Token", (), {"subject": "dana", "claims": claims})()
    identity = az.TokenIdentity.oidc(issuer=ISSUER, jwks={"keys": []}, audiences=["assistant-mcp"])
    with pytest.raises(az.IdentityError, match="issuer"):
        asyncio.run(token_principal(token, identity=identity))


def test_a_token_whose_subject_and_sub_claim_differ_is_refused() -> None:
    token = type("Token", (), {"subject": "alice", "claims": {"sub": "mallory"}})()
    with pytest.raises(az.IdentityError, match="differs"):
        asyncio.run(token_principal(token))


# -- resources and prompts ------------------------------------------------------------------------------


def read(live: LiveServer, token: str, uri: str) -> str | MCPError:
    async def run() -> str | MCPError:
        async with live.client(token) as client:
            try:
                [contents] = await client.read_resource(uri)
            except MCPError as exc:
                return exc
            assert isinstance(contents, mt.TextResourceContents)
            return contents.text

    return live.run(run)


def test_a_resource_is_read_only_as_allowed_and_a_refusal_reads_as_a_missing_resource(
    bank: tuple[Bank, LiveServer]
) -> None:
    state, live = bank
    bob = state.issuer.token("bob")
    mark = len(state.audit.events)
    assert read(live, bob, "data://public") == "public data"
    refused, missing = read(live, bob, "data://payroll"), read(live, bob, "data://nothing-here")
    assert isinstance(refused, MCPError) and isinstance(missing, MCPError)
    assert refused.error.code == missing.error.code == -32602  # the same error: existence is not disclosed
    assert refused.error.message.replace("payroll", "X") == missing.error.message.replace("nothing-here", "X")
    events = state.events_since(mark)
    assert [(e.action, e.resource, e.decision) for e in events] == [
        ('Action::"read_resource"', 'Resource::"data://public"', "allow"),
        ('Action::"read_resource"', 'Resource::"data://payroll"', "deny"),
        ('Action::"read_resource"', 'Resource::"data://nothing-here"', "deny"),
    ]
    assert events[0].request is not None
    assert events[0].request["request"]["context"] == {"uri": "data://public"}
    assert read(live, state.issuer.token("alice"), "data://payroll") == "salaries"


def test_a_template_read_is_decided_on_the_uri_its_parameters_expand_to(
    bank: tuple[Bank, LiveServer]
) -> None:
    state, live = bank
    alice = state.issuer.token("alice")
    mark = len(state.audit.events)
    # FastMCP decodes template parameters and ignores an undeclared query: each of these reads carol's
    for spelling in ("accounts://carol/statement", "accounts://c%61rol/statement",
                     "accounts://carol/statement?view=full"):
        assert isinstance(read(live, alice, spelling), MCPError), spelling
    assert read(live, alice, "accounts://dave/statement") == "statement of dave"
    events = state.events_since(mark)
    assert [(e.resource, e.decision) for e in events] == [
        ('Resource::"accounts://carol/statement"', "deny")] * 3 + [
        ('Resource::"accounts://dave/statement"', "allow")]
    assert events[-1].request is not None
    assert events[-1].request["request"]["context"] == {
        "uri": "accounts://dave/statement", "input": {"owner": "dave"}}


def prompt(live: LiveServer, token: str, name: str, arguments: dict[str, Any]) -> str | MCPError:
    async def run() -> str | MCPError:
        async with live.client(token) as client:
            try:
                result = await client.get_prompt(name, arguments)
            except MCPError as exc:
                return exc
            content = result.messages[0].content
            assert isinstance(content, mt.TextContent)
            return content.text

    return live.run(run)


def test_a_prompt_is_decided_on_its_arguments_and_a_refusal_reads_as_a_missing_prompt(
    bank: tuple[Bank, LiveServer]
) -> None:
    state, live = bank
    bob = state.issuer.token("bob")
    mark = len(state.audit.events)
    assert prompt(live, bob, "greet", {"name": "Ann"}) == "Hello Ann"
    refusals = [prompt(live, bob, "greet", {"name": "Mallory"}),             # denied by the policy
                prompt(live, bob, "greet", {"name": "Ann", "role": "admin"}),  # an undeclared argument
                prompt(live, bob, "audit_summary", {"period": "Q3"}),         # no policy permits it
                prompt(live, bob, "no_such_prompt", {})]                      # really unknown
    for refused in refusals:
        assert isinstance(refused, MCPError) and refused.error.code == -32602
        assert refused.error.message.startswith("Unknown prompt: ")
    events = state.events_since(mark)
    assert [e.decision for e in events] == ["allow", "deny", "deny", "deny", "deny"]
    assert events[0].request is not None
    assert events[0].request["request"]["context"] == {"input": {"name": "Ann"}}
    assert "role: unknown argument" in events[2].errors[0]


def test_resources_and_prompts_are_listed_only_where_the_user_could_be_allowed(
    bank: tuple[Bank, LiveServer]
) -> None:
    state, live = bank

    async def run(token: str) -> tuple[list[str], list[str]]:
        async with live.client(token) as client:
            return ([str(r.uri) for r in await client.list_resources()],
                    [p.name for p in await client.list_prompts()])

    assert live.run(lambda: run(state.issuer.token("bob"))) == (["data://public"], ["greet"])
    assert live.run(lambda: run(state.issuer.token("alice"))) == (
        ["data://public", "data://payroll"], ["greet", "audit_summary"])
    assert live.run(lambda: run(state.issuer.token("carol"))) == ([], [])


def test_resource_templates_are_listed_to_a_user_who_could_read_some_resource(
    bank: tuple[Bank, LiveServer]
) -> None:
    state, live = bank

    async def run(token: str) -> list[str]:
        async with live.client(token) as client:
            return [t.uri_template for t in await client.list_resource_templates()]

    assert live.run(lambda: run(state.issuer.token("alice"))) == ["accounts://{owner}/statement"]
    assert live.run(lambda: run(state.issuer.token("carol"))) == []


# -- settings per tool ------------------------------------------------------------------------------------


def documents_server(audit: az.MemorySink, **settings: Any) -> FastMCP:
    authz = az.Authorizer.from_text(
        '@id("own-docs") permit (principal, action == Action::"read_document", resource)'
        ' when { resource == Document::"d-alice" };', audit=[audit])
    tools = {"read_document": az.ToolSettings(**settings)}
    server = FastMCP("docs", auth=static_tokens("alice"), middleware=[AuthzMiddleware(authz, tools=tools)])

    @server.tool
    def read_document(document_id: str) -> str:
        return f"contents of {document_id}"

    return server


def test_a_tool_setting_decides_the_call_on_the_resource_computed_from_its_arguments() -> None:
    audit = az.MemorySink()
    server = documents_server(audit, resource=lambda args: az.EntityUID("Document", args["document_id"]),
                              resource_types=["Document"])
    allowed = call(server, "t-alice", "read_document", {"document_id": "d-alice"})
    assert text_of(allowed) == "contents of d-alice"
    assert call(server, "t-alice", "read_document", {"document_id": "d-bob"}).is_error
    assert [(e.resource, e.decision) for e in audit.events] == [
        ('Document::"d-alice"', "allow"), ('Document::"d-bob"', "deny")]


def test_a_failing_resource_callable_refuses_the_call() -> None:
    audit = az.MemorySink()
    server = documents_server(audit, resource=lambda args: args["no_such_argument"])
    result = call(server, "t-alice", "read_document", {"document_id": "d-alice"})
    assert result.is_error and "not permitted" in text_of(result)
    assert audit.events[-1].errors == ("authorization failed: KeyError",)


def test_a_versioned_tool_is_validated_against_the_version_the_call_asks_for() -> None:
    audit = az.MemorySink()
    authz = az.Authorizer.from_text("permit(principal, action, resource);", audit=[audit],
                                    record_requests=True)
    server = FastMCP("svc", auth=static_tokens("alice"), middleware=[AuthzMiddleware(authz)])

    @server.tool(version="1")
    def lookup(key: int) -> str:
        return f"v1 {key!r}"

    @server.tool(version="2")  # type: ignore[no-redef]
    def lookup(key: str) -> str:  # noqa: F811 (the same tool, version 2)
        return f"v2 {key!r}"

    async def run() -> tuple[str, str]:
        async with served(server, "t-alice") as client:
            first = await client.call_tool("lookup", {"key": "7"}, version="1")
            latest = await client.call_tool("lookup", {"key": "7"})
        return first.data, latest.data

    assert asyncio.run(run()) == ("v1 7", "v2 '7'")
    assert [e.request["request"]["context"]["input"] for e in audit.events if e.request] == [
        {"key": 7}, {"key": "7"}]


@pytest.mark.parametrize(("options", "message"), [
    ({"principal": lambda token: None, "identity": object()}, "not both"),
    ({"principal": "alice"}, "callable"),
    ({"session": "yes"}, "session="),
    ({"tools": {"pay": {"resource": None}}}, "must be an agentauthz.ToolSettings"),
    ({"tools": {"pay": 42}}, "must be an agentauthz.ToolSettings"),
    ({"resource_type": ""}, "resource_type"),
])
def test_a_malformed_option_is_a_configuration_error(options: dict[str, Any], message: str) -> None:
    authz = az.Authorizer.from_text("permit(principal, action, resource);", audit=[])
    with pytest.raises(az.ConfigurationError, match=message):
        AuthzMiddleware(authz, **options)


# -- sessions ---------------------------------------------------------------------------------------------

SESSION_POLICIES = """
permit (principal, action, resource);
@id("two-payments-per-conversation")
forbid (principal, action == Action::"pay", resource)
  when { context has session && context.session.calls.pay >= 2 };
"""


def session_server(audit: az.MemorySink, session: Any) -> FastMCP:
    authz = az.Authorizer.from_text(SESSION_POLICIES, audit=[audit])
    server = FastMCP("svc", auth=static_tokens("alice", "bob"),
                     middleware=[AuthzMiddleware(authz, session=session)])

    @server.tool
    def pay(amount: int) -> str:
        if amount < 0:
            raise ValueError("a negative payment fails in the tool")
        return "paid"

    return server


def payments(client: Client[Any], amounts: list[int]) -> Any:
    async def run() -> list[str]:
        outcomes = []
        for amount in amounts:
            result = await client.call_tool_mcp("pay", {"amount": amount})
            outcomes.append("error" if result.is_error else "ok")
        return outcomes

    return run()


def test_calls_in_an_mcp_session_count_once_they_complete_and_a_failed_call_does_not() -> None:
    audit = az.MemorySink()
    server = session_server(audit, True)

    async def run() -> tuple[list[str], list[str]]:
        async with served(server, "t-alice", mode="legacy") as first:
            in_first = await payments(first, [1, -1, 2, 3])
        async with served(server, "t-alice", mode="legacy") as second:  # a new MCP session
            in_second = await payments(second, [4])
        return in_first, in_second

    assert asyncio.run(run()) == (["ok", "error", "ok", "error"], ["ok"])
    assert [e.decision for e in audit.events] == ["allow", "allow", "allow", "deny", "allow"]
    assert audit.events[3].reasons == ("two-payments-per-conversation",)
    assert len({e.session for e in audit.events[:4]}) == 1
    assert audit.events[4].session != audit.events[0].session


def test_a_2026_request_has_no_mcp_session_so_session_true_refuses_it() -> None:
    audit = az.MemorySink()

    async def run() -> list[str]:
        async with served(session_server(audit, True), "t-alice") as client:  # negotiates 2026-07-28
            return await payments(client, [1])

    assert asyncio.run(run()) == ["error"]
    assert "the connection has no MCP session" in audit.events[-1].errors[0]


def test_a_session_key_belongs_to_the_user_whose_call_opened_it() -> None:
    audit = az.MemorySink()

    def conversation(context: Context) -> str:
        return "conversation-1"  # e.g. read from a trusted header: the same key for two users

    server = session_server(audit, conversation)

    async def run() -> tuple[list[str], list[str]]:
        async with served(server, "t-alice") as alice, served(server, "t-bob") as bob:
            return await payments(alice, [1]), await payments(bob, [1])

    assert asyncio.run(run()) == (["ok"], ["error"])
    assert audit.events[-1].principal == 'User::"bob"' and audit.events[-1].decision == "deny"


def test_a_session_callable_that_fails_refuses_the_call() -> None:
    audit = az.MemorySink()

    async def run() -> list[str]:
        async with served(session_server(audit, lambda context: 1 / 0), "t-alice") as client:
            return await payments(client, [1])

    assert asyncio.run(run()) == ["error"]
    [event] = audit.events
    assert event.decision == "deny" and event.errors[0].startswith("no session for the request")


def test_without_fastmcp_the_import_names_the_extra() -> None:
    code = ("import sys\n"
            "sys.modules['fastmcp'] = None\n"
            "try:\n"
            "    import agentauthz.integrations.mcp\n"
            "except ImportError as exc:\n"
            "    print(exc)\n"
            "    sys.exit(0)\n"
            "sys.exit(1)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'pip install "agentauthz[mcp]"' in result.stdout


class FailingEngine:
    """An Engine double whose every decision raises ``error``."""

    name = fingerprint = "failing"

    def __init__(self, error: Exception) -> None:
        self.error = error

    def resolve_action(self, action: str | az.EntityUID) -> az.EntityUID:
        return action if isinstance(action, az.EntityUID) else az.EntityUID("Action", action)

    def decide(self, requests: Any, entities: Any = ()) -> list[az.Decision]:
        raise self.error

    async def adecide(self, requests: Any, entities: Any = ()) -> list[az.Decision]:
        raise self.error


@pytest.mark.parametrize("error", [RuntimeError("backend exploded"), az.EngineError("AVP unreachable")])
def test_an_engine_that_fails_refuses_every_call_read_and_prompt(error: Exception) -> None:
    ran: list[str] = []
    authz = az.Authorizer(FailingEngine(error), audit=[])
    server = FastMCP("svc", auth=static_tokens("alice"), middleware=[AuthzMiddleware(authz)])
    server.tool(lambda: ran.append("tool") or "ran", name="wipe")
    server.resource("data://x")(lambda: ran.append("resource") or "x")
    server.prompt(name="p")(lambda: ran.append("prompt") or "p")

    async def run() -> tuple[bool, str, str]:
        async with served(server, "t-alice") as client:
            called = await client.call_tool_mcp("wipe", {})
            outcomes = []
            for attempt in (lambda: client.read_resource("data://x"), lambda: client.get_prompt("p")):
                try:
                    await attempt()
                    outcomes.append("allowed")
                except MCPError as exc:
                    outcomes.append(str(exc.error.code))
        return called.is_error, *outcomes  # type: ignore[return-value]

    assert asyncio.run(run()) == (True, "-32602", "-32602")
    assert ran == []
