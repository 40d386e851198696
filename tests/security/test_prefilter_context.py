"""Attack class: a pre-filter compiled with another context than authorization's (review finding 2).

``retrieve_and_generate_filter`` compiled the policies without the bound session's
``context.session``: after the session saw untrusted content, a rule "no confidential
documents" denied them in ``authz.filter`` while the generation filter was None and every
document reached the model. Every pre-filter is now compiled from the scope
``Authorizer.filter`` builds its requests from (principal, entity, context, session record),
a pre-filter says whether it is exact, and the one path without a post-filter
(``retrieve_and_generate``) refuses a filter that is not.

Cases tried:

* the review's reproduction: the session rule holds in the generation filter, in the filter
  the KnowledgeBaseRetriever sends (Stubber) and in the AuthorizedRetriever's search
* approvals naming one resource: the pre-filter joins both contexts and is not exact
* what a Bedrock filter cannot decide is refused: stored resource entities, entity-typed
  attributes, a session that records labels; "allow_inexact" never means "no filter"
* with a schema: a resource lacking a required attribute is denied, and Bedrock cannot test
  that a key is present: the filter must imply it (Hypothesis, 150 examples)
* class (Hypothesis, 150 examples): random policies reading the resource, the session's
  ``seen`` and ``approved`` and the caller's context, random sessions, random metadata;
  for every pre-filter path, whatever is let through without a post-filter (an exact
  pre-filter's callable and Bedrock filter, the generation filter) is allowed by
  ``authz.filter`` in the same session, and no path's filter drops an allowed document
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.vectorstores import InMemoryVectorStore

import agentauthz as az
from agentauthz.integrations.bedrock import (
    GenerationFilter,
    KnowledgeBaseRetriever,
    MetadataField,
    MetadataMapping,
    retrieve_and_generate_filter,
)
from agentauthz.integrations.langchain import AuthorizedRetriever
from agentauthz.retrieval._prefilter import ANCESTORS, Prefilter, compile_prefilter
from agentauthz.session import MemorySessionStore, SessionConfig
from tests.retrieval.test_prefilter_soundness import (
    ALICE,
    Doc,
    as_docs,
    bedrock_matches,
    buildable,
    mongo_matches,
    resource_of,
)
from tests.security.support import FailingStore
from tests.strategies import (
    prefilter_context_policy_sets,
    prefilter_contexts,
    prefilter_documents,
    prefilter_sessions,
)

KB = "KB12345678"
MODEL = "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-v2"
USER = az.EntityUID("User", "u")
CLASSIFICATION = MetadataMapping(attributes={"classification": "classification"})

SESSION_RULE = """
@id("read") permit(principal, action == Action::"read", resource);
@id("no-confidential-after-untrusted") forbid(principal, action == Action::"read", resource)
  when { context has session && context.session.seen.contains("untrusted") &&
         resource has classification && resource.classification == "confidential" };
