"""AuthorizedRetriever over a real InMemoryVectorStore and the example policy store.

The corpus is made of Document chunks whose metadata carries the resource's
Cedar attributes (tenant, department, classification, owner, labels); a
keyword embedding makes the ranking deterministic, so the expected answer of
each test is "the best k documents this user may read", computed by deciding
every document of the full ranking one by one.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding, Embeddings
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnableLambda
from langchain_core.vectorstores import InMemoryVectorStore
from pydantic import Field

import agentauthz as az
from agentauthz._audit import capture_events
from agentauthz.integrations.langchain import AuthorizedRetriever

POLICIES = Path(__file__).resolve().parents[2] / "policies"
VOCABULARY = ("roadmap", "budget", "salary", "refund", "incident", "handbook", "filler")


class KeywordEmbedding(Embeddings):
    """Counts of a few keywords plus a bias: similarity grows with keyword density."""

    def _embed(self, text: str) -> list[float]:
        words = re.findall(r"[a-z]+", text.lower())
        return [float(words.count(word)) for word in VOCABULARY] + [1.0]

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self._embed(text) for text in texts]

    def embed_query(self, text: str) -> list[float]:
        return self._embed(text)


def text(topic: str, rank: int) -> str:
    """Higher rank, more of the topic word: ranks are distinct, so there are no ties."""
    return " ".join([topic] * rank + ["filler"] * (200 - rank))


def metadata(doc_id: str, department: str, classification: str, *, tenant: str = "acme",
             owner: str = "grace", labels: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"doc_id": doc_id, "tenant": tenant, "department": department,
            "classification": classification, "owner": owner, "labels": list(labels)}


def resource(doc: Document) -> az.Entity:
    """The Cedar resource of a chunk, built from its metadata (KeyError if missing)."""
    m = doc.metadata
    return az.Entity(
        uid=az.EntityUID("Document", m["doc_id"]),
        attrs={
            "tenant": az.EntityUID("Tenant", m["tenant"]),
            "department": m["department"],
            "classification": m["classification"],
            "owner": az.EntityUID("User", m["owner"]),
            "labels": list(m["labels"]),
        },
    )


def user(name: str) -> az.EntityUID:
    return az.EntityUID("User", name)


@pytest.fixture(scope="module")
def authz() -> az.Authorizer:
    return az.Authorizer.from_directory(POLICIES)


def add(store: InMemoryVectorStore, rows: list[tuple[str, dict[str, Any]]]) -> None:
    store.add_texts([row[0] for row in rows], metadatas=[row[1] for row in rows],
                    ids=[row[1]["doc_id"] for row in rows])


@pytest.fixture
def mixed_store() -> InMemoryVectorStore:
    """60 acme 'roadmap' documents over departments and classifications, 10 of globex."""
    store = InMemoryVectorStore(KeywordEmbedding())
    departments = ("engineering", "support", "finance", "hr")
    classes = ("public", "internal", "confidential")
    rows = []
    for n in range(60):
        department = departments[(n // 3) % 4]
        classification = classes[n % 3]
        rows.append((text("roadmap", 150 - n),
                     metadata(f"rag-{n:03d}", department, classification)))
    for n in range(10):
        rows.append((text("roadmap", 190 - n),  # the best matches belong to the other tenant
                     metadata(f"globex-rag-{n}", "engineering", "public", tenant="globex", owner="erin")))
    add(store, rows)
    return store


def expected(authz: az.Authorizer, store: InMemoryVectorStore, query: str, who: str, k: int) -> list[str]:
    """The best k documents ``who`` may read: every candidate decided on its own."""
    ranked = store.similarity_search(query, k=len(store.store))
    kept = [doc.metadata["doc_id"] for doc in ranked
            if authz.authorize(principal=user(who), action="read", resource=resource(doc)).allowed]
    return kept[:k]


def ids(docs: list[Document]) -> list[str]:
    return [doc.metadata["doc_id"] for doc in docs]


class CountingStore(InMemoryVectorStore):
    """Records the k of every similarity search."""

    def __init__(self, embedding: Embeddings) -> None:
        super().__init__(embedding)
        self.asked: list[int] = []

    def similarity_search(self, query: str, k: int = 4, **kwargs: Any) -> list[Document]:
        self.asked.append(k)
        return super().similarity_search(query, k, **kwargs)

    async def asimilarity_search(self, query: str, k: int = 4, **kwargs: Any) -> list[Document]:
        self.asked.append(k)
        return await super().asimilarity_search(query, k, **kwargs)


class ListRetriever(BaseRetriever):
    """A retriever that returns a fixed list (or raises)."""

    documents: list[Document] = Field(default_factory=list)
    error: str | None = None

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        if self.error:
            raise RuntimeError(self.error)
        return list(self.documents)


def retriever_over(source: Any, authz: az.Authorizer, **options: Any) -> AuthorizedRetriever:
    return AuthorizedRetriever(retriever=source, authz=authz, action="read", resource=resource, **options)


# -- who sees what -----------------------------------------------------------------


def test_two_users_get_different_correct_context(
    authz: az.Authorizer, mixed_store: InMemoryVectorStore
) -> None:
    retriever = retriever_over(mixed_store, authz, k=4, max_candidates=70)
    seen = {}
    for who in ("bob", "alice", "carol"):
        with authz.acting_as(user(who)):
            docs = retriever.invoke("roadmap")
        seen[who] = ids(docs)
        assert seen[who] == expected(authz, mixed_store, "roadmap", who, 4)
        assert len(docs) == 4
        assert not any(doc_id.startswith("globex") for doc_id in seen[who])
    assert seen["bob"] != seen["alice"] != seen["carol"]
    # bob (support, clearance 1) gets public documents and support's internal ones only
    bob_docs = {doc.metadata["doc_id"]: doc.metadata for doc in mixed_store.get_by_ids(seen["bob"])}
    assert all(m["classification"] == "public" or
               (m["classification"] == "internal" and m["department"] == "support")
               for m in bob_docs.values())


def test_principal_from_runnable_config(authz: az.Authorizer, mixed_store: InMemoryVectorStore) -> None:
    retriever = retriever_over(mixed_store, authz, k=3)
    config = {"configurable": {"agentauthz_principal": user("bob")}}
    assert ids(retriever.invoke("roadmap", config=config)) == expected(
        authz, mixed_store, "roadmap", "bob", 3)
    # an Entity works too, and so does a custom key
    bob = next(e for e in authz.engine.store.entities if e.uid == user("bob"))  # type: ignore[attr-defined]
    custom = retriever_over(mixed_store, authz, k=3, principal_key="end_user")
    assert ids(custom.invoke("roadmap", config={"configurable": {"end_user": bob}})) == ids(
        retriever.invoke("roadmap", config=config))


def test_principal_in_a_chain(authz: az.Authorizer, mixed_store: InMemoryVectorStore) -> None:
    retriever = retriever_over(mixed_store, authz, k=2)
    chain = retriever | RunnableLambda(lambda docs: [d.metadata["doc_id"] for d in docs])
    config = {"configurable": {"agentauthz_principal": user("carol")}}
    assert chain.invoke("roadmap", config=config) == expected(authz, mixed_store, "roadmap", "carol", 2)


def test_no_principal_raises_before_any_search(authz: az.Authorizer) -> None:
    store = CountingStore(KeywordEmbedding())
    store.add_texts(["roadmap"], metadatas=[metadata("rag-x", "support", "public")])
    with pytest.raises(az.IdentityError):
        retriever_over(store, authz).invoke("roadmap")
    assert store.asked == []


def test_conflicting_principals_are_refused(authz: az.Authorizer, mixed_store: InMemoryVectorStore) -> None:
    retriever = retriever_over(mixed_store, authz)
    with authz.acting_as(user("bob")), pytest.raises(az.IdentityError):
        retriever.invoke("roadmap", config={"configurable": {"agentauthz_principal": user("alice")}})
    with pytest.raises(az.IdentityError):
        retriever.invoke("roadmap", config={"configurable": {"agentauthz_principal": "alice"}})


# -- over-fetch ----------------------------------------------------------------------


def test_k_is_filled_by_over_fetch_when_early_results_are_denied(authz: az.Authorizer) -> None:
    store = CountingStore(KeywordEmbedding())
    rows = [(text("budget", 190 - n), metadata(f"rag-fin-{n}", "finance", "internal")) for n in range(30)]
    rows += [(text("budget", 150 - n), metadata(f"rag-pub-{n}", "support", "public")) for n in range(10)]
    add(store, rows)
    retriever = retriever_over(store, authz, k=4, max_candidates=100)
    with authz.acting_as(user("bob")):
        found = retriever.retrieve_with_stats("budget")
    assert ids(found.documents) == [f"rag-pub-{n}" for n in range(4)]
    stats = found.stats
    assert (stats.requested, stats.returned) == (4, 4)
    assert stats.rounds > 1 and stats.fetched >= 34
    assert stats.dropped == 30 and stats.fetched <= 100
    assert store.asked[0] == 4 and store.asked == sorted(store.asked)  # geometric growth
    assert retriever.last_stats == stats


def test_vector_store_retriever_k_is_raised_on_a_copy(
    authz: az.Authorizer, mixed_store: InMemoryVectorStore
) -> None:
    base = mixed_store.as_retriever(search_kwargs={"k": 2})
    retriever = retriever_over(base, authz, k=5, max_candidates=70)
    with authz.acting_as(user("bob")):
        docs = retriever.invoke("roadmap")
    assert ids(docs) == expected(authz, mixed_store, "roadmap", "bob", 5)
    assert base.search_kwargs == {"k": 2}  # the caller's retriever is untouched
    assert retriever.last_stats is not None and retriever.last_stats.rounds > 1


def test_caller_filter_of_a_vector_store_retriever_is_kept(authz: az.Authorizer,
                                                           mixed_store: InMemoryVectorStore) -> None:
    only_finance: Callable[[Document], bool] = lambda doc: doc.metadata["department"] == "finance"  # noqa: E731
    base = mixed_store.as_retriever(search_kwargs={"k": 3, "filter": only_finance})
    with authz.acting_as(user("carol")):
        docs = retriever_over(base, authz, k=3).invoke("roadmap")
    assert docs and all(doc.metadata["department"] == "finance" for doc in docs)


def test_mmr_retriever_is_over_fetched(authz: az.Authorizer, mixed_store: InMemoryVectorStore) -> None:
    base = mixed_store.as_retriever(search_type="mmr", search_kwargs={"k": 2, "fetch_k": 5})
    with authz.acting_as(user("bob")):
        docs = retriever_over(base, authz, k=4, max_candidates=70).invoke("roadmap")
    allowed = set(expected(authz, mixed_store, "roadmap", "bob", 100))
    assert len(docs) == 4 and set(ids(docs)) <= allowed
    assert base.search_kwargs == {"k": 2, "fetch_k": 5}


def test_max_candidates_is_respected(authz: az.Authorizer) -> None:
    store = CountingStore(KeywordEmbedding())
    rows = [(text("salary", 190 - n), metadata(f"rag-hr-{n}", "hr", "confidential")) for n in range(80)]
    rows += [(text("salary", 100 - n), metadata(f"rag-pub-{n}", "support", "public")) for n in range(5)]
    add(store, rows)
    retriever = retriever_over(store, authz, k=4, max_candidates=30)
    with authz.acting_as(user("bob")):
        found = retriever.retrieve_with_stats("salary")
    assert found.documents == []
    assert max(store.asked) <= 30
    assert found.stats.fetched == 30 and found.stats.capped and not found.stats.exhausted
    assert found.stats.dropped == 30 and found.stats.returned == 0


def test_max_rounds_is_respected(authz: az.Authorizer) -> None:
    store = CountingStore(KeywordEmbedding())
    add(store, [(text("salary", 190 - n), metadata(f"rag-hr-{n}", "hr", "confidential")) for n in range(80)])
    with authz.acting_as(user("bob")):
        retriever = retriever_over(store, authz, k=1, max_candidates=80, max_rounds=2)
        found = retriever.retrieve_with_stats("salary")
    assert len(store.asked) == 2 and found.stats.rounds == 2 and found.stats.capped


def test_a_small_corpus_is_exhausted(authz: az.Authorizer) -> None:
    store = CountingStore(KeywordEmbedding())
    add(store, [(text("refund", 100 - n), metadata(f"rag-{n}", "support", "public")) for n in range(3)])
    with authz.acting_as(user("bob")):
        found = retriever_over(store, authz, k=5).retrieve_with_stats("refund")
    assert len(found.documents) == 3 and found.stats.exhausted and found.stats.rounds == 1


def test_a_generic_retriever_is_filtered_as_returned(authz: az.Authorizer) -> None:
    docs = [Document(page_content="x", metadata=metadata(f"rag-{n}", "finance" if n % 2 else "support",
                                                          "internal"), id=f"c{n}") for n in range(10)]
    retriever = retriever_over(ListRetriever(documents=docs), authz, k=3, max_candidates=6)
    with authz.acting_as(user("bob")):
        found = retriever.retrieve_with_stats("anything")
    assert ids(found.documents) == ["rag-0", "rag-2", "rag-4"]
    assert found.stats.rounds == 1 and found.stats.fetched == 6  # never more than max_candidates


# -- call-time k and search arguments ----------------------------------------------------


class KwargsRetriever(ListRetriever):
    """A generic retriever that takes search arguments and records them."""

    calls: list[dict[str, Any]] = Field(default_factory=list)

    def _get_relevant_documents(  # type: ignore[override]
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        self.calls.append(kwargs)
        return list(self.documents)


def test_call_time_k_is_honoured_on_every_kind_of_source_sync_and_async(
    authz: az.Authorizer, mixed_store: InMemoryVectorStore
) -> None:
    best = expected(authz, mixed_store, "roadmap", "bob", 7)
    sources = {"store": mixed_store, "store retriever": mixed_store.as_retriever(search_kwargs={"k": 2})}
    for name, source in sources.items():
        retriever = retriever_over(source, authz, k=3, max_candidates=70)
        with authz.acting_as(user("bob")):
            assert ids(retriever.invoke("roadmap", k=1)) == best[:1], name
            assert ids(retriever.invoke("roadmap", k=7)) == best, name
            assert ids(asyncio.run(retriever.ainvoke("roadmap", k=2))) == best[:2], name
            assert ids(retriever.retrieve_with_stats("roadmap", k=5).documents) == best[:5], name
            assert ids(asyncio.run(retriever.aretrieve_with_stats("roadmap", k=4)).documents) == best[:4]
            assert ids(retriever.invoke("roadmap")) == best[:3], name  # the retriever's own k otherwise


def test_call_time_k_is_capped_by_max_candidates(authz: az.Authorizer) -> None:
    store = CountingStore(KeywordEmbedding())
    add(store, [(text("refund", 190 - n), metadata(f"rag-{n}", "support", "public")) for n in range(40)])
    retriever = retriever_over(store, authz, k=3, max_candidates=10)
    with authz.acting_as(user("bob")):
        found = retriever.retrieve_with_stats("refund", k=1000)
    assert len(found.documents) == 10 and found.stats.requested == 10
    assert max(store.asked) <= 10 and found.stats.fetched <= 10


@pytest.mark.parametrize("k", [0, -1, "3", 2.5, True, None])
def test_call_time_k_must_be_a_positive_integer_and_nothing_is_searched_otherwise(
    authz: az.Authorizer, k: object
) -> None:
    store = CountingStore(KeywordEmbedding())
    add(store, [(text("refund", 100), metadata("rag-1", "support", "public"))])
    with authz.acting_as(user("bob")), pytest.raises(az.ConfigurationError, match="k must be"):
        retriever_over(store, authz).invoke("refund", k=k)
    assert store.asked == []


@pytest.mark.parametrize("setting", ["action", "resource", "context", "max_candidates", "prefilter",
                                     "principal_key"])
def test_call_time_arguments_cannot_change_how_documents_are_decided(
    authz: az.Authorizer, mixed_store: InMemoryVectorStore, setting: str
) -> None:
    with authz.acting_as(user("bob")), pytest.raises(az.ConfigurationError, match="not a search argument"):
        retriever_over(mixed_store, authz).invoke("roadmap", **{setting: None})


def test_call_time_search_arguments_reach_the_search(
    authz: az.Authorizer, mixed_store: InMemoryVectorStore
) -> None:
    only_support: Callable[[Document], bool] = lambda doc: doc.metadata["department"] == "support"  # noqa: E731
    best = [doc_id for doc_id in expected(authz, mixed_store, "roadmap", "bob", 70)
            if mixed_store.get_by_ids([doc_id])[0].metadata["department"] == "support"]
    for source in (mixed_store, mixed_store.as_retriever()):
        retriever = retriever_over(source, authz, k=3, max_candidates=70)
        with authz.acting_as(user("bob")):
            assert ids(retriever.invoke("roadmap", filter=only_support)) == best[:3]
    docs = [Document(page_content="x", metadata=metadata("rag-1", "support", "public"), id="c1")]
    generic = KwargsRetriever(documents=docs)
    with authz.acting_as(user("bob")):
        found = retriever_over(generic, authz, k=3).invoke("q", k=1, filter="support", score_threshold=0.5)
    assert ids(found) == ["rag-1"]
    assert generic.calls == [{"filter": "support", "score_threshold": 0.5}]  # k is ours: never passed on


def test_a_call_time_filter_is_and_ed_with_the_prefilter_never_replacing_it(
    authz: az.Authorizer, mixed_store: InMemoryVectorStore
) -> None:
    everything: Callable[[Document], bool] = lambda doc: True  # noqa: E731
    only_hr: Callable[[Document], bool] = lambda doc: doc.metadata["department"] == "hr"  # noqa: E731
    retriever = retriever_over(mixed_store, authz, k=5, max_candidates=70, prefilter=True,
                               resource_type="Document")
    with authz.acting_as(user("dave")):
        alone = retriever.retrieve_with_stats("roadmap")
        found = retriever.retrieve_with_stats("roadmap", filter=everything)
        hr = retriever.invoke("roadmap", filter=only_hr)
    assert ids(found.documents) == ids(alone.documents) == expected(authz, mixed_store, "roadmap", "dave", 5)
    assert found.stats == alone.stats and found.stats.prefilter == "applied"  # the pre-filter still applied
    assert hr and all(doc.metadata["department"] == "hr" for doc in hr)
    assert ids(hr) == [d for d in expected(authz, mixed_store, "roadmap", "dave", 70)
                       if mixed_store.get_by_ids([d])[0].metadata["department"] == "hr"][:5]


@settings(max_examples=40, deadline=None)
@given(k=st.integers(1, 80), who=st.sampled_from(("alice", "bob", "carol", "dave", "erin", "nobody")),
       as_retriever=st.booleans())
def test_any_call_time_k_returns_the_best_k_documents_the_user_may_read(
    k: int, who: str, as_retriever: bool
) -> None:
    """The class of "invoke(q, k=1) returned 3": whatever k a call asks for, it gets the best
    min(k, max_candidates) permitted documents among the candidates, never more, never others."""
    authz, store = CALL_TIME_K_CASE
    source = store.as_retriever() if as_retriever else store
    retriever = retriever_over(source, authz, k=4, max_candidates=50)
    with authz.acting_as(user(who)):
        docs = retriever.invoke("roadmap", k=k)
    ranked = store.similarity_search("roadmap", k=50)
    permitted = [doc.metadata["doc_id"] for doc in ranked
                 if authz.authorize(principal=user(who), action="read", resource=resource(doc)).allowed]
    assert ids(docs) == permitted[:min(k, 50)]


def _call_time_k_case() -> tuple[az.Authorizer, InMemoryVectorStore]:
    store = InMemoryVectorStore(KeywordEmbedding())
    departments, classes = ("engineering", "support", "finance", "hr"), ("public", "internal", "confidential")
    add(store, [(text("roadmap", 150 - n), metadata(f"rag-{n:03d}", departments[(n // 3) % 4], classes[n % 3],
                                                      tenant="globex" if n % 7 == 0 else "acme"))
                for n in range(70)])
    return az.Authorizer.from_directory(POLICIES), store


CALL_TIME_K_CASE = _call_time_k_case()


# -- fail closed ------------------------------------------------------------------------


def test_retriever_errors_propagate(authz: az.Authorizer) -> None:
    failing = retriever_over(ListRetriever(error="index offline"), authz)
    with authz.acting_as(user("bob")), pytest.raises(RuntimeError, match="index offline"):
        failing.invoke("anything")


def test_an_error_in_a_later_round_returns_nothing(authz: az.Authorizer) -> None:
    class FlakyStore(CountingStore):
        def similarity_search(self, query: str, k: int = 4, **kwargs: Any) -> list[Document]:
            if self.asked:
                raise ConnectionError("store went away")
            return super().similarity_search(query, k, **kwargs)

    store = FlakyStore(KeywordEmbedding())
    add(store, [(text("refund", 100 - n), metadata(f"rag-{n}", "support" if n == 0 else "hr", "internal"))
                for n in range(20)])
    with authz.acting_as(user("bob")), pytest.raises(ConnectionError):
        retriever_over(store, authz, k=4).invoke("refund")


def test_missing_metadata_is_dropped(authz: az.Authorizer) -> None:
    store = InMemoryVectorStore(KeywordEmbedding())
    add(store, [(text("handbook", 100), metadata("rag-ok", "support", "public"))])
    store.add_texts([text("handbook", 150), text("handbook", 140)],
                    metadatas=[{"doc_id": "rag-bare"}, {}], ids=["bare", "empty"])
    with authz.acting_as(user("bob")):
        found = retriever_over(store, authz, k=3).retrieve_with_stats("handbook")
    assert ids(found.documents) == ["rag-ok"]
    assert found.stats.unresolved == 2 and found.stats.dropped == 2


def test_duplicate_chunk_ids_are_returned_once(authz: az.Authorizer) -> None:
    allowed = Document(page_content="a", metadata=metadata("rag-1", "support", "public"), id="chunk-1")
    second_chunk = Document(page_content="b", metadata=metadata("rag-1", "support", "public"), id="chunk-2")
    denied = Document(page_content="c", metadata=metadata("rag-2", "hr", "internal"), id="chunk-3")
    # a later duplicate of a denied chunk id with forged metadata must not get through
    forged = Document(page_content="c", metadata=metadata("rag-2", "support", "public"), id="chunk-3")
    source = ListRetriever(documents=[allowed, allowed, second_chunk, denied, forged, allowed])
    with authz.acting_as(user("bob")):
        found = retriever_over(source, authz, k=5).retrieve_with_stats("q")
    assert [doc.id for doc in found.documents] == ["chunk-1", "chunk-2"]
    assert found.stats.duplicates == 3 and found.stats.fetched == 3


def test_one_resource_with_conflicting_metadata_is_dropped(authz: az.Authorizer) -> None:
    honest = Document(page_content="a", metadata=metadata("rag-9", "hr", "internal"), id="c1")
    spoofed = Document(page_content="b", metadata=metadata("rag-9", "support", "public"), id="c2")
    with authz.acting_as(user("bob")):
        found = retriever_over(ListRetriever(documents=[honest, spoofed]), authz).retrieve_with_stats("q")
    assert found.documents == [] and found.stats.unresolved == 2


def test_empty_entitlements_return_nothing(authz: az.Authorizer, mixed_store: InMemoryVectorStore) -> None:
    retriever = retriever_over(mixed_store, authz, k=4, max_candidates=70)
    with authz.acting_as(user("frank")):  # globex support agent: globex docs are engineering/public
        docs = retriever.invoke("roadmap")
    assert ids(docs) == expected(authz, mixed_store, "roadmap", "frank", 4)
    with authz.acting_as(az.EntityUID("User", "nobody")):  # unknown user: no roles, no tenant
        found = retriever.retrieve_with_stats("roadmap")
    assert found.documents == [] and found.stats.fetched == 70 and found.stats.returned == 0


def test_shrinkage_goes_to_the_audit(authz: az.Authorizer, mixed_store: InMemoryVectorStore) -> None:
    retriever = retriever_over(mixed_store, authz, k=4, max_candidates=70)
    with capture_events() as events, authz.acting_as(user("bob"), correlation_id="conv-1"):
        retriever.invoke("roadmap")
    summaries = [e for e in events if e.extra.get("event") == "retrieval"]
    assert len(summaries) == 1
    summary = summaries[0]
    assert summary.principal == 'User::"bob"' and summary.correlation_id == "conv-1"
    assert summary.resource == 'Retriever::"AuthorizedRetriever"'
    assert summary.extra["retrieval"] == retriever.last_stats.as_dict()  # type: ignore[union-attr]
    per_item = [e for e in events if e.extra.get("event") != "retrieval"]
    assert len(per_item) == summary.extra["retrieval"]["fetched"]
    assert '"retrieval"' in summary.to_json()


# -- async ------------------------------------------------------------------------------


def test_async_path_matches_the_sync_one(authz: az.Authorizer, mixed_store: InMemoryVectorStore) -> None:
    retriever = retriever_over(mixed_store, authz, k=4, max_candidates=70)
    config = {"configurable": {"agentauthz_principal": user("alice")}}

    async def both() -> tuple[list[Document], list[Document]]:
        via_config = await retriever.ainvoke("roadmap", config=config)
        with authz.acting_as(user("bob")):
            found = await retriever.aretrieve_with_stats("roadmap")
        return via_config, found.documents

    alice_docs, bob_docs = asyncio.run(both())
    assert ids(alice_docs) == expected(authz, mixed_store, "roadmap", "alice", 4)
    assert ids(bob_docs) == expected(authz, mixed_store, "roadmap", "bob", 4)


def test_async_errors_propagate(authz: az.Authorizer) -> None:
    failing = retriever_over(ListRetriever(error="boom"), authz)

    async def run() -> None:
        with authz.acting_as(user("bob")):
            await failing.ainvoke("q")

    with pytest.raises(RuntimeError, match="boom"):
        asyncio.run(run())


def test_concurrent_users_do_not_mix(authz: az.Authorizer, mixed_store: InMemoryVectorStore) -> None:
    retriever = retriever_over(mixed_store, authz, k=4, max_candidates=70)

    async def one(who: str) -> list[str]:
        config = {"configurable": {"agentauthz_principal": user(who)}}
        return ids(await retriever.ainvoke("roadmap", config=config))

    async def many() -> list[list[str]]:
        return list(await asyncio.gather(*(one(w) for w in ["bob", "alice", "carol"] * 3)))

    results = asyncio.run(many())
    for who, got in zip(["bob", "alice", "carol"] * 3, results, strict=True):
        assert got == expected(authz, mixed_store, "roadmap", who, 4)


# -- configuration ----------------------------------------------------------------------


def test_bad_configuration_is_refused(authz: az.Authorizer) -> None:
    store = InMemoryVectorStore(DeterministicFakeEmbedding(size=4))
    with pytest.raises(az.ConfigurationError):
        retriever_over(store, authz, k=0)
    with pytest.raises(az.ConfigurationError):
        retriever_over(store, authz, k=10, max_candidates=5)


# -- pre-filter -------------------------------------------------------------------------


USERS = ("alice", "bob", "carol", "dave", "grace", "erin", "frank", "nobody")


@pytest.mark.parametrize("who", USERS)
def test_prefilter_never_changes_the_answer(authz: az.Authorizer, mixed_store: InMemoryVectorStore,
                                            who: str) -> None:
    """Soundness: the pre-filter only saves work; the k documents are the same."""
    plain = retriever_over(mixed_store, authz, k=6, max_candidates=70)
    filtered = retriever_over(mixed_store, authz, k=6, max_candidates=70, prefilter=True,
                              resource_type="Document")
    with authz.acting_as(user(who)):
        without = plain.retrieve_with_stats("roadmap")
        with_prefilter = filtered.retrieve_with_stats("roadmap")
    assert ids(with_prefilter.documents) == ids(without.documents) == expected(
        authz, mixed_store, "roadmap", who, 6)
    assert with_prefilter.stats.fetched <= without.stats.fetched
    assert with_prefilter.stats.prefilter in ("applied", "always_allowed")


def test_prefilter_skips_denied_documents_in_the_store(authz: az.Authorizer) -> None:
    store = CountingStore(KeywordEmbedding())
    rows = [(text("budget", 190 - n), metadata(f"rag-c-{n}", "support", "confidential")) for n in range(40)]
    rows += [(text("budget", 150 - n), metadata(f"rag-pub-{n}", "support", "public")) for n in range(10)]
    add(store, rows)
    retriever = retriever_over(store, authz, k=4, prefilter=True, resource_type="Document")
    with authz.acting_as(user("bob")):
        found = retriever.retrieve_with_stats("budget")
    assert ids(found.documents) == [f"rag-pub-{n}" for n in range(4)]
    assert (found.stats.rounds, found.stats.fetched, found.stats.dropped) == (1, 4, 0)
    assert found.stats.prefilter == "applied" and store.asked == [4]


def test_prefilter_keeps_the_callers_filter(authz: az.Authorizer, mixed_store: InMemoryVectorStore) -> None:
    only_hr: Callable[[Document], bool] = lambda doc: doc.metadata["department"] == "hr"  # noqa: E731
    base = mixed_store.as_retriever(search_kwargs={"k": 3, "filter": only_hr})
    retriever = retriever_over(base, authz, k=3, prefilter=True, resource_type="Document")
    with authz.acting_as(user("dave")):
        docs = retriever.invoke("roadmap")
    assert docs and all(doc.metadata["department"] == "hr" for doc in docs)
    assert all(doc.metadata["classification"] != "confidential" for doc in docs)  # dave: clearance 2
    assert base.search_kwargs["k"] == 3


def test_prefilter_with_renamed_metadata_keys(authz: az.Authorizer) -> None:
    store = InMemoryVectorStore(KeywordEmbedding())
    rows = [(text("budget", 190 - n), {"doc_id": f"d{n}", "tenant": "acme", "dept": "finance",
                                        "level": "confidential" if n % 2 else "internal",
                                        "owner": "grace", "labels": []}) for n in range(20)]
    add(store, rows)

    def renamed(doc: Document) -> az.Entity:
        m = doc.metadata
        return az.Entity(uid=az.EntityUID("Document", m["doc_id"]), attrs={
            "tenant": az.EntityUID("Tenant", m["tenant"]), "department": m["dept"],
            "classification": m["level"], "owner": az.EntityUID("User", m["owner"]), "labels": []})

    retriever = AuthorizedRetriever(retriever=store, authz=authz, resource=renamed, k=3, prefilter=True,
                                    resource_type="Document",
                                    metadata_keys={"department": "dept", "classification": "level"})
    with authz.acting_as(user("carol")):
        found = retriever.retrieve_with_stats("budget")
    assert ids(found.documents) == ["d0", "d1", "d2"]
    with authz.acting_as(user("bob")):  # bob: no finance internal, no confidential
        found = retriever.retrieve_with_stats("budget")
    assert found.documents == [] and found.stats.prefilter == "applied"


def test_always_denied_makes_no_search() -> None:
    authz = az.Authorizer.from_text(
        'permit(principal == User::"admin", action == Action::"read", resource);')
    store = CountingStore(KeywordEmbedding())
    store.add_texts(["budget"], metadatas=[{"doc_id": "d1"}])
    retriever = AuthorizedRetriever(retriever=store, authz=authz, prefilter=True,
                                    resource=lambda doc: az.EntityUID("Doc", doc.metadata["doc_id"]))
    with capture_events() as events, authz.acting_as(user("bob")):
        found = retriever.retrieve_with_stats("budget")
    assert found.documents == [] and store.asked == []
    assert found.stats.prefilter == "always_denied" and found.stats.rounds == 0
    assert [e.decision for e in events] == ["deny"]  # the summary event only
    with authz.acting_as(user("admin")):
        found = retriever.retrieve_with_stats("budget")
    assert len(found.documents) == 1 and found.stats.prefilter == "always_allowed"


def test_prefilter_kwargs_hook_for_other_stores(
    authz: az.Authorizer, mixed_store: InMemoryVectorStore
) -> None:
    seen: list[Any] = []

    def as_kwargs(prefilter: Any) -> dict[str, Any]:
        seen.append(prefilter.to_mongo())
        return {"filter": prefilter.to_document_filter()}

    retriever = retriever_over(mixed_store, authz, k=3, prefilter=True, resource_type="Document",
                               prefilter_kwargs=as_kwargs)
    with authz.acting_as(user("carol")):
        found = retriever.retrieve_with_stats("roadmap")
    assert ids(found.documents) == expected(authz, mixed_store, "roadmap", "carol", 3)
    # What carol may read, and (the tenant-isolation forbid must evaluate to false) her tenant only.
    readable, tenant = seen[0]["$and"]
    assert "$or" in readable and tenant == {"tenant": {"$eq": "acme"}}
    assert found.stats.prefilter == "applied"


def test_prefilter_on_a_generic_retriever_is_unsupported(authz: az.Authorizer) -> None:
    docs = [Document(page_content="x", metadata=metadata("rag-1", "support", "public"), id="c1")]
    retriever = retriever_over(ListRetriever(documents=docs), authz, prefilter=True, resource_type="Document")
    with authz.acting_as(user("carol")):
        found = retriever.retrieve_with_stats("q")
    assert ids(found.documents) == ["rag-1"] and found.stats.prefilter == "unsupported"


def test_async_prefilter(authz: az.Authorizer, mixed_store: InMemoryVectorStore) -> None:
    retriever = retriever_over(mixed_store, authz, k=4, prefilter=True, resource_type="Document")

    async def run() -> list[Document]:
        config = {"configurable": {"agentauthz_principal": user("carol")}}
        return await retriever.ainvoke("roadmap", config=config)

    assert ids(asyncio.run(run())) == expected(authz, mixed_store, "roadmap", "carol", 4)


# -- measured: rounds to fill k = 10 when 5% of the corpus is visible ---------------------


@pytest.fixture(scope="module")
def sparse_store() -> InMemoryVectorStore:
    """2,000 chunks; carol (finance, clearance 3) may read 5% of them (finance internal)."""
    store = InMemoryVectorStore(DeterministicFakeEmbedding(size=32))
    others = ("engineering", "support", "hr")
    rows = []
    for n in range(2000):
        visible = n % 20 == 7
        department = "finance" if visible else others[n % 3]
        rows.append((f"chunk {n}", metadata(f"d{n}", department, "internal")))
    add(store, rows)
    return store


def test_rounds_to_fill_k_at_five_percent_visibility(authz: az.Authorizer,
                                                      sparse_store: InMemoryVectorStore) -> None:
    rounds: dict[bool, list[int]] = {False: [], True: []}
    for prefilter in (False, True):
        retriever = retriever_over(sparse_store, authz, k=10, max_candidates=2000, prefilter=prefilter,
                                   resource_type="Document")
        with authz.acting_as(user("carol")):
            for q in range(20):
                found = retriever.retrieve_with_stats(f"question {q}")
                assert found.stats.returned == 10
                rounds[prefilter].append(found.stats.rounds)
    print(f"\nrounds to fill k=10 at 5% visible: without pre-filter {sorted(rounds[False])}, "
          f"with pre-filter {sorted(rounds[True])}")
    assert max(rounds[False]) <= 4
    assert set(rounds[True]) == {1}
