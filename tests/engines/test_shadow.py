"""Per-policy shadow mode: @mode("shadow") policies are evaluated and audited, never enforced."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import agentauthz as az
from agentauthz._audit import capture_events
from agentauthz.policy._store import policy_mode
from tests import strategies as S

ROOT = Path(__file__).resolve().parents[2]
ALICE = az.EntityUID("User", "alice")
DOC = az.EntityUID("Doc", "d1")

POLICIES = """
@id("read-all") permit(principal, action == Action::"read", resource);
@id("delete-own") permit(principal, action == Action::"delete", resource)
when { resource.owner == principal };

@id("no-delete-on-fridays") @mode("shadow")
forbid(principal, action == Action::"delete", resource) when { context.friday };

@id("everyone-writes") @mode("shadow")
permit(principal, action == Action::"write", resource);

@id("everyone-reads-too") @mode("shadow")
permit(principal, action == Action::"read", resource);
"""


def authorizer(text: str = POLICIES, **options: object) -> az.Authorizer:
    return az.Authorizer.from_text(text, entities=list(S.SHADOW_ENTITIES), **options)  # type: ignore[arg-type]


def test_a_shadow_forbid_does_not_deny_and_says_it_would() -> None:
    authz = authorizer()
    with capture_events() as events, authz.acting_as(ALICE):
        decision = authz.authorize(action="delete", resource=DOC, context={"friday": True})
    assert decision.allowed and decision.reasons == ("delete-own",)
    assert events[-1].decision == "allow"
    assert events[-1].shadow == {"no-delete-on-fridays": "would deny", "everyone-writes": "no match",
                                 "everyone-reads-too": "no match"}


def test_a_shadow_permit_does_not_allow_and_says_it_would() -> None:
    authz = authorizer()
    with capture_events() as events, authz.acting_as(ALICE):
        decision = authz.authorize(action="write", resource=DOC)
    assert not decision.allowed and decision.reasons == ()
    assert events[-1].shadow["everyone-writes"] == "would allow"


def test_a_shadow_permit_beaten_by_a_forbid_is_overridden() -> None:
    authz = authorizer(POLICIES + '@id("no-writes") forbid(principal, action == Action::"write", resource);')
    with capture_events() as events, authz.acting_as(ALICE):
        authz.authorize(action="write", resource=DOC)
    assert events[-1].shadow["everyone-writes"] == "overridden"


def test_a_shadow_policy_that_errors_is_reported_and_changes_nothing() -> None:
    authz = authorizer()
    with capture_events() as events, authz.acting_as(ALICE):
        decision = authz.authorize(action="delete", resource=DOC)  # no context.friday: an error
    assert decision.allowed and decision.errors == ()
    assert events[-1].shadow["no-delete-on-fridays"] == "error"


def test_shadow_outcomes_are_in_the_json_event_and_absent_without_shadow_policies() -> None:
    authz = authorizer()
    with capture_events() as events, authz.acting_as(ALICE):
        authz.authorize(action="read", resource=DOC)
    assert '"shadow":{"everyone-reads-too":"would allow"' in events[-1].to_json()
    plain = authorizer('permit(principal, action, resource);')
    with capture_events() as events, plain.acting_as(ALICE):
        plain.authorize(action="read", resource=DOC)
    assert events[-1].shadow == {} and '"shadow"' not in events[-1].to_json()


def test_store_wide_shadow_mode_and_shadow_policies_together() -> None:
    authz = authorizer(mode="shadow")
    with capture_events() as events, authz.acting_as(ALICE):
        decision = authz.authorize(action="write", resource=DOC)
    assert not decision.allowed and decision.admits and not decision.enforced
    assert events[-1].mode == "shadow" and events[-1].shadow["everyone-writes"] == "would allow"


def test_filter_guard_and_permitted_tools_ignore_shadow_policies() -> None:
    authz = authorizer()
    with capture_events() as events, authz.acting_as(ALICE):
        result = authz.filter([DOC, az.EntityUID("Doc", "d2")], action="write", resource=lambda uid: uid)
    assert result.allowed == [] and len(events) == 2
    assert all(event.shadow["everyone-writes"] == "would allow" for event in events)

    @authz.guard(resource=DOC)
    def write(text: str) -> str:
        return "written"

    with authz.acting_as(ALICE):
        with pytest.raises(az.AccessDenied):
            write("x")
        assert authz.permitted_tools([write]) == []  # only a shadow permit would allow it


def test_shadow_template_links_are_not_enforced() -> None:
    store = az.PolicyStore.from_text(
        '@id("share") @mode("shadow") permit(principal == ?principal, action, resource == ?resource);',
        links=[az.TemplateLink("share-d1", "share", principal=ALICE, resource=DOC)])
    authz = az.Authorizer(az.LocalEngine(store))
    with capture_events() as events, authz.acting_as(ALICE):
        assert not authz.authorize(action="read", resource=DOC).allowed
    assert events[-1].shadow == {"share": "no match", "share-d1": "would allow"}
    assert store.snapshot.shadow is not None and store.snapshot.shadow.ids == {"share", "share-d1"}


def test_mode_annotation_values_are_checked_at_load() -> None:
    with pytest.raises(az.PolicyError, match=r"<text>:2: @mode\('shadwo'\) must be 'enforce' or 'shadow'"):
        az.PolicyStore.from_text('permit(principal, action, resource);\n@mode("shadwo") '
                                 'forbid(principal, action, resource);')
    store = az.PolicyStore.from_text('@mode("enforce") permit(principal, action, resource);')
    assert store.snapshot.shadow is None and policy_mode(store.policies[0]) == "enforce"


def test_turning_a_shadow_policy_on_is_a_reload_away(tmp_path: Path) -> None:
    store_dir = tmp_path / "policies"
    shutil.copytree(ROOT / "policies", store_dir)
    rule = ('@id("no-refunds-on-weekends") @mode("{mode}")\n'
            'forbid (principal, action == Action::"issue_refund", resource);\n')
    (store_dir / "rollout.cedar").write_text(rule.format(mode="shadow"), encoding="utf-8")
    authz = az.Authorizer.from_directory(store_dir, audit=[])
    refund = {"action": "issue_refund", "resource": az.EntityUID("Tool", "issue_refund"),
              "context": {"input": {"order_id": "o-1", "amount": 100}}}
    with capture_events() as events, authz.acting_as(az.EntityUID("User", "bob")):
        assert authz.authorize(**refund).allowed  # type: ignore[arg-type]
        assert events[-1].shadow == {"no-refunds-on-weekends": "would deny"}
        (store_dir / "rollout.cedar").write_text(rule.format(mode="enforce"), encoding="utf-8")
        authz.engine.store.reload()  # type: ignore[attr-defined]
        decision = authz.authorize(**refund)  # type: ignore[arg-type]
    assert not decision.allowed and decision.reasons == ("no-refunds-on-weekends",)


def test_example_store_cases_keep_their_outcomes_with_a_shadow_policy_added(tmp_path: Path) -> None:
    import json

    store_dir = tmp_path / "policies"
    shutil.copytree(ROOT / "policies", store_dir)
    (store_dir / "rollout.cedar").write_text(
        '@id("everything-forbidden") @mode("shadow")\nforbid (principal, action, resource);\n',
        encoding="utf-8")
    engine = az.LocalEngine(az.PolicyStore.from_directory(store_dir))
    reference = az.LocalEngine(az.PolicyStore.from_directory(ROOT / "policies"))
    for path in sorted((store_dir / "ALLOW").glob("*.json")) + sorted((store_dir / "DENY").glob("*.json")):
        request = az.Request.from_cedar(json.loads(path.read_text(encoding="utf-8")))
        assert engine.decide([request]) == reference.decide([request]), path.name


# -- properties --------------------------------------------------------------------------------


def _store(policies: list[str]) -> az.PolicyStore:
    return az.PolicyStore.from_text("\n".join(policies) or "// none", entities=list(S.SHADOW_ENTITIES))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sets=S.shadow_policy_sets(), requests=S.shadow_requests, slicing=st.booleans())
def test_adding_shadow_policies_never_changes_a_decision(
    sets: tuple[list[str], list[str]], requests: list[az.Request], slicing: bool
) -> None:
    enforced, shadow = sets
    without = az.Authorizer(az.LocalEngine(_store(enforced), slicing=slicing), audit=[])
    with_shadow = az.Authorizer(az.LocalEngine(_store(enforced + shadow), slicing=slicing), audit=[])
    with capture_events() as events:
        decided = with_shadow.authorize_many(requests)
    assert decided == without.authorize_many(requests)
    shadow_ids = {f"s{i}" for i in range(len(shadow))}
    assert len(events) == len(requests)
    assert all(set(event.shadow) == shadow_ids for event in events)  # always in the audit event


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sets=S.shadow_policy_sets(), requests=S.shadow_requests)
def test_shadow_outcomes_say_what_enforcing_the_policy_would_do(
    sets: tuple[list[str], list[str]], requests: list[az.Request]
) -> None:
    enforced, shadow = sets
    authz = az.Authorizer(az.LocalEngine(_store(enforced + shadow)), audit=[])
    with capture_events() as events:
        decisions = authz.authorize_many(requests)
    for index, text in enumerate(shadow):
        policy_id = f"s{index}"
        plain = text.replace('@mode("shadow")', "")
        alone = az.LocalEngine(_store([plain])).decide(requests)
        all_on = az.LocalEngine(_store(enforced + [s.replace('@mode("shadow")', "") for s in shadow]))
        together = all_on.decide(requests)
        for event, single, full in zip(events, alone, together, strict=True):
            outcome = event.shadow[policy_id]
            satisfied = policy_id in single.reasons
            if "forbid" in plain.splitlines()[1][:6]:
                assert (outcome == "would deny") == satisfied, (plain, outcome)
                if satisfied:
                    assert not full.allowed and policy_id in full.reasons
            else:
                assert (outcome in ("would allow", "overridden")) == satisfied, (plain, outcome)
                if outcome == "would allow":
                    assert full.allowed, (plain, full)
                if outcome == "overridden":
                    assert not full.allowed
            if outcome == "error":
                assert single.errors
            if outcome == "no match":
                assert not single.errors and not satisfied
        # Shadow policies change no decision: as an Authorizer over the enforced policies alone decides.
        enforced_alone = az.Authorizer(az.LocalEngine(_store(enforced)), audit=[])
        assert [d.allowed for d in decisions] == [d.allowed for d in enforced_alone.authorize_many(requests)]
