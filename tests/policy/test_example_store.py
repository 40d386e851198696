"""The example policy store in policies/ loads strictly and decides every case as labelled."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import agentauthz as az

STORE = Path(__file__).resolve().parents[2] / "policies"
ALLOW_CASES = sorted((STORE / "ALLOW").glob("*.json"))
DENY_CASES = sorted((STORE / "DENY").glob("*.json"))


@pytest.fixture(scope="module")
def store() -> az.PolicyStore:
    return az.PolicyStore.from_directory(STORE)


@pytest.fixture(scope="module")
def engine(store: az.PolicyStore) -> az.LocalEngine:
    return az.LocalEngine(store)


def decide_case(engine: az.LocalEngine, path: Path) -> az.Decision:
    request = az.Request.from_cedar(json.loads(path.read_text(encoding="utf-8")))
    return engine.decide([request])[0]


def decide_file(engine: az.LocalEngine, kind: str, name: str) -> az.Decision:
    return decide_case(engine, STORE / kind / f"{name}.json")


def test_store_loads_with_schema_entities_and_template_links(store: az.PolicyStore) -> None:
    assert store.schema_text is not None
    assert len(store.entities) > 20
    assert {link.template for link in store.links} == {"share"}
    assert store.policy("share").is_template


def test_every_policy_has_a_readable_id_annotation(store: az.PolicyStore) -> None:
    for policy in store.policies:
        assert policy.annotations.get("id") == policy.id, policy.location


def test_store_has_at_least_ten_cases_of_each_outcome() -> None:
    assert len(ALLOW_CASES) >= 10
    assert len(DENY_CASES) >= 10


@pytest.mark.parametrize("path", ALLOW_CASES, ids=lambda p: p.stem)
def test_allow_case_is_allowed(engine: az.LocalEngine, path: Path) -> None:
    decision = decide_case(engine, path)
    assert decision.allowed, (decision.reasons, decision.errors)
    assert decision.reasons
    assert not decision.errors


@pytest.mark.parametrize("path", DENY_CASES, ids=lambda p: p.stem)
def test_deny_case_is_denied(engine: az.LocalEngine, path: Path) -> None:
    decision = decide_case(engine, path)
    assert not decision.allowed, decision.reasons


def test_every_static_policy_determines_at_least_one_case(
    store: az.PolicyStore, engine: az.LocalEngine
) -> None:
    determining: set[str] = set()
    for path in [*ALLOW_CASES, *DENY_CASES]:
        determining.update(decide_case(engine, path).reasons)
    static = {policy.id for policy in store.policies if not policy.is_template}
    assert static - determining == set()
    assert {link.id for link in store.links} & determining


@pytest.mark.parametrize(
    ("kind", "case", "reasons"),
    [
        ("ALLOW", "public_handbook_read_by_support_agent", {"employee-read-public"}),
        ("ALLOW", "internal_roadmap_read_by_same_department", {"department-read-internal"}),
        ("ALLOW", "personnel_file_read_by_hr_outside_department", {"hr-read-personnel"}),
        ("ALLOW", "shared_roadmap_read_by_support_agent", {"share-roadmap-with-bob"}),
        ("ALLOW", "support_refund_within_limit", {"refund-support-limit"}),
        ("ALLOW", "finance_refund_within_limit", {"refund-finance-limit"}),
        ("DENY", "cross_tenant_share_link", {"tenant-isolation"}),
        ("DENY", "confidential_salaries_shared_without_clearance",
         {"confidential-requires-clearance"}),
        ("DENY", "delete_under_legal_hold_by_admin", {"legal-hold-blocks-delete"}),
        ("DENY", "external_email_after_confidential",
         {"acme-no-external-email-after-confidential"}),
        ("DENY", "email_with_smuggled_second_recipient", {"email-single-recipient"}),
        ("DENY", "refund_tool_not_enabled_for_tenant", {"tool-enabled-for-tenant"}),
        ("DENY", "refund_over_support_limit", set()),
    ],
)
def test_decision_names_the_determining_policies(
    engine: az.LocalEngine, kind: str, case: str, reasons: set[str]
) -> None:
    decision = decide_file(engine, kind, case)
    assert decision.allowed == (kind == "ALLOW")
    assert set(decision.reasons) == reasons


def test_forbid_overrides_owner_permit_on_legal_hold(engine: az.LocalEngine) -> None:
    decision = decide_file(engine, "DENY", "delete_under_legal_hold_by_owner")
    assert decision.reasons == ("legal-hold-blocks-delete",)


def test_undeclared_action_is_denied_with_an_error(engine: az.LocalEngine) -> None:
    # Not a DENY case: `agentauthz test` fails a case whose request cannot be built.
    request = az.Request(az.EntityUID("User", "alice"), az.EntityUID("Action", "transfer_funds"),
                         az.EntityUID("Tool", "issue_refund"))
    decision = engine.decide([request])[0]
    assert not decision.allowed
    assert decision.errors


def test_send_email_without_session_is_decided_on_input_alone(engine: az.LocalEngine) -> None:
    request = az.Request(
        principal=az.EntityUID("User", "carol"),
        action=az.EntityUID("Action", "send_email"),
        resource=az.EntityUID("Tool", "send_email"),
        context={"input": {"to": "dave@acme.example", "subject": "Budget"}},
    )
    decision = engine.decide([request])[0]
    assert decision.allowed
    assert decision.reasons == ("acme-email-internal",)


def test_authorizer_resolves_bare_action_names_against_the_store() -> None:
    authz = az.Authorizer.from_directory(STORE, audit=[])
    with authz.acting_as(az.EntityUID("User", "carol")):
        allowed = authz.authorize(
            action="issue_refund",
            resource=az.EntityUID("Tool", "issue_refund"),
            context={"input": {"order_id": "o-1", "amount": 4999}},
        )
        denied = authz.authorize(
            action="issue_refund",
            resource=az.EntityUID("Tool", "issue_refund"),
            context={"input": {"order_id": "o-2", "amount": 5001}},
        )
    assert allowed.allowed and allowed.reasons == ("refund-finance-limit",)
    assert not denied.allowed
