"""The strands profile reads policies written for Strands' own CedarAuthorization and decides as it does.

Strands' handler (``strands.vended_interventions.cedar.CedarAuthorization``, strands-agents 1.62) runs here
itself: its ``[cedar]`` extra pins cedarpy 4.12.0 and cedar-policy-mcp-schema-generator 0.6.1, which
conflict with our pins, but its module only needs cedarpy and the generator importable, and runs on the
versions we install. Both handlers drive the same agent script; the calls that ran must be the same.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from strands import Agent, tool
from strands.vended_interventions.cedar import CedarAuthorization
from strands.vended_interventions.cedar._schema_generator import generate_cedar_schema

import agentauthz as az
from agentauthz.integrations.strands import PRINCIPAL_KEY, STRANDS_RESOURCE, AuthzIntervention, ScriptedModel

#: Written for CedarAuthorization: Action::"<tool>", Resource::"agent", context.input, context.session.
POLICIES = """
@id("small-transfers")
permit (principal == User::"alice", action == Action::"transfer", resource)
when { context.input.amount <= 100 && context.session.call_count <= 2 };

@id("search-three-times")
permit (principal, action == Action::"search", resource == Resource::"agent")
when { context.session.call_count <= 3 && context.session.hour_utc < 24 };

@id("admins-delete")
permit (principal in Role::"admin", action == Action::"delete", resource);

