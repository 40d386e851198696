"""Over-fetching retrievers record and screen exactly the documents they hand to the model.

A retriever that fetches more candidates than it returns (to keep ``k`` after
authorization) used to record the labels of, and run the guardrail on, every
permitted candidate of its last batch, those beyond ``k`` included: an
injection in a document the model never read labelled the session (and
policies then refused tool calls), and each extra candidate cost a detector
call. The class test below runs every retrieval path over ranked candidates
(permitted or not, injected or not) and checks that the detector is asked about
exactly the documents returned, once each, and that the session's labels are
exactly theirs.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.retrievers import BaseRetriever
from langchain_core.vectorstores import VectorStore, VectorStoreRetriever

import agentauthz as az
from agentauthz.integrations.bedrock import KnowledgeBaseRetriever, MetadataMapping
from agentauthz.integrations.langchain import AuthorizedRetriever
from agentauthz.session import MemorySessionStore, SessionConfig
from tests.integrations.guardrail_cases import ATTACK, CLEAN_TEXT, USER, CountingDetector, DownDetector
from tests.strategies import ranked_candidates

POLICY = "permit(principal, action, resource) when { resource.public };"
INJECTED = "guardrail:prompt_attack:high"
# What the guardrail labels a session with once the model read the injected text.
INJECTED_LABELS = frozenset(az.Guardrail(az.LocalDetector()).assess_value(ATTACK, "OUTPUT").labels())
DOC_ID = re.compile(r"\bd\d\d\b")
Candidates = Sequence[tuple[bool, bool]]


def doc_id(rank: int) -> str:
    return f"d{rank:02d}"


def documents(candidates: Candidates) -> list[Document]:
    """One document per candidate, its id and label in its metadata, its text clean or injected."""
    return [Document(id=doc_id(rank), page_content=f"{doc_id(rank)} {ATTACK if injected else CLEAN_TEXT}",
                     metadata={"public": permitted, "labels": [f"doc:{doc_id(rank)}"]})
            for rank, (permitted, injected) in enumerate(candidates)]


def resource_of(doc: Document) -> az.Entity:
    return az.Entity(uid=az.EntityUID("Doc", str(doc.id)), attrs=dict(doc.metadata))


class RankedStore(VectorStore):
    """A vector store that ranks its documents in insertion order (deterministic, no embeddings)."""

    def __init__(self, docs: Sequence[Document]) -> None:
        self.docs = list(docs)

    def similarity_search(self, query: str, k: int = 4, **kwargs: Any) -> list[Document]:
        return self.docs[:k]

    @classmethod
    def from_texts(cls, texts: list[str], embedding: Embeddings,
                   metadatas: list[dict[str, Any]] | None = None, **kwargs: Any) -> RankedStore:
        return cls([Document(page_content=text, metadata=meta)
                    for text, meta in zip(texts, metadatas or [{}] * len(texts), strict=True)])


class RankedRetriever(BaseRetriever):
    """A retriever that returns every document it holds, best first (no ``k`` of its own)."""

    docs: list[Document]

    def _get_relevant_documents(self, query: str, *,
                                run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        return list(self.docs)


class RankedKnowledgeBase:
    """A ``bedrock-agent-runtime`` client whose ``retrieve`` answers the top ``numberOfResults``."""

    def __init__(self, docs: Sequence[Document]) -> None:
        self.results = [{"content": {"type": "TEXT", "text": doc.page_content},
                         "location": {"type": "S3", "s3Location": {"uri": f"s3://kb/{doc.id}"}},
                         "metadata": {"x-amz-bedrock-kb-source-uri": f"s3://kb/{doc.id}",
                                      "id": doc.id, **doc.metadata}}
                        for doc in docs]

    def retrieve(self, **request: Any) -> dict[str, Any]:
        config = request["retrievalConfiguration"]["vectorSearchConfiguration"]
        return {"retrievalResults": self.results[: config["numberOfResults"]]}


def authorizer() -> az.Authorizer:
    return az.Authorizer.from_text(POLICY, sessions=SessionConfig(store=MemorySessionStore()))


def _langchain(retriever: Any, k: int, authz: az.Authorizer, detector: Any) -> AuthorizedRetriever:
    return AuthorizedRetriever(retriever=retriever, authz=authz, k=k, max_candidates=50,
                               resource=resource_of, guardrail=detector)


def _knowledge_base(docs: Sequence[Document], k: int, authz: az.Authorizer,
                    detector: Any) -> KnowledgeBaseRetriever:
    mapping = MetadataMapping(resource_type="Doc", id_key="id",
                              attributes={"public": "public", "labels": "labels"})
    return KnowledgeBaseRetriever("KB12345678", authz, client=RankedKnowledgeBase(docs), metadata=mapping,
                                  k=k, prefilter=False, guardrail=detector)


def _ids(found: Iterable[Any]) -> list[str]:
    return [item.id if isinstance(item, Document) else item["metadata"]["id"] for item in found]


Path = Callable[[list[Document], int, az.Authorizer, Any], list[str]]

# Every retrieval path that decides candidates and may fetch more than it returns. Each
# runs under acting_as(USER) and a bound session, and returns the ids it handed back.
PATHS: dict[str, Path] = {
    "Authorizer.filter(limit=)": lambda docs, k, authz, detector: _ids(authz.filter(
        docs, action="read", resource=resource_of, guardrail=detector, limit=k).allowed),
    "Authorizer.afilter(limit=)": lambda docs, k, authz, detector: _ids(asyncio.run(authz.afilter(
        docs, action="read", resource=resource_of, guardrail=detector, limit=k)).allowed),
    "AuthorizedRetriever(VectorStoreRetriever)": lambda docs, k, authz, detector: _ids(_langchain(
        VectorStoreRetriever(vectorstore=RankedStore(docs)), k, authz, detector).invoke("q")),
    "AuthorizedRetriever(VectorStoreRetriever) async": lambda docs, k, authz, detector: _ids(asyncio.run(
        _langchain(VectorStoreRetriever(vectorstore=RankedStore(docs)), k, authz, detector).ainvoke("q"))),
    "AuthorizedRetriever(VectorStore)": lambda docs, k, authz, detector: _ids(_langchain(
        RankedStore(docs), k, authz, detector).invoke("q")),
    "AuthorizedRetriever(VectorStore) async": lambda docs, k, authz, detector: _ids(asyncio.run(
        _langchain(RankedStore(docs), k, authz, detector).ainvoke("q"))),
    "AuthorizedRetriever(any retriever)": lambda docs, k, authz, detector: _ids(_langchain(
        RankedRetriever(docs=docs), k, authz, detector).invoke("q")),
    "KnowledgeBaseRetriever.retrieve": lambda docs, k, authz, detector: _ids(_knowledge_base(
        docs, k, authz, detector).retrieve("q").results),
    "KnowledgeBaseRetriever.aretrieve": lambda docs, k, authz, detector: _ids(asyncio.run(_knowledge_base(
        docs, k, authz, detector).aretrieve("q")).results),
    "KnowledgeBaseRetriever.as_langchain": lambda docs, k, authz, detector: [str(doc.metadata["id"])
        for doc in _knowledge_base(docs, k, authz, detector).as_langchain().invoke("q")],
}


def retrieve(path: str, candidates: Candidates, k: int) -> tuple[list[str], list[str], frozenset[str]]:
    """Run one path: the ids returned, the ids the detector was asked about, the session's labels."""
    authz = authorizer()
    detector = CountingDetector()
    session = f"chat-{uuid.uuid4().hex}"
    with authz.acting_as(USER), authz.session(session):
        returned = PATHS[path](documents(candidates), k, authz, detector)
    store = authz.session_config.store
    seen = frozenset(store.load(session, since=0.0, history=0).seen)
    assessed = []
    for text in detector.texts:
        [named] = set(DOC_ID.findall(text))  # each assessment is about one document
        assessed.append(named)
    return returned, assessed, seen


