"""Pages of a filter (issue 18, row 5): each page's entities come from an index, decisions stay Cedar's.

A page takes its principal's and its resources' entities from an index of the
overlay (a scan of every item per page made a filter quadratic). Every entity
given for a uid still reaches the engine, so two different ones for one uid are
refused there, whatever the page size.
"""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import agentauthz as az
from agentauthz._collector import LARGE_BATCH as PAUSE_COLLECTOR_ITEMS
from tests.security.support import reference_allows

POLICIES = """
@id("same-dept") permit(principal, action == Action::"read", resource)
when { resource.dept == principal.dept && resource.level <= principal.level };
@id("owner") permit(principal, action == Action::"read", resource) when { resource.owner == principal };
@id("held") forbid(principal, action, resource) when { resource.level > 3 };
"""

USER = az.Entity(uid=az.EntityUID("User", "alice"), attrs={"dept": "hr", "level": 2})

documents = st.lists(
    st.fixed_dictionaries({
        "id": st.sampled_from([f"d{i}" for i in range(30)]),
        "dept": st.sampled_from(["hr", "eng"]),
        "level": st.integers(0, 5),
        "owned": st.booleans(),
    }),
    max_size=40,
    unique_by=lambda doc: doc["id"],
)


def as_entity(doc: dict[str, Any]) -> az.Entity:
    owner = USER.uid if doc["owned"] else az.EntityUID("User", "bob")
    return az.Entity(uid=az.EntityUID("Doc", doc["id"]),
                     attrs={"dept": doc["dept"], "level": doc["level"], "owner": owner})


@settings(max_examples=100, deadline=None)
@given(documents, st.sampled_from([1, 3, 7, 10_000]))
def test_a_paged_filter_keeps_what_plain_cedarpy_allows(docs: list[dict[str, Any]], page_size: int) -> None:
    authz = az.Authorizer.from_text(POLICIES, audit=[])
    with authz.acting_as(USER):
        kept = authz.filter(docs, action="read", resource=as_entity, page_size=page_size).allowed
    expected = [doc for doc in docs if reference_allows(
        POLICIES, az.Request(USER.uid, az.EntityUID("Action", "read"), as_entity(doc).uid),
        [USER, as_entity(doc)])]
    assert kept == expected


def test_a_document_posing_as_the_bound_user_is_refused_on_every_page_size() -> None:
    authz = az.Authorizer.from_text(POLICIES, audit=[])
    impostor = az.Entity(uid=USER.uid, attrs={"dept": "eng", "level": 5})
    docs = [impostor, az.Entity(uid=az.EntityUID("Doc", "d1"), attrs={
        "dept": "eng", "level": 1, "owner": az.EntityUID("User", "bob")})]
    for page_size in (1, 2, 10_000):
        with authz.acting_as(USER):
            result = authz.filter(docs, action="read", resource=lambda entity: entity, page_size=page_size)
        assert result.allowed == []


def test_one_engine_call_decides_a_large_filter_with_the_default_pages() -> None:
    calls: list[int] = []
    inner = az.LocalEngine(az.PolicyStore.from_text(POLICIES))

    class Counting:
        def __getattr__(self, name: str) -> Any:
            return getattr(inner, name)

        def decide(self, requests: Any, entities: Any = ()) -> list[az.Decision]:
            calls.append(len(requests))
            return inner.decide(requests, entities)

    authz = az.Authorizer(Counting(), audit=[])  # type: ignore[arg-type]
    docs = [{"id": f"d{i}", "dept": "hr", "level": i % 5, "owned": False} for i in range(3000)]
    with authz.acting_as(USER):
        result = authz.filter(docs, action="read", resource=as_entity)
    assert calls == [3000]
    assert len(result.allowed) == 1800


def test_every_decision_of_a_large_filter_has_its_own_opaque_id() -> None:
    authz = az.Authorizer.from_text(POLICIES, audit=[])
    docs = [{"id": f"d{i}", "dept": "hr", "level": i % 5, "owned": False} for i in range(2000)]
    with authz.acting_as(USER):
        ids = [decision.id for decision in authz.filter(docs, action="read", resource=as_entity).decisions]
    assert len(set(ids)) == 2000
    assert all(len(found) == 32 and int(found, 16) >= 0 for found in ids)


