"""Mongo-style filters for documents that may lack a key, as ``policy_errors="deny"`` compiles forbids.

Under ``policy_errors="deny"`` (the default) a document passes a forbid only where
the forbid evaluates to false: a guarded forbid (``resource has x && resource.x == v``)
lets documents without ``x`` through (``!has x || x != v``), an unguarded one does
not (``x != v``: present and different). MongoDB documents ``$ne`` / ``$nin`` as
matching documents without the field and ``{"$eq": null}`` as matching a missing or
null field; Pinecone documents ``$exists`` (and stores no nulls); Chroma has neither
presence test. Each store's filter says exactly what it can (``presence=``,
``ne_matches_missing=``) and the exact rendering refuses the rest, never widens it:
the property below holds every exact rendering to the documents authorization allows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

import agentauthz as az
from agentauthz.retrieval._prefilter import Comparison, Not, Prefilter, all_of, compile_prefilter
from tests.retrieval.test_prefilter_soundness import (
    ANN,
    KEYS,
    MONGO_PRESENCE,
    SETTINGS,
    alice_prefilter,
    ann_authorizer,
    ann_exact_prefilter,
    buildable,
    mongo_matches,
    resource_of,
)
from tests.strategies import prefilter_documents_with_nulls, prefilter_policy_sets

#: MongoDB ($ne matches missing keys, null tests), Pinecone ($exists; $ne either way), Chroma (neither).
MONGODB: dict[str, Any] = {"ne_matches_missing": True, "presence": "null"}
PINECONE: dict[str, Any] = {"ne_matches_missing": False, "presence": "exists"}
CHROMA: dict[str, Any] = {"ne_matches_missing": True, "presence": None}
STRICT_NE: dict[str, Any] = {"ne_matches_missing": False, "presence": None}

DOCUMENTS: list[dict[str, Any]] = [{}, {"cls": "secret"}, {"cls": "public"}, {"cls": None}, {"level": 2},
                                   {"level": 5}, {"secret": True}, {"cls": "ok"}]


def exact_mongo(forbid: str, store: Mapping[str, Any]) -> dict[str, Any] | None:
    """The exact Mongo-style filter of ``READ`` and ``forbid`` for ann (default ``policy_errors``)."""
    return ann_exact_prefilter(forbid).to_mongo(exact=True, **store)


def kept_by(flt: Mapping[str, Any] | None, store: Mapping[str, Any]) -> list[int]:
    documents = _stored(store)
    return [n for n, metadata in enumerate(documents)
            if flt is None or mongo_matches(flt, metadata, ne_matches_missing=store["ne_matches_missing"])]


def allowed_by(forbid: str, store: Mapping[str, Any]) -> list[int]:
    with (authz := ann_authorizer(forbid)).acting_as(ANN):
        return [n for n, metadata in enumerate(_stored(store)) if authz.authorize(
            action="read", resource=az.Entity(az.EntityUID("Doc", str(n)), attrs={
                key: value for key, value in metadata.items() if value is not None})).allowed]


def _stored(store: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The documents as the store holds them: a store tested with $exists holds no null (Pinecone)."""
    if store["presence"] != "exists":
        return DOCUMENTS
    return [{key: value for key, value in doc.items() if value is not None} for doc in DOCUMENTS]


GUARDED = 'forbid(principal, action, resource) when { resource has cls && resource.cls == "secret" };'
UNGUARDED = 'forbid(principal, action, resource) when { resource.cls == "secret" };'


@pytest.mark.parametrize(("store", "expected"), [
    (MONGODB, {"cls": {"$ne": "secret"}}),
    (CHROMA, {"cls": {"$ne": "secret"}}),
    (PINECONE, {"$or": [{"cls": {"$exists": False}}, {"cls": {"$ne": "secret"}}]}),
    ({**PINECONE, "presence": "null"}, {"$or": [{"cls": {"$eq": None}}, {"cls": {"$ne": "secret"}}]}),
])
def test_a_guarded_forbid_lets_documents_without_the_key_through(
        store: dict[str, Any], expected: dict[str, Any]) -> None:
    flt = exact_mongo(GUARDED, store)
    assert flt == expected
    assert kept_by(flt, store) == allowed_by(GUARDED, store)
    assert 0 in kept_by(flt, store)


@pytest.mark.parametrize(("store", "expected"), [
    (MONGODB, {"$and": [{"cls": {"$ne": None}}, {"cls": {"$ne": "secret"}}]}),
    (PINECONE, {"cls": {"$ne": "secret"}}),
    (STRICT_NE, {"cls": {"$ne": "secret"}}),
    ({**CHROMA, "presence": "exists"}, {"$and": [{"cls": {"$exists": True}}, {"cls": {"$ne": "secret"}}]}),
])
def test_an_unguarded_forbid_lets_through_only_documents_that_have_the_key(
        store: dict[str, Any], expected: dict[str, Any]) -> None:
    flt = exact_mongo(UNGUARDED, store)
    assert flt == expected
    assert kept_by(flt, store) == allowed_by(UNGUARDED, store)
    assert 0 not in kept_by(flt, store)


@pytest.mark.parametrize("forbid", [
    'forbid(principal, action, resource) when { resource has cls && resource.cls != "ok" };',
    "forbid(principal, action, resource) when { resource has level && resource.level > 3 };",
    "forbid(principal, action, resource) when { resource has secret };",
    "forbid(principal, action, resource) unless { resource has cls };",
    GUARDED,
    UNGUARDED,
])
@pytest.mark.parametrize("store", [MONGODB, PINECONE])
def test_missing_or_present_keys_are_written_exactly_where_the_store_tests_for_a_key(
        forbid: str, store: dict[str, Any]) -> None:
    flt = exact_mongo(forbid, store)
    assert kept_by(flt, store) == allowed_by(forbid, store), flt


