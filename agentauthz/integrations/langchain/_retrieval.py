"""AuthorizedRetriever: a LangChain retriever that returns only what the end user may read.

Import it from :mod:`agentauthz.integrations.langchain`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Hashable, Mapping
from typing import TYPE_CHECKING, Any

from langchain_core.callbacks import (
    AsyncCallbackManagerForRetrieverRun,
    CallbackManagerForRetrieverRun,
)
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnableConfig
from langchain_core.vectorstores import InMemoryVectorStore, VectorStore, VectorStoreRetriever
from pydantic import ConfigDict, Field, PrivateAttr, model_validator

from agentauthz._authorizer import Authorizer
from agentauthz._errors import ConfigurationError
from agentauthz._model import Entity, EntityUID
from agentauthz.guardrails._guardrail import Guardrail
from agentauthz.integrations.langchain._config import PRINCIPAL_KEY, SESSION_KEY, bound_from_config
from agentauthz.retrieval._overfetch import (
    OverFetchPlan,
    PrefilterState,
    RetrievalStats,
    emit_summary,
)

if TYPE_CHECKING:
    from agentauthz.retrieval._prefilter import Prefilter

__all__ = [
    "AuthorizedRetriever",
    "RetrievalResult",
    "RetrievalStats",
]

ResourceOfDocument = Callable[[Document], "Entity | EntityUID | None"]


class RetrievalResult:
    """Documents of one authorized retrieval with its shrinkage counters.

    Attributes:
        documents: the permitted documents, best first, at most ``k``.
        stats: requested, fetched, dropped, rounds, ... (:class:`RetrievalStats`).
    """

    __slots__ = ("documents", "stats")

    def __init__(self, documents: list[Document], stats: RetrievalStats) -> None:
        self.documents = documents
        self.stats = stats

    def __repr__(self) -> str:
        return f"RetrievalResult(documents={len(self.documents)}, stats={self.stats!r})"


def _document_key(doc: Document) -> Hashable:
    """Identity of a chunk: its id, else its text and metadata."""
    if doc.id:
        return ("id", doc.id)
    return ("content", doc.page_content, json.dumps(doc.metadata, sort_keys=True, default=str))


class AuthorizedRetriever(BaseRetriever):
    """Wraps a retriever or vector store; every document is authorized for the end user.

    Each retrieved document is mapped to a Cedar resource by ``resource`` and
    decided with :meth:`Authorizer.filter` (``action``, default ``read``).
    Denied documents, and documents whose resource cannot be built (missing
    metadata), never reach the caller; a failing retriever raises, it never
    returns unfiltered documents.

    To keep ``k`` results when early hits are denied, a VectorStoreRetriever
    is re-run (on a copy) with a larger ``search_kwargs["k"]``, and a
    VectorStore is queried with a larger ``k``, the fetch size growing by the
    observed pass rate, never past ``max_candidates`` distinct candidates.
    Any other retriever is called once and its results filtered as returned.

    A call can ask for another number of results and add search arguments,
    as LangChain retrievers take them: ``retriever.invoke(query, k=1,
    filter=...)``. ``k`` is capped by ``max_candidates``; the other arguments
    go to the search (a VectorStoreRetriever's ``search_kwargs``, a
    VectorStore's ``similarity_search``, another retriever's ``invoke``),
    overriding the retriever's own. They only shape the search: every
    document found is still decided for the end user, and a search filter
    given at call time is and-ed with the pre-filter, never replacing it.

    The end user is the principal bound with ``authz.acting_as(...)`` or, per
    call, ``config["configurable"][principal_key]`` (an Entity or EntityUID
    the application sets; never model output). In a session (``authz.session``
    or ``config["configurable"][session_key]``) the labels of the documents
    let through are recorded as seen (``context.session.seen``).

    With ``prefilter=True`` the policies are also compiled into a search
    filter over metadata (partial evaluation for the bound user, with the
    same context and session record the post-filter decides with) so that
    denied documents are not fetched at all: an InMemoryVectorStore gets a
    callable filter, other stores what ``prefilter_kwargs`` builds. The
    pre-filter only narrows the search; every document is still
    post-authorized. It assumes ``resource`` builds the resource's attributes
    from the metadata (under the keys ``metadata_keys`` names).

    Each call records one audit summary event (``extra["retrieval"]``) and
    sets :attr:`last_stats`; :meth:`retrieve_with_stats` returns both.

    Attributes:
        retriever: a BaseRetriever (VectorStoreRetriever included) or a VectorStore.
        authz: the Authorizer deciding each document.
        action: Cedar action (default ``"read"``).
        resource: maps a Document to its resource (Entity from metadata, or EntityUID).
        k: results wanted.
        max_candidates: most distinct candidates examined per call.
        max_rounds: most calls to the underlying retriever per query.
        context: Cedar context of every request.
        search_kwargs: extra arguments for a VectorStore's ``similarity_search``.
        principal_key: key of the principal in ``config["configurable"]``.
        session_key: key of the session in ``config["configurable"]``.
        prefilter: compile the policies into a metadata filter for the search.
        resource_type: entity type of the resources (for the pre-filter).
        metadata_keys: Cedar resource attribute -> metadata key, where they differ.
        prefilter_kwargs: for stores other than InMemoryVectorStore, builds the
            search arguments from the compiled pre-filter, e.g.
            ``lambda pf: {"pre_filter": pf.to_mongo()}``.
        guardrail: an ``az.Guardrail`` or a detector: in a bound session, the
            findings in the documents let through are recorded as session labels
            (``guardrail:prompt_attack:high``) before they are returned. Only the
            (at most ``k``) documents returned are assessed and recorded: a
            permitted candidate fetched beyond them is neither.

    Example:
        >>> import agentauthz as az
        >>> from langchain_core.embeddings import DeterministicFakeEmbedding
        >>> authz = az.Authorizer.from_text(
        ...     'permit(principal, action, resource) when { resource.public };')
        >>> store = InMemoryVectorStore(DeterministicFakeEmbedding(size=8))
        >>> _ = store.add_texts(["open", "secret"], metadatas=[{"public": True}, {"public": False}])
        >>> retriever = AuthorizedRetriever(retriever=store, authz=authz, action="read", k=2,
        ...     resource=lambda doc: az.Entity(az.EntityUID("Doc", doc.id), doc.metadata))
        >>> with authz.acting_as(az.EntityUID("User", "u")):
        ...     [doc.page_content for doc in retriever.invoke("anything")]
        ['open']
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    retriever: BaseRetriever | VectorStore
    authz: Authorizer
    action: str | EntityUID = "read"
    resource: ResourceOfDocument
    k: int = 4
    max_candidates: int = 100
    max_rounds: int = 10
    context: dict[str, Any] | None = None
    search_kwargs: dict[str, Any] = Field(default_factory=dict)
    principal_key: str = PRINCIPAL_KEY
    session_key: str = SESSION_KEY
    prefilter: bool = False
    resource_type: str | None = None
    metadata_keys: dict[str, str] | None = None
    prefilter_kwargs: Callable[[Any], Mapping[str, Any] | None] | None = None  # (Prefilter) -> kwargs
    guardrail: Any = None  # az.Guardrail or a detector

    _last_stats: RetrievalStats | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _check(self) -> AuthorizedRetriever:
        if self.k < 1:
            raise ConfigurationError(f"k must be at least 1, not {self.k}")
        if self.max_candidates < self.k:
            raise ConfigurationError(
                f"max_candidates ({self.max_candidates}) must be at least k ({self.k})"
            )
        if self.max_rounds < 1:
            raise ConfigurationError(f"max_rounds must be at least 1, not {self.max_rounds}")
        self.guardrail = Guardrail.of(self.guardrail)  # a wrong value is refused now, not at the first query
        return self

    @property
    def last_stats(self) -> RetrievalStats | None:
        """Counters of the latest call on this retriever (shared by concurrent calls:
        use :meth:`retrieve_with_stats` when calls overlap)."""
        return self._last_stats

    # -- entry points --------------------------------------------------------------

    def invoke(
        self, input: str, config: RunnableConfig | None = None, **kwargs: Any
    ) -> list[Document]:
        """Retrieve for the end user bound by ``acting_as`` or named in ``config``.

        Args:
            input: the query.
            config: the run config (the end user may be in its ``configurable``).
            **kwargs: ``k`` (results wanted for this call, at most
                ``max_candidates``) and search arguments (e.g. ``filter``).

        Raises:
            IdentityError: no end user is bound (nothing is searched).
            ConfigurationError: ``k`` is not a positive integer, or an argument
                names a setting of the retriever (``action``, ``max_candidates``...).
        """
        with bound_from_config(self.authz, config, self.principal_key, self.session_key):
            return super().invoke(input, config, **kwargs)

    async def ainvoke(
        self, input: str, config: RunnableConfig | None = None, **kwargs: Any
    ) -> list[Document]:
        """Async twin of :meth:`invoke`."""
        with bound_from_config(self.authz, config, self.principal_key, self.session_key):
            return await super().ainvoke(input, config, **kwargs)

    def retrieve_with_stats(self, query: str, config: RunnableConfig | None = None,
                            **kwargs: Any) -> RetrievalResult:
        """Like :meth:`invoke` (without callbacks), returning the shrinkage counters too.

        Example:
            >>> import agentauthz as az
            >>> from langchain_core.embeddings import DeterministicFakeEmbedding
            >>> authz = az.Authorizer.from_text('permit(principal, action, resource);')
            >>> store = InMemoryVectorStore(DeterministicFakeEmbedding(size=8))
            >>> _ = store.add_texts(["a", "b", "c"])
            >>> retriever = AuthorizedRetriever(retriever=store, authz=authz, k=2,
            ...     resource=lambda doc: az.EntityUID("Doc", doc.id))
            >>> with authz.acting_as(az.EntityUID("User", "u")):
            ...     retriever.retrieve_with_stats("a").stats.returned
            2
        """
        with bound_from_config(self.authz, config, self.principal_key, self.session_key):
            documents, stats = self._run(query, None, kwargs)
        return RetrievalResult(documents, stats)

    async def aretrieve_with_stats(
        self, query: str, config: RunnableConfig | None = None, **kwargs: Any
    ) -> RetrievalResult:
        """Async twin of :meth:`retrieve_with_stats`."""
        with bound_from_config(self.authz, config, self.principal_key, self.session_key):
            documents, stats = await self._arun(query, None, kwargs)
        return RetrievalResult(documents, stats)

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        documents, _ = self._run(query, run_manager.get_child(), kwargs)
        return documents

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        documents, _ = await self._arun(query, run_manager.get_child(), kwargs)
        return documents

    # -- the loops: the twins differ only by their awaits ---------------------------------

    def _run(self, query: str, callbacks: Any,
             kwargs: Mapping[str, Any]) -> tuple[list[Document], RetrievalStats]:
        started, plan, search, state = self._start(query, callbacks, kwargs)
        while search is not None:
            batch = search.fetch(plan.size)
            fresh = plan.take(batch)
            if fresh:
                plan.record(fresh, self.authz.filter(fresh, limit=plan.wanted, **self._decide))
            if not plan.advance(len(batch), more=search.more):
                break
        return self._finish(plan, state, started)

    async def _arun(self, query: str, callbacks: Any,
                    kwargs: Mapping[str, Any]) -> tuple[list[Document], RetrievalStats]:
        started, plan, search, state = self._start(query, callbacks, kwargs)
        while search is not None:
            batch = await search.afetch(plan.size)
            fresh = plan.take(batch)
            if fresh:
                plan.record(fresh, await self.authz.afilter(fresh, limit=plan.wanted, **self._decide))
            if not plan.advance(len(batch), more=search.more):
                break
        return self._finish(plan, state, started)

    @property
    def _decide(self) -> dict[str, Any]:
        """How each candidate is decided (``Authorizer.filter``'s arguments)."""
        return {"action": self.action, "resource": self.resource, "context": self.context,
                "guardrail": self.guardrail}

    def _start(
        self, query: str, callbacks: Any, kwargs: Mapping[str, Any]
    ) -> tuple[int, OverFetchPlan[Document], _Search | None, PrefilterState]:
        """The I/O-free start of a call: the end user checked, the plan and the search."""
        started = time.perf_counter_ns()
        self.authz.current_principal()  # no end user: IdentityError before any search
        k, search_arguments = self._call_arguments(kwargs)
        plan = OverFetchPlan(k=k, max_candidates=self.max_candidates, key=_document_key,
                             max_rounds=self.max_rounds)
        search, state = self._search(query, callbacks, search_arguments)
        return started, plan, search, state

    def _call_arguments(self, kwargs: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
        """The call's ``k`` (capped by ``max_candidates``) and its search arguments.

        Raises:
            ConfigurationError: ``k`` is not a positive integer, or an argument
                names a setting of this retriever (it is not a search argument,
                and a call cannot change how documents are decided).
        """
        search_arguments = dict(kwargs)
        k = search_arguments.pop("k", self.k)
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ConfigurationError(f"k must be an integer of at least 1, not {k!r}")
        settings = sorted(set(search_arguments) & set(type(self).model_fields))
        if settings:
            raise ConfigurationError(
                f"{', '.join(settings)}: a setting of AuthorizedRetriever, not a search argument")
        return min(k, self.max_candidates), search_arguments

    def _finish(
        self, plan: OverFetchPlan[Document], state: PrefilterState, started: int
    ) -> tuple[list[Document], RetrievalStats]:
        stats = plan.stats(state)
        self._last_stats = stats
        emit_summary(self.authz, action=self.action, retriever=self.get_name(),
                     stats=stats, started_ns=started)
        return plan.results, stats

    # -- searching -----------------------------------------------------------------

    def _search(self, query: str, callbacks: Any,
                arguments: Mapping[str, Any]) -> tuple[_Search | None, PrefilterState]:
        """How to fetch ``n`` candidates, with the call's search arguments and the pre-filter.

        Returns ``(None, "always_denied")`` when the policies deny every
        document to this user: then nothing is searched at all.
        """
        extra: dict[str, Any] = {}
        state: PrefilterState = "off"
        if self.prefilter:
            compiled = self.compile_prefilter()
            if compiled.always_denied:
                return None, "always_denied"
            if compiled.always_allowed:
                state = "always_allowed"
            else:
                extra, state = self._prefilter_arguments(compiled)
        inner = self.retriever
        if isinstance(inner, VectorStoreRetriever):
            own = {**inner.search_kwargs, **arguments}
            return _RetrieverSearch(query, inner, own, extra, callbacks), state
        if isinstance(inner, VectorStore):
            searched = _merge_kwargs({**self.search_kwargs, **arguments}, extra)
            return _StoreSearch(query, inner, searched), state
        if extra:
            state = "unsupported"  # a generic retriever takes no search filter
        return _OnceSearch(query, inner, arguments, callbacks), state

    def compile_prefilter(self, config: RunnableConfig | None = None) -> Prefilter:
        """The policies compiled for the end user (what ``prefilter=True`` applies).

        Compiled with the context :meth:`Authorizer.filter` decides with, the
        bound session's ``context.session`` included.

        Args:
            config: a run config naming the end user, as :meth:`invoke` takes it
                (default: the end user bound with ``authz.acting_as``).

        Raises:
            IdentityError: no end user is bound.
        """
        from agentauthz.retrieval._prefilter import compile_prefilter

        with bound_from_config(self.authz, config, self.principal_key, self.session_key):
            return compile_prefilter(self.authz, action=self.action, context=self.context,
                                     resource_type=self.resource_type)

    def _prefilter_arguments(self, compiled: Prefilter) -> tuple[dict[str, Any], PrefilterState]:
        if self.prefilter_kwargs is not None:
            built = self.prefilter_kwargs(compiled)
            return (dict(built), "applied") if built else ({}, "unsupported")
        store = self.retriever
        if isinstance(store, VectorStoreRetriever):
            store = store.vectorstore
        if not isinstance(store, InMemoryVectorStore):
            return {}, "unsupported"
        return {"filter": compiled.to_document_filter(self.metadata_keys)}, "applied"


class _Search:
    """Fetches candidates from one kind of source."""

    more: bool | None = None  # None: a short page means the source is exhausted

    def fetch(self, n: int) -> list[Document]:
        raise NotImplementedError

    async def afetch(self, n: int) -> list[Document]:
        raise NotImplementedError


def _and_filters(caller: Any, ours: Any) -> Any:
    """Both callable filters must pass (the caller's own filter is kept)."""
    if caller is None:
        return ours
    if ours is None:
        return caller
    if not callable(caller):
        raise ConfigurationError("cannot combine a non-callable search filter with the pre-filter")
    return lambda doc: bool(caller(doc)) and bool(ours(doc))


def _merge_kwargs(caller: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """The caller's search arguments with the pre-filter's; two filters are and-ed."""
    merged = dict(caller)
    for key, value in extra.items():
        merged[key] = _and_filters(merged.get(key), value) if key == "filter" else value
    return merged


class _RetrieverSearch(_Search):
    """A VectorStoreRetriever re-run on a copy with ``search_kwargs["k"] = n``.

    ``arguments`` are its search arguments for this call (its own, with the
    call's over them), ``extra`` the pre-filter's.
    """

    def __init__(self, query: str, retriever: VectorStoreRetriever, arguments: Mapping[str, Any],
                 extra: Mapping[str, Any], callbacks: Any) -> None:
        self.query = query
        self.retriever = retriever
        self.arguments = _merge_kwargs(arguments, extra)
        self.config: RunnableConfig = {"callbacks": callbacks} if callbacks is not None else {}

    def _sized(self, n: int) -> VectorStoreRetriever:
        kwargs = dict(self.arguments)
        kwargs["k"] = n
        if self.retriever.search_type == "mmr":
            kwargs["fetch_k"] = max(int(kwargs.get("fetch_k", 20)), n)
        return self.retriever.model_copy(update={"search_kwargs": kwargs})

    def fetch(self, n: int) -> list[Document]:
        return list(self._sized(n).invoke(self.query, self.config))

    async def afetch(self, n: int) -> list[Document]:
        return list(await self._sized(n).ainvoke(self.query, self.config))


class _StoreSearch(_Search):
    """A VectorStore queried directly with ``similarity_search(query, k=n, ...)``."""

    def __init__(self, query: str, store: VectorStore, kwargs: Mapping[str, Any]) -> None:
        self.query = query
        self.store = store
        self.kwargs = {key: value for key, value in kwargs.items() if key != "k"}

    def fetch(self, n: int) -> list[Document]:
        return list(self.store.similarity_search(self.query, k=n, **self.kwargs))

    async def afetch(self, n: int) -> list[Document]:
        return list(await self.store.asimilarity_search(self.query, k=n, **self.kwargs))


class _OnceSearch(_Search):
    """Any other retriever: one call (with the call's search arguments), its results filtered as returned.

    The call's ``k`` is not passed on: the retriever returns as many as it
    does, and the permitted ones are kept up to ``k``.
    """

    more = False

    def __init__(self, query: str, retriever: BaseRetriever, arguments: Mapping[str, Any],
                 callbacks: Any) -> None:
        self.query = query
        self.retriever = retriever
        self.arguments = dict(arguments)
        self.config: RunnableConfig = {"callbacks": callbacks} if callbacks is not None else {}

    def fetch(self, n: int) -> list[Document]:
        return list(self.retriever.invoke(self.query, self.config, **self.arguments))

    async def afetch(self, n: int) -> list[Document]:
        return list(await self.retriever.ainvoke(self.query, self.config, **self.arguments))