# -- the garbage collector paused for large batches (issue 18, row 5) ------------------------------


def _collector_seen_by(observed: list[bool]) -> Any:
    def resource(doc: dict[str, Any]) -> az.Entity:
        observed.append(gc.isenabled())
        return as_entity(doc)
    return resource


@pytest.mark.parametrize("collector_on", [True, False])
def test_a_large_filter_leaves_the_garbage_collector_as_it_found_it(collector_on: bool) -> None:
    authz = az.Authorizer.from_text(POLICIES, audit=[])
    docs = [{"id": f"d{i}", "dept": "hr", "level": i % 5, "owned": False}
            for i in range(PAUSE_COLLECTOR_ITEMS)]
    observed: list[bool] = []
    was = gc.isenabled()
    (gc.enable if collector_on else gc.disable)()
    try:
        with authz.acting_as(USER):
            result = authz.filter(docs, action="read", resource=_collector_seen_by(observed))
        assert gc.isenabled() is collector_on
    finally:
        (gc.enable if was else gc.disable)()
    assert set(observed) == {False}  # paused while the resources were built
    assert len(result.allowed) == PAUSE_COLLECTOR_ITEMS * 3 // 5  # levels 0-2 of 0-4


def test_a_filter_that_raises_turns_the_garbage_collector_back_on() -> None:
    authz = az.Authorizer.from_text(POLICIES, audit=[])
    docs = [{"id": f"d{i}", "dept": "hr", "level": 1, "owned": False} for i in range(PAUSE_COLLECTOR_ITEMS)]
    assert gc.isenabled()
    with pytest.raises(az.IdentityError):  # no bound user: raised inside the paused filter
        authz.filter(docs, action="read", resource=as_entity)
    assert gc.isenabled()


def test_a_small_filter_does_not_touch_the_garbage_collector() -> None:
    authz = az.Authorizer.from_text(POLICIES, audit=[])
    observed: list[bool] = []
    with authz.acting_as(USER):
        authz.filter([{"id": "d1", "dept": "hr", "level": 1, "owned": False}], action="read",
                     resource=_collector_seen_by(observed))
    assert observed == [gc.isenabled()]


async def _afilter(authz: az.Authorizer, docs: list[dict[str, Any]]) -> az.FilterResult[Any]:
    with authz.acting_as(USER):
        return await authz.afilter(docs, action="read", resource=as_entity)


@settings(max_examples=40, deadline=None)
@given(documents, st.booleans())
def test_a_filter_with_the_collector_paused_keeps_what_plain_cedarpy_allows(
    docs: list[dict[str, Any]], run_async: bool
) -> None:
    # Padded past the pause threshold with chunks of one document every policy denies.
    padding = [{"id": "pad", "dept": "ops", "level": 9, "owned": False}] * PAUSE_COLLECTOR_ITEMS
    authz = az.Authorizer.from_text(POLICIES, audit=[])
    if run_async:
        kept = asyncio.run(_afilter(authz, [*docs, *padding])).allowed
    else:
        with authz.acting_as(USER):
            kept = authz.filter([*docs, *padding], action="read", resource=as_entity).allowed
    expected = [doc for doc in docs if reference_allows(
        POLICIES, az.Request(USER.uid, az.EntityUID("Action", "read"), as_entity(doc).uid),
        [USER, as_entity(doc)])]
    assert kept == expected
    assert gc.isenabled()


def test_concurrent_large_filters_leave_the_garbage_collector_on() -> None:
    from concurrent.futures import ThreadPoolExecutor

    authz = az.Authorizer.from_text(POLICIES, audit=[])
    docs = [{"id": f"d{i}", "dept": "hr", "level": i % 5, "owned": False}
            for i in range(PAUSE_COLLECTOR_ITEMS * 3)]

    def run(_: int) -> int:
        with authz.acting_as(USER):
            return len(authz.filter(docs, action="read", resource=as_entity).allowed)

    assert gc.isenabled()
    with ThreadPoolExecutor(4) as pool:
        kept = list(pool.map(run, range(8)))
    assert kept == [len(docs) * 3 // 5] * 8
    assert gc.isenabled()
