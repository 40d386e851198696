"""AuthorizedTool and authorize_tools against the example store (policies/)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("langchain_core")

from langchain_core.messages import ToolMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool, StructuredTool, tool
from pydantic import BaseModel, Field

import agentauthz as az
from agentauthz.integrations.langchain import PRINCIPAL_KEY, AuthorizedTool, authorize_tools

ROOT = Path(__file__).resolve().parents[2]
POLICIES = ROOT / "policies"


def user(name: str) -> az.EntityUID:
    return az.EntityUID("User", name)


def as_user(name: str | az.EntityUID | az.Entity, key: str = PRINCIPAL_KEY) -> RunnableConfig:
    return {"configurable": {key: user(name) if isinstance(name, str) else name}}


def call(name: str, **args: Any) -> dict[str, Any]:
    return {"type": "tool_call", "id": f"call-{name}", "name": name, "args": args}


def document(args: dict[str, Any]) -> az.EntityUID:
    return az.EntityUID("Document", args["document_id"])


REFUND_ACTION = az.ToolSettings(action="issue_refund", resource=az.EntityUID("Tool", "issue_refund"))


class Ran:
    """What the tool bodies saw: (tool, arguments, bound principal)."""

    def __init__(self, authz: az.Authorizer) -> None:
        self.authz = authz
        self.calls: list[tuple[str, dict[str, Any], str | None]] = []

    def record(self, name: str, **args: Any) -> None:
        identity = self.authz.identity
        self.calls.append((name, args, identity.uid.id if identity else None))


@pytest.fixture
def recorder() -> az.MemorySink:
    return az.MemorySink()


@pytest.fixture
def authz(recorder: az.MemorySink) -> az.Authorizer:
    return az.Authorizer.from_directory(POLICIES, audit=[recorder], record_requests=True)


@pytest.fixture
def ran(authz: az.Authorizer) -> Ran:
    return Ran(authz)


@pytest.fixture
def raw(ran: Ran) -> dict[str, BaseTool]:
    """The example assistant's tools as plain LangChain tools (no authorization)."""

    @tool
    def search_documents(query: str) -> str:
        """Search the knowledge base."""
        ran.record("search_documents", query=query)
        return f"results for {query}"

    @tool
    def read_document(document_id: str) -> str:
        """Read one document by id."""
        ran.record("read_document", document_id=document_id)
        return f"contents of {document_id}"

    @tool
    def send_email(to: str, subject: str) -> str:
        """Send an email on the user's behalf."""
        ran.record("send_email", to=to, subject=subject)
        return f"email to {to} sent"

    @tool
    async def issue_refund(order_id: str, amount: int) -> str:
        """Refund an order, amount in whole currency units."""
        await asyncio.sleep(0)
        ran.record("issue_refund", order_id=order_id, amount=amount)
        return f"refunded {amount} on {order_id}"

    @tool
    def sync_refund(order_id: str, amount: int) -> str:
        """Refund an order (sync)."""
        ran.record("issue_refund", order_id=order_id, amount=amount)
        return f"refunded {amount} on {order_id}"

    return {t.name: t for t in (search_documents, read_document, send_email, issue_refund, sync_refund)}


@pytest.fixture
def tools(raw: dict[str, BaseTool], authz: az.Authorizer) -> dict[str, AuthorizedTool]:
    wrapped = authorize_tools(
        [raw["search_documents"], raw["read_document"], raw["send_email"], raw["issue_refund"]],
        authz, settings={"read_document": az.ToolSettings(resource=document, resource_types=["Document"])},
    )
    result = {t.name: t for t in wrapped if isinstance(t, AuthorizedTool)}
    result["sync_refund"] = AuthorizedTool(tool=raw["sync_refund"], authz=authz, settings=REFUND_ACTION)
    return result


def tool_events(recorder: az.MemorySink) -> list[az.AuditEvent]:
    return [e for e in recorder.events if e.action != 'Action::"read"']


# -- what the model sees --------------------------------------------------------------


