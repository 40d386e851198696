"""Push, pull and diff against an AgentCore policy engine: every request checked against botocore's model.

No local AgentCore endpoint exists, so botocore's Stubber stands in for the service: it validates each
request (and each canned answer) against the ``bedrock-agentcore-control`` service model, and
``expected_params`` pins what is sent. (``clientToken`` is left out of expected parameters: botocore fills
it in after the Stubber's check.)
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

import agentauthz as az
from agentauthz.integrations.agentcore import (
    AgentCoreProfile,
    Translation,
    apply_push,
    plan_push,
    policy_engine_id,
    policy_names,
    pull,
    translate,
)

ENGINE = "assistant_engine-a1b2c3d4e5"
ARN = "arn:aws:bedrock-agentcore:us-east-1:123456789012:gateway/gw-a1b2c3d4e5"
NOW = dt.datetime(2026, 12, 1, tzinfo=dt.UTC)
SCHEMA = ("entity User = { department: String }; entity Tool; action refund appliesTo "
          "{ principal: User, resource: Tool, context: { input: { amount: Long } } };")
POLICIES = (
    '@id("small-refunds") permit(principal, action == Action::"refund", resource) '
    "when { context.input.amount <= 500 };\n"
    '@id("positive") forbid(principal, action == Action::"refund", resource) '
    "when { context.input.amount <= 0 };\n"
    '@id("watch-big") @mode("shadow") forbid(principal, action == Action::"refund", resource) '
    "when { context.input.amount > 400 };\n"
)
REFUND = az.ToolSpec.from_json_schema("refund", {"type": "object", "required": ["amount"],
                                                 "properties": {"amount": {"type": "integer"}}})


def translation(text: str = POLICIES) -> Translation:
    return translate(az.PolicyStore.from_text(text, schema=SCHEMA), AgentCoreProfile(ARN, "Shop", [REFUND]))


@pytest.fixture
def client() -> Any:
    return boto3.client("bedrock-agentcore-control", region_name="us-east-1", aws_access_key_id="x",
                        aws_secret_access_key="x")


@pytest.fixture
def stub(client: Any) -> Iterator[Stubber]:
    with Stubber(client) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


def policy_arn(policy_id: str) -> str:
    return f"arn:aws:bedrock-agentcore:us-east-1:123456789012:policy-engine/{ENGINE}/policy/{policy_id}"


def remote(our_id: str, statement: str, *, mode: str = "ACTIVE", status: str = "ACTIVE",
           name: str | None = None) -> dict[str, Any]:
    name = name or policy_names([our_id])[our_id]
    policy_id = f"{name[:37]}-0123456789"
    return {"policyId": policy_id, "name": name, "policyEngineId": ENGINE, "createdAt": NOW, "updatedAt": NOW,
            "policyArn": policy_arn(policy_id), "status": status, "enforcementMode": mode,
            "definition": {"cedar": {"statement": statement}}, "description": f"agentauthz:{our_id}",
            "statusReasons": []}


def in_sync(current: Translation) -> list[dict[str, Any]]:
    return [remote(p.id, p.statement, mode="LOG_ONLY" if p.shadow else "ACTIVE") for p in current.policies]


def expect_list(stub: Stubber, items: list[dict[str, Any]], token: str | None = None,
                next_token: str | None = None) -> None:
    answer: dict[str, Any] = {"policies": items}
    if next_token:
        answer["nextToken"] = next_token
    params: dict[str, Any] = {"policyEngineId": ENGINE, "maxResults": 50}
    if token:
        params["nextToken"] = token
    stub.add_response("list_policies", answer, params)


def expect_create(stub: Stubber, current: Translation, our_id: str) -> None:
    policy = next(p for p in current.policies if p.id == our_id)
    mode = "LOG_ONLY" if policy.shadow else "ACTIVE"
    answer = remote(our_id, policy.statement, mode=mode, status="CREATING")
    stub.add_response("create_policy", answer, {
        "policyEngineId": ENGINE, "name": answer["name"],
        "definition": {"cedar": {"statement": policy.statement}}, "description": f"agentauthz:{our_id}",
        "validationMode": "FAIL_ON_ANY_FINDINGS", "enforcementMode": mode})


def test_a_first_push_creates_every_policy_forbids_before_permits(client: Any, stub: Stubber) -> None:
    current = translation()
    expect_list(stub, [])
    for our_id in ("positive", "watch-big", "small-refunds"):
        expect_create(stub, current, our_id)
    done = apply_push(plan_push(current, client, ENGINE), client)
    assert [(c.action, c.id) for c in done] == [("create", "positive"), ("create", "watch-big"),
                                                 ("create", "small-refunds")]


def test_a_second_push_changes_nothing(client: Any, stub: Stubber) -> None:
    current = translation()
    expect_list(stub, in_sync(current))
    plan = plan_push(current, client, ENGINE)
    assert plan.counts()["unchanged"] == 3 and plan.pending == []
    assert apply_push(plan, client) == []


def test_a_changed_statement_or_mode_is_updated_in_place(client: Any, stub: Stubber) -> None:
    current = translation()
    items = in_sync(current)
    items[0]["definition"]["cedar"]["statement"] = items[0]["definition"]["cedar"]["statement"].replace(
        "500", "900")
    items[2]["enforcementMode"] = "ACTIVE"   # watch-big was enforced by mistake
    expect_list(stub, items)
    for item in (items[2], items[0]):       # forbids first
        policy = next(p for p in current.policies if f"agentauthz:{p.id}" == item["description"])
        stub.add_response("update_policy", {**item, "status": "UPDATING"}, {
            "policyEngineId": ENGINE, "policyId": item["policyId"],
            "definition": {"cedar": {"statement": policy.statement}},
            "description": {"optionalValue": item["description"]}, "validationMode": "FAIL_ON_ANY_FINDINGS",
            "enforcementMode": "LOG_ONLY" if policy.shadow else "ACTIVE"})
    plan = plan_push(current, client, ENGINE)
    assert {c.id: c.reason for c in plan.pending} == {
        "watch-big": "enforcement mode ACTIVE -> LOG_ONLY", "small-refunds": "statement changed"}
    apply_push(plan, client)


def expect_delete(stub: Stubber, item: dict[str, Any]) -> None:
    stub.add_response("delete_policy", {**item, "status": "DELETING"},
                      {"policyEngineId": ENGINE, "policyId": item["policyId"]})


def test_a_failed_create_is_replaced_a_failed_update_retried_a_renamed_policy_created_before_deletion(
    client: Any, stub: Stubber
) -> None:
    current = translation()
    items = in_sync(current)   # small-refunds, positive, watch-big
    items[0]["status"] = "CREATE_FAILED"
    items[1]["name"] = "old_name"
    items[2]["status"] = "UPDATE_FAILED"
    expect_list(stub, items)
    expect_create(stub, current, "positive")   # renamed: the new one first (the forbid is never missing)
    expect_delete(stub, items[1])
    stub.add_response("update_policy", items[2], {
        "policyEngineId": ENGINE, "policyId": items[2]["policyId"],
        "definition": items[2]["definition"], "description": {"optionalValue": "agentauthz:watch-big"},
        "validationMode": "FAIL_ON_ANY_FINDINGS", "enforcementMode": "LOG_ONLY"})
    expect_delete(stub, items[0])               # failed create, same name: it goes first
    expect_create(stub, current, "small-refunds")
    plan = plan_push(current, client, ENGINE)
    assert {c.id: (c.action, c.reason) for c in plan.pending} == {
        "small-refunds": ("replace", "status CREATE_FAILED"), "positive": ("replace", "name changed"),
        "watch-big": ("update", "status UPDATE_FAILED")}
    done = apply_push(plan, client)
    assert {c.id: c.policy_id for c in done}["positive"] == "positive-0123456789"   # the new policy


def expect_status(stub: Stubber, current: Translation, our_id: str, status: str,
                  reasons: tuple[str, ...] = ()) -> None:
    policy = next(p for p in current.policies if p.id == our_id)
    answer = {**remote(our_id, policy.statement, mode="LOG_ONLY" if policy.shadow else "ACTIVE",
                       status=status), "statusReasons": list(reasons)}
    stub.add_response("get_policy", answer, {"policyEngineId": ENGINE, "policyId": answer["policyId"]})


def test_with_wait_no_permit_is_written_before_the_forbids_are_active(client: Any, stub: Stubber) -> None:
    current = translation()
    expect_list(stub, [])
    expect_create(stub, current, "positive")
    expect_create(stub, current, "watch-big")
    expect_status(stub, current, "positive", "CREATING")
    expect_status(stub, current, "watch-big", "ACTIVE")
    expect_status(stub, current, "positive", "ACTIVE")
    expect_create(stub, current, "small-refunds")
    expect_status(stub, current, "small-refunds", "ACTIVE")
    done = apply_push(plan_push(current, client, ENGINE), client, wait=True, delay=0)
    assert [c.id for c in done] == ["positive", "watch-big", "small-refunds"]


def test_with_wait_a_forbid_the_service_fails_stops_the_push_before_any_permit(
    client: Any, stub: Stubber
) -> None:
    current = translation()
    expect_list(stub, [])
    expect_create(stub, current, "positive")
    expect_create(stub, current, "watch-big")
    expect_status(stub, current, "positive", "CREATE_FAILED", ("policy does not validate",))
    with pytest.raises(az.EngineError) as raised:
        apply_push(plan_push(current, client, ENGINE), client, wait=True, delay=0)
    assert "AgentCore policy 'positive' is CREATE_FAILED: policy does not validate" in str(raised.value)
    assert "changes made before it: create positive, create watch-big" in str(raised.value)


def test_with_wait_deleted_permits_are_gone_before_forbids_are_deleted(client: Any, stub: Stubber) -> None:
    everything = in_sync(translation())
    expect_list(stub, everything)
    expect_delete(stub, everything[0])   # the permit
    stub.add_client_error("get_policy", "ResourceNotFoundException", "gone", http_status_code=404,
                          expected_params={"policyEngineId": ENGINE, "policyId": everything[0]["policyId"]})
    expect_delete(stub, everything[1])   # then the forbids
    expect_delete(stub, everything[2])
    for item in everything[1:]:
        stub.add_client_error("get_policy", "ResourceNotFoundException", "gone", http_status_code=404,
                              expected_params={"policyEngineId": ENGINE, "policyId": item["policyId"]})
    empty = Translation(translation().profile, (), ())
    done = apply_push(plan_push(empty, client, ENGINE, prune=True), client, wait=True, delay=0)
    assert [c.id for c in done] == ["small-refunds", "positive", "watch-big"]


def test_a_policy_that_never_settles_is_an_error(client: Any, stub: Stubber) -> None:
    current = translation('@id("positive") forbid(principal, action == Action::"refund", resource) '
                          "when { context.input.amount <= 0 };")
    expect_list(stub, [])
    expect_create(stub, current, "positive")
    for _ in range(3):
        expect_status(stub, current, "positive", "CREATING")
    with pytest.raises(az.EngineError, match="did not settle in time: positive"):
        apply_push(plan_push(current, client, ENGINE), client, wait=True, delay=0, attempts=3)


def test_policies_the_translation_lacks_are_kept_unless_pruned_permits_deleted_first(
    client: Any, stub: Stubber
) -> None:
    current = translation('@id("positive") forbid(principal, action == Action::"refund", resource) '
                          "when { context.input.amount <= 0 };")
    everything = in_sync(translation())
    expect_list(stub, everything)
    kept = plan_push(current, client, ENGINE)
    assert {c.id: c.action for c in kept.changes} == {"small-refunds": "extra", "watch-big": "extra",
                                                     "positive": "unchanged"}
    expect_list(stub, everything)
    for item in (everything[0], everything[2]):   # the permit, then the forbid
        stub.add_response("delete_policy", {**item, "status": "DELETING"},
                          {"policyEngineId": ENGINE, "policyId": item["policyId"]})
    pruned = plan_push(current, client, ENGINE, prune=True)
    assert [c.id for c in apply_push(pruned, client)] == ["small-refunds", "watch-big"]


def test_the_policy_list_is_read_page_by_page(client: Any, stub: Stubber) -> None:
    current = translation()
    items = in_sync(current)
    expect_list(stub, items[:2], next_token="page-2")
    expect_list(stub, items[2:], token="page-2")
    assert plan_push(current, client, ENGINE).counts()["unchanged"] == 3


def test_a_failed_call_is_an_engine_error_naming_what_was_done_before_it(client: Any, stub: Stubber) -> None:
    current = translation()
    expect_list(stub, [])
    expect_create(stub, current, "positive")
    stub.add_client_error("create_policy", "ValidationException", "policy does not validate",
                          http_status_code=400)
    plan = plan_push(current, client, ENGINE)
    with pytest.raises(az.EngineError) as raised:
        apply_push(plan, client)
    message = str(raised.value)
    assert "stopped at create 'watch-big'" in message and "create positive" in message
    assert "AgentCore Policy CreatePolicy failed: ValidationException" in message
    assert raised.value.__cause__ is not None


def test_an_unreadable_policy_engine_is_an_engine_error(client: Any, stub: Stubber) -> None:
    stub.add_client_error("list_policies", "ResourceNotFoundException", "no such engine",
                          http_status_code=404)
    with pytest.raises(az.EngineError, match="ListPolicies failed: ResourceNotFoundException"):
        plan_push(translation(), client, ENGINE)


def test_limits_are_checked_before_any_call(client: Any, stub: Stubber) -> None:
    current = translation()
    big = current.policies[0].__class__(id="x" * 4100, statement=current.policies[0].statement,
                                        effect="permit", shadow=False, location="<text>:1")
    with pytest.raises(az.PolicyError, match="id too long"):
        plan_push(Translation(current.profile, (big,), ()), client, ENGINE)


def test_a_policy_engine_is_found_by_name_or_created(client: Any, stub: Stubber) -> None:
    engine = {"policyEngineId": ENGINE, "name": "assistant_engine", "createdAt": NOW, "updatedAt": NOW,
              "policyEngineArn": f"arn:aws:bedrock-agentcore:us-east-1:123456789012:policy-engine/{ENGINE}",
              "status": "ACTIVE", "statusReasons": []}
    stub.add_response("list_policy_engines", {"policyEngines": [engine]}, {"maxResults": 50})
    assert policy_engine_id(client, "assistant_engine") == ENGINE
    stub.add_response("list_policy_engines", {"policyEngines": []}, {"maxResults": 50})
    with pytest.raises(az.ConfigurationError, match="no AgentCore policy engine is named"):
        policy_engine_id(client, "other_engine")
    stub.add_response("list_policy_engines", {"policyEngines": []}, {"maxResults": 50})
    stub.add_response("create_policy_engine", engine, {"name": "assistant_engine",
                                                       "description": "Cedar policies pushed by agentauthz"})
    assert policy_engine_id(client, "assistant_engine", create=True) == ENGINE
    assert policy_engine_id(client, ENGINE) == ENGINE   # an id is used as it is


def test_pull_writes_ids_and_log_only_as_shadow_and_loads_back(
    client: Any, stub: Stubber, tmp_path: Path
) -> None:
    current = translation()
    dogwood = {**remote("temporal", "x" * 40), "definition": {"policy": {"statement": "x" * 40}}}
    failed = remote("broken", current.policies[0].statement, status="CREATE_FAILED")
    expect_list(stub, [*in_sync(current), dogwood, failed])
    result = pull(client, ENGINE, tmp_path / "pulled")
    assert (result.policies, result.shadow) == (3, 1)
    assert result.warnings == (
        "broken: status CREATE_FAILED (the engine does not enforce it); not written",
        "temporal: not a Cedar policy (Dogwood or generated); not written")
    pulled = az.PolicyStore.from_directory(tmp_path / "pulled")
    assert {p.id for p in pulled.policies} == {"small-refunds", "positive", "watch-big"}
    assert {p.id for p in pulled.enforced_policies} == {"small-refunds", "positive"}


def test_pull_never_writes_into_a_directory_with_files(client: Any, tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(az.ConfigurationError, match="not an empty directory"):
        pull(client, ENGINE, tmp_path)
