"""A forbid that fails to evaluate denies, by default, on the embedded engine and on Verified Permissions.

Cedar skips a policy whose evaluation errors, so a forbid that overflows, reads a
missing attribute or feeds an extension function a bad string would let the
permit stand (fail open). ``Authorizer(policy_errors="deny")``, the default, turns
such an allow into a denial. Each way a condition can fail is tried on both
engines (the local AVP endpoint reports evaluation errors as AVP does), the two
must decide alike, and a property holds it for random mixes of permits and
forbids that apply, do not apply or fail.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import agentauthz as az
from agentauthz.testing import LocalVerifiedPermissions

pytest.importorskip("boto3")

from agentauthz.avp._engine import VerifiedPermissionsEngine

ALICE = az.Entity(az.EntityUID("User", "alice"), attrs={"dept": "hr"})
DOC = az.Entity(az.EntityUID("Doc", "d"), attrs={"owner": az.EntityUID("User", "ghost")})

#: Ways a condition fails to evaluate, each with a context that makes it fail.
FAILURES: dict[str, tuple[str, dict[str, Any]]] = {
    "missing resource attribute": ("resource.secret", {}),
    "missing principal attribute": ("principal.clearance < 2", {}),
    "missing context attribute": ("context.amount > 10", {}),
    "overflow in *": ("context.n * 4611686018427387904 > 0", {"n": 2}),
    "overflow in +": ("context.n + 9223372036854775807 > 0", {"n": 1}),
    "overflow in unary -": ("-context.n > 0", {"n": -9223372036854775808}),
    "decimal of a bad string": ('decimal(context.d).greaterThan(decimal("1.0"))', {"d": "lots"}),
    "ip of a bad string": ("ip(context.addr).isLoopback()", {"addr": "not-an-address"}),
    "type mismatch": ('context.n < "ten"', {"n": 1}),
    "attribute of a missing entity": ('resource.owner.dept == "hr"', {}),
}

#: The same policies, with a condition that decides instead of failing.
PERMIT = '@id("read") permit(principal, action == Action::"read", resource);'


def forbid(condition: str) -> str:
    return f'@id("guard") forbid(principal, action == Action::"read", resource) when {{ {condition} }};'


#: Engines the tests opened, closed with the endpoint.
OPENED: list[VerifiedPermissionsEngine] = []


@pytest.fixture(scope="module")
def avp_endpoint() -> Iterator[LocalVerifiedPermissions]:
    store = az.PolicyStore.from_text(PERMIT)
    with LocalVerifiedPermissions(store) as server:
        yield server
        while OPENED:
            OPENED.pop().close()


def embedded(policies: str, **options: Any) -> az.Authorizer:
    return az.Authorizer.from_text(policies, entities=[ALICE, DOC], audit=[], **options)


def on_avp(server: LocalVerifiedPermissions, policies: str, **options: Any) -> az.Authorizer:
    """An Authorizer over a fresh policy store of the endpoint holding ``policies``."""
    store_id = server.add_store(az.PolicyStore.from_text(policies))
    engine = VerifiedPermissionsEngine(store_id, client=server.client())
    OPENED.append(engine)
    return az.Authorizer(engine, entities=[ALICE, DOC], audit=[], **options)


def read(authz: az.Authorizer, context: dict[str, Any]) -> az.Decision:
    with authz.acting_as(ALICE.uid):
        return authz.authorize(action="read", resource=DOC.uid, context=context)


@pytest.mark.parametrize("failure", sorted(FAILURES))
def test_a_forbid_that_fails_denies_by_default_on_both_engines(
    failure: str, avp_endpoint: LocalVerifiedPermissions
) -> None:
    condition, context = FAILURES[failure]
    policies = f"{PERMIT}\n{forbid(condition)}"
    for authz in (embedded(policies), on_avp(avp_endpoint, policies)):
        decision = read(authz, context)
        assert not decision.allowed, (failure, authz.engine.name)
        assert any("guard" in error for error in decision.errors), (failure, decision.errors)


@pytest.mark.parametrize("failure", sorted(FAILURES))
def test_with_skip_the_failed_forbid_is_ignored_as_cedar_and_avp_specify(
    failure: str, avp_endpoint: LocalVerifiedPermissions
) -> None:
    condition, context = FAILURES[failure]
    policies = f"{PERMIT}\n{forbid(condition)}"
    for authz in (embedded(policies, policy_errors="skip"),
                  on_avp(avp_endpoint, policies, policy_errors="skip")):
        decision = read(authz, context)
        assert decision.allowed and decision.reasons == ("read",), (failure, authz.engine.name)


def test_the_denial_of_a_failed_forbid_is_audited_as_a_denial_naming_it() -> None:
    sink = az.MemorySink()
    condition, context = FAILURES["overflow in *"]
    authz = az.Authorizer.from_text(f"{PERMIT}\n{forbid(condition)}", entities=[ALICE, DOC], audit=[sink])
    read(authz, context)
    (event,) = sink.events
    assert event.decision == "deny"
    assert any("guard" in error and "overflow" in error for error in event.errors)


def test_a_guarded_tool_whose_forbid_overflows_does_not_run() -> None:
    authz = az.Authorizer.from_text("""
    @id("pay") permit(principal, action == Action::"pay", resource);
    @id("cap") forbid(principal, action == Action::"pay", resource)
        when { context.input.amount * 1000 > 5000000 };
    """, audit=[])
    ran: list[int] = []

    @authz.guard
    def pay(amount: int) -> str:
        ran.append(amount)
        return "paid"

    with authz.acting_as(ALICE.uid):
        assert pay(10) == "paid"
        with pytest.raises(az.AccessDenied):
            pay(9_223_372_036_854_775)  # * 1000 overflows: the cap cannot be evaluated
    assert ran == [10]


def test_filter_drops_a_document_whose_forbid_fails_and_keeps_the_guarded_form() -> None:
    documents = [{"id": "plain"}, {"id": "open", "classification": "public"},
                 {"id": "closed", "classification": "secret"}]

    def resource(document: dict[str, Any]) -> az.Entity:
        return az.Entity(az.EntityUID("Doc", document["id"]),
                         attrs={k: v for k, v in document.items() if k != "id"})

    unguarded = 'forbid(principal, action, resource) when { resource.classification == "secret" };'
    guarded = ('forbid(principal, action, resource) when '
               '{ resource has classification && resource.classification == "secret" };')
    for policy, kept in ((unguarded, ["open"]), (guarded, ["plain", "open"])):
        authz = az.Authorizer.from_text(f"{PERMIT}\n{policy}", audit=[])
        with authz.acting_as(ALICE.uid):
            allowed = authz.filter(documents, action="read", resource=resource).allowed
        assert [document["id"] for document in allowed] == kept


# -- both engines decide alike, and no failed forbid lets a request through ----------------------

#: Conditions and how each evaluates in CONTEXT: True, False, or None (fails).
CONDITIONS: dict[str, bool | None] = {
    "true": True,
    "false": False,
    "context.small > 0": True,
    "context.small < 0": False,
    "resource.secret": None,
    "context.small * 4611686018427387904 > 0": None,
    'decimal(context.bad).lessThan(decimal("1.0"))': None,
    'ip(context.bad).isLoopback()': None,
    'principal.dept == "hr"': True,
    "principal.clearance > 1": None,
}
CONTEXT = {"small": 3, "bad": "not a value"}

policy_sets = st.lists(st.tuples(st.sampled_from(("permit", "forbid")), st.sampled_from(sorted(CONDITIONS))),
                       min_size=1, max_size=5)


def text_of(policies: list[tuple[str, str]]) -> str:
    return "\n".join(f'@id("p{n}") {effect}(principal, action == Action::"read", resource) when {{ {cond} }};'
                     for n, (effect, cond) in enumerate(policies))


def expected(policies: list[tuple[str, str]], policy_errors: str) -> bool:
    """From the table alone: some permit true, and every forbid false (or, with skip, not true)."""
    permitted = any(effect == "permit" and CONDITIONS[cond] is True for effect, cond in policies)
    forbidden = any(effect == "forbid" and (CONDITIONS[cond] is True or (
        CONDITIONS[cond] is None and policy_errors == "deny")) for effect, cond in policies)
    return permitted and not forbidden


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(policies=policy_sets, policy_errors=st.sampled_from(("deny", "skip")))
def test_no_request_whose_forbid_fails_is_allowed_and_the_engines_agree(
    policies: list[tuple[str, str]], policy_errors: str, avp_endpoint: LocalVerifiedPermissions
) -> None:
    text = text_of(policies)
    local = read(embedded(text, policy_errors=policy_errors), CONTEXT)
    remote = read(on_avp(avp_endpoint, text, policy_errors=policy_errors), CONTEXT)
    assert local.allowed == expected(policies, policy_errors), (text, local)
    assert remote.allowed == local.allowed, (text, local, remote)
    if local.allowed:
        assert remote.reasons == local.reasons


# -- Verified Permissions places a failed policy by the effect ListPolicies gives -------------------

FAILED_PERMIT = (f'{PERMIT}\n@id("owners") permit(principal, action == Action::"read", resource) '
                 "when { resource.secret };")


def test_on_avp_a_failed_permit_beside_an_allowing_permit_leaves_the_allow_as_embedded(
    avp_endpoint: LocalVerifiedPermissions
) -> None:
    for authz in (embedded(FAILED_PERMIT), on_avp(avp_endpoint, FAILED_PERMIT)):
        decision = read(authz, {})
        assert decision.allowed and decision.reasons == ("read",), authz.engine.name
        assert any("owners" in error for error in decision.errors)


def test_on_avp_a_failed_policy_the_listing_cannot_place_denies(
    avp_endpoint: LocalVerifiedPermissions
) -> None:
    from agentauthz.testing import Fault

    authz = on_avp(avp_endpoint, FAILED_PERMIT)
    avp_endpoint.inject("ListPolicies", Fault.server_error(500))
    try:
        decision = read(authz, {})
    finally:
        avp_endpoint.clear_faults()
    assert not decision.allowed  # the error keeps AVP's id: no listed effect, so no allow
    assert isinstance(authz.engine, VerifiedPermissionsEngine)
    assert not authz.engine.only_permits_failed(["an error naming no policy"])


@pytest.mark.parametrize("effects", [("permit", "forbid"), ("forbid", "permit")])
def test_on_avp_an_id_two_policies_of_different_effects_share_places_neither(
    effects: tuple[str, str], avp_endpoint: LocalVerifiedPermissions
) -> None:
    from agentauthz.avp._wire import DESCRIPTION_PREFIX

    store_id = avp_endpoint.add_store(az.PolicyStore.from_text(PERMIT))
    client = avp_endpoint.client()
    for effect in effects:  # whichever the listing names last, the forbid must not pass for a permit
        client.create_policy(policyStoreId=store_id, definition={"static": {
            "statement": f"{effect}(principal, action, resource) when {{ resource.secret }};",
            "description": f"{DESCRIPTION_PREFIX}twin"}})
    engine = VerifiedPermissionsEngine(store_id, client=client)
    OPENED.append(engine)
    authz = az.Authorizer(engine, entities=[ALICE, DOC], audit=[])
    decision = read(authz, {})
    assert not decision.allowed
    assert any("twin" in error for error in decision.errors)
