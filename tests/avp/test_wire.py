"""What VerifiedPermissionsEngine sends: request shapes checked against botocore's model.

``botocore.stub.Stubber`` runs botocore's own parameter validation (types,
required members, unions) and compares the parameters with the expected ones,
so every shape here is one the real client accepts. AVP's limits that botocore
does not check (lengths, patterns, batch rules) are checked by the engine before
anything is sent.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import agentauthz as az
from agentauthz.avp import _wire as shapes
from agentauthz.policy._schema_json import cedar_schema_to_json, schema_json_text

boto3 = pytest.importorskip("boto3")
from botocore.stub import ANY, Stubber  # type: ignore[import-untyped]  # noqa: E402

from agentauthz.avp._engine import NOT_SENT, VerifiedPermissionsEngine  # noqa: E402
from agentauthz.avp._exchange import groups as _groups  # noqa: E402

STORE_ID = "PSEXAMPLEabcdefg111111"
U = az.EntityUID


def allow(*policies: str) -> dict[str, Any]:
    return {"decision": "ALLOW", "determiningPolicies": [{"policyId": p} for p in policies], "errors": []}


def deny() -> dict[str, Any]:
    return {"decision": "DENY", "determiningPolicies": [], "errors": []}


def ident(entity_type: str, entity_id: str) -> dict[str, str]:
    return {"entityType": entity_type, "entityId": entity_id}


def read(principal: str = "alice", resource: str = "d1", **context: Any) -> az.Request:
    return az.Request(principal=U("User", principal), action=U("Action", "read"),
                      resource=U("Doc", resource), context=context)


@pytest.fixture
def client() -> Any:
    return boto3.client("verifiedpermissions", region_name="us-east-1",
                        aws_access_key_id="x", aws_secret_access_key="x")


@pytest.fixture
def stubbed(client: Any) -> Iterator[tuple[VerifiedPermissionsEngine, Stubber]]:
    with Stubber(client) as stubber, VerifiedPermissionsEngine(
            STORE_ID, client=client, batching=az.Batching(max_workers=1)) as engine:
        yield engine, stubber
        stubber.assert_no_pending_responses()


def expect_list_policies(stubber: Stubber, *ids: str) -> None:
    stubber.add_response("list_policies", {"policies": [
        {"policyStoreId": STORE_ID, "policyId": policy_id, "policyType": "STATIC",
         "definition": {"static": {"description": f"agentauthz:ours-{policy_id}"}},
         "createdDate": dt.datetime(2024, 1, 1), "lastUpdatedDate": dt.datetime(2024, 1, 1)}
        for policy_id in ids]}, {"policyStoreId": STORE_ID, "maxResults": 50})


# -- single requests -----------------------------------------------------------------------


def test_one_request_is_one_is_authorized_call_with_every_context_type(stubbed: Any) -> None:
    engine, stubber = stubbed
    request = read(
        flag=True, count=-3, name="x", tags=["a", "b"], nested={"inner": {"n": 1}},
        owner=U("User", "bob"), ip=az.ipaddr("10.0.0.0/8"), amount=az.decimal("12.50"),
        at=dt.datetime(2024, 10, 15, 11, 35, tzinfo=dt.UTC), ttl=dt.timedelta(hours=1, minutes=30),
        price=decimal.Decimal("1.5"),
    )
    stubber.add_response("is_authorized", allow("SP1"), {
        "policyStoreId": STORE_ID,
        "principal": ident("User", "alice"),
        "action": {"actionType": "Action", "actionId": "read"},
        "resource": ident("Doc", "d1"),
        "context": {"contextMap": {
            "flag": {"boolean": True}, "count": {"long": -3}, "name": {"string": "x"},
            "tags": {"set": [{"string": "a"}, {"string": "b"}]},
            "nested": {"record": {"inner": {"record": {"n": {"long": 1}}}}},
            "owner": {"entityIdentifier": ident("User", "bob")},
            "ip": {"ipaddr": "10.0.0.0/8"}, "amount": {"decimal": "12.50"},
            "at": {"datetime": "2024-10-15T11:35:00Z"}, "ttl": {"duration": "1h30m"},
            "price": {"decimal": "1.5"},
        }},
    })
    expect_list_policies(stubber, "SP1")
    [decision] = engine.decide([request])
    assert decision.allowed
    assert decision.reasons == ("ours-SP1",)


def test_empty_context_and_entities_are_left_out(stubbed: Any) -> None:
    engine, stubber = stubbed
    stubber.add_response("is_authorized", deny(), {
        "policyStoreId": STORE_ID, "principal": ident("User", "alice"),
        "action": {"actionType": "Action", "actionId": "read"}, "resource": ident("Doc", "d1")})
    assert engine.decide([read()]) == [az.Decision(False)]


def test_namespaced_action_type_is_the_namespace_action(stubbed: Any) -> None:
    engine, stubber = stubbed
    stubber.add_response("is_authorized", deny(), {
        "policyStoreId": STORE_ID, "principal": ident("App::User", "a"),
        "action": {"actionType": "App::Action", "actionId": "read"}, "resource": ident("App::Doc", "d")})
    engine.decide([az.Request(principal=U("App::User", "a"), action=U("App::Action", "read"),
                              resource=U("App::Doc", "d"))])


def test_entities_become_an_entity_list_without_actions(stubbed: Any) -> None:
    engine, stubber = stubbed
    alice = az.Entity(uid=U("User", "alice"), attrs={"dept": "hr", "level": 3, "boss": U("User", "bob")},
                      parents=[U("Group", "hr")], tags={"project": "x"})
    bob = az.Entity(uid=U("User", "bob"))
    group = az.Entity(uid=U("Group", "hr"))
    unrelated = az.Entity(uid=U("User", "zed"))
    action = az.Entity(uid=U("Action", "read"), parents=[U("Action", "all")])
    stubber.add_response("is_authorized", deny(), {
        "policyStoreId": STORE_ID, "principal": ident("User", "alice"),
        "action": {"actionType": "Action", "actionId": "read"}, "resource": ident("Doc", "d1"),
        "entities": {"entityList": [
            {"identifier": ident("Group", "hr")},
            {"identifier": ident("User", "alice"),
             "attributes": {"dept": {"string": "hr"}, "level": {"long": 3},
                            "boss": {"entityIdentifier": ident("User", "bob")}},
             "parents": [ident("Group", "hr")],
             "tags": {"project": {"string": "x"}}},
            {"identifier": ident("User", "bob")},
        ]},
    })
    engine.decide([read()], [alice, bob, group, unrelated, action])


def test_values_without_an_attribute_value_member_travel_as_cedar_json(stubbed: Any) -> None:
    engine, stubber = stubbed
    offset = az.ExtensionValue(fn="offset", args=(
        az.ExtensionValue(fn="datetime", arg="2024-01-01"), az.ExtensionValue(fn="duration", arg="1h")))
    stubber.add_response("is_authorized", deny(), {
        "policyStoreId": STORE_ID, "principal": ident("User", "alice"),
        "action": {"actionType": "Action", "actionId": "read"}, "resource": ident("Doc", "d1"),
        "context": {"cedarJson": ANY}})
    engine.decide([read(when=offset)])


def test_cedar_json_encoding_sends_cedar_json_text(client: Any) -> None:
    engine = VerifiedPermissionsEngine(STORE_ID, client=client, encoding="cedar_json")
    alice = az.Entity(uid=U("User", "alice"), attrs={"n": 1})
    with Stubber(client) as stubber:
        stubber.add_response("is_authorized", deny(), {
            "policyStoreId": STORE_ID, "principal": ident("User", "alice"),
            "action": {"actionType": "Action", "actionId": "read"}, "resource": ident("Doc", "d1"),
            "context": {"cedarJson": '{"n": 1}'},
            "entities": {"cedarJson": '[{"uid": {"type": "User", "id": "alice"}, "attrs": {"n": 1}, '
                                      '"parents": []}]'}})
        engine.decide([read(n=1)], [alice])
        stubber.assert_no_pending_responses()


# -- AVP's limits: never sent ------------------------------------------------------------------


@pytest.mark.parametrize(("request_", "fragment"), [
    (az.Request(principal=U("User", ""), action=U("Action", "read"), resource=U("Doc", "d")),
     "entity id of type User must be 1 to 612 characters, not 0"),
    (az.Request(principal=U("User", "a" * 613), action=U("Action", "read"), resource=U("Doc", "d")),
     "not 613"),
    (az.Request(principal=U("T" * 201, "a"), action=U("Action", "read"), resource=U("Doc", "d")),
     "entity type must be 1 to 200 characters"),
    (az.Request(principal=U("User", "a"), action=U("Act", "read"), resource=U("Doc", "d")),
     "must be Action or end in ::Action"),
    (az.Request(principal=U("User", "a"), action=U("Action", "r" * 513), resource=U("Doc", "d")),
     "action id of type Action must be 1 to 512 characters"),
    (read(ref=U("User", "")), "not 0"),
    (read(amount=az.ExtensionValue(fn="decimal", arg="1.23456")), "not in the form"),
    (read(at=az.ExtensionValue(fn="datetime", arg="2024-01-01T00:00:00.1234Z")), "not in the form"),
])
def test_requests_past_avp_limits_are_denied_and_never_sent(
    stubbed: Any, request_: az.Request, fragment: str
) -> None:
    engine, _ = stubbed  # no response queued: a call would fail the stubber
    [decision] = engine.decide([request_])
    assert not decision.allowed
    assert decision.errors[0].startswith(NOT_SENT)
    assert fragment in decision.errors[0]


def test_an_entity_past_the_limits_denies_only_the_requests_that_need_it(stubbed: Any) -> None:
    engine, stubber = stubbed
    bad = az.Entity(uid=U("User", "alice"), parents=[U("Group", "")])
    stubber.add_response("is_authorized", allow())
    first, second = engine.decide([read("alice"), read("bob")], [bad])
    assert not first.allowed and first.errors[0].startswith(NOT_SENT)
    assert second.allowed


def test_two_different_entities_with_one_uid_deny_everything(stubbed: Any) -> None:
    engine, _ = stubbed
    one, other = az.Entity(uid=U("User", "a"), attrs={"n": 1}), az.Entity(uid=U("User", "a"))
    decisions = engine.decide([read("a"), read("b")], [one, other])
    assert all(not d.allowed and "two different entities" in d.errors[0] for d in decisions)


# -- batches -------------------------------------------------------------------------------


def batch_answer(items: list[dict[str, Any]], decisions: list[str]) -> dict[str, Any]:
    return {"results": [{"request": item, "decision": d, "determiningPolicies": [], "errors": []}
                        for item, d in zip(items, decisions, strict=True)]}


def item(principal: str, resource: str) -> dict[str, Any]:
    return {"principal": ident("User", principal), "action": {"actionType": "Action", "actionId": "read"},
            "resource": ident("Doc", resource)}


@pytest.mark.parametrize("count", [2, 29, 30, 31, 59, 60, 61, 95])
def test_n_requests_sharing_a_principal_make_ceil_n_over_30_calls(client: Any, count: int) -> None:
    engine = VerifiedPermissionsEngine(STORE_ID, client=client, batching=az.Batching(max_workers=1))
    requests = [read("alice", f"d{i}") for i in range(count)]
    items = [item("alice", f"d{i}") for i in range(count)]
    with Stubber(client) as stubber:
        for start in range(0, count, 30):
            chunk = items[start:start + 30]
            if len(chunk) == 1:
                stubber.add_response("is_authorized", allow(), {"policyStoreId": STORE_ID, **chunk[0]})
            else:
                stubber.add_response("batch_is_authorized", batch_answer(chunk, ["ALLOW"] * len(chunk)),
                                     {"policyStoreId": STORE_ID, "requests": chunk})
        decisions = engine.decide(requests)
        stubber.assert_no_pending_responses()
    assert len(decisions) == count and all(d.allowed for d in decisions)


def test_mixed_requests_keep_their_order_whatever_order_results_come_in(client: Any) -> None:
    engine = VerifiedPermissionsEngine(STORE_ID, client=client, batching=az.Batching(max_workers=1))
    pairs = [("alice", "d1"), ("bob", "d2"), ("alice", "d3"), ("carol", "d2"), ("alice", "d4"),
             ("dave", "d9")]
    allowed = {("alice", "d3"), ("carol", "d2"), ("dave", "d9")}
    requests = [read(p, r) for p, r in pairs]
    with Stubber(client) as stubber:
        # Greedy grouping: alice's three, then d2's two, then dave's alone.
        for group in ([("alice", "d1"), ("alice", "d3"), ("alice", "d4")], [("bob", "d2"), ("carol", "d2")]):
            items = [item(p, r) for p, r in group]
            answer = batch_answer(items, ["ALLOW" if pair in allowed else "DENY" for pair in group])
            answer["results"].reverse()
            stubber.add_response("batch_is_authorized", answer,
                                 {"policyStoreId": STORE_ID, "requests": items})
        stubber.add_response("is_authorized", allow(), {"policyStoreId": STORE_ID, **item("dave", "d9")})
        decisions = engine.decide(requests)
        stubber.assert_no_pending_responses()
    assert [d.allowed for d in decisions] == [pair in allowed for pair in pairs]


def test_identical_requests_are_sent_once(stubbed: Any) -> None:
    engine, stubber = stubbed
    stubber.add_response("is_authorized", allow())
    assert [d.allowed for d in engine.decide([read(), read(), read()])] == [True] * 3


def test_each_group_carries_the_union_of_its_requests_entities(client: Any) -> None:
    engine = VerifiedPermissionsEngine(STORE_ID, client=client, batching=az.Batching(max_workers=1))
    alice = az.Entity(uid=U("User", "alice"))
    docs = [az.Entity(uid=U("Doc", f"d{i}"), attrs={"n": i}) for i in range(3)]
    other = az.Entity(uid=U("User", "zed"))
    items = [item("alice", f"d{i}") for i in range(3)]
    with Stubber(client) as stubber:
        stubber.add_response("batch_is_authorized", batch_answer(items, ["DENY"] * 3), {
            "policyStoreId": STORE_ID, "requests": items,
            "entities": {"entityList": [{"identifier": ident("Doc", f"d{i}"),
                                         "attributes": {"n": {"long": i}}} for i in range(3)]
                         + [{"identifier": ident("User", "alice")}]}})
        engine.decide([read("alice", f"d{i}") for i in range(3)], [alice, *docs, other])
        stubber.assert_no_pending_responses()


@pytest.mark.parametrize("count", [1, 7, 30, 31, 100, 257])
def test_grouping_of_one_principal_is_ceil_n_over_30(count: int) -> None:
    engine_input = [_prepared(i, "alice", f"d{i}") for i in range(count)]
    groups = _groups(engine_input)
    assert len(groups) == math.ceil(count / 30)
    assert all(len(group) <= 30 for group in groups)


def test_grouping_shares_a_principal_or_a_resource_in_every_group() -> None:
    prepared = [_prepared(i, f"u{i % 7}", f"d{i % 5}") for i in range(200)]
    groups = _groups(prepared)
    assert sorted(m.index for g in groups for m in g) == list(range(200))
    for group in groups:
        assert len({m.principal for m in group}) == 1 or len({m.resource for m in group}) == 1
        assert len(group) <= 30


def _greedy_by_recounting(prepared: list[Any]) -> list[list[int]]:
    """The grouping rule spelled out (quadratic): recount every key's requests left on each pick."""
    remaining = dict.fromkeys(range(len(prepared)))
    keys: dict[tuple[str, str], list[int]] = {}
    for position, member in enumerate(prepared):
        keys.setdefault(("p", member.principal), []).append(position)
        keys.setdefault(("r", member.resource), []).append(position)
    found: list[list[int]] = []
    while remaining:
        best: list[int] = []
        for positions in keys.values():
            left = [p for p in positions if p in remaining]
            if len(left) > len(best) or (len(left) == len(best) and left and left[0] < best[0]):
                best = left
        for position in best[:30]:
            del remaining[position]
        found.append(best[:30])
    return found


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 12), st.integers(0, 12)), max_size=150))
def test_grouping_picks_the_key_with_most_requests_left_as_recounting_would(
        pairs: list[tuple[int, int]]) -> None:
    prepared = [_prepared(i, f"u{p}", f"d{r}") for i, (p, r) in enumerate(pairs)]
    assert [[m.index for m in group] for group in _groups(prepared)] == _greedy_by_recounting(prepared)