def test_name_description_and_schemas_are_the_wrapped_tools(
    raw: dict[str, BaseTool], tools: dict[str, AuthorizedTool]
) -> None:
    for name in ("search_documents", "read_document", "send_email", "issue_refund"):
        wrapped, original = tools[name], raw[name]
        assert wrapped.name == original.name
        assert wrapped.description == original.description
        assert wrapped.args_schema is original.args_schema
        assert wrapped.args == original.args
        assert wrapped.tool_call_schema.model_json_schema() == original.tool_call_schema.model_json_schema()  # type: ignore[union-attr]


def test_authorize_tools_keeps_order_and_converts_functions(authz: az.Authorizer) -> None:
    def lookup(order_id: str) -> str:
        """Look an order up."""
        return order_id

    wrapped = authorize_tools([lookup], authz)
    assert [t.name for t in wrapped] == ["lookup"]
    assert isinstance(wrapped[0], AuthorizedTool)
    assert wrapped[0].description == "Look an order up."


def test_a_setting_for_an_unknown_tool_name_is_a_configuration_error(
    raw: dict[str, BaseTool], authz: az.Authorizer
) -> None:
    with pytest.raises(az.ConfigurationError, match="read_documnet"):
        authorize_tools([raw["read_document"]], authz,
                        settings={"read_documnet": az.ToolSettings(resource=document)})


def test_the_spec_is_registered_and_types_its_input(
    tools: dict[str, AuthorizedTool], authz: az.Authorizer
) -> None:
    spec = tools["issue_refund"].spec
    assert authz.tools["issue_refund"] is spec
    assert spec.action == "issue_refund"
    assert spec.parameters == ("order_id", "amount")
    assert spec.input_type == {
        "type": "Record",
        "attributes": {"order_id": {"type": "String"}, "amount": {"type": "Long"}},
    }
    assert tools["read_document"].spec.resource_types == ("Document",)


def test_renaming_the_wrapper_is_refused(raw: dict[str, BaseTool], authz: az.Authorizer) -> None:
    with pytest.raises(az.ConfigurationError, match="name"):
        AuthorizedTool(tool=raw["send_email"], authz=authz, name="mail")
    with pytest.raises(az.ConfigurationError, match="BaseTool"):
        AuthorizedTool(tool=lambda: None, authz=authz)


def test_an_argument_type_without_cedar_equivalent_is_refused_when_wrapping(authz: az.Authorizer) -> None:
    @tool
    def configure(settings: dict[str, Any]) -> str:
        """Change settings."""
        return "ok"

    with pytest.raises(az.ConfigurationError, match="settings"):
        AuthorizedTool(tool=configure, authz=authz)


# -- decisions --------------------------------------------------------------------------


def test_allowed_sync_call_runs_with_validated_arguments_as_context_input(
    tools: dict[str, AuthorizedTool], ran: Ran, recorder: az.MemorySink
) -> None:
    result = tools["sync_refund"].invoke({"order_id": "o-1", "amount": "4200"}, config=as_user("carol"))
    assert result == "refunded 4200 on o-1"
    assert ran.calls == [("issue_refund", {"order_id": "o-1", "amount": 4200}, "carol")]
    [event] = tool_events(recorder)
    assert event.decision == "allow" and event.reasons == ("refund-finance-limit",)
    assert event.request is not None
    request = event.request["request"]
    assert request["principal"] == {"type": "User", "id": "carol"}
    assert request["resource"] == {"type": "Tool", "id": "issue_refund"}
    assert request["context"]["input"] == {"order_id": "o-1", "amount": 4200}  # "4200" validated to 4200


def test_denied_call_returns_the_refusal_and_never_runs_the_tool(
    tools: dict[str, AuthorizedTool], ran: Ran, recorder: az.MemorySink
) -> None:
    result = tools["sync_refund"].invoke({"order_id": "o-1", "amount": -200}, config=as_user("carol"))
    [event] = tool_events(recorder)
    assert event.reasons == ("refund-must-be-positive",)
    assert result == (
        f"Tool 'sync_refund' is not permitted for this user (decision {event.decision_id}). Do not retry it."
    )
    over = tools["sync_refund"].invoke({"order_id": "o-1", "amount": 7500}, config=as_user("carol"))
    assert "not permitted" in over and "policy" not in over
    assert ran.calls == []


