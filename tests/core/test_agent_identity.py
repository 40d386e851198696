"""The agent as its own identity: context.agent, the act claim, and agent-grant mode with its deny paths."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given, settings

import agentauthz as az
from agentauthz._identity import NO_AGENT, OUTSIDE_GRANT
from agentauthz.avp._tokens import TokenIdentity
from tests.strategies import GRANT_ACTIONS, grant_actions
from tests.tokens import CLIENT_ID, POOL_ID, Issuer

U = az.EntityUID
ALICE = U("User", "alice")
REFUND = U("Tool", "issue_refund")
BOT = az.Agent("support-bot", version="1.4", purpose="customer support")

POLICIES = """
@id("bot-refund-cap")
forbid (principal, action == Action::"issue_refund", resource)
when { context has agent && context.agent == Agent::"support-bot" && context.input.amount > 100 };
@id("old-bots-read-only")
forbid (principal, action, resource)
when { context has agent && context.agent.version == "0.9" && action != Action::"read" };
@id("users") permit (principal is User, action, resource);
@id("bot-grant")
permit (principal == Agent::"support-bot", action in [Action::"issue_refund", Action::"read"], resource);
"""


def refund(authz: az.Authorizer, amount: int) -> az.Decision:
    return authz.authorize(action="issue_refund", resource=REFUND,
                           context={"input": {"order": "o-1", "amount": amount}})


def test_the_configured_agent_is_context_agent_with_its_attributes() -> None:
    sink = az.MemorySink()
    authz = az.Authorizer.from_text(POLICIES, agent=BOT, audit=[sink])
    with authz.acting_as(ALICE):
        assert refund(authz, 50).allowed
        assert refund(authz, 500).reasons == ("bot-refund-cap",)
    assert sink.events[0].extra["agent"] == 'Agent::"support-bot"'


def test_acting_as_names_the_agent_for_its_block_over_the_authorizers() -> None:
    authz = az.Authorizer.from_text(POLICIES, agent=BOT, audit=[])
    old = az.Agent("support-bot", version="0.9")
    with authz.acting_as(ALICE, agent=old):
        assert authz.current_agent == old
        assert refund(authz, 5).reasons == ("old-bots-read-only",)
    with authz.acting_as(ALICE):
        assert authz.current_agent == BOT


def test_without_an_agent_no_context_agent_is_sent() -> None:
    authz = az.Authorizer.from_text(POLICIES, audit=[])
    with authz.acting_as(ALICE):
        assert refund(authz, 500).allowed  # the cap is on the bot, and no bot is named


def test_a_context_that_sets_agent_itself_is_refused() -> None:
    authz = az.Authorizer.from_text(POLICIES, agent=BOT, audit=[])
    with authz.acting_as(ALICE), pytest.raises(az.ConfigurationError, match="bound agent"):
        authz.authorize(action="read", resource=REFUND, context={"agent": U("Agent", "other")})


@pytest.mark.parametrize("options", [
    {"id": ""}, {"id": 3}, {"id": "a", "version": 1}, {"id": "a", "attributes": {"version": "x"}},
    {"id": "a", "entity_type": ""}])
def test_a_malformed_agent_is_refused(options: dict[str, Any]) -> None:
    with pytest.raises(az.IdentityError):
        az.Agent(**options)


def test_only_an_agent_object_names_the_agent() -> None:
    with pytest.raises(az.ConfigurationError):
        az.Authorizer.from_text(POLICIES, agent="support-bot")  # type: ignore[arg-type]
    authz = az.Authorizer.from_text(POLICIES, audit=[])
    with pytest.raises(az.IdentityError), authz.acting_as(ALICE, agent="support-bot"):  # type: ignore[arg-type]
        pytest.fail("a string was bound as the agent")


def test_the_schema_declares_context_agent_and_an_action_without_it_gets_none() -> None:
    stub = "entity User; entity Agent = { version: String, purpose: String }; entity Tool;"
    authz = az.Authorizer.from_text("permit(principal, action, resource);", agent=BOT, audit=[])

    @authz.guard
    def issue_refund(order: str, amount: int) -> str:
        return "refunded"

    schema = az.generate_schema(stub, tools=authz.tools, principal_types=["User", "Agent"],
                                agent_type="Agent")
    assert "agent?: Agent" in schema
    schema += ("action ping appliesTo { principal: User, resource: Tool };"
               "action read, delete_account appliesTo { principal: [User, Agent], resource: Tool };")
    strict = az.Authorizer.from_text(POLICIES, schema=schema, agent=BOT, agent_grant=True, audit=[])
    strict.tools.update(authz.tools)
    strict.validate_tools(principal_types=["User", "Agent"])
    with strict.acting_as(ALICE):
        assert strict.authorize_tool_call("issue_refund", {"order": "o", "amount": 5}).allowed
        assert strict.authorize_tool_call("issue_refund", {"order": "o", "amount": 500}).reasons == (
            "bot-refund-cap",)
        # ping declares no context.agent (none is sent) and no Agent principal: the agent's half
        # cannot be decided, so the call is outside its grant.
        ping = strict.authorize(action="ping", resource=REFUND)
        assert not ping.allowed and ping.errors[-1] == OUTSIDE_GRANT


# -- the act claim -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def issuer() -> Issuer:
    return Issuer()


@pytest.fixture(scope="module")
def identity(issuer: Issuer) -> TokenIdentity:
    return TokenIdentity.cognito(user_pool_id=POOL_ID, client_ids=[CLIENT_ID], jwks=issuer.jwks,
                                 principal_entity_type="User")


def test_a_verified_tokens_act_claim_names_the_agent(issuer: Issuer, identity: TokenIdentity) -> None:
    authz = az.Authorizer.from_text(POLICIES, audit=[])
    claims = issuer.claims("id", "u-1", act={"sub": "support-bot", "version": "0.9"})
    with authz.acting_as(claims=claims, identity=identity) as bound:
        assert bound.agent == az.Agent("support-bot", version="0.9")
        assert refund(authz, 5).reasons == ("old-bots-read-only",)
    with authz.acting_as(token=issuer.sign(claims), identity=identity) as bound:
        assert bound.agent is not None and bound.agent.id == "support-bot"


def test_an_act_claim_that_disagrees_with_the_named_agent_is_refused(issuer: Issuer,
                                                                     identity: TokenIdentity) -> None:
    authz = az.Authorizer.from_text(POLICIES, audit=[])
    claims = issuer.claims("id", "u-1", act={"sub": "other-bot"})
    with pytest.raises(az.IdentityError, match="act claim"), authz.acting_as(
            claims=claims, identity=identity, agent=BOT):
        pytest.fail("two agents were bound")


@pytest.mark.parametrize("act", [{}, {"sub": ""}, {"sub": 3}, "support-bot"])
def test_an_act_claim_without_an_actor_is_refused(act: Any) -> None:
    with pytest.raises(az.IdentityError):
        az.Agent.from_claims({"sub": "u", "act": act})


# -- agent grant: the user AND the agent ---------------------------------------------------------


def test_agent_grant_allows_only_what_both_the_user_and_the_agent_may() -> None:
    sink = az.MemorySink()
    authz = az.Authorizer.from_text(POLICIES, agent=BOT, agent_grant=True, audit=[sink])
    with authz.acting_as(ALICE):
        allowed = refund(authz, 50)
        outside = authz.authorize(action="delete_account", resource=U("Account", "a"))
    assert allowed.allowed and allowed.reasons == ("users",)
    assert not outside.allowed and outside.errors == (OUTSIDE_GRANT,)
    assert len(sink.events) == 2  # one event per decision, naming both outcomes
    assert sink.events[0].extra["agent_grant"] == {
        "agent": 'Agent::"support-bot"', "decision": "allow", "reasons": ["bot-grant"], "errors": []}
    assert sink.events[1].decision == "deny"
    assert sink.events[1].extra["agent_grant"]["decision"] == "deny"


def test_agent_grant_keeps_the_users_denial() -> None:
    authz = az.Authorizer.from_text(POLICIES + '@id("no-mallory") forbid (principal == User::"mallory", '
                                    "action, resource);", agent=BOT, agent_grant=True, audit=[])
    with authz.acting_as(U("User", "mallory")):
        assert refund(authz, 5).reasons == ("no-mallory",)


def test_agent_grant_without_an_agent_denies_every_request_with_an_audit_event() -> None:
    sink = az.MemorySink()
    authz = az.Authorizer.from_text(POLICIES, agent_grant=True, audit=[sink])
    with authz.acting_as(ALICE):
        decisions = authz.authorize_many([az.Request(ALICE, U("Action", "read"), REFUND)] * 3)
    assert [d.errors for d in decisions] == [(NO_AGENT,)] * 3
    assert [event.decision for event in sink.events] == ["deny"] * 3


def test_agent_grant_applies_to_guarded_tools_and_to_the_async_path() -> None:
    authz = az.Authorizer.from_text(POLICIES, agent=BOT, agent_grant=True, audit=[])

    @authz.guard
    def delete_account(account: str) -> str:
        return "deleted"

    async def decide() -> az.Decision:
        return await authz.aauthorize(action="delete_account", resource=REFUND)

    with authz.acting_as(ALICE):
        with pytest.raises(az.AccessDenied):
            delete_account("a")
        assert asyncio.run(decide()).errors == (OUTSIDE_GRANT,)


class HalfEngine(az.LocalEngine):
    """Answers only the first half of what it is asked (a broken backend)."""

    def decide(self, requests: list[az.Request], entities: Any = ()) -> list[az.Decision]:
        return super().decide(requests, entities)[: max(1, len(requests) // 2)]


class FailingEngine(az.LocalEngine):
    def decide(self, requests: list[az.Request], entities: Any = ()) -> list[az.Decision]:
        raise RuntimeError("backend down")


@pytest.mark.parametrize("engine_type", [HalfEngine, FailingEngine])
def test_agent_grant_denies_when_the_engine_answers_half_or_fails(engine_type: type[az.LocalEngine]) -> None:
    authz = az.Authorizer(engine_type(az.PolicyStore.from_text("permit(principal, action, resource);")),
                          agent=BOT, agent_grant=True, audit=[])
    with authz.acting_as(ALICE):
        assert not refund(authz, 1).allowed


def test_agent_attributes_cedar_cannot_hold_are_refused_when_the_agent_is_named() -> None:
    with pytest.raises(az.AuthzError):
        az.Agent("bot", attributes={"score": object()})


@settings(max_examples=60, deadline=None)
@given(user=grant_actions, agent=grant_actions, forbidden=grant_actions)
def test_agent_grant_allows_exactly_what_both_may(user: set[str], agent: set[str],
                                                  forbidden: set[str]) -> None:
    def scope(actions: set[str]) -> str:
        return ", ".join(f'Action::"{action}"' for action in sorted(actions))

    policies = [f"permit (principal is User, action in [{scope(user)}], resource);" if user else "",
                f'permit (principal == Agent::"bot", action in [{scope(agent)}], resource);' if agent else "",
                f"forbid (principal, action in [{scope(forbidden)}], resource);" if forbidden else ""]
    authz = az.Authorizer.from_text("\n".join(policies), agent=az.Agent("bot"), agent_grant=True, audit=[])
    with authz.acting_as(ALICE):
        decided = authz.authorize_many([az.Request(ALICE, U("Action", action), REFUND)
                                        for action in GRANT_ACTIONS])
    assert [d.allowed for d in decided] == [
        action in user and action in agent and action not in forbidden for action in GRANT_ACTIONS]