def test_grouping_of_thousands_of_distinct_principals_makes_a_group_per_shared_resource() -> None:
    prepared = [_prepared(i, f"u{i}", "shared" if i % 2 else f"d{i}") for i in range(4000)]
    groups = _groups(prepared)
    assert len(groups) == math.ceil(2000 / 30) + 2000
    assert sorted(m.index for g in groups for m in g) == list(range(4000))


def _prepared(index: int, principal: str, resource: str) -> Any:
    from agentauthz.avp._exchange import Prepared

    return Prepared(index=index, item={}, key=str(index), principal=principal, resource=resource,
                    slice=[], slice_key="")


# -- names, values, schema, extras -----------------------------------------------------------


@pytest.mark.parametrize("our_id", ["share-1", "a/b_c", "tools.cedar:0", "policy 3", "ünï", "x" * 140,
                                    "agentauthz-b64/x"])
def test_our_ids_ride_in_policy_names(our_id: str) -> None:
    name = shapes.policy_name(our_id)
    assert name is not None and name.startswith("name/") and len(name) <= 150
    assert all((c.isalnum() and c.isascii()) or c in "_-/" for c in name)
    assert shapes.our_policy_id({"policyId": "SP1", "name": name}) == our_id


def test_descriptions_win_and_unmarked_policies_keep_their_avp_id() -> None:
    item = {"policyId": "SP1", "name": "name/other",
            "definition": {"static": {"description": "agentauthz:tools.cedar:0"}}}
    assert shapes.our_policy_id(item) == "tools.cedar:0"
    assert shapes.our_policy_id({"policyId": "SP2", "definition": {"static": {"description": "hi"}}}) == "SP2"
    assert shapes.policy_description("x" * 140) is None
    assert shapes.policy_name("é" * 100) is None


