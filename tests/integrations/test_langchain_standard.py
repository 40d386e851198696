"""LangChain's own standard tests (langchain-tests) run against AuthorizedTool and AuthorizedRetriever.

The standard classes call the tool and the retriever as any LangChain code
would, with no run config, so the end user is bound around each test with
``authz.acting_as`` (the way an application binds it; without one every call
raises IdentityError, which no standard test expects). They run offline: a
Cedar policy store from text, a deterministic fake embedding, an in-memory
vector store.

The tool classes run twice: once where the policy permits the example call,
and once where it denies it, so a refusal is held to the same contract as a
result (a ToolMessage with string content, no exception).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("langchain_tests")

from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.retrievers import BaseRetriever
from langchain_core.tools import BaseTool, tool
from langchain_core.vectorstores import InMemoryVectorStore
from langchain_tests.integration_tests import RetrieversIntegrationTests, ToolsIntegrationTests
from langchain_tests.unit_tests import ToolsUnitTests

import agentauthz as az
from agentauthz.integrations.langchain import AuthorizedRetriever, AuthorizedTool

# The standard classes mix sync and async tests and may not be overridden, so the asyncio mark
# (pytest-asyncio, strict mode) goes on the whole module, and its note on the sync tests is silenced.
pytestmark = [
    pytest.mark.asyncio,
    pytest.mark.filterwarnings("ignore:The test <Function .*> is marked with '@pytest.mark.asyncio'"),
]

POLICIES = """
@id("search-public")
permit(principal, action == Action::"search_documents", resource)
when { context.input.query != "forbidden" };

@id("read-public")
permit(principal, action == Action::"read", resource) when { resource.public };
"""
USER = az.EntityUID("User", "alice")
AUTHZ = az.Authorizer.from_text(POLICIES)


@tool
def search_documents(query: str, limit: int = 3) -> str:
    """Search the knowledge base."""
    return f"{limit} results for {query}"


@pytest.fixture(autouse=True)
def end_user() -> Iterator[None]:
    """The end user the application binds around the agent's calls."""
    with AUTHZ.acting_as(USER):
        yield


class TestAuthorizedToolUnit(ToolsUnitTests):
    @property
    def tool_constructor(self) -> type[BaseTool]:
        return AuthorizedTool

    @property
    def tool_constructor_params(self) -> dict[str, Any]:
        return {"tool": search_documents, "authz": AUTHZ}

    @property
    def tool_invoke_params_example(self) -> dict[str, Any]:
        return {"query": "refund policy", "limit": 2}


class TestAuthorizedToolIntegration(ToolsIntegrationTests):
    @property
    def tool_constructor(self) -> type[BaseTool]:
        return AuthorizedTool

    @property
    def tool_constructor_params(self) -> dict[str, Any]:
        return {"tool": search_documents, "authz": AUTHZ}

    @property
    def tool_invoke_params_example(self) -> dict[str, Any]:
        return {"query": "refund policy", "limit": 2}


class TestAuthorizedToolRefusingIntegration(ToolsIntegrationTests):
    """The policy denies the example call: the refusal meets the tool output contract."""

    @property
    def tool_constructor(self) -> type[BaseTool]:
        return AuthorizedTool

    @property
    def tool_constructor_params(self) -> dict[str, Any]:
        return {"tool": search_documents, "authz": AUTHZ}

    @property
    def tool_invoke_params_example(self) -> dict[str, Any]:
        return {"query": "forbidden"}


def _store() -> InMemoryVectorStore:
    """Ten documents, every other one public: a call for k results needs over-fetching."""
    store = InMemoryVectorStore(DeterministicFakeEmbedding(size=16))
    store.add_documents([
        Document(page_content=f"refund policy, part {n}", id=f"d{n}", metadata={"public": n % 2 == 0})
        for n in range(10)
    ])
    return store


def _resource(doc: Document) -> az.Entity:
    return az.Entity(uid=az.EntityUID("Document", doc.id or ""), attrs={"public": doc.metadata["public"]})


class TestAuthorizedRetrieverIntegration(RetrieversIntegrationTests):
    @property
    def retriever_constructor(self) -> type[BaseRetriever]:
        return AuthorizedRetriever

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        return {"retriever": _store(), "authz": AUTHZ, "action": "read", "resource": _resource}

    @property
    def retriever_query_example(self) -> str:
        return "refund policy"