@id("never-prod")
forbid (principal, action == Action::"delete", resource)
when { context.input.path like "/prod/*" };
"""
ENTITIES = [
    {"uid": {"type": "User", "id": "bob"}, "attrs": {}, "parents": [{"type": "Role", "id": "admin"}]},
    {"uid": {"type": "User", "id": "alice"}, "attrs": {}, "parents": []},
]
TOOL_DEFINITIONS: list[Any] = [
    {"name": "transfer", "description": "Move money.", "inputSchema": {
        "type": "object", "properties": {"account": {"type": "string"}, "amount": {"type": "integer"}},
        "required": ["account", "amount"]}},
    {"name": "search", "description": "Search.", "inputSchema": {
        "type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}},
    {"name": "delete", "description": "Delete a path.", "inputSchema": {
        "type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]}},
]
SCRIPT = [
    ("tool", "transfer", {"account": "a-1", "amount": 5}),
    ("tool", "transfer", {"account": "a-1", "amount": 500}),
    ("tool", "transfer", {"account": "a-1", "amount": 6}),
    ("tool", "transfer", {"account": "a-1", "amount": 7}),
    *[("tool", "search", {"query": f"q{n}"}) for n in range(5)],
    ("tool", "delete", {"path": "/tmp/scratch"}),
    ("tool", "delete", {"path": "/prod/db"}),
    ("tool", "wipe", {}),
]


def recording_tools(ran: list[tuple[str, dict[str, Any]]]) -> list[Any]:
    @tool
    def transfer(account: str, amount: int) -> str:
        """Move money."""
        ran.append(("transfer", {"account": account, "amount": amount}))
        return "sent"

    @tool
    def search(query: str) -> str:
        """Search."""
        ran.append(("search", {"query": query}))
        return "found"

    @tool
    def delete(path: str) -> str:
        """Delete a path."""
        ran.append(("delete", {"path": path}))
        return "deleted"

    return [transfer, search, delete]


def run(handler: Any, state: dict[str, Any]) -> tuple[list[tuple[str, dict[str, Any]]], list[bool]]:
    """The calls that ran, and for each call of the script whether the model read a refusal."""
    ran: list[tuple[str, dict[str, Any]]] = []
    model = ScriptedModel(list(SCRIPT))
    Agent(model=model, tools=recording_tools(ran), interventions=[handler], callback_handler=None)(
        "go", invocation_state=state)
    return ran, [result["status"] == "error" for result in model.tool_results()]


def strands_handler(schema: bool) -> CedarAuthorization:
    return CedarAuthorization(policies=POLICIES if not schema else SCHEMA_POLICIES,
                              entities=ENTITIES if not schema else None,
                              tools=TOOL_DEFINITIONS if schema else None,
                              principal_resolver=lambda state: state.get("user"))


def our_handler(schema: bool) -> AuthzIntervention:
    if schema:
        authz = az.Authorizer.from_text(SCHEMA_POLICIES, schema=generate_cedar_schema(TOOL_DEFINITIONS),
                                        audit=[])
    else:
        entities = [az.Entity.from_cedar(e) for e in ENTITIES]
        authz = az.Authorizer.from_text(POLICIES, entities=entities, audit=[])
    return AuthzIntervention(authz, profile="strands")


#: With the schema Strands generates from the tools (no roles there: users only).
SCHEMA_POLICIES = POLICIES.replace('principal in Role::"admin"', 'principal == User::"bob"')


@pytest.mark.parametrize("schema", [False, True], ids=["no schema", "generated schema"])
@pytest.mark.parametrize("user", ["alice", "bob", "carol"])
def test_the_strands_profile_decides_each_call_as_strands_cedar_authorization(
    schema: bool, user: str
) -> None:
    theirs = run(strands_handler(schema), {"user": {"type": "User", "id": user}})
    ours = run(our_handler(schema), {PRINCIPAL_KEY: az.EntityUID("User", user)})
    assert ours == theirs


def test_the_comparison_covers_allowed_denied_and_count_limited_calls() -> None:
    ran, refused = run(strands_handler(False), {"user": {"type": "User", "id": "alice"}})
    assert [name for name, _ in ran] == ["transfer", "transfer", "search", "search", "search"]
    assert refused == [False, True, False, True, False, False, False, True, True, True, True, True]
    ran, _ = run(strands_handler(False), {"user": {"type": "User", "id": "bob"}})
    assert ("delete", {"path": "/tmp/scratch"}) in ran and ("delete", {"path": "/prod/db"}) not in ran


def test_strands_counts_leak_between_agents_sharing_its_handler_and_ours_do_not() -> None:
    def two_agents(handler: Any, state: dict[str, Any]) -> list[int]:
        counts = []
        for _ in range(2):
            ran: list[tuple[str, dict[str, Any]]] = []
            model = ScriptedModel([("tool", "search", {"query": f"q{n}"}) for n in range(4)])
            Agent(model=model, tools=recording_tools(ran), interventions=[handler], callback_handler=None)(
                "go", invocation_state=state)
            counts.append(len(ran))
        return counts

    assert two_agents(strands_handler(False), {"user": {"type": "User", "id": "alice"}}) == [3, 0]
    assert two_agents(our_handler(False), {PRINCIPAL_KEY: az.EntityUID("User", "alice")}) == [3, 3]


def test_the_strands_profile_counts_per_user_on_one_agent() -> None:
    ours = our_handler(False)
    ran: list[tuple[str, dict[str, Any]]] = []
    searches = [("tool", "search", {"query": f"q{n}"}) for n in range(4)]
    model = ScriptedModel([*searches, ("text", "ok"), *searches])
    agent = Agent(model=model, tools=recording_tools(ran), interventions=[ours], callback_handler=None)
    agent("go", invocation_state={PRINCIPAL_KEY: az.EntityUID("User", "alice")})
    agent("go", invocation_state={PRINCIPAL_KEY: az.EntityUID("User", "bob")})
    assert len(ran) == 6  # three each: alice's calls do not count against bob


def test_the_strands_profile_request_has_the_strands_shape() -> None:
    audit = az.MemorySink()
    noon = dt.datetime(2026, 3, 1, 12, 30, tzinfo=dt.UTC).timestamp()
    authz = az.Authorizer.from_text(
        'permit (principal, action == Action::"search", resource == Resource::"agent") '
        'when { context.session.hour_utc == 12 && context.session.call_count == 1 };',
        audit=[audit], record_requests=True)
    ran: list[tuple[str, dict[str, Any]]] = []
    model = ScriptedModel([("tool", "search", {"query": "x"})])
    handler = AuthzIntervention(authz, profile="strands", clock=lambda: noon)
    Agent(model=model, tools=recording_tools(ran), interventions=[handler], callback_handler=None)(
        "go", invocation_state={PRINCIPAL_KEY: az.EntityUID("User", "alice")})
    [event] = audit.events
    assert event.decision == "allow" and event.resource == str(STRANDS_RESOURCE)
    assert event.request is not None
    assert event.request["request"]["context"] == {"input": {"query": "x"},
                                                   "session": {"call_count": 1, "hour_utc": 12}}


def test_the_strands_profile_refuses_a_bound_agentauthz_session() -> None:
    authz = az.Authorizer.from_text(POLICIES, audit=[])
    agent = Agent(model=ScriptedModel([]), tools=recording_tools([]),
                  interventions=[AuthzIntervention(authz, profile="strands")], callback_handler=None)
    with authz.acting_as(az.EntityUID("User", "alice")), authz.session("s-1"), \
            pytest.raises(az.ConfigurationError, match=r"fills context\.session itself"):
        agent("go")
