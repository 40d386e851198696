"""A :class:`KnowledgeBaseRetriever` as a LangChain retriever (``as_langchain``; extra ``langchain``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnableConfig
from pydantic import ConfigDict

from agentauthz.integrations.langchain._config import PRINCIPAL_KEY, SESSION_KEY, bound_from_config

__all__ = ["KnowledgeBaseLangChainRetriever", "knowledge_base_document"]


def knowledge_base_document(result: Mapping[str, Any], chunk_id_key: str) -> Document:
    """A Bedrock knowledge-base result as a LangChain Document (its id: the ``chunk_id_key`` metadata)."""
    content = result.get("content") or {}
    metadata = dict(result.get("metadata") or {})
    if "location" in result:
        metadata["location"] = result["location"]
    if "score" in result:
        metadata["score"] = result["score"]
    chunk = metadata.get(chunk_id_key)
    return Document(page_content=str(content.get("text") or ""), metadata=metadata,
                    id=chunk if isinstance(chunk, str) and chunk else None)


class KnowledgeBaseLangChainRetriever(BaseRetriever):
    """A :class:`KnowledgeBaseRetriever` as a LangChain retriever (see ``as_langchain``)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    # A KnowledgeBaseRetriever: typed Any because that module builds this one (``as_langchain``).
    knowledge_base: Any
    chunk_id_key: str
    principal_key: str = PRINCIPAL_KEY
    session_key: str = SESSION_KEY

    def invoke(
        self, input: str, config: RunnableConfig | None = None, **kwargs: Any
    ) -> list[Document]:
        """Retrieve for the end user bound by ``acting_as`` or named in ``config``."""
        with bound_from_config(self.knowledge_base.authz, config, self.principal_key, self.session_key):
            return super().invoke(input, config, **kwargs)

    async def ainvoke(
        self, input: str, config: RunnableConfig | None = None, **kwargs: Any
    ) -> list[Document]:
        """Async twin of :meth:`invoke`."""
        with bound_from_config(self.knowledge_base.authz, config, self.principal_key, self.session_key):
            return await super().ainvoke(input, config, **kwargs)

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun
    ) -> list[Document]:
        found = self.knowledge_base.retrieve(query)
        return [knowledge_base_document(r, self.chunk_id_key) for r in found.results]

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun
    ) -> list[Document]:
        found = await self.knowledge_base.aretrieve(query)
        return [knowledge_base_document(r, self.chunk_id_key) for r in found.results]
