"""KnowledgeBaseRetriever's metadata= and limits=, and the flat keywords they replace (deprecated).

The flat-keyword behaviour itself is pinned by tests/integrations/test_bedrock_kb.py and
tests/security/test_prefilter_context.py, which still use them; these tests show that the
option objects configure exactly the same retriever and filter.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest

import agentauthz as az
from agentauthz.integrations.bedrock import (
    CHUNK_ID_KEY,
    SOURCE_URI_KEY,
    FetchLimits,
    KnowledgeBaseRetriever,
    MetadataField,
    MetadataMapping,
    retrieve_and_generate_filter,
)

POLICIES = Path(__file__).resolve().parents[2] / "policies"
KB = "KB12345678"
ATTRIBUTES: dict[str, str | MetadataField] = {
    "tenant": MetadataField("tenant", entity_type="Tenant"),
    "department": "department",
    "classification": "classification",
    "owner": MetadataField("owner", entity_type="User"),
    "labels": "labels",
}
FLAT: dict[str, Any] = {"resource_type": "Doc", "id_key": "doc_id", "attributes": ATTRIBUTES,
                        "ancestors_key": "ancestors", "max_candidates": 40, "max_rounds": 3}
RESULT = {"metadata": {"doc_id": "d1", SOURCE_URI_KEY: "s3://d1", CHUNK_ID_KEY: "d1-0", "tenant": "acme",
                       "department": "hr", "classification": "internal", "owner": "grace",
                       "labels": ["x"], "ancestors": ['Folder::"hr"']}}


@pytest.fixture(scope="module")
def authz() -> az.Authorizer:
    return az.Authorizer.from_directory(POLICIES)


def flat_retriever(authz: az.Authorizer) -> KnowledgeBaseRetriever:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return KnowledgeBaseRetriever(KB, authz, client=object(), **FLAT)


def test_metadata_and_limits_configure_the_retriever_the_flat_keywords_did(authz: az.Authorizer) -> None:
    grouped = KnowledgeBaseRetriever(
        KB, authz, client=object(),
        metadata=MetadataMapping(resource_type="Doc", id_key="doc_id", attributes=ATTRIBUTES,
                                 ancestors_key="ancestors"),
        limits=FetchLimits(max_candidates=40, max_rounds=3))
    flat = flat_retriever(authz)
    assert grouped.metadata == flat.metadata and grouped.limits == flat.limits
    assert grouped.resource_of(RESULT) == flat.resource_of(RESULT)
    assert grouped.metadata_keys == flat.metadata_keys
    assert grouped.metadata_keys["@ancestors"] == "ancestors"
    assert grouped.attributes == {name: spec if isinstance(spec, MetadataField) else MetadataField(spec)
                                  for name, spec in ATTRIBUTES.items()}
    with authz.acting_as(az.EntityUID("User", "carol")):
        assert grouped.search_filter() == flat.search_filter()


def test_without_options_the_retriever_keeps_its_defaults(authz: az.Authorizer) -> None:
    kb = KnowledgeBaseRetriever(KB, authz, client=object())
    assert kb.metadata == MetadataMapping() and kb.limits == FetchLimits()
    assert (kb.metadata.resource_type, kb.metadata.id_key, kb.metadata.ancestors_key) == (
        "Document", SOURCE_URI_KEY, None)
    assert (kb.limits.max_candidates, kb.limits.max_rounds) == (100, 10)


def test_the_flat_keywords_warn_naming_their_replacement(authz: az.Authorizer) -> None:
    with pytest.warns(DeprecationWarning) as caught:
        KnowledgeBaseRetriever(KB, authz, client=object(), **FLAT)
    messages = " ".join(str(w.message) for w in caught)
    assert "metadata=MetadataMapping(" in messages and "limits=FetchLimits(" in messages
    assert all(name + "=" in messages for name in FLAT)
    assert all(w.filename == __file__ for w in caught)  # the warning points at the caller


@pytest.mark.parametrize(("flat", "option"), [
    ({"attributes": {"a": "a"}}, {"metadata": MetadataMapping()}),
    ({"max_rounds": 2}, {"limits": FetchLimits()}),
])
def test_a_flat_keyword_next_to_the_option_that_replaces_it_is_refused(
    authz: az.Authorizer, flat: dict[str, Any], option: dict[str, Any]
) -> None:
    with pytest.raises(az.ConfigurationError, match="both given"):
        KnowledgeBaseRetriever(KB, authz, client=object(), **flat, **option)


def test_a_keyword_the_retriever_never_took_is_a_type_error(authz: az.Authorizer) -> None:
    with pytest.raises(TypeError, match="max_results"):
        KnowledgeBaseRetriever(KB, authz, client=object(), max_results=3)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="id_key"):
        retrieve_and_generate_filter(authz, id_key="x")  # type: ignore[call-arg]


def test_the_options_refuse_what_the_retriever_cannot_use(authz: az.Authorizer) -> None:
    for build in (lambda: FetchLimits(max_rounds=0), lambda: FetchLimits(max_candidates=0),
                  lambda: MetadataMapping(attributes={"a": 1})):  # type: ignore[dict-item]
        with pytest.raises(az.ConfigurationError):
            build()
    with pytest.raises(az.ConfigurationError, match="max_candidates >= k"):
        KnowledgeBaseRetriever(KB, authz, client=object(), k=5, limits=FetchLimits(max_candidates=4))


def test_retrieve_and_generate_filter_takes_the_retriever_s_metadata(authz: az.Authorizer) -> None:
    everyone = az.Authorizer.from_text('permit(principal, action, resource) when { resource.lang == "en" };')
    mapping = MetadataMapping(attributes={"lang": "language"})
    with everyone.acting_as(az.EntityUID("User", "bob")):
        grouped = retrieve_and_generate_filter(everyone, metadata=mapping)
        with pytest.warns(DeprecationWarning, match="metadata=MetadataMapping"):
            flat = retrieve_and_generate_filter(everyone, attributes={"lang": "language"})
    assert grouped == flat
    assert grouped.filter == {"equals": {"key": "language", "value": "en"}} and grouped.exact
    with pytest.raises(az.ConfigurationError, match="both given"):
        retrieve_and_generate_filter(everyone, metadata=mapping, ancestors_key="a",
                                     principal=az.EntityUID("User", "bob"))
