"""Authorizer.filter: order, chunk grouping, batching, and every way an item is dropped."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import agentauthz as az
from agentauthz.testing import capture_decisions
from tests import strategies as S

POLICIES = """
@id("same-department") permit(principal, action == Action::"read", resource)
when { resource.department == principal.department };
@id("public") permit(principal, action == Action::"read", resource)
when { resource.classification == "public" };
@id("no-held") forbid(principal, action, resource) when { resource has hold && resource.hold };
"""

ALICE = az.Entity(uid=az.EntityUID("User", "alice"), attrs={"department": "hr"})


def doc(doc_id: str, department: str, classification: str = "internal", **extra: Any) -> dict[str, Any]:
    return {"id": doc_id, "department": department, "classification": classification, **extra}


def as_entity(item: dict[str, Any]) -> az.Entity:
    attrs = {k: v for k, v in item.items() if k not in ("id", "chunk")}
    return az.Entity(uid=az.EntityUID("Doc", item["id"]), attrs=attrs)


def make_authz(**options: Any) -> az.Authorizer:
    return az.Authorizer.from_text(POLICIES, **options)


def test_filter_keeps_permitted_items_in_input_order() -> None:
    authz = make_authz()
    docs = [doc("a", "eng"), doc("b", "hr"), doc("c", "eng", "public"), doc("d", "hr", hold=True),
            doc("e", "hr")]
    with authz.acting_as(ALICE):
        result = authz.filter(docs, action="read", resource=as_entity)
    assert [d["id"] for d in result.allowed] == ["b", "c", "e"]
    assert result.denied == 2
    assert [d.allowed for d in result.decisions] == [False, True, True, False, True]
    assert result.decisions[3].reasons == ("no-held",)


def test_chunks_of_one_document_share_one_decision() -> None:
    authz = make_authz()
    chunks = [dict(doc("a", "hr"), chunk=i) for i in range(3)] + [dict(doc("b", "eng"), chunk=0)]
    chunks.insert(1, dict(doc("b", "eng"), chunk=1))
    with capture_decisions() as events, authz.acting_as(ALICE):
        result = authz.filter(chunks, action="read", resource=as_entity)
    assert [(c["id"], c["chunk"]) for c in result.allowed] == [("a", 0), ("a", 1), ("a", 2)]
    assert result.denied == 2
    assert len(events) == 2  # one decision per distinct document


def test_duplicate_chunks_are_neither_lost_nor_duplicated() -> None:
    authz = make_authz()
    same = doc("a", "hr")
    with authz.acting_as(ALICE):
        result = authz.filter([same, same, same], action="read", resource=as_entity)
    assert result.allowed == [same, same, same]


def test_item_without_an_id_is_dropped_and_counted() -> None:
    authz = make_authz()
    docs = [doc("a", "hr"), {"department": "hr", "classification": "public"}]
    with authz.acting_as(ALICE):
        result = authz.filter(docs, action="read", resource=as_entity)
    assert [d["id"] for d in result.allowed] == ["a"]
    assert (result.denied, result.unresolved) == (1, 1)
    assert "could not be built" in result.decisions[1].errors[0]


def test_resource_callable_returning_none_or_garbage_drops_the_item() -> None:
    authz = make_authz()
    with authz.acting_as(ALICE):
        result = authz.filter(
            [1, 2, 3], action="read",
            resource=lambda i: None if i == 1 else ("bad" if i == 2 else None),  # type: ignore[arg-type,return-value]
        )
    assert result.allowed == [] and result.denied == 3 and result.unresolved == 3


def test_chunks_disagreeing_on_metadata_are_all_dropped() -> None:
    authz = make_authz()
    honest = doc("a", "eng")
    spoofed = doc("a", "hr")  # same document id, metadata claims another department
    with authz.acting_as(ALICE):
        result = authz.filter([honest, spoofed], action="read", resource=as_entity)
    assert result.allowed == []
    assert all("different attributes" in d.errors[0] for d in result.decisions)


def test_document_content_cannot_spoof_metadata() -> None:
    authz = make_authz()
    item = doc("a", "eng")
    item["text"] = 'department: "hr"  {"__entity": {"type": "User", "id": "alice"}}'

    def from_metadata(d: dict[str, Any]) -> az.Entity:
        return az.Entity(uid=az.EntityUID("Doc", d["id"]),
                         attrs={"department": d["department"], "classification": d["classification"]})

    with authz.acting_as(ALICE):
        assert authz.filter([item], action="read", resource=from_metadata).allowed == []


def test_empty_entitlements_return_nothing() -> None:
    authz = az.Authorizer.from_text('forbid(principal, action, resource);')
    with authz.acting_as(ALICE):
        result = authz.filter([doc("a", "hr"), doc("b", "hr", "public")], action="read", resource=as_entity)
    assert result.allowed == [] and result.denied == 2


def test_no_policies_at_all_return_nothing() -> None:
    authz = az.Authorizer.from_text("")
    with authz.acting_as(ALICE):
        assert authz.filter([doc("a", "hr")], action="read", resource=as_entity).allowed == []


def test_filter_without_bound_user_raises_identity_error() -> None:
    with pytest.raises(az.IdentityError):
        make_authz().filter([doc("a", "hr")], action="read", resource=as_entity)


def test_engine_failure_drops_everything() -> None:
    class Broken:
        name = "broken"
        fingerprint = "x"

        def resolve_action(self, action: str | az.EntityUID) -> az.EntityUID:
            return az.EntityUID("Action", str(action))

        def decide(self, requests: Sequence[az.Request],
                   entities: Sequence[az.Entity] = ()) -> list[az.Decision]:
            raise TimeoutError("engine timed out")

        async def adecide(self, requests: Sequence[az.Request],
                          entities: Sequence[az.Entity] = ()) -> list[az.Decision]:
            raise TimeoutError("engine timed out")

    authz = az.Authorizer(Broken())
    with authz.acting_as(ALICE):
        assert authz.filter([doc("a", "hr")], action="read", resource=as_entity).allowed == []
        assert asyncio.run(authz.afilter([doc("a", "hr")], action="read", resource=as_entity)).allowed == []


def test_pages_split_large_inputs_into_several_engine_calls() -> None:
    authz = make_authz()
    docs = [doc(f"d{i}", "hr" if i % 3 else "eng") for i in range(25)]
    with authz.acting_as(ALICE):
        paged = authz.filter(docs, action="read", resource=as_entity, page_size=4)
        whole = authz.filter(docs, action="read", resource=as_entity)
    assert paged.allowed == whole.allowed
    assert len(paged.allowed) == 16


def test_filter_equals_a_per_item_authorize_loop() -> None:
    authz = make_authz()
    docs = [doc(f"d{i}", ("hr", "eng", "ops")[i % 3], ("public", "internal")[i % 2], hold=(i % 5 == 0))
            for i in range(30)]
    with authz.acting_as(ALICE):
        filtered = authz.filter(docs, action="read", resource=as_entity).allowed
        looped = [d for d in docs if authz.authorize(action="read", resource=as_entity(d)).allowed]
    assert filtered == looped


def test_async_filter_agrees_with_sync() -> None:
    authz = make_authz()
    docs = [doc(f"d{i}", ("hr", "eng")[i % 2]) for i in range(40)]

    async def run() -> list[dict[str, Any]]:
        with authz.acting_as(ALICE):
            return (await authz.afilter(docs, action="read", resource=as_entity)).allowed

    with authz.acting_as(ALICE):
        expected = authz.filter(docs, action="read", resource=as_entity).allowed
    assert asyncio.run(run()) == expected


def test_shadow_mode_keeps_denied_items_and_audits_them() -> None:
    authz = make_authz(mode="shadow")
    with capture_decisions() as events, authz.acting_as(ALICE):
        result = authz.filter([doc("a", "eng")], action="read", resource=as_entity)
    assert len(result.allowed) == 1
    assert events[0].decision == "deny"


def test_stored_entities_can_be_named_by_uid() -> None:
    stored = az.Entity(uid=az.EntityUID("Doc", "s"), attrs={"department": "hr", "classification": "x"})
    authz = az.Authorizer.from_text(POLICIES, entities=[stored])
    with authz.acting_as(ALICE):
        result = authz.filter(["s", "missing"], action="read", resource=lambda i: az.EntityUID("Doc", i))
    assert result.allowed == ["s"]


@settings(max_examples=60, deadline=None)
@given(S.filter_documents, st.one_of(st.none(), st.integers(0, 4)))
def test_each_item_gets_its_own_resources_decision_with_duplicates_failures_and_conflicts(
        drawn: list[tuple[int, str, str]], limit: int | None) -> None:
    authz = make_authz()
    items = [doc(f"d{number}", department, classification) if number >= 0 else {"no": "id"}
             for number, department, classification in drawn]

    def resource(item: dict[str, Any]) -> az.Entity:
        return as_entity(item)  # raises KeyError for an item without an id: it is dropped

    with authz.acting_as(ALICE):
        result = authz.filter(items, action="read", resource=resource, limit=limit)
        looked_at: dict[str, set[str]] = {}
        for item in items:
            if "id" in item:
                looked_at.setdefault(item["id"], set()).add(repr(sorted(item.items())))
        expected = [
            "id" in item and len(looked_at[item["id"]]) == 1
            and authz.authorize(action="read", resource=as_entity(item)).allowed
            for item in items]
    assert [decision.allowed for decision in result.decisions] == expected
    permitted = [item for item, allowed in zip(items, expected, strict=True) if allowed]
    kept = permitted if limit is None else permitted[:limit]
    assert result.allowed == kept and result.withheld == len(permitted) - len(kept)


def test_an_engine_reading_the_filters_requests_sees_one_request_per_resource_in_order() -> None:
    inner = az.LocalEngine(az.PolicyStore.from_text(POLICIES))
    seen: list[list[az.Request]] = []

    class Recording:  # a third-party engine: reads the requests as any sequence
        name = "recording"
        fingerprint = "x"

        def resolve_action(self, action: str | az.EntityUID) -> az.EntityUID:
            return inner.resolve_action(action)

        def decide(self, requests: Sequence[az.Request],
                   entities: Sequence[az.Entity] = ()) -> list[az.Decision]:
            seen.append(list(requests))
            return inner.decide(requests, entities)

        async def adecide(self, requests: Sequence[az.Request],
                          entities: Sequence[az.Entity] = ()) -> list[az.Decision]:
            return self.decide(requests, entities)

    authz = az.Authorizer(Recording())
    docs = [doc("a", "hr"), doc("b", "eng"), doc("a", "hr"), doc("c", "hr", "public")]
    with authz.acting_as(ALICE):
        result = authz.filter(docs, action="read", resource=as_entity, context={"purpose": "qa"})
    assert [(r.principal, r.action, r.resource, r.context) for r in seen[0]] == [
        (ALICE.uid, az.EntityUID("Action", "read"), az.EntityUID("Doc", name), {"purpose": "qa"})
        for name in ("a", "b", "c")]
    assert [item["id"] for item in result.allowed] == ["a", "a", "c"]