def expected(candidates: Candidates, k: int) -> tuple[list[str], frozenset[str]]:
    """The first ``k`` permitted candidates, and the labels reading exactly them gives."""
    returned = [doc_id(rank) for rank, (permitted, _) in enumerate(candidates) if permitted][:k]
    injected = any(candidates[int(name[1:])][1] for name in returned)
    read = {f"doc:{name}" for name in returned}
    return returned, frozenset(read | INJECTED_LABELS if injected else read)


@pytest.mark.parametrize("path", list(PATHS))
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(candidates=ranked_candidates(), k=st.integers(1, 4))
def test_every_retrieval_path_records_and_screens_exactly_the_documents_it_returns(
        path: str, candidates: list[tuple[bool, bool]], k: int) -> None:
    returned, assessed, seen = retrieve(path, candidates, k)
    want, labels = expected(candidates, k)
    assert returned == want
    assert sorted(assessed) == sorted(want)  # once each, and none beyond what is returned
    assert seen == labels


# permitted clean, denied, then permitted: clean, injected, injected (never read with k=2)
BEYOND_K = [(True, False), (False, False), (True, False), (True, True), (True, True), (False, True)]


@pytest.mark.parametrize("path", list(PATHS))
def test_a_prompt_attack_in_a_fetched_document_beyond_k_labels_nothing_and_is_not_assessed(path: str) -> None:
    returned, assessed, seen = retrieve(path, BEYOND_K, 2)
    assert returned == ["d00", "d02"]
    assert assessed == ["d00", "d02"]
    assert seen == {"doc:d00", "doc:d02"}


@pytest.mark.parametrize("path", list(PATHS))
def test_a_prompt_attack_in_a_returned_document_labels_the_session(path: str) -> None:
    returned, assessed, seen = retrieve(path, BEYOND_K, 3)
    assert returned == ["d00", "d02", "d03"]
    assert sorted(assessed) == ["d00", "d02", "d03"]
    assert INJECTED in seen and "doc:d04" not in seen


def test_the_retrieval_stats_count_permitted_candidates_beyond_k_as_withheld_not_dropped() -> None:
    authz = authorizer()
    retriever = _langchain(RankedStore(documents(BEYOND_K)), 2, authz, None)
    with authz.acting_as(USER):
        result = retriever.retrieve_with_stats("q")
    assert [doc.id for doc in result.documents] == ["d00", "d02"]
    assert (result.stats.fetched, result.stats.withheld, result.stats.dropped) == (6, 2, 2)


@pytest.mark.parametrize("limit", [-1, True, 1.5])
def test_a_filter_limit_that_is_not_a_count_is_refused(limit: Any) -> None:
    authz = authorizer()
    with authz.acting_as(USER), pytest.raises(az.ConfigurationError):
        authz.filter(documents(BEYOND_K), action="read", resource=resource_of, limit=limit)


@pytest.mark.parametrize("path", list(PATHS))
def test_documents_that_cannot_be_assessed_never_reach_the_model_and_are_not_topped_up(path: str) -> None:
    authz = authorizer()
    down = az.Guardrail(DownDetector(), on_error="raise")
    with authz.acting_as(USER), authz.session(f"chat-{uuid.uuid4().hex}"):
        assert PATHS[path](documents(BEYOND_K), 2, authz, down) == []