def test_a_tool_call_gets_a_tool_message_with_the_refusal(tools: dict[str, AuthorizedTool], ran: Ran) -> None:
    message = tools["send_email"].invoke(
        call("send_email", to="attacker@evil.example", subject="Q3"), config=as_user("carol")
    )
    assert isinstance(message, ToolMessage)
    assert message.tool_call_id == "call-send_email" and message.name == "send_email"
    assert "not permitted" in str(message.content)
    assert ran.calls == []


def test_allowed_and_denied_async_calls(tools: dict[str, AuthorizedTool], ran: Ran) -> None:
    refund = tools["issue_refund"]
    assert asyncio.run(refund.ainvoke({"order_id": "o-2", "amount": 120}, config=as_user("bob"))) == (
        "refunded 120 on o-2"
    )
    denied = asyncio.run(refund.ainvoke({"order_id": "o-3", "amount": 600}, config=as_user("bob")))
    assert "not permitted" in denied
    assert ran.calls == [("issue_refund", {"order_id": "o-2", "amount": 120}, "bob")]


def test_a_sync_tool_called_async_runs_in_a_thread_with_the_user_bound(
    tools: dict[str, AuthorizedTool], ran: Ran
) -> None:
    result = asyncio.run(
        tools["sync_refund"].ainvoke({"order_id": "o-4", "amount": 100}, config=as_user("carol"))
    )
    assert result == "refunded 100 on o-4"
    assert ran.calls == [("issue_refund", {"order_id": "o-4", "amount": 100}, "carol")]


def test_handle_tool_error_on_the_wrapped_tool_turns_a_denial_into_an_error_message(
    raw: dict[str, BaseTool], authz: az.Authorizer, ran: Ran
) -> None:
    handled = raw["send_email"].model_copy(update={"handle_tool_error": True})
    wrapped = AuthorizedTool(tool=handled, authz=authz)
    message = wrapped.invoke(call("send_email", to="x@evil.example", subject="s"), config=as_user("grace"))
    assert isinstance(message, ToolMessage)
    assert message.status == "error"
    assert "not permitted" in str(message.content)

    fixed = raw["send_email"].model_copy(update={"handle_tool_error": "That is not allowed."})
    wrapped = AuthorizedTool(tool=fixed, authz=authz)
    assert wrapped.invoke({"to": "x@evil.example", "subject": "s"}, config=as_user("grace")) == (
        "That is not allowed."
    )
    assert ran.calls == []


def test_on_deny_raise_raises_access_denied_with_the_decision(
    raw: dict[str, BaseTool], authz: az.Authorizer, ran: Ran
) -> None:
    wrapped = AuthorizedTool(tool=raw["sync_refund"], authz=authz, settings=REFUND_ACTION, on_deny="raise")
    with pytest.raises(az.AccessDenied) as caught:
        wrapped.invoke({"order_id": "o", "amount": 0}, config=as_user("carol"))
    assert caught.value.decision.reasons == ("refund-must-be-positive",)
    assert ran.calls == []


def test_shadow_mode_lets_a_denied_call_run(
    raw: dict[str, BaseTool], recorder: az.MemorySink, ran: Ran
) -> None:
    shadow = az.Authorizer.from_directory(POLICIES, audit=[recorder], mode="shadow")
    wrapped = AuthorizedTool(tool=raw["send_email"], authz=shadow)
    assert wrapped.invoke({"to": "x@evil.example", "subject": "s"}, config=as_user("grace")) == (
        "email to x@evil.example sent"
    )
    [event] = tool_events(recorder)
    assert event.decision == "deny" and event.enforced is False


