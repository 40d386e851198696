"""``Authorizer(policy_errors="deny")``: a forbid that fails to evaluate never lets a call through.

Cedar skips a policy whose evaluation errors, forbids included, so ``forbid … when
{ resource.secret }`` does not apply to a resource without ``secret`` and the
permit stands (``"skip"``, as Verified Permissions decides). With ``"deny"`` (the
default) the Authorizer denies such an allow unless every failed policy is a
permit of its own store, and pre-filters keep exactly what it allows.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import agentauthz as az
from agentauthz.testing import LocalVerifiedPermissions

ALICE = az.EntityUID("User", "alice")
PLAIN = az.EntityUID("Document", "plain")
SECRET = az.Entity(az.EntityUID("Document", "secret"), attrs={"secret": True})

ERRING_FORBID = """
@id("read") permit(principal, action == Action::"read", resource);
@id("no-secrets") forbid(principal, action == Action::"read", resource) when { resource.secret };
"""


def authorizer(policies: str, **options: Any) -> az.Authorizer:
    options.setdefault("policy_errors", "deny")
    return az.Authorizer.from_text(policies, entities=[SECRET, az.Entity(PLAIN)], audit=[], **options)


def read(authz: az.Authorizer, resource: az.EntityUID) -> az.Decision:
    with authz.acting_as(ALICE):
        return authz.authorize(action="read", resource=resource)


def test_an_allow_in_which_a_forbid_failed_to_evaluate_is_a_denial() -> None:
    decision = read(authorizer(ERRING_FORBID), PLAIN)
    assert not decision.allowed
    assert any("no-secrets" in error for error in decision.errors)
    assert any("could forbid this request could not be evaluated" in error for error in decision.errors)


def test_the_denial_is_audited_as_a_denial_with_the_failure() -> None:
    sink = az.MemorySink()
    authz = az.Authorizer.from_text(ERRING_FORBID, entities=[az.Entity(PLAIN)], audit=[sink],
                                    policy_errors="deny")
    read(authz, PLAIN)
    (event,) = sink.events
    assert event.decision == "deny"
    assert any("no-secrets" in error for error in event.errors)


def test_a_forbid_that_evaluates_still_decides_as_written() -> None:
    authz = authorizer(ERRING_FORBID)
    assert not read(authz, SECRET.uid).allowed
    assert read(authz, SECRET.uid).reasons == ("no-secrets",)


def test_a_failed_permit_beside_an_allowing_permit_leaves_the_allow() -> None:
    policies = """
    @id("read") permit(principal, action == Action::"read", resource);
    @id("owners") permit(principal, action == Action::"read", resource) when { resource.owner == principal };
    """
    decision = read(authorizer(policies), PLAIN)
    assert decision.allowed and decision.reasons == ("read",)
    assert any("owners" in error for error in decision.errors)


def test_a_failed_forbid_in_a_template_link_denies() -> None:
    store = az.PolicyStore.from_text(
        '@id("read") permit(principal, action == Action::"read", resource);\n'
        '@id("guarded") forbid(principal == ?principal, action, resource) when { resource.secret };',
        links=[az.TemplateLink("guarded-alice", "guarded", principal=ALICE)],
        entities=[az.Entity(PLAIN)])
    authz = az.Authorizer(az.LocalEngine(store), audit=[], policy_errors="deny")
    assert not read(authz, PLAIN).allowed


def test_skip_keeps_cedars_semantics_for_forbids_no_person_may_lift() -> None:
    decision = read(authorizer(ERRING_FORBID, policy_errors="skip"), PLAIN)
    assert decision.allowed and decision.reasons == ("read",)
    assert any("no-secrets" in error for error in decision.errors)  # and says so


def test_deny_is_the_default() -> None:
    authz = az.Authorizer.from_text(ERRING_FORBID, entities=[az.Entity(PLAIN)], audit=[])
    assert authz.policy_errors == "deny" and not read(authz, PLAIN).allowed


def test_with_deny_the_prefilter_keeps_exactly_what_filter_allows() -> None:
    from agentauthz.retrieval._prefilter import compile_prefilter

    policies = """
    @id("read") permit(principal, action == Action::"read", resource);
    @id("no-archived") forbid(principal, action == Action::"read", resource) when { resource.archived };
    """
    documents = [{"id": "a"}, {"id": "b", "archived": False}, {"id": "c", "archived": True},
                 {"id": "d", "archived": "yes"}]
    for mode, kept in (("deny", ["b"]), ("skip", ["a", "b", "d"])):
        authz = az.Authorizer.from_text(policies, audit=[], policy_errors=mode)  # type: ignore[arg-type]
        with authz.acting_as(ALICE):
            keep = compile_prefilter(authz, action="read").to_callable()
            allowed = authz.filter(documents, action="read", resource=lambda d: az.Entity(
                az.EntityUID("Doc", d["id"]), {k: v for k, v in d.items() if k != "id"})).allowed
        assert [d["id"] for d in allowed] == kept
        assert [d["id"] for d in documents if keep(d)] == kept


def test_an_unknown_policy_errors_setting_is_refused() -> None:
    with pytest.raises(az.ConfigurationError, match="policy_errors"):
        authorizer(ERRING_FORBID, policy_errors="allow")  # type: ignore[arg-type]


def test_a_decision_of_another_store_version_cannot_be_placed_and_denies() -> None:
    store = az.PolicyStore.from_text(ERRING_FORBID)
    assert store.effect_of("read") == "permit"
    assert store.effect_of("no-secrets") == "forbid"
    assert store.effect_of("read", version="an older version") is None
    assert store.effect_of("missing") is None


def test_on_verified_permissions_a_failed_policy_the_engine_cannot_place_denies() -> None:
    pytest.importorskip("boto3")
    from agentauthz.avp._engine import VerifiedPermissionsEngine

    store = az.PolicyStore.from_text(ERRING_FORBID, entities=[az.Entity(PLAIN)])
    with LocalVerifiedPermissions(store) as server, VerifiedPermissionsEngine(
            server.policy_store_id, client=server.client()) as engine:
        authz = az.Authorizer(engine, entities=[az.Entity(PLAIN)], audit=[], policy_errors="deny")
        assert not read(authz, PLAIN).allowed
        skipping = az.Authorizer(engine, entities=[az.Entity(PLAIN)], audit=[], policy_errors="skip")
        assert read(skipping, PLAIN).allowed


def test_a_guarded_tool_whose_forbid_fails_to_evaluate_does_not_run() -> None:
    authz = az.Authorizer.from_text("""
    @id("send") permit(principal, action == Action::"send_email", resource);
    @id("no-big") forbid(principal, action == Action::"send_email", resource)
        when { context.input.size > principal.quota };
    """, audit=[], policy_errors="deny")
    ran = []

    @authz.guard
    def send_email(to: str, size: int) -> str:
        ran.append(to)
        return "sent"

    with authz.acting_as(ALICE), pytest.raises(az.AccessDenied):
        send_email("bob@example.com", 10)  # alice has no quota attribute: the forbid errors
    assert ran == []


@settings(max_examples=60, deadline=None)
@given(forbid_errs=st.booleans(), permit_errs=st.booleans(), forbid_applies=st.booleans(),
       second_permit=st.booleans())
def test_an_allow_never_stands_on_a_forbid_that_failed(
    forbid_errs: bool, permit_errs: bool, forbid_applies: bool, second_permit: bool
) -> None:
    forbid_condition = "resource.missing" if forbid_errs else ("true" if forbid_applies else "false")
    permit_condition = "resource.missing" if permit_errs else "true"
    policies = (f'@id("p1") permit(principal, action, resource) when {{ {permit_condition} }};\n'
                f'@id("f1") forbid(principal, action, resource) when {{ {forbid_condition} }};\n')
    if second_permit:
        policies += '@id("p2") permit(principal, action, resource);\n'
    decision = read(authorizer(policies), PLAIN)
    permitted = not permit_errs or second_permit
    forbidden = forbid_errs or forbid_applies
    assert decision.allowed == (permitted and not forbidden)


def test_with_deny_a_forbid_failing_for_every_resource_leaves_no_exact_prefilter() -> None:
    from agentauthz.retrieval._prefilter import ALWAYS_ALLOWED, compile_prefilter

    policies = """
    @id("read") permit(principal, action == Action::"read", resource);
    @id("cleared") forbid(principal, action == Action::"read", resource) when { principal.clearance < 2 };
    """
    documents = [{"id": "a"}, {"id": "b"}]
    denying = az.Authorizer.from_text(policies, entities=[az.Entity(ALICE)], audit=[], policy_errors="deny")
    with denying.acting_as(ALICE):  # alice has no clearance: the forbid fails whatever the document
        pre = compile_prefilter(denying, action="read")
        assert not pre.exact and "failed to evaluate" in pre.note
        assert denying.filter(documents, action="read",
                              resource=lambda d: az.EntityUID("Doc", d["id"])).allowed == []
    skipping = az.Authorizer.from_text(policies, entities=[az.Entity(ALICE)], audit=[], policy_errors="skip")
    with skipping.acting_as(ALICE):
        assert compile_prefilter(skipping, action="read") == ALWAYS_ALLOWED


def test_with_deny_a_decision_of_an_older_store_version_denies() -> None:
    store = az.PolicyStore.from_text(ERRING_FORBID)
    failure = "error while evaluating policy `read`: attribute not found"
    assert store.only_permits_failed([failure], version=store.fingerprint)
    assert not store.only_permits_failed([failure], version="an older version")
    assert not store.only_permits_failed(["an error naming no policy"], version=store.fingerprint)
