"""KnowledgeBaseRetriever against a real bedrock-agent-runtime client with botocore's Stubber.

The Stubber checks each ``retrieve`` call against the expected parameters
after botocore validated them against the service model, so the request
shapes (filter union, numberOfResults range, nextToken) are the real ones.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, ParamValidationError
from botocore.stub import Stubber

import agentauthz as az
from agentauthz._audit import capture_events
from agentauthz.integrations.bedrock import (
    CHUNK_ID_KEY,
    SOURCE_URI_KEY,
    FetchLimits,
    KnowledgeBaseRetriever,
    MetadataField,
    MetadataMapping,
    and_all,
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
METADATA = MetadataMapping(attributes=ATTRIBUTES)


@pytest.fixture(scope="module")
def authz() -> az.Authorizer:
    return az.Authorizer.from_directory(POLICIES)


@pytest.fixture
def client() -> Any:
    return boto3.client("bedrock-agent-runtime", region_name="us-east-1",
                        aws_access_key_id="x", aws_secret_access_key="x")


@pytest.fixture
def stubber(client: Any) -> Iterator[Stubber]:
    with Stubber(client) as stub:
        yield stub
        stub.assert_no_pending_responses()


def hit(doc: str, department: str, classification: str, *, chunk: int = 0, tenant: str = "acme",
        owner: str = "grace", labels: tuple[str, ...] = (), metadata: dict[str, Any] | None = None,
        ) -> dict[str, Any]:
    """One retrievalResults item as the service returns it."""
    uri = f"s3://kb-docs/{doc}.md"
    return {
        "content": {"type": "TEXT", "text": f"{doc} chunk {chunk}"},
        "location": {"type": "S3", "s3Location": {"uri": uri}},
        "score": 0.5,
        "metadata": metadata if metadata is not None else {
            SOURCE_URI_KEY: uri, CHUNK_ID_KEY: f"{doc}-{chunk}", "tenant": tenant,
            "department": department, "classification": classification, "owner": owner,
            "labels": list(labels),
        },
    }


def request(n: int, *, token: str | None = None, filter: dict[str, Any] | None = None,
            query: str = "roadmap", **config: Any) -> dict[str, Any]:
    section: dict[str, Any] = {**config, "numberOfResults": n}
    if filter is not None:
        section["filter"] = filter
    params: dict[str, Any] = {
        "knowledgeBaseId": KB,
        "retrievalQuery": {"text": query},
        "retrievalConfiguration": {"vectorSearchConfiguration": section},
    }
    if token:
        params["nextToken"] = token
    return params


def retriever(authz: az.Authorizer, client: Any, **options: Any) -> KnowledgeBaseRetriever:
    options.setdefault("prefilter", False)
    return KnowledgeBaseRetriever(KB, authz, client=client, metadata=METADATA, **options)


def uris(results: list[dict[str, Any]]) -> list[str]:
    return [r["metadata"][CHUNK_ID_KEY] for r in results]


BOB = az.EntityUID("User", "bob")


def test_results_are_post_filtered(authz: az.Authorizer, client: Any, stubber: Stubber) -> None:
    page = [hit("budget", "finance", "internal"), hit("handbook", "support", "public"),
            hit("salaries", "hr", "confidential"), hit("playbook", "support", "internal"),
            hit("globex-faq", "support", "public", tenant="globex")]
    stubber.add_response("retrieve", {"retrievalResults": page}, request(6))
    kb = retriever(authz, client, k=6)
    with authz.acting_as(BOB):
        found = kb.retrieve("roadmap")
    assert uris(found.results) == ["handbook-0", "playbook-0"]
    assert (found.stats.fetched, found.stats.dropped, found.stats.rounds) == (5, 3, 1)
    assert found.stats.exhausted and found.filter is None


def test_next_token_paging_fills_k(authz: az.Authorizer, client: Any, stubber: Stubber) -> None:
    first = [hit("budget", "finance", "internal"), hit("handbook", "support", "public"),
             hit("salaries", "hr", "confidential")]
    second = [hit("q3", "finance", "internal"), hit("playbook", "support", "internal"),
              hit("faq", "support", "public"), hit("handbook", "support", "public", chunk=1)]
    stubber.add_response("retrieve", {"retrievalResults": first, "nextToken": "page-2"}, request(3))
    # one of three passed: the next page is sized for k at that rate, with 50% head room
    # (ceil(3 / (1/3) * 1.5) = 14 in all: 11 more)
    stubber.add_response("retrieve", {"retrievalResults": second, "nextToken": "page-3"},
                         request(11, token="page-2"))
    kb = retriever(authz, client, k=3)
    with authz.acting_as(BOB):
        found = kb.retrieve("roadmap")
    assert uris(found.results) == ["handbook-0", "playbook-0", "faq-0"]
    assert found.stats.rounds == 2 and found.stats.fetched == 7 and not found.stats.capped


def test_without_a_token_a_full_page_is_asked_again_larger(authz: az.Authorizer, client: Any,
                                                            stubber: Stubber) -> None:
    denied = [hit(f"fin-{n}", "finance", "internal") for n in range(2)]
    stubber.add_response("retrieve", {"retrievalResults": denied}, request(2))
    again = [*denied, *(hit(f"fin-{n}", "finance", "internal") for n in range(2, 10)),
             hit("handbook", "support", "public"), hit("faq", "support", "public")]
    stubber.add_response("retrieve", {"retrievalResults": again}, request(16))
    kb = retriever(authz, client, k=2)
    with authz.acting_as(BOB):
        found = kb.retrieve("roadmap")
    assert uris(found.results) == ["handbook-0", "faq-0"]
    assert found.stats.fetched == 12 and found.stats.rounds == 2 and found.stats.dropped == 10


def test_max_candidates_bounds_the_paging(authz: az.Authorizer, client: Any, stubber: Stubber) -> None:
    stubber.add_response("retrieve", {"retrievalResults": [hit("a", "hr", "internal"),
                                                           hit("b", "hr", "internal")],
                                      "nextToken": "t2"}, request(2))
    stubber.add_response("retrieve", {"retrievalResults": [hit(f"c{n}", "hr", "internal") for n in range(3)],
                                      "nextToken": "t3"}, request(3, token="t2"))
    kb = retriever(authz, client, k=2, limits=FetchLimits(max_candidates=5))
    with authz.acting_as(BOB):
        found = kb.retrieve("roadmap")
    assert found.results == [] and found.stats.fetched == 5 and found.stats.capped


def test_a_full_page_of_100_without_token_ends_the_search(authz: az.Authorizer, client: Any,
                                                          stubber: Stubber) -> None:
    page = [hit(f"hr-{n}", "hr", "internal") for n in range(100)]
    stubber.add_response("retrieve", {"retrievalResults": page}, request(100))
    kb = retriever(authz, client, k=100, limits=FetchLimits(max_candidates=500))
    with authz.acting_as(BOB):
        found = kb.retrieve("roadmap")
    assert found.results == [] and found.stats.rounds == 1 and found.stats.capped


def test_caller_filters_are_merged_with_and_all(authz: az.Authorizer, client: Any, stubber: Stubber) -> None:
    configured = {"equals": {"key": "tenant", "value": "acme"}}
    mine = {"in": {"key": "department", "value": ["support", "finance"]}}
    stubber.add_response(
        "retrieve", {"retrievalResults": [hit("handbook", "support", "public")]},
        request(4, filter={"andAll": [configured, mine]}, overrideSearchType="HYBRID"),
    )
    kb = retriever(authz, client, retrieval_configuration={
        "vectorSearchConfiguration": {"filter": configured, "overrideSearchType": "HYBRID",
                                      "numberOfResults": 50}})
    with authz.acting_as(BOB):
        found = kb.retrieve("roadmap", filter=mine)
    assert uris(found.results) == ["handbook-0"]
    assert found.filter == {"andAll": [configured, mine]}
    assert kb.retrieval_configuration["vectorSearchConfiguration"]["numberOfResults"] == 50  # untouched


def test_service_errors_propagate(authz: az.Authorizer, client: Any, stubber: Stubber) -> None:
    stubber.add_response("retrieve", {"retrievalResults": [hit("fin", "finance", "internal")] * 1,
                                      "nextToken": "t2"}, request(1))
    stubber.add_client_error("retrieve", service_error_code="ThrottlingException", http_status_code=429)
    kb = retriever(authz, client, k=1)
    with authz.acting_as(BOB), pytest.raises(ClientError):
        kb.retrieve("roadmap")


def test_a_malformed_response_fails_closed(authz: az.Authorizer) -> None:
    class Broken:
        def retrieve(self, **_: Any) -> dict[str, Any]:
            return {"unexpected": True}

    kb = KnowledgeBaseRetriever(KB, authz, client=Broken(), metadata=METADATA, prefilter=False)
    with authz.acting_as(BOB), pytest.raises(az.EngineError):
        kb.retrieve("roadmap")


def test_missing_metadata_is_dropped(authz: az.Authorizer, client: Any, stubber: Stubber) -> None:
    bare = hit("bare", "support", "public", metadata={SOURCE_URI_KEY: "s3://kb-docs/bare.md"})
    no_metadata = hit("none", "support", "public")
    del no_metadata["metadata"]
    wrong_type = hit("typed", "support", "public")
    wrong_type["metadata"]["tenant"] = 7
    page = [bare, no_metadata, wrong_type, hit("handbook", "support", "public")]
    stubber.add_response("retrieve", {"retrievalResults": page}, request(5))
    with authz.acting_as(BOB):
        found = retriever(authz, client, k=5).retrieve("roadmap")
    assert uris(found.results) == ["handbook-0"] and found.stats.unresolved == 3


def test_duplicate_chunks_are_returned_once(authz: az.Authorizer, client: Any, stubber: Stubber) -> None:
    page = [hit("handbook", "support", "public"), hit("handbook", "support", "public"),
            hit("handbook", "support", "public", chunk=1)]
    stubber.add_response("retrieve", {"retrievalResults": page}, request(4))
    with authz.acting_as(BOB):
        found = retriever(authz, client).retrieve("roadmap")
    assert uris(found.results) == ["handbook-0", "handbook-1"] and found.stats.duplicates == 1


def test_principal_argument_and_identity(authz: az.Authorizer, client: Any, stubber: Stubber) -> None:
    page = [hit("budget", "finance", "internal"), hit("playbook", "support", "internal")]
    stubber.add_response("retrieve", {"retrievalResults": page}, request(4))
    stubber.add_response("retrieve", {"retrievalResults": page}, request(4))
    kb = retriever(authz, client)
    assert uris(kb.retrieve("roadmap", principal=az.EntityUID("User", "carol")).results) == ["budget-0"]
    assert uris(kb.retrieve("roadmap", principal=BOB).results) == ["playbook-0"]
    with pytest.raises(az.IdentityError):
        kb.retrieve("roadmap")  # nobody bound: no call is made (no response is left to use)


def test_async_retrieve(authz: az.Authorizer, client: Any, stubber: Stubber) -> None:
    stubber.add_response("retrieve", {"retrievalResults": [hit("handbook", "support", "public"),
                                                           hit("budget", "finance", "internal")]},
                         request(4))

    async def run() -> list[dict[str, Any]]:
        with authz.acting_as(BOB):
            return (await retriever(authz, client).aretrieve("roadmap")).results

    assert uris(asyncio.run(run())) == ["handbook-0"]


def test_audit_summary(authz: az.Authorizer, client: Any, stubber: Stubber) -> None:
    stubber.add_response("retrieve", {"retrievalResults": [hit("handbook", "support", "public")]}, request(4))
    kb = retriever(authz, client)
    with capture_events() as events, authz.acting_as(BOB):
        kb.retrieve("roadmap")
    [summary] = [e for e in events if e.extra.get("event") == "retrieval"]
    assert summary.resource == f'Retriever::"bedrock-kb:{KB}"'
    assert summary.extra["retrieval"]["returned"] == 1 == kb.last_stats.returned  # type: ignore[union-attr]


def test_as_langchain(authz: az.Authorizer, client: Any, stubber: Stubber) -> None:
    stubber.add_response("retrieve", {"retrievalResults": [hit("handbook", "support", "public"),
                                                           hit("budget", "finance", "internal")]},
                         request(4))
    lc = retriever(authz, client).as_langchain()
    docs = lc.invoke("roadmap", config={"configurable": {"agentauthz_principal": BOB}})
    assert [d.id for d in docs] == ["handbook-0"]
    assert docs[0].page_content == "handbook chunk 0"
    assert docs[0].metadata["location"]["s3Location"]["uri"] == "s3://kb-docs/handbook.md"


def test_botocore_rejects_what_the_service_would(authz: az.Authorizer, client: Any) -> None:
    kb = retriever(authz, client)
    bad = kb.request("q", number_of_results=4, filter={"andAll": [{"equals": {"key": "a", "value": 1}}]})
    with pytest.raises(ParamValidationError):  # andAll needs two members: and_all never builds this
        client.retrieve(**bad)
    assert and_all({"andAll": [{"equals": {"key": "a", "value": 1}}]}) == {"equals": {"key": "a", "value": 1}}


def test_a_default_client_is_made_lazily(authz: az.Authorizer) -> None:
    kb = KnowledgeBaseRetriever(KB, authz, region_name="us-east-1", metadata=METADATA)
    assert kb.client.meta.service_model.service_name == "bedrock-agent-runtime"


def test_configuration_errors(authz: az.Authorizer) -> None:
    with pytest.raises(az.ConfigurationError):
        KnowledgeBaseRetriever("", authz)
    with pytest.raises(az.ConfigurationError):
        KnowledgeBaseRetriever(KB, authz, k=5, limits=FetchLimits(max_candidates=4))
    with pytest.raises(az.ConfigurationError):
        KnowledgeBaseRetriever(KB, authz, request_options={"nextToken": "x"})


# -- pre-filter ------------------------------------------------------------------------

CAROL = az.EntityUID("User", "carol")


def test_prefilter_is_sent_and_merged_with_the_callers_filter(authz: az.Authorizer, client: Any,
                                                              stubber: Stubber) -> None:
    kb = KnowledgeBaseRetriever(KB, authz, client=client, metadata=METADATA, k=2)
    with authz.acting_as(CAROL):
        compiled = kb.compile_prefilter().to_bedrock(kb.metadata_keys)
    assert compiled is not None
    # carol: public, finance internal/confidential, or her own documents; and, as the tenant-isolation
    # forbid must evaluate to false (policy_errors="deny"), documents of her tenant only
    readable, tenant = compiled["andAll"]
    assert {"equals": {"key": "classification", "value": "public"}} in readable["orAll"]
    assert {"equals": {"key": "owner", "value": "carol"}} in readable["orAll"]
    assert tenant == {"equals": {"key": "tenant", "value": "acme"}}
    mine = {"equals": {"key": "year", "value": 2024}}
    stubber.add_response(
        "retrieve",
        {"retrievalResults": [hit("budget", "finance", "internal"), hit("handbook", "support", "public")]},
        request(2, filter={"andAll": [mine, readable, tenant]}),
    )
    with authz.acting_as(CAROL):
        found = kb.retrieve("roadmap", filter=mine)
    assert uris(found.results) == ["budget-0", "handbook-0"]
    assert found.stats.prefilter == "applied" and found.stats.rounds == 1


def test_always_denied_makes_no_call(client: Any, stubber: Stubber) -> None:
    authz = az.Authorizer.from_text('permit(principal == User::"admin", action, resource);')
    kb = KnowledgeBaseRetriever(KB, authz, client=client,
                                metadata=MetadataMapping(attributes={"department": "department"}))
    with authz.acting_as(BOB):
        found = kb.retrieve("roadmap")  # the stubber has no response: a call would fail
    assert found.results == [] and found.stats.prefilter == "always_denied" and found.stats.rounds == 0


def test_always_allowed_sends_only_the_callers_filter(client: Any, stubber: Stubber) -> None:
    authz = az.Authorizer.from_text('permit(principal, action, resource);')
    mine = {"startsWith": {"key": "x-amz-bedrock-kb-source-uri", "value": "s3://kb-docs/"}}
    stubber.add_response("retrieve", {"retrievalResults": [hit("a", "hr", "internal")]},
                         request(4, filter=mine))
    kb = KnowledgeBaseRetriever(KB, authz, client=client,
                                metadata=MetadataMapping(attributes={"department": "department"}))
    with authz.acting_as(BOB):
        found = kb.retrieve("roadmap", filter=mine)
    assert uris(found.results) == ["a-0"] and found.stats.prefilter == "always_allowed"


def test_ancestors_become_parents_and_prefilter_keys(client: Any, stubber: Stubber) -> None:
    authz = az.Authorizer.from_text('permit(principal, action, resource) when { resource in Folder::"hr" };')
    page = [hit("a", "hr", "internal", metadata={SOURCE_URI_KEY: "s3://a", CHUNK_ID_KEY: "a",
                                                 "ancestors": ['Folder::"hr"', 'Folder::"root"']}),
            hit("b", "hr", "internal", metadata={SOURCE_URI_KEY: "s3://b", CHUNK_ID_KEY: "b",
                                                 "ancestors": ['Folder::"eng"']}),
            hit("c", "hr", "internal", metadata={SOURCE_URI_KEY: "s3://c", CHUNK_ID_KEY: "c"})]
    stubber.add_response("retrieve", {"retrievalResults": page},
                         request(4, filter={"listContains": {"key": "ancestors", "value": 'Folder::"hr"'}}))
    kb = KnowledgeBaseRetriever(KB, authz, client=client, metadata=MetadataMapping(ancestors_key="ancestors"))
    with authz.acting_as(BOB):
        found = kb.retrieve("roadmap")
    assert uris(found.results) == ["a"] and found.stats.unresolved == 1


# -- retrieve_and_generate ---------------------------------------------------------------


def test_retrieve_and_generate_filter_refuses_an_inexact_filter(authz: az.Authorizer) -> None:
    from agentauthz.integrations.bedrock import retrieve_and_generate_filter

    # the example store's tenant isolation and share links do not translate exactly
    with authz.acting_as(CAROL), pytest.raises(az.ConfigurationError, match="exactly"):
        retrieve_and_generate_filter(authz, metadata=METADATA)


def test_retrieve_and_generate_filter_with_accepted_risk_validates(authz: az.Authorizer, client: Any,
                                                                   stubber: Stubber) -> None:
    from agentauthz.integrations.bedrock import retrieve_and_generate_filter

    mine = {"equals": {"key": "year", "value": 2024}}
    generated = retrieve_and_generate_filter(authz, metadata=METADATA, filter=mine,
                                             principal=CAROL, allow_inexact=True)
    assert generated.exact is False and generated.filter is not None
    assert generated.filter["andAll"][0] == mine
    params = {
        "input": {"text": "What is our budget?"},
        "retrieveAndGenerateConfiguration": {
            "type": "KNOWLEDGE_BASE",
            "knowledgeBaseConfiguration": {
                "knowledgeBaseId": KB,
                "modelArn": "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-v2",
                "retrievalConfiguration": {"vectorSearchConfiguration": {"filter": generated.filter}},
            },
        },
    }
    stubber.add_response("retrieve_and_generate", {"output": {"text": "..."}, "sessionId": "s-1"}, params)
    client.retrieve_and_generate(**params)  # botocore validated the filter's shape


def test_retrieve_and_generate_filter_when_everything_or_nothing_is_allowed() -> None:
    from agentauthz.integrations.bedrock import retrieve_and_generate_filter

    everything = az.Authorizer.from_text('permit(principal, action, resource);')
    mine = {"equals": {"key": "lang", "value": "en"}}
    generated = retrieve_and_generate_filter(everything, principal=BOB, filter=mine)
    assert generated.exact and generated.filter == mine
    assert retrieve_and_generate_filter(everything, principal=BOB).filter is None
    nothing = az.Authorizer.from_text('permit(principal == User::"admin", action, resource);')
    with pytest.raises(az.AccessDenied):
        retrieve_and_generate_filter(nothing, principal=BOB)
    with pytest.raises(az.IdentityError):
        retrieve_and_generate_filter(nothing)


def test_retrieve_and_generate_filter_sends_an_exact_filter(client: Any, stubber: Stubber) -> None:
    """Policies that translate exactly give an exact filter the service accepts (Stubber validates)."""
    from agentauthz.integrations.bedrock import retrieve_and_generate_filter

    authz = az.Authorizer.from_text(
        'permit(principal, action, resource) when { resource.department == "hr" && resource.level <= 2 };\n'
        # The has guard lets documents without `archived` through (they would deny otherwise).
        'forbid(principal, action, resource) when { resource has archived && resource.archived == true };')
    generated = retrieve_and_generate_filter(
        authz, principal=BOB,
        metadata=MetadataMapping(attributes={"department": "dept", "level": "level", "archived": "archived"}))
    assert generated.exact and generated.prefilter.exact
    assert generated.filter == {"andAll": [
        {"equals": {"key": "dept", "value": "hr"}},
        {"lessThanOrEquals": {"key": "level", "value": 2}},
        {"notEquals": {"key": "archived", "value": True}},
    ]}
    params = {
        "input": {"text": "What is the HR policy?"},
        "retrieveAndGenerateConfiguration": {
            "type": "KNOWLEDGE_BASE",
            "knowledgeBaseConfiguration": {
                "knowledgeBaseId": KB,
                "modelArn": "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-v2",
                "retrievalConfiguration": {"vectorSearchConfiguration": {"filter": generated.filter}},
            },
        },
    }
    stubber.add_response("retrieve_and_generate", {"output": {"text": "..."}, "sessionId": "s-1"}, params)
    client.retrieve_and_generate(**params)


def test_retrieve_and_generate_filter_refuses_what_bedrock_cannot_say_exactly() -> None:
    from agentauthz.integrations.bedrock import retrieve_and_generate_filter

    cases: dict[str, tuple[str, str | None]] = {
        "has": ("resource has department", None),
        "like with a wildcard": ('resource.department like "h*"', None),
        "negated contains": ('!resource.labels.contains("x")', None),
        "a key missing or equal": ('!(resource has department) || resource.department == "hr"', None),
        "negated hierarchy": ('!(resource in Folder::"f")', "ancestors"),
    }
    for name, (condition, ancestors_key) in cases.items():
        authz = az.Authorizer.from_text(f"permit(principal, action, resource) when {{ {condition} }};")
        with pytest.raises(az.ConfigurationError, match="exactly"):
            retrieve_and_generate_filter(authz, principal=BOB, metadata=MetadataMapping(
                ancestors_key=ancestors_key, attributes={"department": "department", "labels": "labels"}))
            pytest.fail(name)


def test_retrieve_and_generate_filter_reads_hierarchy_from_the_ancestors_key_only() -> None:
    from agentauthz.integrations.bedrock import retrieve_and_generate_filter

    authz = az.Authorizer.from_text('permit(principal, action, resource) when { resource in Folder::"hr" };')
    generated = retrieve_and_generate_filter(authz, principal=BOB,
                                             metadata=MetadataMapping(ancestors_key="ancestors"))
    assert generated.exact
    assert generated.filter == {"listContains": {"key": "ancestors", "value": 'Folder::"hr"'}}
    with pytest.raises(az.AccessDenied):  # without ancestors a resource descends from nothing
        retrieve_and_generate_filter(authz, principal=BOB)