def test_a_document_tool_is_decided_on_the_document(tools: dict[str, AuthorizedTool], ran: Ran) -> None:
    read = tools["read_document"]
    assert read.invoke({"document_id": "acme-eng-roadmap"}, config=as_user("grace")) == (
        "contents of acme-eng-roadmap"
    )
    refused = read.invoke({"document_id": "globex-design"}, config=as_user("grace"))
    assert "not permitted" in refused and "tenant-isolation" not in refused
    assert [c[1]["document_id"] for c in ran.calls] == ["acme-eng-roadmap"]


# -- the end user -----------------------------------------------------------------------


def test_principal_from_acting_as(tools: dict[str, AuthorizedTool], authz: az.Authorizer, ran: Ran) -> None:
    with authz.acting_as(user("carol")):
        assert tools["sync_refund"].invoke({"order_id": "o", "amount": 10}) == "refunded 10 on o"
    assert ran.calls[0][2] == "carol"


def test_principal_from_a_custom_configurable_key_as_an_entity(
    raw: dict[str, BaseTool], authz: az.Authorizer, ran: Ran, recorder: az.MemorySink
) -> None:
    wrapped = AuthorizedTool(tool=raw["send_email"], authz=authz, principal_key="end_user")
    erin = az.Entity.from_cedar(
        {"uid": {"type": "User", "id": "erin"},
         "attrs": {"tenant": {"__entity": {"type": "Tenant", "id": "globex"}}, "department": "engineering",
                   "clearance": 3, "email": "erin@globex.example", "email_domain": "globex.example"},
         "parents": [{"type": "Role", "id": "employee"}]}
    )
    result = wrapped.invoke({"to": "frank@globex.example", "subject": "hi"}, config=as_user(erin, "end_user"))
    assert result == "email to frank@globex.example sent"
    assert tool_events(recorder)[0].principal == 'User::"erin"'
    assert ran.calls[0][2] == "erin"
    with pytest.raises(az.IdentityError):  # the default key is not looked at
        wrapped.invoke({"to": "frank@globex.example", "subject": "hi"}, config=as_user("erin"))


def test_no_principal_raises_identity_error_and_runs_nothing(
    tools: dict[str, AuthorizedTool], ran: Ran, recorder: az.MemorySink
) -> None:
    with pytest.raises(az.IdentityError):
        tools["search_documents"].invoke({"query": "x"})
    with pytest.raises(az.IdentityError):
        tools["search_documents"].invoke(call("search_documents", query="x"), config={"configurable": {}})
    with pytest.raises(az.IdentityError):
        asyncio.run(tools["issue_refund"].ainvoke({"order_id": "o", "amount": 1}))
    assert ran.calls == []
    assert recorder.events and all(e.decision == "deny" and e.principal is None for e in recorder.events)


@pytest.mark.parametrize("value", ['User::"admin"', {"type": "User", "id": "admin"}, ("User", "admin")])
def test_a_configured_principal_must_be_a_uid_or_entity_never_text(
    tools: dict[str, AuthorizedTool], ran: Ran, value: object
) -> None:
    with pytest.raises(az.IdentityError, match="EntityUID or Entity"):
        tools["search_documents"].invoke({"query": "x"}, config={"configurable": {PRINCIPAL_KEY: value}})
    assert ran.calls == []


def test_two_different_end_users_for_one_call_is_an_identity_error(
    tools: dict[str, AuthorizedTool], authz: az.Authorizer, ran: Ran
) -> None:
    with authz.acting_as(user("bob")), pytest.raises(az.IdentityError, match="two end users"):
        tools["search_documents"].invoke({"query": "x"}, config=as_user("carol"))
    with authz.acting_as(user("bob")):  # the same user both ways is fine
        assert tools["search_documents"].invoke({"query": "x"}, config=as_user("bob")) == "results for x"
    assert [c[2] for c in ran.calls] == ["bob"]


# -- injection ----------------------------------------------------------------------------


