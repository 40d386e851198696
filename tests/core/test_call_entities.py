"""Entities given with a call: the engine's own small set decides like the whole merged graph."""

from __future__ import annotations

from unittest import mock

import cedarpy
from hypothesis import HealthCheck, given, settings

import agentauthz as az
import agentauthz.engines.local as local
from agentauthz._entities import given_depth
from agentauthz.engines._reach import condition_literals
from tests.strategies import SlicingCase, slicing_cases

U = az.EntityUID


def _merged(case: SlicingCase) -> list[az.Entity]:
    given = {entity.uid: entity for entity in case.call_entities}
    return [entity for entity in case.entities if entity.uid not in given] + list(given.values())


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(slicing_cases())
def test_a_call_set_of_reachable_entities_decides_like_the_merged_graph(case: SlicingCase) -> None:
    try:
        store = az.PolicyStore.from_text(case.policies, schema=case.schema, entities=case.entities,
                                         links=case.links, validate=False)
    except az.PolicyError:
        return
    try:
        reference = az.LocalEngine(az.PolicyStore.from_text(
            case.policies, schema=case.schema, entities=_merged(case), links=case.links, validate=False))
    except az.PolicyError:
        reference = None
    with mock.patch.object(local, "_REACH_DIVISOR", 1):  # always the call's own set
        decisions = az.LocalEngine(store).decide(case.requests, case.call_entities)
    if reference is None:
        assert all(d.errors and d.errors[0].startswith("entities rejected") for d in decisions)
        return
    assert decisions == reference.decide(case.requests)


def test_literals_in_conditions_are_found_and_scope_literals_are_not() -> None:
    text = ('permit(principal in Group::"g", action, resource) when { Team::"x".lead == principal '
            '&& "User::\\"fake\\"" != "" && resource in App::Folder::"f\\n" };')
    assert condition_literals([text]) == {U("Team", "x"), U("App::Folder", "f\n")}
    assert condition_literals(["not a policy"]) is None


def _big_store(policies: str, count: int = 2000) -> az.PolicyStore:
    entities = [az.Entity(uid=U("Group", f"g{i}")) for i in range(count // 2)]
    entities += [az.Entity(uid=U("User", f"u{i}"), attrs={"level": i % 5}, parents=[U("Group", f"g{i}")])
                 for i in range(count // 2)]
    return az.PolicyStore.from_text(policies, entities=entities)


def test_a_bound_user_entity_costs_its_reach_not_the_stored_graph() -> None:
    store = _big_store('permit(principal in Group::"g7", action, resource) when { principal.level > 1 };')
    engine = az.LocalEngine(store)
    alice = az.Entity(uid=U("User", "alice"), attrs={"level": 3}, parents=[U("Group", "g7")])
    request = az.Request(principal=alice.uid, action="read", resource=U("Doc", "d"))
    handle, _ = engine._call_entities(store.snapshot, [alice], [request])
    assert len(handle) == 2  # alice and Group::"g7"
    assert engine.decide([request], [alice]) == [az.Decision(True, ("policy0",))]
    assert engine._call_entities(store.snapshot, [alice], [request])[0] is handle  # cached


def test_an_entity_a_condition_names_is_in_the_call_set() -> None:
    store = _big_store('permit(principal, action, resource) when { User::"u3".level == 3 '
                       '&& resource.owner.level == 4 };')
    doc = az.Entity(uid=U("Doc", "d"), attrs={"owner": U("User", "u4")})
    request = az.Request(principal=U("User", "zz"), action="read", resource=doc.uid)
    engine = az.LocalEngine(store)
    handle, _ = engine._call_entities(store.snapshot, [doc], [request])
    assert len(handle) == 5  # the doc, u3 and u4 (attributes read) and their groups
    assert engine.decide([request], [doc]) == [az.Decision(True, ("policy0",))]


def test_a_changed_stored_entity_is_decided_with_the_given_version() -> None:
    store = _big_store('permit(principal in Group::"new", action, resource);')
    moved = az.Entity(uid=U("User", "u1"), attrs={"level": 1}, parents=[U("Group", "new")])
    request = az.Request(principal=moved.uid, action="read", resource=U("Doc", "d"))
    engine = az.LocalEngine(store)
    assert not engine.decide([request])[0].allowed
    assert engine.decide([request], [moved])[0].allowed


def test_a_cycle_closed_by_a_given_entity_is_refused_like_a_merge() -> None:
    store = az.PolicyStore.from_text('permit(principal, action, resource);',
                                     entities=[az.Entity(uid=U("Group", "a"), parents=[U("Group", "b")])])
    loop = az.Entity(uid=U("Group", "b"), parents=[U("Group", "a")])
    request = az.Request(principal=U("User", "x"), action="read", resource=U("Doc", "d"))
    with mock.patch.object(local, "_REACH_DIVISOR", 1):
        (decision,) = az.LocalEngine(store).decide([request], [loop])
    merged = [az.Entity(uid=U("Group", "a"), parents=[U("Group", "b")]), loop]
    try:
        cedarpy.Entities.from_json_str(str([e.to_cedar() for e in merged]).replace("'", '"'))
        refused = False
    except ValueError:
        refused = True
    assert decision.allowed is not refused


def _given(*edges: tuple[str, str]) -> dict[az.EntityUID, az.Entity]:
    parents: dict[str, list[str]] = {}
    for child, parent in edges:
        parents.setdefault(child, []).append(parent)
        parents.setdefault(parent, [])
    return {U("G", name): az.Entity(uid=U("G", name), parents=[U("G", p) for p in found])
            for name, found in parents.items()}


def test_given_depth_counts_the_longest_chain_among_the_given_entities_only() -> None:
    diamond = _given(("a", "b"), ("a", "c"), ("b", "d"), ("c", "d"), ("d", "e"))
    assert given_depth(diamond) == 4  # a -> b (or c) -> d -> e
    outside = {uid: entity for uid, entity in diamond.items() if uid != U("G", "e")}
    assert given_depth(outside) == 3  # a parent that is not given (stored, say) adds nothing
    assert given_depth({}) == 0


def test_given_depth_follows_no_cycle_round() -> None:
    assert given_depth(_given(("a", "b"), ("b", "c"), ("c", "a"))) == 3
    assert given_depth(_given(("a", "a"))) == 1


def test_given_depth_stops_just_past_the_limit_on_a_long_chain() -> None:
    chain = _given(*((str(i), str(i + 1)) for i in range(5000)))
    assert given_depth(chain, limit=100) == 101
    assert given_depth(chain, limit=10_000) == 5001


def test_a_batch_reaching_a_twentieth_of_the_store_parses_its_own_set() -> None:
    # Fifty documents whose owners and their groups are a twentieth of the stored graph: parsing
    # them (with the documents) costs less than cloning the graph to merge the documents onto it.
    store = _big_store('permit(principal, action, resource) when { resource.owner.level > 1 };')
    docs = [az.Entity(uid=U("Doc", f"d{i}"), attrs={"owner": U("User", f"u{i * 7}")}) for i in range(50)]
    requests = [az.Request(principal=U("User", "u1"), action="read", resource=doc.uid) for doc in docs]
    engine = az.LocalEngine(store)
    handle, _ = engine._call_entities(store.snapshot, docs, requests)
    assert len(handle) == 152  # the documents, their owners, the principal and their groups
    decided = engine.decide(requests, docs)
    assert [d.allowed for d in decided] == [(i * 7) % 5 > 1 for i in range(50)]
