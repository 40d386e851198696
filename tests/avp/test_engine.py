"""VerifiedPermissionsEngine end to end: boto3 -> LocalVerifiedPermissions, against the embedded engine.

Also the endpoint's management operations (the ones ``agentauthz push`` and
pull will use), its AVP request rules, and ``serve_directory``.
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
from pathlib import Path
from typing import Any

import pytest

import agentauthz as az
from agentauthz.testing import LocalVerifiedPermissions

pytest.importorskip("boto3")
from botocore.exceptions import ClientError  # type: ignore[import-untyped]

import agentauthz.avp._engine as avp_module
from agentauthz.avp._engine import VerifiedPermissionsEngine
from agentauthz.avp._server import serve_directory
from tests.conftest import EXAMPLE_STORE

U = az.EntityUID
CASES = sorted([*EXAMPLE_STORE.glob("ALLOW/*.json"), *EXAMPLE_STORE.glob("DENY/*.json")])


def case_request(path: Path) -> az.Request:
    return az.Request.from_cedar(json.loads(path.read_text(encoding="utf-8")))


# -- the example store on both engines -----------------------------------------------------


@pytest.mark.parametrize("path", CASES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_example_case_decides_the_same_on_both_engines(
    path: Path, example_store: az.PolicyStore, avp_engine: VerifiedPermissionsEngine
) -> None:
    request = case_request(path)
    local = az.Authorizer(az.LocalEngine(example_store), audit=[])
    remote = az.Authorizer(avp_engine, entities=example_store.entities, audit=[])
    want = local.authorize_many([request])[0]
    got = remote.authorize_many([request])[0]
    assert got.allowed == (path.parent.name == "ALLOW")
    assert (got.allowed, got.reasons) == (want.allowed, want.reasons)
    assert bool(got.errors) == bool(want.errors)


def test_all_example_cases_in_one_batch_keep_their_order(
    example_store: az.PolicyStore, avp_engine: VerifiedPermissionsEngine
) -> None:
    requests = [case_request(path) for path in CASES]
    want = az.LocalEngine(example_store).decide(requests)
    got = avp_engine.decide(requests, example_store.entities)
    assert [(d.allowed, d.reasons) for d in got] == [(d.allowed, d.reasons) for d in want]


def test_template_link_reasons_come_back_as_our_link_ids(
    example_store: az.PolicyStore, avp_engine: VerifiedPermissionsEngine
) -> None:
    request = case_request(EXAMPLE_STORE / "ALLOW" / "shared_roadmap_read_by_support_agent.json")
    [decision] = avp_engine.decide([request], example_store.entities)
    assert decision.reasons == ("share-roadmap-with-bob",)
    assert "share-roadmap-with-bob" in avp_engine.policy_ids.values()


def test_guarded_tool_and_bare_action_names_through_the_authorizer(
    example_store: az.PolicyStore, avp_engine: VerifiedPermissionsEngine, avp_server: Any
) -> None:
    authz = az.Authorizer(avp_engine, entities=example_store.entities, audit=[])

    @authz.guard(resource=U("Tool", "issue_refund"))
    def issue_refund(order_id: str, amount: int) -> str:
        return f"refunded {amount}"

    with authz.acting_as(U("User", "carol")):
        assert issue_refund("o-1", 4999) == "refunded 4999"
        with pytest.raises(az.AccessDenied):
            issue_refund("o-2", 5001)
    assert avp_server.call_count("GetSchema") == 1


def test_filter_of_one_user_makes_ceil_n_over_30_calls(
    example_store: az.PolicyStore, avp_engine: VerifiedPermissionsEngine, avp_server: Any
) -> None:
    authz = az.Authorizer(avp_engine, entities=example_store.entities, audit=[])
    local = az.Authorizer(az.LocalEngine(example_store), audit=[])
    docs = [{"id": f"doc-{i}", "public": i % 3 == 0} for i in range(65)]

    def resource(doc: dict[str, Any]) -> az.Entity:
        return az.Entity(uid=U("Document", doc["id"]), attrs={
            "tenant": U("Tenant", "acme"), "department": "finance", "labels": [],
            "classification": "public" if doc["public"] else "internal", "owner": U("User", "zoe")})

    avp_server.reset_calls()
    with authz.acting_as(U("User", "bob")):
        got = authz.filter(docs, action="read", resource=resource)
    with local.acting_as(U("User", "bob")):
        want = local.filter(docs, action="read", resource=resource)
    assert [d["id"] for d in got.allowed] == [d["id"] for d in want.allowed]
    assert got.allowed and got.denied
    authorizations = avp_server.call_count("BatchIsAuthorized") + avp_server.call_count("IsAuthorized")
    assert authorizations == math.ceil(65 / 30)


@pytest.mark.parametrize(("groups", "sent"), [(99, True), (100, False)])
def test_a_principal_past_avps_99_transitive_parents_is_denied_without_a_call(
    avp_engine: VerifiedPermissionsEngine, avp_server: Any, groups: int, sent: bool
) -> None:
    # Half the groups are the user's, each of those in one of the other half: transitive parents.
    half = groups // 2
    outer = [az.Entity(uid=U("Group", f"outer{i}")) for i in range(groups - half)]
    inner = [az.Entity(uid=U("Group", f"inner{i}"), parents=[outer[i].uid]) for i in range(half)]
    user = az.Entity(uid=U("User", "crowded"), parents=[g.uid for g in [*inner, *outer[half:]]])
    authz = az.Authorizer(avp_engine, entities=[user, *inner, *outer], audit=[])
    avp_server.reset_calls()
    decision = authz.authorize(principal=user.uid, action="read", resource=U("Document", "d"))
    assert avp_server.call_count("IsAuthorized") == int(sent)
    assert any("transitive parents" in error for error in decision.errors) is not sent
    assert not decision.allowed


def test_async_decisions(example_store: az.PolicyStore, avp_engine: VerifiedPermissionsEngine) -> None:
    requests = [case_request(path) for path in CASES[:5]]
    got = asyncio.run(avp_engine.adecide(requests, example_store.entities))
    assert got == avp_engine.decide(requests, example_store.entities)


def test_decision_cache_serves_repeats_until_refresh(
    example_store: az.PolicyStore, avp_server: Any, avp_client: Any
) -> None:
    request = case_request(EXAMPLE_STORE / "ALLOW" / "search_by_employee.json")
    with VerifiedPermissionsEngine(avp_server.policy_store_id, client=avp_client,
                                   cache=az.DecisionCache(ttl=60)) as engine:
        first = engine.decide([request], example_store.entities)
        calls = avp_server.call_count("IsAuthorized")
        assert engine.decide([request], example_store.entities) == first
        assert avp_server.call_count("IsAuthorized") == calls
        changed = [*[e for e in example_store.entities if e.uid != request.principal],
                   az.Entity(uid=request.principal, attrs={"tenant": U("Tenant", "acme"),
                             "department": "x", "clearance": 1, "email": "e", "email_domain": "d"})]
        engine.decide([request], changed)
        assert avp_server.call_count("IsAuthorized") == calls + 1
        engine.refresh()
        engine.decide([request], example_store.entities)
        assert avp_server.call_count("IsAuthorized") == calls + 2


# -- schema namespaces and policy ids -----------------------------------------------------------

NAMESPACED = """
namespace App {
  entity User;
  entity Doc;
  action read, write appliesTo { principal: User, resource: Doc };
}
namespace Other { entity Thing; action write appliesTo { principal: Thing, resource: Thing }; }
"""


def test_bare_action_names_resolve_with_the_schema_namespace(avp_server: Any, avp_client: Any) -> None:
    store = az.PolicyStore.from_text(
        '@id("r") permit(principal, action == App::Action::"read", resource);', schema=NAMESPACED)
    store_id = avp_server.add_store(store)
    with VerifiedPermissionsEngine(store_id, client=avp_client) as engine:
        assert engine.resolve_action("read") == U("App::Action", "read")
        assert engine.resolve_action("write") == U("Action", "write")  # two namespaces declare it
        assert engine.resolve_action('Other::Action::"write"') == U("Other::Action", "write")
        [decision] = engine.decide([az.Request(principal=U("App::User", "a"), action="read",
                                               resource=U("App::Doc", "d"))])
    assert decision.allowed and decision.reasons == ("r",)
    assert avp_server.call_count("GetSchema") == 1


def test_without_a_schema_bare_names_are_plain_actions(avp_server: Any, avp_client: Any) -> None:
    store_id = avp_server.add_store(az.PolicyStore.from_text("permit(principal, action, resource);"))
    with VerifiedPermissionsEngine(store_id, client=avp_client) as engine:
        assert engine.resolve_action("read") == U("Action", "read")
        [decision] = engine.decide([az.Request(principal=U("U", "a"), action="read", resource=U("D", "d"))])
    assert decision.allowed and decision.reasons == ("policy0",)


def test_policy_ids_are_learned_across_list_pages_and_relearned_for_new_policies(
    avp_server: Any, avp_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = "\n".join(f'@id("p-{i}") permit(principal == U::"u{i}", action, resource);' for i in range(120))
    store_id = avp_server.add_store(az.PolicyStore.from_text(text))
    monkeypatch.setattr(avp_module, "_RETRY_LOOKUP_SECONDS", 0.0)
    with VerifiedPermissionsEngine(store_id, client=avp_client) as engine:
        requests = [az.Request(principal=U("U", f"u{i}"), action=U("Action", "a"), resource=U("D", "d"))
                    for i in (0, 77, 119)]
        assert [d.reasons for d in engine.decide(requests)] == [("p-0",), ("p-77",), ("p-119",)]
        assert len(engine.policy_ids) == 120
        assert avp_server.call_count("ListPolicies") == 3  # 50 per page
        avp_client.create_policy(policyStoreId=store_id, definition={"static": {
            "statement": 'permit(principal == U::"new", action, resource);',
            "description": "agentauthz:added-later"}})
        [decision] = engine.decide([az.Request(principal=U("U", "new"), action=U("Action", "a"),
                                               resource=U("D", "d"))])
    assert decision.reasons == ("added-later",)


# -- the endpoint's management operations ---------------------------------------------------------


def test_management_operations_round_trip(avp_client: Any) -> None:
    created = avp_client.create_policy_store(validationSettings={"mode": "STRICT"}, description="t")
    store_id = created["policyStoreId"]
    assert avp_client.get_policy_store(policyStoreId=store_id)["validationSettings"] == {"mode": "STRICT"}
    listed = avp_client.list_policy_stores(maxResults=50)["policyStores"]
    assert store_id in [s["policyStoreId"] for s in listed]
    schema = {"": {"entityTypes": {"User": {}, "Doc": {}}, "actions": {"read": {"appliesTo": {
        "principalTypes": ["User"], "resourceTypes": ["Doc"]}}}}}
    put = avp_client.put_schema(policyStoreId=store_id, definition={"cedarJson": json.dumps(schema)})
    assert put["namespaces"] == [""]
    assert json.loads(avp_client.get_schema(policyStoreId=store_id)["schema"]) == schema

    static = avp_client.create_policy(policyStoreId=store_id, name="name/reader", definition={"static": {
        "statement": 'permit(principal == User::"a", action == Action::"read", resource);',
        "description": "agentauthz:reader"}})
    assert static["policyType"] == "STATIC" and static["effect"] == "Permit"
    with pytest.raises(ClientError) as invalid:  # STRICT: validated against the schema
        avp_client.create_policy(policyStoreId=store_id, definition={"static": {
            "statement": 'permit(principal == Nobody::"a", action, resource);'}})
    assert invalid.value.response["Error"]["Code"] == "ValidationException"
    with pytest.raises(ClientError) as conflict:
        avp_client.create_policy(policyStoreId=store_id, name="name/reader", definition={"static": {
            "statement": 'permit(principal == User::"b", action == Action::"read", resource);'}})
    assert conflict.value.response["Error"]["Code"] == "ConflictException"

    template = avp_client.create_policy_template(
        policyStoreId=store_id, description="agentauthz:share", name="name/share",
        statement='permit(principal == ?principal, action == Action::"read", resource == ?resource);')
    template_id = template["policyTemplateId"]
    link = avp_client.create_policy(policyStoreId=store_id, name="name/share-1", definition={
        "templateLinked": {"policyTemplateId": template_id,
                           "principal": {"entityType": "User", "entityId": "b"},
                           "resource": {"entityType": "Doc", "entityId": "d"}}})
    assert link["policyType"] == "TEMPLATE_LINKED"
    got = avp_client.get_policy(policyStoreId=store_id, policyId="name/share-1")
    assert got["definition"]["templateLinked"]["policyTemplateId"] == template_id
    assert avp_client.get_policy_template(policyStoreId=store_id, policyTemplateId="name/share")[
        "statement"].startswith("permit")

    decision = avp_client.is_authorized(
        policyStoreId=store_id, principal={"entityType": "User", "entityId": "b"},
        action={"actionType": "Action", "actionId": "read"}, resource={"entityType": "Doc", "entityId": "d"})
    assert decision["decision"] == "ALLOW"
    assert decision["determiningPolicies"] == [{"policyId": link["policyId"]}]

    with pytest.raises(ClientError):  # the effect of a static policy cannot change
        avp_client.update_policy(policyStoreId=store_id, policyId=static["policyId"], definition={"static": {
            "statement": 'forbid(principal == User::"a", action == Action::"read", resource);'}})
    avp_client.update_policy(policyStoreId=store_id, policyId=static["policyId"], definition={"static": {
        "statement": 'permit(principal == User::"a", action == Action::"read", resource) when { false };',
        "description": "agentauthz:reader"}})
    avp_client.update_policy_template(
        policyStoreId=store_id, policyTemplateId=template_id,
        statement='permit(principal == ?principal, action, resource == ?resource) when { false };')
    items = avp_client.list_policies(policyStoreId=store_id, maxResults=1)
    assert len(items["policies"]) == 1 and items["nextToken"]
    rest = avp_client.list_policies(policyStoreId=store_id, maxResults=1, nextToken=items["nextToken"])
    assert {p["policyId"] for p in items["policies"] + rest["policies"]} == {
        static["policyId"], link["policyId"]}
    templates = avp_client.list_policy_templates(policyStoreId=store_id)["policyTemplates"]
    assert [t["name"] for t in templates] == ["name/share"]
    avp_client.delete_policy_template(policyStoreId=store_id, policyTemplateId=template_id)
    assert [p["policyId"] for p in avp_client.list_policies(policyStoreId=store_id)["policies"]] == [
        static["policyId"]]
    avp_client.delete_policy(policyStoreId=store_id, policyId=static["policyId"])
    with pytest.raises(ClientError) as missing:
        avp_client.get_policy(policyStoreId=store_id, policyId=static["policyId"])
    assert missing.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_seeded_store_keeps_our_ids_in_descriptions_and_names(
    example_store: az.PolicyStore, avp_server: Any, avp_client: Any
) -> None:
    store_id = avp_server.policy_store_id
    ours = avp_server.policy_ids()
    assert set(ours) == {p.id for p in example_store.policies} | {link.id for link in example_store.links}
    for policy in avp_client.get_paginator("list_policies").paginate(policyStoreId=store_id):
        for item in policy["policies"]:
            if item["policyType"] == "STATIC":
                assert item["definition"]["static"]["description"].startswith("agentauthz:")
            assert item["name"].startswith("name/")
    assert avp_server.call_count("IsAuthorized") == 0  # seeding is in-process


@pytest.mark.parametrize(("params", "message"), [
    ({"requests": [{"principal": {"entityType": "User", "entityId": "a"},
                    "action": {"actionType": "Action", "actionId": "read"},
                    "resource": {"entityType": "Document", "entityId": f"d{i}"}} for i in range(31)]},
     "1 to 30"),
    ({"requests": [{"principal": {"entityType": "User", "entityId": p},
                    "action": {"actionType": "Action", "actionId": "read"},
                    "resource": {"entityType": "Document", "entityId": r}}
                   for p, r in (("a", "x"), ("b", "y"))]},
     "share the principal"),
    ({"requests": [{"principal": {"entityType": "User", "entityId": "u" * 613},
                    "action": {"actionType": "Action", "actionId": "read"},
                    "resource": {"entityType": "Document", "entityId": "x"}}]}, "1 to 612"),
    ({"requests": [{"principal": {"entityType": "User", "entityId": "a"},
                    "action": {"actionType": "Action", "actionId": "read"},
                    "resource": {"entityType": "Document", "entityId": "x"}}],
      "entities": {"entityList": [{"identifier": {"entityType": "Action", "entityId": "read"}}]}},
     "not actions"),
])
def test_batch_rules_are_enforced_with_validation_exceptions(
    avp_server: Any, avp_client: Any, params: dict[str, Any], message: str
) -> None:
    with pytest.raises(ClientError) as error:
        avp_client.batch_is_authorized(policyStoreId=avp_server.policy_store_id, **params)
    assert error.value.response["Error"]["Code"] == "ValidationException"
    assert message in error.value.response["Error"]["Message"]


def test_operations_it_does_not_implement_say_so(avp_client: Any, avp_server: Any) -> None:
    with pytest.raises(ClientError) as error:
        avp_client.get_policy_store_alias(aliasName="policy-store-alias/x")
    assert error.value.response["Error"]["Code"] == "UnknownOperationException"


def test_serve_directory_seeds_the_directory_and_reports_ready() -> None:
    seen: dict[str, Any] = {}
    ready = threading.Event()

    def on_ready(server: LocalVerifiedPermissions) -> None:
        seen["url"], seen["store"] = server.endpoint_url, server.policy_store_id
        seen["ids"] = server.policy_ids()
        ready.set()
        server.stop()

    thread = threading.Thread(target=serve_directory, args=(EXAMPLE_STORE,), kwargs={"ready": on_ready})
    thread.start()
    thread.join(timeout=10)
    assert ready.is_set() and not thread.is_alive()
    assert seen["url"].startswith("http://127.0.0.1:") and seen["store"].startswith("PS")
    assert "tenant-isolation" in seen["ids"]


def test_min_batch_sends_small_groups_as_single_calls(avp_server: Any, avp_client: Any) -> None:
    requests = [az.Request(principal=U("User", "alice"), action=U("Action", "read"),
                           resource=U("Document", f"d{i}")) for i in range(35)]
    with VerifiedPermissionsEngine(avp_server.policy_store_id, client=avp_client,
                                   batching=az.Batching(min_batch=30)) as engine:
        engine.decide(requests)
    assert avp_server.call_count("BatchIsAuthorized") == 1
    assert avp_server.call_count("IsAuthorized") == 5


def test_an_erring_template_link_is_named_by_our_id_on_both_engines() -> None:
    # AVP names the failing policy by its own id; the engine maps it to the link's id, which
    # redaction must keep (`share-1` is no identifier) while the quoted values go.
    policies = ('@id("share") permit(principal == ?principal, action, resource) '
                'when { decimal(context.v) > decimal("1.0") };')
    link = az.TemplateLink(id="share-1", template="share", principal=U("User", "u"))
    store = az.PolicyStore.from_text(policies, validate=False, links=[link])
    request = az.Request(U("User", "u"), U("Action", "read"), U("Doc", "d"), {"v": "hunter2"})
    with LocalVerifiedPermissions(store) as server, VerifiedPermissionsEngine(
            server.policy_store_id, client=server.client()) as remote:
        decisions = [engine.decide([request])[0] for engine in (remote, az.LocalEngine(store))]
    for decision in decisions:
        assert not decision.allowed
        assert [error.split(":")[0] for error in decision.errors] == [
            "error while evaluating policy `share-1`"]
        assert not any("hunter2" in error for error in decision.errors)