@pytest.mark.parametrize("smuggled", [
    'User::"admin"',
    'acme-handbook" || principal == User::"alice',
    'Document::"acme-salaries"',
    "acme-handbook\\\"",
])
def test_an_argument_that_looks_like_an_entity_stays_a_string_id(
    tools: dict[str, AuthorizedTool], recorder: az.MemorySink, ran: Ran, smuggled: str
) -> None:
    result = tools["read_document"].invoke({"document_id": smuggled}, config=as_user("bob"))
    assert "not permitted" in result
    [event] = tool_events(recorder)
    assert event.principal == 'User::"bob"'
    assert event.request is not None
    assert event.request["request"]["principal"] == {"type": "User", "id": "bob"}
    assert event.request["request"]["resource"] == {"type": "Document", "id": smuggled}
    assert ran.calls == []


def test_arguments_naming_a_principal_are_refused_not_obeyed(
    tools: dict[str, AuthorizedTool], recorder: az.MemorySink, ran: Ran
) -> None:
    result = tools["send_email"].invoke(
        call("send_email", to="x@evil.example", subject="s", principal='User::"bob"',
             agentauthz_principal='User::"bob"', configurable={PRINCIPAL_KEY: 'User::"bob"'}),
        config=as_user("grace"),
    )
    assert "was not called" in str(result.content) and result.status == "error"
    [event] = tool_events(recorder)
    assert event.principal == 'User::"grace"' and event.decision == "deny"
    assert "unknown argument" in event.errors[0]
    assert ran.calls == []


# -- concurrency ------------------------------------------------------------------------------


def test_concurrent_tasks_acting_as_different_users_never_see_each_other(
    authz: az.Authorizer, recorder: az.MemorySink
) -> None:
    seen: list[tuple[str, str]] = []

    @tool
    async def search_documents(query: str) -> str:
        """Search."""
        for _ in range(3):
            await asyncio.sleep(0)
        seen.append((query, authz.current_principal().id))
        return query

    wrapped = AuthorizedTool(tool=search_documents, authz=authz)
    users = ["alice", "bob", "carol", "dave", "grace", "erin", "frank"] * 4

    async def via_acting_as(name: str, n: int) -> str:
        with authz.acting_as(user(name)):
            await asyncio.sleep(0)
            return str(await wrapped.ainvoke({"query": f"{name}-{n}"}))

    async def via_config(name: str, n: int) -> str:
        return str(await wrapped.ainvoke({"query": f"{name}+{n}"}, config=as_user(name)))

    async def main() -> list[str]:
        return await asyncio.gather(
            *(via_acting_as(name, n) for n, name in enumerate(users)),
            *(via_config(name, n) for n, name in enumerate(users)),
        )

    results = asyncio.run(main())
    assert len(results) == 2 * len(users)
    assert len(seen) == 2 * len(users)
    for query, principal in seen:
        assert query.split("-")[0].split("+")[0] == principal
    decided = {e.principal for e in tool_events(recorder)}
    assert decided == {f'User::"{name}"' for name in users}
    assert authz.identity is None


# -- LangChain tool features kept ----------------------------------------------------------


def test_content_and_artifact_tools_keep_their_artifact(authz: az.Authorizer) -> None:
    @tool(response_format="content_and_artifact")
    def search_documents(query: str) -> tuple[str, dict[str, int]]:
        """Search."""
        return "2 hits", {"hits": 2}

    wrapped = AuthorizedTool(tool=search_documents, authz=authz)
    assert wrapped.response_format == "content_and_artifact"
    message = wrapped.invoke(call("search_documents", query="q"), config=as_user("grace"))
    assert message.content == "2 hits" and message.artifact == {"hits": 2}
    with authz.acting_as(user("grace")):
        refused = AuthorizedTool(tool=search_documents, authz=authz,
                                 settings=az.ToolSettings(action="delete_document"))
        denied = refused.invoke(call("search_documents", query="q"))
    assert "not permitted" in denied.content and denied.artifact is None