def test_an_older_botocore_without_extension_members_falls_back() -> None:
    members = frozenset({"boolean", "long", "string", "set", "record", "entityIdentifier"})
    with pytest.raises(shapes.Unrepresentable):
        shapes.attribute_value({"__extn": {"fn": "ip", "arg": "10.0.0.1"}}, members)
    assert shapes.attribute_value([True], members) == {"set": [{"boolean": True}]}


def test_attribute_values_round_trip_through_the_endpoint_reader() -> None:
    value = {"a": [1, "x", {"__entity": {"type": "U", "id": "u"}}],
             "b": {"__extn": {"fn": "ip", "arg": "::1"}}, "c": {"__extn": {"fn": "duration", "arg": "-1d"}}}
    assert shapes.cedar_value(shapes.attribute_value(value)) == value


def test_schema_text_converts_to_json_that_cedar_reads_the_same() -> None:
    text = '''
    @doc("app") namespace App {
      type Addr = { street: String, zip?: Long };
      entity Group in [Group];
      entity User in [Group] = { "home": Addr, roles: Set<String>, ip: ipaddr } tags String;
      entity Color enum ["red", "green"];
      action "read", write in [Action::"all"] appliesTo { principal: [User], resource: User,
                                                          context: { at: datetime } };
      action all;
    }
    entity Plain;
    '''
    document = cedar_schema_to_json(text)
    assert set(document) == {"App", ""}
    assert document["App"]["actions"]["write"]["memberOf"] == [{"type": "Action", "id": "all"}]
    assert document["App"]["entityTypes"]["Color"]["enum"] == ["red", "green"]
    assert document["App"]["entityTypes"]["User"]["tags"] == {"type": "EntityOrCommon", "name": "String"}
    assert schema_json_text('{"": {"entityTypes": {}, "actions": {}}}').startswith("{")
    with pytest.raises(az.PolicyError):
        cedar_schema_to_json("entity User = {")


