"""RAG filtering with the example policy store (policies/): `make demo`.

The documents of the example store are split into chunks and put into a
LangChain InMemoryVectorStore; each chunk's metadata carries the attributes the
policies read (tenant, department, classification, owner, labels). Two users
ask the same question through an AuthorizedRetriever and get different
context: each only what the Cedar policies let them read. The script prints,
per user, what was kept and dropped (with the deciding policies), the
retrieval's counters with and without the pre-filter (the policies compiled
into a metadata filter for the search), and that filter.

Runs offline in a second or two: the embedding is a tiny keyword counter.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import InMemoryVectorStore

import agentauthz as az
from agentauthz.integrations.langchain import AuthorizedRetriever, RetrievalStats

POLICIES = Path(__file__).resolve().parent.parent / "policies"
QUESTION = "What is on the roadmap, and what budget does it have?"
K = 4  # chunks of context the model gets

# What each document of the example store talks about (two chunks each).
TOPICS = {
    "acme-handbook": ["handbook holidays", "handbook roadmap of the year for everyone"],
    "acme-eng-roadmap": ["roadmap roadmap milestones", "roadmap budget engineering headcount"],
    "acme-incident-report": ["incident outage roadmap impact", "incident security review"],
    "acme-support-playbook": ["playbook refunds", "playbook roadmap questions from customers"],
    "acme-q3-results": ["results revenue budget", "results roadmap investment budget"],
    "acme-budget": ["budget budget roadmap", "budget travel hiring"],
    "acme-vendor-contract": ["contract vendor budget", "contract renewal"],
    "acme-salaries": ["salaries budget", "salaries bands"],
    "acme-onboarding": ["onboarding laptop", "onboarding roadmap first week"],
    "acme-eng-review-bob": ["review feedback", "review roadmap goals"],
    "globex-handbook": ["handbook roadmap budget", "handbook holidays"],
    "globex-design": ["design roadmap budget roadmap", "design architecture"],
}
VOCABULARY = sorted({word for chunks in TOPICS.values() for chunk in chunks
                     for word in chunk.split()})


class KeywordEmbedding(Embeddings):
    """Counts of the corpus' words: deterministic, offline, good enough for a demo."""

    def _embed(self, text: str) -> list[float]:
        words = re.findall(r"[a-z]+", text.lower())
        return [float(words.count(word)) for word in VOCABULARY] + [0.5]

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self._embed(text) for text in texts]

    def embed_query(self, text: str) -> list[float]:
        return self._embed(text)


def load_corpus() -> InMemoryVectorStore:
    """Chunks of the store's documents; metadata = the document's Cedar attributes."""
    entities = json.loads((POLICIES / "entities.json").read_text(encoding="utf-8"))
    store = InMemoryVectorStore(KeywordEmbedding())
    for entity in entities:
        if entity["uid"]["type"] != "Document":
            continue
        doc_id = entity["uid"]["id"]
        attrs = entity["attrs"]
        meta = {
            "doc_id": doc_id,
            "tenant": attrs["tenant"]["__entity"]["id"],
            "department": attrs["department"],
            "classification": attrs["classification"],
            "owner": attrs["owner"]["__entity"]["id"],
            "labels": attrs["labels"],
        }
        chunks = TOPICS[doc_id]
        store.add_documents([Document(page_content=text, metadata=meta) for text in chunks],
                            ids=[f"{doc_id}#{n}" for n in range(len(chunks))])
    return store


def resource(doc: Document) -> az.Entity:
    """The Cedar resource of a chunk, built from its metadata (a missing key drops it)."""
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


def show_decisions(events: list[az.AuditEvent], kept: list[Document]) -> None:
    """One line per document examined (its chunks share one decision)."""
    kept_ids = {doc.metadata["doc_id"] for doc in kept}
    shown: set[str] = set()
    for event in events:
        if event.extra.get("event") == "retrieval":
            continue
        doc_id = az.EntityUID.parse(event.resource).id
        if doc_id in shown:
            continue
        shown.add(doc_id)
        outcome = "dropped"
        if event.decision == "allow":
            outcome = "kept   " if doc_id in kept_ids else "allowed"
        why = ", ".join(event.reasons) or "no policy permits it"
        print(f"    {outcome} {doc_id:<22} {why}")


def counters(stats: RetrievalStats) -> str:
    return (f"requested {stats.requested}, returned {stats.returned}, fetched {stats.fetched}, "
            f"dropped {stats.dropped}, rounds {stats.rounds}")


def main() -> int:
    recorder = az.MemorySink()
    authz = az.Authorizer.from_directory(POLICIES, audit=[recorder])
    store = load_corpus()
    print(f"Policy store {POLICIES.name}/ (fingerprint {authz.engine.fingerprint[:12]}); "
          f"{len(store.store)} chunks of {len(TOPICS)} documents in an InMemoryVectorStore.")
    print(f'Question: "{QUESTION}"')
    print("For each document the retriever examined (its chunks share one decision):")
    print("  kept     the policies allow it, and it is in the context the model gets")
    print(f"  allowed  the policies allow it too, but k = {K} more similar chunks filled the context")
    print("  dropped  the policies deny it: the forbids that decided, or none permits it")
    print("Then the counters: k requested, chunks returned, candidates fetched (and authorized),")
    print("dropped (denied), rounds (searches of the store: more when many are denied), without")
    print("and with the pre-filter (the policies compiled into a metadata filter for the search).\n")
    retriever = AuthorizedRetriever(retriever=store, authz=authz, action="read",
                                    resource=resource, k=K, max_candidates=24)
    # The same, plus the policies compiled into a metadata filter for the search itself.
    prefiltered = retriever.model_copy(update={"prefilter": True, "resource_type": "Document"})
    users = {
        "bob": "Acme support agent, clearance 1",
        "carol": "Acme finance, clearance 3",
    }
    answers: dict[str, list[str]] = {}
    scores = {str(doc.id): round(score, 9)
              for doc, score in store.similarity_search_with_score(QUESTION, k=len(store.store))}
    for name, role in users.items():
        print(f"{name} ({role}) asks:")
        recorder.events.clear()
        config = {"configurable": {"agentauthz_principal": az.EntityUID("User", name)}}
        found = retriever.retrieve_with_stats(QUESTION, config=config)
        answers[name] = [str(doc.id) for doc in found.documents]
        show_decisions(recorder.events, found.documents)
        print(f"  context for the model: {', '.join(answers[name])}")
        print(f"  post-filter only:    {counters(found.stats)}")
        again = prefiltered.retrieve_with_stats(QUESTION, config=config)
        print(f"  with the pre-filter: {counters(again.stats)}")
        # Chunks as similar as the post-filter's (equally similar chunks may come in another order).
        if [scores[str(doc.id)] for doc in again.documents] != [scores[n] for n in answers[name]]:
            print("error: the pre-filter changed the answer", file=sys.stderr)
            return 1
        with authz.acting_as(az.EntityUID("User", name)):
            compiled = prefiltered.compile_prefilter()
        print(f"  compiled filter: {compiled}")
        print(f"    as a Bedrock RetrievalFilter: {json.dumps(compiled.to_bedrock())}")
        print()
    if answers["bob"] == answers["carol"]:
        print("error: both users got the same context", file=sys.stderr)
        return 1
    print("Same question, different context: each user's retrieval was authorized by the policies.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