def test_the_wrapped_tool_gets_its_config_and_the_model_arguments_only(authz: az.Authorizer) -> None:
    @tool
    def search_documents(query: str, config: RunnableConfig) -> str:
        """Search."""
        principal = config["configurable"][PRINCIPAL_KEY]
        return f"{query} for {principal.id}"

    wrapped = AuthorizedTool(tool=search_documents, authz=authz)
    assert list(wrapped.tool_call_schema.model_json_schema()["properties"]) == ["query"]  # type: ignore[union-attr]
    assert wrapped.invoke({"query": "q"}, config=as_user("grace")) == "q for grace"


def test_single_string_input_maps_to_the_only_argument(tools: dict[str, AuthorizedTool]) -> None:
    assert tools["search_documents"].invoke("roadmap", config=as_user("grace")) == "results for roadmap"


def test_a_pydantic_args_schema_with_defaults_and_nested_records(
    authz: az.Authorizer, recorder: az.MemorySink
) -> None:
    class Recipient(BaseModel):
        address: str
        cc: list[str] = Field(default_factory=list)

    class EmailArgs(BaseModel):
        to: Recipient
        subject: str
        urgent: bool = False
        note: str | None = None

    seen: list[dict[str, Any]] = []

    def send(to: Recipient, subject: str, urgent: bool = False, note: str | None = None) -> str:
        seen.append({"to": to.address, "urgent": urgent})
        return "sent"

    mail = StructuredTool.from_function(send, name="send_email", description="Send.", args_schema=EmailArgs)
    wrapped = AuthorizedTool(tool=mail, authz=authz)
    assert wrapped.spec.input_type["attributes"]["urgent"] == {"type": "Boolean", "required": False}
    assert wrapped.spec.input_type["attributes"]["note"] == {"type": "String", "required": False}
    assert wrapped.spec.input_type["attributes"]["to"]["attributes"]["cc"] == {
        "type": "Set", "element": {"type": "String"}, "required": False,
    }
    # the schema declares send_email's input as {to: String, ...}: a record does not match, so deny
    arguments = {"to": {"address": "dave@acme.example"}, "subject": "s"}
    refused = wrapped.invoke(arguments, config=as_user("carol"))
    assert "not permitted" in refused and seen == []
    [event] = tool_events(recorder)
    assert event.request is not None
    assert event.request["request"]["context"]["input"] == {
        "to": {"address": "dave@acme.example", "cc": []}, "subject": "s", "urgent": False,
    }


def test_a_json_schema_args_schema_is_validated_before_the_decision(authz: az.Authorizer) -> None:
    class JsonRefund(BaseTool):
        name: str = "issue_refund"
        description: str = "Refund an order."

        def _run(self, order_id: str, amount: int, **kwargs: Any) -> str:
            return f"refunded {amount}"

    schema = {
        "type": "object",
        "properties": {"order_id": {"type": "string"}, "amount": {"type": "integer"}},
        "required": ["order_id", "amount"],
    }
    wrapped = AuthorizedTool(tool=JsonRefund(args_schema=schema), authz=authz)
    assert wrapped.args_schema == schema
    assert wrapped.invoke({"order_id": "o", "amount": 300}, config=as_user("bob")) == "refunded 300"
    assert "not permitted" in wrapped.invoke({"order_id": "o", "amount": 3000}, config=as_user("bob"))
    refused = wrapped.invoke({"order_id": "o", "amount": "lots"}, config=as_user("bob"))
    assert refused.startswith("Tool 'issue_refund' was not called: ")
    assert "lots" not in refused  # the message names the argument, never its value


def test_json_schema_types_without_cedar_equivalent_are_refused(authz: az.Authorizer) -> None:
    class Loose(BaseTool):
        name: str = "configure"
        description: str = "Configure."

        def _run(self, **kwargs: Any) -> str:
            return "ok"

    loose = Loose(args_schema={"type": "object", "properties": {"settings": {"type": "object"}}})
    with pytest.raises(az.ConfigurationError, match="settings"):
        AuthorizedTool(tool=loose, authz=authz)


# -- permitted_tools --------------------------------------------------------------------------