"""


@pytest.fixture
def client() -> Any:
    return boto3.client("bedrock-agent-runtime", region_name="us-east-1",
                        aws_access_key_id="x", aws_secret_access_key="x")


@pytest.fixture
def stubber(client: Any) -> Iterator[Stubber]:
    with Stubber(client) as stub:
        yield stub
        stub.assert_no_pending_responses()


def generate_params(flt: Mapping[str, Any] | None) -> dict[str, Any]:
    """A retrieve_and_generate call carrying the generation filter."""
    search: dict[str, Any] = {"numberOfResults": 5}
    if flt is not None:
        search["filter"] = dict(flt)
    return {
        "input": {"text": "What is in the documents?"},
        "retrieveAndGenerateConfiguration": {
            "type": "KNOWLEDGE_BASE",
            "knowledgeBaseConfiguration": {
                "knowledgeBaseId": KB, "modelArn": MODEL,
                "retrievalConfiguration": {"vectorSearchConfiguration": search},
            },
        },
    }


def generate(client: Any, stubber: Stubber, generated: GenerationFilter) -> None:
    """Call the service through the Stubber: botocore validates the filter against the model."""
    params = generate_params(generated.filter)
    stubber.add_response("retrieve_and_generate", {"output": {"text": "..."}, "sessionId": "s-1"}, params)
    client.retrieve_and_generate(**params)


# -- the review's reproduction -----------------------------------------------------------------


def test_generation_filter_holds_the_session_rule_after_untrusted_content_was_seen(
    client: Any, stubber: Stubber
) -> None:
    authz = az.Authorizer.from_text(SESSION_RULE, audit=[])
    with authz.acting_as(USER), authz.session("conversation-1") as session:
        before = retrieve_and_generate_filter(authz, metadata=CLASSIFICATION)
        session.see("untrusted")
        after = retrieve_and_generate_filter(authz, metadata=CLASSIFICATION)
        generate(client, stubber, after)
        denied = authz.filter([{"classification": "confidential"}], action="read",
                              resource=lambda doc: az.Entity(az.EntityUID("Document", "d"), doc))
    assert before.filter is None and before.exact  # nothing forbids yet: every document
    assert after.exact and after.filter == {"notEquals": {"key": "classification", "value": "confidential"}}
    assert denied.allowed == []


def test_generation_filter_takes_the_session_as_an_argument_too() -> None:
    authz = az.Authorizer.from_text(SESSION_RULE, audit=[])
    authz.session_store.add_labels("conversation-2", ["untrusted"], owner=str(USER))
    generated = retrieve_and_generate_filter(authz, principal=USER, session="conversation-2",
                                             metadata=CLASSIFICATION)
    assert generated.filter == {"notEquals": {"key": "classification", "value": "confidential"}}


def test_knowledge_base_retriever_sends_the_session_rule(client: Any, stubber: Stubber) -> None:
    authz = az.Authorizer.from_text(SESSION_RULE, audit=[])
    kb = KnowledgeBaseRetriever(KB, authz, client=client, metadata=CLASSIFICATION)
    expected = {"knowledgeBaseId": KB, "retrievalQuery": {"text": "q"}, "retrievalConfiguration": {
        "vectorSearchConfiguration": {"numberOfResults": 4, "filter": {
            "notEquals": {"key": "classification", "value": "confidential"}}}}}
    stubber.add_response("retrieve", {"retrievalResults": []}, expected)
    with authz.acting_as(USER), authz.session("conversation-3") as session:
        session.see("untrusted")
        found = kb.retrieve("q")
    assert found.stats.prefilter == "applied"


def test_authorized_retriever_prefilter_holds_the_session_rule() -> None:
    authz = az.Authorizer.from_text(SESSION_RULE, audit=[])
    store = InMemoryVectorStore(DeterministicFakeEmbedding(size=8))
    store.add_documents([Document(page_content=f"doc {i}", id=f"d{i}", metadata={
        "classification": "confidential" if i % 2 else "public"}) for i in range(10)])
    retriever = AuthorizedRetriever(
        retriever=store, authz=authz, k=10, prefilter=True,
        resource=lambda doc: az.Entity(az.EntityUID("Document", doc.id), doc.metadata))
    with authz.acting_as(USER), authz.session("conversation-4") as session:
        session.see("untrusted")
        found = retriever.retrieve_with_stats("doc")
    assert sorted(doc.id or "" for doc in found.documents) == ["d0", "d2", "d4", "d6", "d8"]
    assert found.stats.dropped == 0  # the search itself left the confidential documents out


# -- approvals: the context differs between resources ---------------------------------------------


def test_an_approval_of_one_resource_makes_the_prefilter_inexact_not_narrower() -> None:
    authz = az.Authorizer.from_text(
        'permit(principal, action == Action::"read", resource)'
        ' when { context.session.approved || resource.classification == "public" };', audit=[])
    with authz.acting_as(USER), authz.session("conversation-5") as session:
        assert compile_prefilter(authz, action="read").exact
        session.approve("read", az.EntityUID("Document", "approved"))
        pre = compile_prefilter(authz, action="read", resource_type="Document")
        with pytest.raises(az.ConfigurationError, match="exactly"):
            retrieve_and_generate_filter(authz, metadata=CLASSIFICATION)
        allowed = authz.filter(["approved", "other"], action="read", resource=lambda name: az.Entity(
            az.EntityUID("Document", name), {"classification": "internal"})).allowed
    assert allowed == ["approved"]
    assert not pre.exact and pre.to_callable()({"classification": "internal"})  # kept: one may be approved


def test_generation_refuses_when_resources_may_be_stored_entities() -> None:
    stored = az.Entity(az.EntityUID("Document", "s3://kb/secret.md"), {"classification": "confidential"})
    policies = 'permit(principal, action, resource) when { resource.classification == "public" };'
    in_the_store = az.Authorizer.from_text(policies, entities=[stored], audit=[])
    from_a_provider = az.Authorizer(az.LocalEngine(az.PolicyStore.from_text(policies)), entities=[stored],
                                    audit=[])
    for authz in (in_the_store, from_a_provider):
        with pytest.raises(az.ConfigurationError, match="stored attributes"):
            retrieve_and_generate_filter(authz, principal=USER, metadata=CLASSIFICATION)


def test_generation_refuses_conditions_on_entity_typed_attributes() -> None:
    # tenant holds an entity in the resource: never equal to the string the filter would test.
    authz = az.Authorizer.from_text('permit(principal, action, resource) when { resource.tenant == "acme" };',
                                    audit=[])
    with pytest.raises(az.ConfigurationError, match="entity-typed"):
        retrieve_and_generate_filter(authz, principal=USER, metadata=MetadataMapping(
            attributes={"tenant": MetadataField("tenant", entity_type="Tenant")}))


def test_generation_refuses_in_a_session_that_records_labels() -> None:
    authz = az.Authorizer.from_text(SESSION_RULE, audit=[])
    with authz.acting_as(USER), authz.session("conversation-7"), \
            pytest.raises(az.ConfigurationError, match="session"):
        retrieve_and_generate_filter(authz, metadata=MetadataMapping(
            attributes={"classification": "classification", "labels": "labels"}))


def test_generation_with_accepted_risk_never_sends_no_filter() -> None:
    # Nothing translates: even allow_inexact refuses rather than letting everything through.
    authz = az.Authorizer.from_text(
        'permit(principal, action, resource) when { resource.a + 1 == 2 };', audit=[])
    with pytest.raises(az.ConfigurationError, match="narrows"):
        retrieve_and_generate_filter(authz, principal=USER, metadata=MetadataMapping(attributes={"a": "a"}),
                                     allow_inexact=True)


def test_an_unmapped_attribute_is_missing_from_the_generation_resource() -> None:
    # KnowledgeBaseRetriever builds only the mapped attributes: `year` never exists on its resource.
    authz = az.Authorizer.from_text(
        'permit(principal, action, resource) when { resource.year == 2024 };\n'
        'permit(principal, action, resource) when { resource.dept == "hr" };', audit=[])
    generated = retrieve_and_generate_filter(authz, principal=USER,
                                             metadata=MetadataMapping(attributes={"dept": "department"}))
    assert generated.exact and generated.filter == {"equals": {"key": "department", "value": "hr"}}


# -- the class: every pre-filter path, random policies, sessions and metadata ----------------------

SETTINGS = settings(max_examples=int(os.environ.get("AGENTAUTHZ_PREFILTER_EXAMPLES", "150")), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
#: What KnowledgeBaseRetriever / retrieve_and_generate_filter are told about the metadata.
MAPPING: dict[str, str | MetadataField] = {
    name: name for name in ("dept", "classification", "tags", "level", "secret", "archived", "title")
} | {"owner": MetadataField("owner", entity_type="User")}
KEYS = {ANCESTORS: "ancestors"}


def generation_resource(doc: Doc) -> az.Entity:
    """The resource KnowledgeBaseRetriever builds from the mapping (a missing key: no attribute)."""
    attrs: dict[str, Any] = {}
    for name, spec in MAPPING.items():
        key = spec.key if isinstance(spec, MetadataField) else spec
        value = doc.metadata.get(key)
        if value is not None:
            entity_type = spec.entity_type if isinstance(spec, MetadataField) else None
            attrs[name] = az.EntityUID(entity_type, value) if entity_type else value
    ancestors = doc.metadata.get("ancestors") or []
    return az.Entity(uid=az.EntityUID("Doc", doc.id), attrs=attrs,
                     parents=[az.EntityUID.parse(text) for text in ancestors])


@contextlib.contextmanager
def in_session(authz: az.Authorizer, session: Mapping[str, Any] | None) -> Iterator[None]:
    if session is None:
        yield
        return
    with authz.session("conversation") as bound:
        if session["seen"]:
            bound.see(*session["seen"])
        for approved in session["approvals"]:
            bound.approve("read", az.EntityUID("Doc", approved))
        yield


def allowed_by_filter(authz: az.Authorizer, docs: Sequence[Doc], context: Mapping[str, Any],
                      resource: Any) -> list[Doc]:
    return authz.filter(docs, action="read", resource=resource, context=context).allowed


def check_superset(pre: Prefilter, docs: Sequence[Doc], allowed: Sequence[Doc]) -> None:
    """No rendering of a pre-filter drops an allowed document."""
    if pre.always_denied:
        assert not allowed
        return
    keep = pre.to_callable(KEYS)
    assert all(keep(doc.metadata) for doc in allowed), f"callable {pre} dropped an allowed document"
    bedrock, mongo = pre.to_bedrock(KEYS), pre.to_mongo(KEYS)
    for doc in allowed:
        assert bedrock is None or bedrock_matches(bedrock, doc.metadata), f"bedrock {bedrock}"
        assert mongo is None or mongo_matches(mongo, doc.metadata), f"mongo {mongo}"


def check_exact(pre: Prefilter, docs: Sequence[Doc], allowed: Sequence[Doc]) -> None:
    """An exact pre-filter lets through only allowed documents: it may stand in for the post-filter."""
    if not pre.exact:
        return
    keep = pre.to_callable(KEYS)
    assert [doc for doc in docs if buildable(doc) and keep(doc.metadata)] == list(allowed), \
        f"exact callable {pre}"
    try:
        bedrock = pre.to_bedrock(KEYS, exact=True)
    except az.AccessDenied:
        assert not allowed
        return
    except az.ConfigurationError:
        event("exact, but not in Bedrock's filter language")
        return
    event("exact Bedrock filter")
    passed = [doc for doc in docs if bedrock is None or bedrock_matches(bedrock, doc.metadata)]
    assert passed == list(allowed), f"exact bedrock {bedrock}"


@SETTINGS
@given(policies=prefilter_context_policy_sets, metadata=prefilter_documents(), session=prefilter_sessions,
       context=prefilter_contexts)
def test_no_prefilter_path_lets_through_a_document_authorization_denies_in_the_session(
    policies: str, metadata: list[dict[str, Any]], session: Mapping[str, Any] | None,
    context: dict[str, Any],
) -> None:
    # Labels are not mapped to metadata: reading in this session records nothing the service hides.
    authz = az.Authorizer.from_text(policies, audit=[], sessions=SessionConfig(labels="session_labels"))
    docs = as_docs(metadata)
    client = boto3.client("bedrock-agent-runtime", region_name="us-east-1",
                          aws_access_key_id="x", aws_secret_access_key="x")
    metadata_mapping = MetadataMapping(resource_type="Doc", attributes=MAPPING, ancestors_key="ancestors")
    kb = KnowledgeBaseRetriever(KB, authz, client=client, metadata=metadata_mapping, context=context)
    with authz.acting_as(ALICE), in_session(authz, session):
        # Every path compiles first: the filter records what it lets through in the session.
        pre = compile_prefilter(authz, action="read", context=context, resource_type="Doc")
        sent, state = kb.search_filter()
        try:
            generated: GenerationFilter | None = retrieve_and_generate_filter(
                authz, metadata=metadata_mapping, context=context)
        except (az.ConfigurationError, az.AccessDenied) as exc:
            generated = None
            refusal: Exception | None = exc
        else:
            refusal = None
        allowed = allowed_by_filter(authz, docs, context, resource_of)
    with authz.acting_as(ALICE), in_session(authz, session):
        allowed_generation = allowed_by_filter(authz, docs, context, generation_resource)
    kind = ("always denied" if pre.always_denied else "always allowed" if pre.always_allowed
            else "exact" if pre.exact else "superset")
    event(f"session: {'none' if session is None else 'bound'}; pre-filter: {kind}")

    check_superset(pre, docs, allowed)
    check_exact(pre, docs, allowed)

    # The filter KnowledgeBaseRetriever sends (it post-filters): never drops an allowed document.
    if state == "always_denied":
        assert not allowed_generation
    elif sent is not None:
        assert all(bedrock_matches(sent, doc.metadata) for doc in allowed_generation), f"sent {sent}"

    # retrieve_and_generate: no post-filter, so what its filter lets through must be allowed.
    if isinstance(refusal, az.AccessDenied):
        assert not allowed_generation
    if generated is None:
        event(f"generation refused: {type(refusal).__name__}")
        return
    event("generation filter" if generated.filter is not None else "generation: every document")
    assert generated.exact
    sent_filter = generated.filter
    passed = [doc for doc in docs if sent_filter is None or bedrock_matches(sent_filter, doc.metadata)]
    assert passed == allowed_generation, f"generation filter {sent_filter}"
    with Stubber(client) as stubber:
        generate(client, stubber, generated)


# -- with a schema: a resource that does not conform is denied, whatever its metadata says ----------

DOC_SCHEMA = """
entity User;
entity Doc = { dept: String, level?: Long, classification?: String };
action read appliesTo { principal: [User], resource: [Doc] };
"""
SCHEMA_POLICIES = (
    'permit(principal, action == Action::"read", resource) when { resource.dept == "hr" };',
    'permit(principal, action == Action::"read", resource) when '
    '{ resource has level && resource.level <= 3 };',
    'permit(principal, action == Action::"read", resource) when '
    '{ resource has classification && resource.classification == "public" };',
    'forbid(principal, action == Action::"read", resource) when '
    '{ resource has classification && resource.classification == "secret" };',
    'permit(principal, action == Action::"read", resource);',
    'permit(principal, action == Action::"read", resource) when '
    '{ resource.dept == "eng" && resource has level && resource.level >= 2 };',
    'permit(principal, action == Action::"read", resource) when '
    '{ ["hr", "eng"].contains(resource.dept) && !(resource has classification) };',
    'forbid(principal, action == Action::"read", resource) when '
    '{ resource has level && resource.level > 4 };',
)
SCHEMA_MAPPING: dict[str, str | MetadataField] = {"dept": "dept", "level": "level",
                                                  "classification": "classification"}
SCHEMA_METADATA = MetadataMapping(resource_type="Doc", attributes=SCHEMA_MAPPING)


def schema_resource(doc: Doc) -> az.Entity:
    return az.Entity(uid=az.EntityUID("Doc", doc.id), attrs={
        key: value for key, value in doc.metadata.items() if key in SCHEMA_MAPPING and value is not None})


@settings(SETTINGS, max_examples=int(os.environ.get("AGENTAUTHZ_PREFILTER_EXAMPLES", "150")))
@given(chosen=st.lists(st.sampled_from(SCHEMA_POLICIES), min_size=1, max_size=3, unique=True),
       metadata=st.lists(st.fixed_dictionaries({}, optional={
           "dept": st.sampled_from(("hr", "eng")), "level": st.integers(0, 6),
           "classification": st.sampled_from(("public", "secret", "internal"))}), min_size=1, max_size=8))
def test_generation_filter_never_lets_through_a_resource_the_schema_rejects(
    chosen: list[str], metadata: list[dict[str, Any]]
) -> None:
    authz = az.Authorizer.from_text("\n".join(chosen), schema=DOC_SCHEMA, audit=[])
    docs = as_docs(metadata)
    with authz.acting_as(USER):
        try:
            generated = retrieve_and_generate_filter(authz, metadata=SCHEMA_METADATA)
        except (az.ConfigurationError, az.AccessDenied) as exc:
            event(f"refused: {type(exc).__name__}")
            return
        # One at a time: a non-conforming entity makes Cedar reject its whole batch.
        allowed = [doc for doc in docs if allowed_by_filter(authz, [doc], {}, schema_resource)]
    event("generation filter" if generated.filter is not None else "generation: every document")
    sent_filter = generated.filter
    passed = [doc for doc in docs if sent_filter is None or bedrock_matches(sent_filter, doc.metadata)]
    assert passed == allowed, f"generation filter {sent_filter}"


def test_generation_filter_with_a_schema_keeps_only_documents_with_the_required_attributes() -> None:
    authz = az.Authorizer.from_text(SCHEMA_POLICIES[0], schema=DOC_SCHEMA, audit=[])
    generated = retrieve_and_generate_filter(authz, principal=USER, metadata=SCHEMA_METADATA)
    assert generated.exact and generated.filter == {"equals": {"key": "dept", "value": "hr"}}
    # Every document level <= 3 would pass, including those without the required dept: refused.
    authz = az.Authorizer.from_text(SCHEMA_POLICIES[1], schema=DOC_SCHEMA, audit=[])
    with pytest.raises(az.ConfigurationError, match="requires"):
        retrieve_and_generate_filter(authz, principal=USER, metadata=SCHEMA_METADATA)
    with pytest.raises(az.ConfigurationError, match="not declared"):
        retrieve_and_generate_filter(authz, principal=USER, metadata=MetadataMapping(
            resource_type="Doc", attributes={**SCHEMA_MAPPING, "year": "year"}))


# -- the session refuses: the pre-filter lets nothing through ------------------------------------


def test_a_prefilter_compiled_over_a_failing_session_store_lets_nothing_through() -> None:
    store = FailingStore(MemorySessionStore())
    sink = az.MemorySink()
    authz = az.Authorizer.from_text(SESSION_RULE, audit=[sink], sessions=SessionConfig(store=store))
    with authz.acting_as(USER), authz.session("conversation-9"):
        store.failing["load"] = 1
        pre = compile_prefilter(authz, action="read")
    assert pre.always_denied
    assert [event.decision for event in sink.events] == ["deny"]  # the refusal, audited once


def test_a_prefilter_in_another_users_session_is_an_identity_error() -> None:
    authz = az.Authorizer.from_text(SESSION_RULE, audit=[])
    with authz.acting_as(USER), authz.session("conversation-10") as session:
        session.see("untrusted")
    with authz.acting_as(az.EntityUID("User", "mallory")), authz.session("conversation-10"), \
            pytest.raises(az.IdentityError):
        compile_prefilter(authz, action="read")