@pytest.mark.parametrize("forbid", [
    'forbid(principal, action, resource) when { resource has cls && resource.cls != "ok" };',
    "forbid(principal, action, resource) when { resource has level && resource.level > 3 };",
    "forbid(principal, action, resource) when { resource has secret };",
    "forbid(principal, action, resource) unless { resource has cls };",
])
def test_a_store_without_a_presence_test_refuses_an_exact_filter_naming_the_attribute(forbid: str) -> None:
    pre = ann_exact_prefilter(forbid)
    with pytest.raises(az.ConfigurationError, match="exactly") as refused:
        pre.to_mongo(exact=True, **CHROMA)
    assert "missing" in str(refused.value) or "present" in str(refused.value)
    superset = pre.to_mongo(**CHROMA)  # without exact: a superset, never a narrower filter
    assert set(kept_by(superset, CHROMA)) >= set(allowed_by(forbid, CHROMA))


def test_an_unguarded_forbid_is_refused_where_ne_keeps_missing_keys_and_presence_cannot_be_tested() -> None:
    with pytest.raises(az.ConfigurationError, match="cls"):
        exact_mongo(UNGUARDED, CHROMA)


def test_an_inexact_prefilter_is_refused_by_the_exact_mongo_rendering() -> None:
    authz = ann_authorizer("forbid(principal, action, resource) when { resource.owner == principal };")
    with authz.acting_as(ANN):
        pre = compile_prefilter(authz, action="read")
    with pytest.raises(az.ConfigurationError, match="exactly"):
        pre.to_mongo(exact=True, **MONGODB)


def test_an_unknown_presence_is_refused() -> None:
    with pytest.raises(az.ConfigurationError, match="presence"):
        ann_exact_prefilter(GUARDED).to_mongo(presence="$exists")  # type: ignore[arg-type]


@SETTINGS
@given(policies=prefilter_policy_sets, metadata=prefilter_documents_with_nulls(),
       policy_errors=st.sampled_from(("deny", "skip")),
       store=st.sampled_from([MONGODB, PINECONE, CHROMA, STRICT_NE,
                              *({"ne_matches_missing": ne, "presence": presence}
                                for ne in (True, False) for presence in MONGO_PRESENCE)]))
def test_an_exact_mongo_filter_keeps_exactly_the_documents_authorization_allows(
    policies: str, metadata: list[dict[str, Any]], policy_errors: Any, store: dict[str, Any]
) -> None:
    """Under either ``policy_errors``, on metadata that keeps each key's type (the documented convention)."""
    if store["presence"] == "exists":  # a store tested with $exists holds no null (Pinecone)
        metadata = [{key: value for key, value in item.items() if value is not None} for item in metadata]
    context = {"flag": False, "limit": 3}
    pre, docs, allowed = alice_prefilter(policies, metadata, policy_errors, context)
    if not pre.exact:
        event("not exact")
        return
    try:
        flt = pre.to_mongo(KEYS, exact=True, **store)
    except az.AccessDenied:
        assert allowed == []
        return
    except az.ConfigurationError:
        event(f"exact, refused by the store (presence {store['presence']})")
        return
    event(f"exact Mongo filter (presence {store['presence']}, {policy_errors})")
    if flt is not None and ("$exists" in repr(flt) or "None" in repr(flt)):
        event("exact Mongo filter testing a key's presence")
    kept = [doc for doc in docs if buildable(doc) and (
        flt is None or mongo_matches(flt, doc.metadata, ne_matches_missing=store["ne_matches_missing"]))]
    assert kept == allowed, (flt, [resource_of(doc).attrs for doc in docs])


@pytest.mark.parametrize("store", [MONGODB, CHROMA, {**CHROMA, "presence": "exists"}])
def test_a_conjunction_does_not_count_on_a_ne_that_matches_missing_keys_for_the_keys_presence(
        store: dict[str, Any]) -> None:
    # Found by the property: permit when { !(resource.dept == "hr") }, forbid when { resource.dept == "hr" }.
    expression = all_of(Comparison("cls", "!=", "secret"), Not(Comparison("cls", "==", "secret")))
    meaning = Prefilter(expression).to_callable()
    try:
        flt = Prefilter(expression, exact=True).to_mongo(exact=True, **store)
    except az.ConfigurationError:
        assert store["presence"] is None  # $ne keeps documents without cls, and nothing else can drop them
        return
    assert kept_by(flt, store) == [n for n, metadata in enumerate(_stored(store)) if meaning(metadata)]


@SETTINGS
@given(policies=prefilter_policy_sets, metadata=prefilter_documents_with_nulls(),
       policy_errors=st.sampled_from(("deny", "skip")), ne_matches_missing=st.booleans(),
       presence=st.sampled_from(MONGO_PRESENCE))
def test_a_mongo_filter_never_drops_a_document_authorization_allows(
    policies: str, metadata: list[dict[str, Any]], policy_errors: Any, ne_matches_missing: bool, presence: Any
) -> None:
    """The superset rendering, on metadata that may hold null (MongoDB) or not ($exists: Pinecone)."""
    if presence == "exists":
        metadata = [{key: value for key, value in item.items() if value is not None} for item in metadata]
    context = {"flag": True, "limit": 2}
    pre, docs, allowed = alice_prefilter(policies, metadata, policy_errors, context)
    if pre.always_denied:
        assert allowed == []
        return
    flt = pre.to_mongo(KEYS, ne_matches_missing=ne_matches_missing, presence=presence)
    kept = [doc for doc in docs if flt is None or mongo_matches(flt, doc.metadata,
                                                                ne_matches_missing=ne_matches_missing)]
    assert [doc for doc in allowed if doc not in kept] == [], flt