def test_permitted_tools_takes_authorized_tools(
    tools: dict[str, AuthorizedTool], authz: az.Authorizer
) -> None:
    offered = [tools["search_documents"], tools["send_email"], tools["issue_refund"]]
    with authz.acting_as(user("grace")):
        assert [t.name for t in authz.permitted_tools(offered)] == ["search_documents", "send_email"]
    with authz.acting_as(user("bob")):
        assert [t.name for t in authz.permitted_tools(offered)] == [
            "search_documents", "send_email", "issue_refund",
        ]
    with authz.acting_as(user("frank")):
        assert [t.name for t in authz.permitted_tools(offered)] == ["search_documents", "send_email"]
    with authz.acting_as(user("carol")):
        decision = authz.authorize_tool_call(tools["issue_refund"], {"order_id": "o", "amount": 10})
    assert decision.allowed


# -- packaging ------------------------------------------------------------------------------


# -- one ToolSettings per tool --------------------------------------------------------------

SUMMED_REFUNDS = """
@id("refunds") permit(principal, action == Action::"issue_refund", resource);
@id("refund-cap") forbid(principal, action == Action::"issue_refund", resource)
when { context has session && context.input.amount > 100 - context.session.totals.issue_refund.amount };
"""


def test_sum_arguments_in_tool_settings_reach_the_session_totals_of_a_wrapped_tool(
    raw: dict[str, BaseTool],
) -> None:
    authz = az.Authorizer.from_text(SUMMED_REFUNDS, audit=[])
    [refund] = authorize_tools([raw["sync_refund"]], authz, settings={
        "sync_refund": az.ToolSettings(action="issue_refund", sum_arguments="amount")})
    assert isinstance(refund, AuthorizedTool) and refund.spec.sums == ("amount",)
    with authz.acting_as(user("carol")), authz.session("c-1") as session:
        assert refund.invoke({"order_id": "o-1", "amount": 60}) == "refunded 60 on o-1"
        assert refund.invoke({"order_id": "o-2", "amount": 40}) == "refunded 40 on o-2"
        assert "not permitted" in refund.invoke({"order_id": "o-3", "amount": 1})
        assert session.state().totals == {"issue_refund": {"amount": 100}}


def test_tool_settings_give_the_same_spec_to_the_wrapper_the_list_and_the_middleware(
    raw: dict[str, BaseTool], authz: az.Authorizer
) -> None:
    pytest.importorskip("langchain.agents")
    from agentauthz.integrations.langchain import AuthzMiddleware

    settings = az.ToolSettings(action="read_document", resource=document, resource_types="Document",
                               context={"channel": "chat"}, on_deny="raise")
    one = AuthorizedTool(tool=raw["search_documents"], authz=authz, settings=settings).spec
    [listed] = authorize_tools([raw["search_documents"]], authz, settings={"search_documents": settings})
    assert isinstance(listed, AuthorizedTool)
    middleware = AuthzMiddleware(authz, settings={"search_documents": settings})
    decided = middleware.spec_for("search_documents", raw["search_documents"])
    for spec in (listed.spec, decided):
        assert spec is not None
        assert (spec.action, spec.resource, spec.resource_types, spec.context, spec.on_deny) == (
            one.action, one.resource, one.resource_types, one.context, one.on_deny)
    assert one.on_deny == "raise" and one.resource_types == ("Document",)


def test_a_tool_own_on_deny_overrides_the_wrappers(raw: dict[str, BaseTool], authz: az.Authorizer,
                                                   ran: Ran) -> None:
    strict = az.ToolSettings(on_deny="raise")
    email, search = authorize_tools([raw["send_email"], raw["search_documents"]], authz,
                                    settings={"send_email": strict}, on_deny="message")
    with authz.acting_as(user("carol")):
        with pytest.raises(az.AccessDenied):
            email.invoke({"to": "attacker@evil.example", "subject": "Q3"})
        assert search.invoke({"query": "q"}) == "results for q"
    assert [name for name, _, _ in ran.calls] == ["search_documents"]


