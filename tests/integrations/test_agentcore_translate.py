"""The AgentCore translation: what it writes, what it leaves out and why, what it refuses (never drops)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

import agentauthz as az
from agentauthz.integrations.agentcore import (
    AgentCoreProfile,
    LocalGateway,
    TagMapping,
    gateway_schema,
    policy_names,
    translate,
)
from tests.strategies import agentcore_policies

ARN = "arn:aws:bedrock-agentcore:us-east-1:123456789012:gateway/gw-a1b2c3d4e5"
SCHEMA = """
entity Role in [Role];
entity User in [Role] = { department: String, clearance: Long, tenant: Tenant };
entity Tenant;
entity Tool;
entity Document = { owner: User };
type Session = { approved: Bool };
action refund appliesTo { principal: User, resource: Tool,
                          context: { input: { amount: Long, note?: String }, session?: Session } };
action lookup appliesTo { principal: User, resource: Tool, context: { input: { query: String } } };
action read appliesTo { principal: User, resource: Document, context: {} };
"""
REFUND = az.ToolSpec.from_json_schema("refund", {"type": "object", "required": ["amount"], "properties": {
    "amount": {"type": "integer"}, "note": {"type": "string"}}})
LOOKUP = az.ToolSpec.from_json_schema("lookup", {"type": "object", "required": ["query"],
                                                 "properties": {"query": {"type": "string"}}})
TAGS = TagMapping(attributes={"department": "dept", "tenant": "tenant"}, groups={"Role": "roles"})
PROFILE = AgentCoreProfile(ARN, "Shop", [REFUND, LOOKUP], tags=TAGS)


def store(text: str) -> az.PolicyStore:
    return az.PolicyStore.from_text(text, schema=SCHEMA)


def gateway(text: str, profile: AgentCoreProfile = PROFILE) -> LocalGateway:
    return LocalGateway(translate(store(text), profile), audit=[])


def refusal(text: str) -> str:
    with pytest.raises(az.PolicyError) as raised:
        translate(store(text), PROFILE)
    [problem] = raised.value.problems
    return problem


ALLOW_REFUNDS = '@id("all") permit(principal, action == Action::"refund", resource);\n'


# -- names and scope ----------------------------------------------------------------------------


def test_a_tool_policy_names_the_agentcore_user_action_and_gateway() -> None:
    [policy] = translate(store('@id("p") permit(principal == User::"alice", action == Action::"refund", '
                               'resource == Tool::"refund");'), PROFILE).policies
    assert 'principal == AgentCore::OAuthUser::"alice"' in policy.statement
    assert 'action == AgentCore::Action::"Shop___refund"' in policy.statement
    assert f'AgentCore::Gateway::"{ARN}"' in policy.statement and "resource ==" in policy.statement


def test_a_policy_for_every_action_tests_the_gateway_type() -> None:
    [policy] = translate(store('@id("p") forbid(principal, action, resource) when '
                               '{ principal.department == "sales" };'), PROFILE).policies
    assert "resource is AgentCore::Gateway" in policy.statement and "action," in policy.statement


def test_a_policy_on_two_tools_lists_both_actions_and_names_the_gateway() -> None:
    [policy] = translate(store('@id("p") permit(principal, action in [Action::"refund", Action::"lookup"], '
                               'resource);'), PROFILE).policies
    assert 'AgentCore::Action::"Shop___refund"' in policy.statement
    assert 'AgentCore::Action::"Shop___lookup"' in policy.statement


def test_policies_that_match_no_gateway_tool_are_listed_with_their_reason() -> None:
    text = (ALLOW_REFUNDS + '@id("docs") permit(principal, action == Action::"read", resource) '
            'when { resource.owner == principal };\n'
            '@id("doc-type") forbid(principal, action, resource is Document);')
    translation = translate(store(text), PROFILE)
    assert [p.id for p in translation.policies] == ["all"]
    assert {n.id for n in translation.not_applicable} == {"docs", "doc-type"}
    assert all(n.reason and n.location.startswith("<text>:") for n in translation.not_applicable)


def test_an_excluded_policy_is_listed_and_an_unknown_exclusion_is_an_error() -> None:
    text = ALLOW_REFUNDS + '@id("approval") forbid(principal, action, resource) when { context has session };'
    translation = translate(store(text), PROFILE, exclude=["approval"])
    assert [p.id for p in translation.policies] == ["all"]
    assert [(n.id, n.reason) for n in translation.not_applicable] == [
        ("approval", "excluded: kept off the gateway")]
    with pytest.raises(az.PolicyError, match="excluded policy 'typo' is not in the store"):
        translate(store(text), PROFILE, exclude=["approval", "typo"])


def test_a_shadow_policy_stays_shadow_and_is_never_enforced_locally() -> None:
    text = ALLOW_REFUNDS + '@id("audit-big") @mode("shadow") forbid(principal, action == Action::"refund", ' \
                           'resource) when { context.input.amount > 100 };'
    translation = translate(store(text), PROFILE)
    assert {p.id: p.shadow for p in translation.policies} == {"all": False, "audit-big": True}
    recorder = az.MemorySink()
    decision = LocalGateway(translation, audit=[recorder]).decide({"sub": "u"}, "refund", {"amount": 500})
    assert decision.allowed
    assert recorder.events[0].shadow == {"audit-big": "would deny"}


def test_a_namespaced_store_names_its_tool_actions_as_the_guard_does() -> None:
    schema = "namespace Shop { entity User; entity Tool; action refund appliesTo { principal: User, " \
             "resource: Tool, context: { input: { amount: Long } } }; }"
    text = ('@id("all") permit(principal, action, resource);\n'
            '@id("cap") forbid(principal, action == Shop::Action::"refund", resource) '
            "when { context.input.amount > 10 };")
    profile = AgentCoreProfile(ARN, "Shop", [REFUND], principal_type="Shop::User", tool_type="Shop::Tool")
    translation = translate(az.PolicyStore.from_text(text, schema=schema), profile)
    assert [p.id for p in translation.policies] == ["all", "cap"]
    assert not LocalGateway(translation, audit=[]).decide({"sub": "u"}, "refund", {"amount": 11}).allowed


def test_a_tool_type_the_schema_does_not_declare_is_refused_rather_than_leaving_policies_out() -> None:
    # with the wrong type, `resource is Tool` scopes would match no gateway tool and be left out
    with pytest.raises(az.PolicyError, match="declares no entity type Shop::Tool"):
        translate(store(ALLOW_REFUNDS), AgentCoreProfile(ARN, "Shop", [REFUND], tool_type="Shop::Tool"))


def test_a_tool_the_schema_does_not_declare_is_refused() -> None:
    other = az.ToolSpec.from_json_schema("wire", {"type": "object", "properties": {}})
    with pytest.raises(az.PolicyError, match="declares no action"):
        translate(store(ALLOW_REFUNDS), AgentCoreProfile(ARN, "Shop", [REFUND, other]))


def test_an_action_group_of_entities_json_reaches_the_tools_in_it() -> None:
    group = az.Entity(uid=az.EntityUID("Action", "payments"))
    member = az.Entity(uid=az.EntityUID("Action", "refund"), parents=[group.uid])
    text = ALLOW_REFUNDS + '@id("no-payments") forbid(principal, action in Action::"payments", resource);'
    translation = translate(az.PolicyStore.from_text(text, entities=[group, member]), PROFILE)
    assert [p.id for p in translation.policies] == ["all", "no-payments"]
    assert not LocalGateway(translation, audit=[]).decide({"sub": "u"}, "refund", {"amount": 1}).allowed


# -- claims as tags -----------------------------------------------------------------------------


def test_group_membership_reads_the_quoted_id_in_the_groups_claim() -> None:
    gw = gateway('@id("p") permit(principal in Role::"finance", action == Action::"refund", resource);')
    assert gw.decide({"sub": "u", "roles": ["employee", "finance"]}, "refund", {"amount": 1}).allowed
    assert not gw.decide({"sub": "u", "roles": ["finance-trainee"]}, "refund", {"amount": 1}).allowed
    assert not gw.decide({"sub": "u", "roles": ["employee"]}, "refund", {"amount": 1}).allowed
    assert not gw.decide({"sub": "u"}, "refund", {"amount": 1}).allowed


def test_a_forbid_on_a_claim_applies_when_the_token_lacks_the_claim() -> None:
    # Cedar ignores a policy whose evaluation fails, and getTag on a missing tag fails: unguarded, this
    # forbid would vanish for a token without the claim and the permit would allow the call.
    gw = gateway(ALLOW_REFUNDS + '@id("no-sales") forbid(principal, action, resource) '
                                 'when { principal.department == "sales" };')
    assert gw.decide({"sub": "u", "dept": "eng"}, "refund", {"amount": 1}).allowed
    assert not gw.decide({"sub": "u", "dept": "sales"}, "refund", {"amount": 1}).allowed
    missing = gw.decide({"sub": "u"}, "refund", {"amount": 1})
    assert not missing.allowed and missing.reasons == ("no-sales",)


def test_a_forbid_unless_on_a_claim_applies_when_the_token_lacks_the_claim() -> None:
    gw = gateway(ALLOW_REFUNDS + '@id("eng-only") forbid(principal, action, resource) '
                                 'unless { principal.department == "eng" };')
    assert gw.decide({"sub": "u", "dept": "eng"}, "refund", {"amount": 1}).allowed
    assert gw.decide({"sub": "u"}, "refund", {"amount": 1}).reasons == ("eng-only",)


def test_a_permit_on_a_claim_does_not_apply_when_the_token_lacks_the_claim() -> None:
    gw = gateway('@id("p") permit(principal, action == Action::"refund", resource) '
                 'unless { principal.department == "sales" };')
    assert gw.decide({"sub": "u", "dept": "eng"}, "refund", {"amount": 1}).allowed
    assert not gw.decide({"sub": "u"}, "refund", {"amount": 1}).allowed


def test_an_entity_attribute_compares_the_claim_with_the_entity_id() -> None:
    gw = gateway('@id("p") permit(principal, action == Action::"refund", resource) '
                 'when { principal.tenant == Tenant::"acme" };')
    assert gw.decide({"sub": "u", "tenant": "acme"}, "refund", {"amount": 1}).allowed
    assert not gw.decide({"sub": "u", "tenant": "globex"}, "refund", {"amount": 1}).allowed


def test_a_token_without_sub_is_refused_before_any_decision() -> None:
    with pytest.raises(az.IdentityError):
        gateway(ALLOW_REFUNDS).decide({"dept": "eng"}, "refund", {"amount": 1})


# -- refused, never dropped ---------------------------------------------------------------------


@pytest.mark.parametrize(("policy", "reason"), [
    ('forbid(principal, action == Action::"refund", resource) when { context has session && '
     '!context.session.approved };', "context.input only"),
    ('forbid(principal, action, resource is Tool) when { resource == Tool::"refund" };',
     "it reads the resource"),
    ('forbid(principal, action, resource is Tool) when { principal.clearance < 2 };',
     "principal.clearance, which no claim holds"),
    ('forbid(principal, action, resource) when { principal.tenant == User::"x" };', "the schema declares it"),
    ('forbid(principal, action, resource) when { [Tenant::"a"].contains(principal.tenant) };',
     "entity literal"),
    ('forbid(principal, action, resource in Tool::"other");', "resource hierarchy"),
    ('permit(principal == ?principal, action == Action::"refund", resource);', "no templates"),
    ('forbid(principal, action, resource) when { principal.hasTag("dept") };', "tags of our entities"),
], ids=["session", "resource", "unmapped-attribute", "wrong-entity-type", "entity-literal", "resource-in",
        "template", "our-tags"])
def test_an_untranslatable_policy_is_refused_with_its_location_and_reason(policy: str, reason: str) -> None:
    problem = refusal(ALLOW_REFUNDS + f'@id("x")\n{policy}')
    assert problem.startswith("<text>:2: policy 'x': ") and reason in problem


def test_a_group_without_a_claim_is_refused() -> None:
    with pytest.raises(az.PolicyError, match="no claim holds Role groups"):
        translate(store('@id("x") forbid(principal in Role::"contractor", action, resource);'),
                  AgentCoreProfile(ARN, "Shop", [REFUND]))


def test_a_claim_read_as_a_number_is_refused_by_the_generated_schema() -> None:
    tags = TagMapping(attributes={"clearance": "clearance"})
    with pytest.raises(az.PolicyError, match="does not validate against the schema AgentCore generates"):
        translate(store('@id("x") forbid(principal, action, resource) when { principal.clearance < 2 };'),
                  AgentCoreProfile(ARN, "Shop", [REFUND], tags=tags))


def test_every_refusal_of_a_store_is_reported_at_once() -> None:
    with pytest.raises(az.PolicyError) as raised:
        translate(store('@id("a") forbid(principal, action, resource) when { resource has x };\n'
                        '@id("b") forbid(principal, action, resource) when { context has session };'),
                  PROFILE)
    assert len(raised.value.problems) == 2


def test_a_tool_with_a_computed_resource_cannot_join_a_gateway_target() -> None:
    spec = az.ToolSpec.from_json_schema("read_document", {"type": "object", "properties": {}},
                                        resource=lambda args: az.EntityUID("Document", "d"))
    with pytest.raises(az.ConfigurationError, match="computes its resource"):
        AgentCoreProfile(ARN, "Docs", [spec])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(agentcore_policies())
def test_a_translated_store_decides_every_gateway_call_as_the_guard_does(case: dict[str, Any]) -> None:
    """Class property: a policy is translated faithfully, or the translation fails; never dropped."""
    original = az.PolicyStore.from_text(case["policies"], schema=SCHEMA, validate=False)
    try:
        translation = translate(original, PROFILE)
    except az.PolicyError:
        return
    translated = {p.id for p in translation.policies}
    left_out = {n.id for n in translation.not_applicable}
    assert translated | left_out == {p.id for p in original.policies} and not translated & left_out
    gw = LocalGateway(translation, audit=[])
    guard = az.Authorizer(az.LocalEngine(original), audit=[])
    user = az.Entity(uid=az.EntityUID("User", "u"), parents=[az.EntityUID("Role", r) for r in case["roles"]],
                     attrs={"department": case["department"], "clearance": 1,
                            "tenant": az.EntityUID("Tenant", case["tenant"])})
    claims = {"sub": "u", "roles": case["roles"], "dept": case["department"], "tenant": case["tenant"]}
    for tool, arguments in (("refund", {"amount": case["amount"]}), ("lookup", {"query": "q"})):
        expected = guard.authorize(principal=user, action=tool, resource=az.EntityUID("Tool", tool),
                                   context={"input": arguments}, entities=[user])
        got = gw.decide(claims, tool, arguments)
        assert (got.allowed, set(got.reasons)) == (expected.allowed, set(expected.reasons)), case


def test_a_policy_too_deep_for_cedars_json_form_is_refused_not_dropped() -> None:
    chain = " || ".join(f'context.input.note == "{i}"' for i in range(200))
    problem = refusal(ALLOW_REFUNDS + f'@id("x")\nforbid(principal, action == Action::"refund", resource) '
                                      f'when {{ context.input has note && ({chain}) }};')
    assert "nested too deeply" in problem


# -- limits and names ---------------------------------------------------------------------------


def test_policy_names_fit_agentcore_and_stay_unique() -> None:
    names = policy_names(["a-b", "a_b", "9lives", "x" * 60])
    assert len(set(names.values())) == 4
    assert all(len(n) <= 48 and n[0].isalpha() and n.replace("_", "").isalnum() for n in names.values())
    assert policy_names(["a-b"]) == {"a-b": "a_b"}


def test_a_policy_over_ten_kilobytes_is_refused_before_a_push() -> None:
    with pytest.raises(az.PolicyError, match="at most 10000"):
        translate(store(f'@id("big") forbid(principal, action == Action::"refund", resource) '
                        f'when {{ context.input has note && context.input.note == "{"x" * 10_000}" }};'),
                  PROFILE)


def test_policies_over_two_hundred_kilobytes_in_all_are_refused() -> None:
    text = "\n".join(f'@id("p{n}") forbid(principal, action == Action::"refund", resource) '
                     f'when {{ context.input has note && context.input.note == "{n}{"y" * 7_000}" }};'
                     for n in range(30))
    with pytest.raises(az.PolicyError, match="a policy engine holds at most 200000"):
        translate(store(text), PROFILE)


def test_the_generated_schema_types_json_numbers_as_decimals_in_the_mcp_action_hierarchy() -> None:
    spec = az.ToolSpec.from_json_schema("pay", {"type": "object", "required": ["amount", "n", "ok", "to"],
                                                "properties": {"amount": {"type": "number"},
                                                               "n": {"type": "integer"},
                                                               "ok": {"type": "boolean"},
                                                               "to": {"type": "string"}}})
    schema = gateway_schema(AgentCoreProfile(ARN, "Bank", [spec]))["AgentCore"]
    assert schema["commonTypes"]["Bank___payInput"]["attributes"] == {
        "amount": {"type": "Extension", "name": "decimal"}, "n": {"type": "Long"},
        "ok": {"type": "Boolean"}, "to": {"type": "String"}}
    assert schema["actions"]["Bank___pay"]["memberOf"] == [{"id": "CallTool"}]
    assert schema["actions"]["CallTool"]["memberOf"] == [{"id": "Mcp"}]
    assert schema["entityTypes"]["OAuthUser"] == {"tags": {"type": "String"}}


def test_json_numbers_reach_the_policy_as_decimals_and_more_than_four_places_are_refused() -> None:
    spec = az.ToolSpec.from_json_schema("pay", {"type": "object", "required": ["amount"],
                                                "properties": {"amount": {"type": "number"}}})
    text = ('@id("p") permit(principal, action == Action::"pay", resource) '
            'when { context.input.amount.lessThan(decimal("10.5")) };')
    schema = 'entity User; entity Tool; action pay appliesTo { principal: User, resource: Tool, ' \
             'context: { input: { amount: decimal } } };'
    gw = LocalGateway(translate(az.PolicyStore.from_text(text, schema=schema),
                                AgentCoreProfile(ARN, "Bank", [spec])), audit=[])
    assert gw.decide({"sub": "u"}, "pay", {"amount": 10.25}).allowed
    assert gw.decide({"sub": "u"}, "pay", {"amount": 3}).allowed
    assert not gw.decide({"sub": "u"}, "pay", {"amount": 10.5}).allowed
    with pytest.raises(az.InvalidValueError):
        gw.decide({"sub": "u"}, "pay", {"amount": 1.23456})