def test_constructor_checks_its_arguments(client: Any) -> None:
    for bad in ({"on_error": "ignore"}, {"encoding": "xml"}):
        with pytest.raises(az.ConfigurationError):
            VerifiedPermissionsEngine(STORE_ID, client=client, **bad)
    with pytest.raises(az.ConfigurationError):
        VerifiedPermissionsEngine(STORE_ID, client=client, batching=az.Batching(max_workers=0))
    with pytest.raises(az.ConfigurationError):
        VerifiedPermissionsEngine(STORE_ID, client=client, cache=az.DecisionCache(ttl=0))
    with pytest.raises(az.ConfigurationError):
        VerifiedPermissionsEngine("bad id!", client=client)


def test_without_boto3_the_constructor_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "boto3", None)
    with pytest.raises(ImportError, match=r'pip install "agentauthz\[aws\]"'):
        VerifiedPermissionsEngine(STORE_ID)


def test_core_does_not_import_boto3() -> None:
    import subprocess

    code = ("import sys, agentauthz, agentauthz.testing, agentauthz.avp._engine; "
            "print(sorted(m for m in ('boto3', 'botocore') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_hierarchy_problem_counts_distinct_transitive_parents_and_survives_cycles() -> None:
    def entity(name: str, *parents: str) -> dict[str, Any]:
        return {"uid": {"type": "G", "id": name}, "attrs": {},
                "parents": [{"type": "G", "id": parent} for parent in parents]}

    ring = {("G", name): entity(name, parent) for name, parent in [("a", "b"), ("b", "c"), ("c", "a")]}
    assert shapes.hierarchy_problem({"type": "G", "id": "a"}, ring) is None  # a's parents: b, c and a
    wide = {("G", "u"): entity("u", *(f"p{i}" for i in range(50)), "shared"),
            **{("G", f"p{i}"): entity(f"p{i}", "shared", f"q{i}") for i in range(50)}}
    problem = shapes.hierarchy_problem({"type": "G", "id": "u"}, wide)  # 50 + shared + 50 = 101
    assert problem is not None and "more than 99 transitive parents" in problem
    del wide[("G", "p49")]  # still a parent of u, but its own parents are not sent
    assert shapes.hierarchy_problem({"type": "G", "id": "u"}, wide) is not None  # 50 + shared + 49 = 100
    del wide[("G", "p48")]
    assert shapes.hierarchy_problem({"type": "G", "id": "u"}, wide) is None  # 50 + shared + 48 = 99