@pytest.mark.parametrize("options", [
    {"on_deny": "ignore"},
    {"resource": 'Document::"d1"'},  # a string is never parsed into an entity
    {"action": ""},
    {"context": ["not", "a", "mapping"]},
    {"resource_types": ["Document", ""]},
])
def test_tool_settings_refuse_a_wrong_option_when_built(options: dict[str, Any]) -> None:
    with pytest.raises(az.ConfigurationError, match="ToolSettings"):
        az.ToolSettings(**options)


def test_settings_must_be_tool_settings_not_dicts(raw: dict[str, BaseTool], authz: az.Authorizer) -> None:
    with pytest.raises(az.ConfigurationError, match="ToolSettings"):
        authorize_tools([raw["read_document"]], authz,
                        settings={"read_document": {"resource": document}})  # type: ignore[dict-item]
    with pytest.raises(az.ConfigurationError, match="ToolSettings"):
        AuthorizedTool(tool=raw["read_document"], authz=authz, settings={"resource": document})


def test_the_old_keyword_mappings_still_work_and_warn_at_the_callers_line(
    raw: dict[str, BaseTool], authz: az.Authorizer, ran: Ran
) -> None:
    with pytest.warns(DeprecationWarning, match=r"authorize_tools\(resources=, resource_types=\)") as warned:
        [read] = authorize_tools([raw["read_document"]], authz, resources={"read_document": document},
                                 resource_types={"read_document": ["Document"]})
    assert warned[0].filename == __file__
    assert isinstance(read, AuthorizedTool) and read.spec.resource_types == ("Document",)
    with pytest.warns(DeprecationWarning, match=r"AuthorizedTool\(action=, resource=\)") as warned:
        refund = AuthorizedTool(tool=raw["sync_refund"], authz=authz, action="issue_refund",
                                resource=az.EntityUID("Tool", "issue_refund"))
    assert warned[0].filename == __file__
    assert refund.settings == REFUND_ACTION
    assert read.invoke({"document_id": "acme-eng-roadmap"}, config=as_user("grace")) == (
        "contents of acme-eng-roadmap")
    assert refund.invoke({"order_id": "o-9", "amount": 5}, config=as_user("carol")) == "refunded 5 on o-9"


def test_a_tool_configured_both_ways_is_refused_not_guessed(raw: dict[str, BaseTool],
                                                            authz: az.Authorizer) -> None:
    with pytest.warns(DeprecationWarning), pytest.raises(az.ConfigurationError, match="both"):
        authorize_tools([raw["read_document"]], authz, settings={"read_document": az.ToolSettings()},
                        resources={"read_document": document})
    with pytest.raises(az.ConfigurationError, match="not both"):
        AuthorizedTool(tool=raw["read_document"], authz=authz, settings=az.ToolSettings(), resource=document)


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, cwd=ROOT)


def test_without_langchain_core_the_import_names_the_extra() -> None:
    result = run_python(
        "import sys\n"
        "sys.modules['langchain_core'] = None\n"
        "try:\n"
        "    import agentauthz.integrations.langchain\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
        "    sys.exit(0)\n"
        "sys.exit(1)\n"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'pip install "agentauthz[langchain]"' in result.stdout


def test_without_langchain_v1_tools_work_and_only_the_middleware_needs_it() -> None:
    result = run_python(
        "import sys\n"
        "sys.modules['langchain'] = None\n"
        "import agentauthz as az\n"
        "from agentauthz.integrations.langchain import AuthorizedTool, AuthzMiddleware, authorize_tools\n"
        "from langchain_core.tools import tool\n"
        "authz = az.Authorizer.from_text('permit(principal, action, resource);')\n"
        "@tool\n"
        "def search(query: str) -> str:\n"
        "    '''Search.'''\n"
        "    return 'ok'\n"
        "[safe] = authorize_tools([search], authz)\n"
        "with authz.acting_as(az.EntityUID('User', 'u')):\n"
        "    assert safe.invoke({'query': 'q'}) == 'ok'\n"
        "try:\n"
        "    AuthzMiddleware(authz)\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
        "    sys.exit(0)\n"
        "sys.exit(1)\n"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'pip install "agentauthz[langchain]"' in result.stdout
