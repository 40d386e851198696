"""Bedrock filters for documents that may lack a key, as ``policy_errors="deny"`` compiles forbids.

The ``bedrock-agent-runtime`` API reference documents ``notEquals`` as matching a
document whose value differs *or that lacks the key*, and every other operator
(``notIn`` included) as matching only documents that have it. Under
``policy_errors="deny"`` (the default) a document passes a forbid only where the
forbid evaluates to false, which needs the attributes it reads: ``x != v``
(present and different) is ``notIn [v]``. A ``has`` guard lets documents without
the key through: ``!has x || x != v`` is ``notEquals``. What no Bedrock filter
says (a missing key or'ed with an equality, an order, or nothing) is refused by
the exact rendering, never widened; the property below holds every exact
rendering to the documents authorization allows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

import agentauthz as az
from agentauthz.retrieval._prefilter import (
    Comparison,
    Has,
    In,
    Not,
    Prefilter,
    all_of,
    any_of,
    compile_prefilter,
)
from tests.retrieval.test_prefilter_soundness import (
    ANN,
    KEYS,
    SETTINGS,
    alice_prefilter,
    ann_authorizer,
    ann_exact_prefilter,
    bedrock_matches,
    buildable,
    resource_of,
)
from tests.strategies import prefilter_documents, prefilter_policy_sets


def exact_bedrock(forbid: str, **options: Any) -> dict[str, Any] | None:
    """The exact Bedrock filter of ``READ`` and ``forbid`` for ann, under the default ``policy_errors``."""
    return ann_exact_prefilter(forbid, **options).to_bedrock(exact=True)


DOCUMENTS: list[dict[str, Any]] = [{}, {"cls": "secret"}, {"cls": "public"}, {"cls": 3}, {"level": 2}]


def kept_by(flt: Mapping[str, Any] | None, documents: list[dict[str, Any]] = DOCUMENTS) -> list[int]:
    return [n for n, metadata in enumerate(documents) if flt is None or bedrock_matches(flt, metadata)]


def allowed_by(forbid: str, documents: list[dict[str, Any]] = DOCUMENTS) -> list[int]:
    with (authz := ann_authorizer(forbid)).acting_as(ANN):
        return [n for n, metadata in enumerate(documents) if authz.authorize(
            action="read", resource=az.Entity(az.EntityUID("Doc", str(n)), attrs=metadata)).allowed]


def test_an_unguarded_forbid_lets_through_only_documents_with_a_different_value_as_not_in() -> None:
    forbid = 'forbid(principal, action, resource) when { resource.cls == "secret" };'
    flt = exact_bedrock(forbid)
    assert flt == {"notIn": {"key": "cls", "value": ["secret"]}}
    assert kept_by(flt) == allowed_by(forbid) == [2, 3]  # without cls the forbid errors: denied


def test_a_guarded_forbid_lets_documents_without_the_key_through_as_not_equals() -> None:
    forbid = 'forbid(principal, action, resource) when { resource has cls && resource.cls == "secret" };'
    flt = exact_bedrock(forbid)
    assert flt == {"notEquals": {"key": "cls", "value": "secret"}}
    assert kept_by(flt) == allowed_by(forbid) == [0, 2, 3, 4]


def test_a_guarded_forbid_over_a_set_of_values_is_not_equals_for_each() -> None:
    forbid = ('forbid(principal, action, resource) when '
              '{ resource has cls && ["secret", "x"].contains(resource.cls) };')
    flt = exact_bedrock(forbid)
    assert flt == {"andAll": [{"notEquals": {"key": "cls", "value": "secret"}},
                              {"notEquals": {"key": "cls", "value": "x"}}]}
    assert kept_by(flt) == allowed_by(forbid)


def test_a_guarded_boolean_forbid_compared_with_true_is_not_equals() -> None:
    forbid = ('forbid(principal, action, resource) when '
              '{ resource has archived && resource.archived == true };')
    documents: list[dict[str, Any]] = [{}, {"archived": True}, {"archived": False}]
    flt = exact_bedrock(forbid)
    assert flt == {"notEquals": {"key": "archived", "value": True}}
    assert kept_by(flt, documents) == allowed_by(forbid, documents) == [0, 2]


@pytest.mark.parametrize(("forbid", "attribute"), [
    # missing, or equal: no Bedrock operator keeps a document for lacking a key except notEquals
    ('forbid(principal, action, resource) when { resource has cls && resource.cls != "ok" };', "cls"),
    # missing, or in range
    ("forbid(principal, action, resource) when { resource has level && resource.level > 3 };", "level"),
    # missing, or false: `== false` is not `!= true` for a key that may hold another type
    ("forbid(principal, action, resource) when { resource has archived && resource.archived };", "archived"),
    # missing alone
    ("forbid(principal, action, resource) when { resource has secret };", "secret"),
    # present alone (a permit's `has`)
    ('forbid(principal, action, resource) unless { resource has cls };', "cls"),
])
def test_what_no_bedrock_filter_says_is_refused_naming_the_attribute_and_the_fix(
    forbid: str, attribute: str
) -> None:
    with pytest.raises(az.ConfigurationError, match="exactly") as refused:
        exact_bedrock(forbid)
    assert attribute in str(refused.value)
    assert "has" in str(refused.value)
    with (authz := ann_authorizer(forbid)).acting_as(ANN):
        assert compile_prefilter(authz, action="read").to_bedrock() is None  # the superset: no filter


def test_retrieve_and_generate_names_the_policy_reading_the_attribute() -> None:
    from agentauthz.integrations.bedrock import MetadataMapping, retrieve_and_generate_filter

    authz = ann_authorizer('@id("no-high") forbid(principal, action, resource) '
                           "when { resource has level && resource.level > 3 };")
    with pytest.raises(az.ConfigurationError) as refused:
        retrieve_and_generate_filter(authz, principal=ANN,
                                     metadata=MetadataMapping(attributes={"level": "level"}))
    message = str(refused.value)
    assert "level missing" in message
    assert "'no-high' (<text>:2)" in message
    assert "resource has level && resource.level == value" in message
    assert "KnowledgeBaseRetriever" in message


@pytest.mark.parametrize(("expression", "expected"), [
    (any_of(Not(Has("x")), Comparison("x", "!=", "a")), {"notEquals": {"key": "x", "value": "a"}}),
    (any_of(Not(Has("x")), all_of(Has("x"), Not(In("x", ("a", "b"))))),
     {"andAll": [{"notEquals": {"key": "x", "value": "a"}}, {"notEquals": {"key": "x", "value": "b"}}]}),
    (any_of(Not(Has("x")), all_of(Has("x"), Comparison("x", "!=", "a"))),
     {"notEquals": {"key": "x", "value": "a"}}),
    (any_of(Not(Has("x")), Not(Comparison("x", "==", "a"))), {"notEquals": {"key": "x", "value": "a"}}),
    (any_of(Not(Has("x")), Has("x")), None),  # everything
    (all_of(Comparison("x", "==", "a"), Not(Comparison("x", "<", 3))),
     {"andAll": [{"equals": {"key": "x", "value": "a"}}, {"greaterThanOrEquals": {"key": "x", "value": 3}}]}),
])
def test_absent_keys_render_exactly_where_bedrock_documents_the_operator(
    expression: Any, expected: dict[str, Any] | None
) -> None:
    assert Prefilter(expression, exact=True).to_bedrock(exact=True) == expected
    assert Prefilter(expression).to_bedrock() == expected


@pytest.mark.parametrize("expression", [
    Has("x"), Not(Has("x")),
    any_of(Not(Has("x")), Comparison("x", "==", "a")),
    any_of(Not(Has("x")), Comparison("x", "<", 3)),
    any_of(Not(Has("x")), Comparison("y", "!=", "a")),  # another key: x missing is not expressible
])
def test_a_missing_or_present_key_bedrock_cannot_test_is_refused_when_exact(expression: Any) -> None:
    with pytest.raises(az.ConfigurationError, match="exactly"):
        Prefilter(expression, exact=True).to_bedrock(exact=True)


@SETTINGS
@given(policies=prefilter_policy_sets, metadata=prefilter_documents(), policy_errors=st.sampled_from(
    ("deny", "skip")))
def test_an_exact_bedrock_filter_keeps_exactly_the_documents_authorization_allows(
    policies: str, metadata: list[dict[str, Any]], policy_errors: Any
) -> None:
    """Under either ``policy_errors``, on metadata that keeps each key's type (the documented convention)."""
    context = {"flag": False, "limit": 3}
    pre, docs, allowed = alice_prefilter(policies, metadata, policy_errors, context)
    if not pre.exact:
        event("not exact")
        return
    try:
        flt = pre.to_bedrock(KEYS, exact=True)
    except az.AccessDenied:
        assert allowed == []
        return
    except az.ConfigurationError:
        event("exact, refused by Bedrock")
        return
    event(f"exact Bedrock filter ({policy_errors})")
    kept = [doc for doc in docs if buildable(doc) and (flt is None or bedrock_matches(flt, doc.metadata))]
    assert kept == allowed, (flt, [resource_of(doc).attrs for doc in docs])
