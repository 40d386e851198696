"""Amazon Bedrock Knowledge Bases: retrieval authorized for the end user.

Re-exported by :mod:`agentauthz.integrations.bedrock`; import it from there.
boto3 is imported only when no client is given (extra ``aws``). How a result's
metadata becomes its resource is :mod:`~agentauthz.integrations.bedrock._metadata`;
the filter for ``retrieve_and_generate`` is :mod:`~agentauthz.integrations.bedrock._generation`.
"""

from __future__ import annotations

import asyncio
import copy
import json
import time
import warnings
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Unpack

from agentauthz._authorizer import Authorizer
from agentauthz._errors import ConfigurationError, EngineError
from agentauthz._extras import optional_import
from agentauthz._model import Entity, EntityUID
from agentauthz.guardrails._detector import Detector
from agentauthz.guardrails._guardrail import Guardrail
from agentauthz.integrations.bedrock._metadata import (
    CHUNK_ID_KEY,
    MappingKeywords,
    MetadataField,
    MetadataMapping,
    mapping_from_keywords,
)
from agentauthz.retrieval._overfetch import (
    OverFetchPlan,
    PrefilterState,
    RetrievalStats,
    emit_summary,
)

if TYPE_CHECKING:
    from langchain_core.retrievers import BaseRetriever

    from agentauthz.retrieval._prefilter import Prefilter

__all__ = ["FetchLimits", "KnowledgeBaseResults", "KnowledgeBaseRetriever", "and_all"]

# The service caps numberOfResults at 100 per call.
PAGE_MAX = 100

Result = dict[str, Any]
ResourceOfResult = Callable[[Mapping[str, Any]], "Entity | EntityUID | None"]


@dataclass(frozen=True)
class FetchLimits:
    """How far one retrieval may look for its ``k`` permitted results.

    Attributes:
        max_candidates: most distinct results examined per call (at least ``k``).
        max_rounds: most ``retrieve`` calls per query.

    Raises:
        ConfigurationError: ``max_rounds`` or ``max_candidates`` below 1.

    Example:
        >>> FetchLimits(max_candidates=40).max_rounds
        10

    .. versionadded:: 0.2
    """

    max_candidates: int = 100
    max_rounds: int = 10

    def __post_init__(self) -> None:
        if self.max_candidates < 1 or self.max_rounds < 1:
            raise ConfigurationError("max_candidates and max_rounds must be at least 1")


class _RetrieverKeywords(MappingKeywords, total=False):
    """The flat keywords ``metadata=`` and ``limits=`` replace (deprecated)."""

    max_candidates: int
    max_rounds: int


_LIMIT_KEYWORDS = ("max_candidates", "max_rounds")



def and_all(*filters: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Conjunction of Bedrock RetrievalFilters; ``None`` entries are skipped.

    Nested ``andAll`` lists are flattened; one filter is returned as it is
    (the service wants at least two members in ``andAll``).

    Example:
        >>> and_all({"equals": {"key": "a", "value": 1}}, None,
        ...         {"andAll": [{"equals": {"key": "b", "value": 2}},
        ...                     {"equals": {"key": "c", "value": 3}}]})["andAll"][2]
        {'equals': {'key': 'c', 'value': 3}}
    """
    members: list[dict[str, Any]] = []
    for item in filters:
        if item is None:
            continue
        if not isinstance(item, Mapping) or len(item) != 1:
            raise ConfigurationError("a RetrievalFilter is a mapping with exactly one operator")
        if "andAll" in item:
            members.extend(copy.deepcopy(list(item["andAll"])))
        else:
            members.append(copy.deepcopy(dict(item)))
    if not members:
        return None
    if len(members) == 1:
        return members[0]
    return {"andAll": members}



def _result_key(result: Any) -> Hashable:
    metadata = result.get("metadata") if isinstance(result, Mapping) else None
    if isinstance(metadata, Mapping):
        chunk = metadata.get(CHUNK_ID_KEY)
        if isinstance(chunk, str) and chunk:
            return ("chunk", chunk)
    return ("content", json.dumps(result, sort_keys=True, default=str))


@dataclass(frozen=True)
class KnowledgeBaseResults:
    """What one authorized knowledge-base retrieval returned.

    Attributes:
        results: the permitted ``retrievalResults`` items, best first, at most ``k``.
        stats: requested, fetched, dropped, rounds, ... (:class:`RetrievalStats`).
        filter: the RetrievalFilter sent with the search (the caller's filters
            and the compiled pre-filter, and-ed), or None.
    """

    results: list[Result]
    stats: RetrievalStats
    filter: dict[str, Any] | None = field(default=None, repr=False)


class KnowledgeBaseRetriever:
    """Retrieves from a Bedrock knowledge base; every result is authorized for the end user.

    Each call to ``bedrock-agent-runtime`` ``retrieve`` carries the caller's
    own filter and, with the pre-filter on, the policies compiled for the
    bound user (with the context and session record the post-filter decides
    with), and-ed (``andAll``) into ``vectorSearchConfiguration.filter``.
    Every result is then turned into a Cedar resource from its ``metadata``
    (``id_key`` gives the id, ``attributes`` the attributes) and decided with
    :meth:`Authorizer.filter`; a result without the metadata is dropped.
    While fewer than ``k`` results are allowed, it follows ``nextToken`` or,
    when the service returns none, asks again with a larger
    ``numberOfResults`` (up to 100), examining at most ``max_candidates``
    distinct results in at most ``max_rounds`` calls. A failing call raises;
    nothing unfiltered is ever returned.

    Args:
        knowledge_base_id: the knowledge base.
        authz: the Authorizer deciding each result.
        action: Cedar action (default ``"read"``).
        metadata: how a result's metadata becomes its resource
            (:class:`MetadataMapping`: resource type, id key, attributes,
            ancestors key; default: a ``Document`` named by the source URI).
        resource: builds the resource from a whole result instead (then the
            pre-filter is off unless ``prefilter=True``).
        k: results wanted.
        limits: how far to look for them (:class:`FetchLimits`: at most 100
            distinct results in at most 10 calls by default).
        context: Cedar context of every request.
        retrieval_configuration: the caller's ``retrievalConfiguration``
            (search type, reranking, its own filter, ...); ``numberOfResults``
            is set by the retriever.
        request_options: more ``retrieve`` arguments (``guardrailConfiguration``, ...).
        prefilter: send the compiled policies as a filter (default: on when
            the resource is built from ``attributes``).
        client: a ``bedrock-agent-runtime`` client (default: one made with boto3).
        region_name: region of the default client.
        guardrail: an ``az.Guardrail`` or a detector (off by default): in a
            bound session, the findings in the results let through are
            recorded as session labels (``guardrail:prompt_attack:high``,
            ``guardrail:unavailable`` when the detector failed) before they
            are returned (only the at most ``k`` results returned: a
            permitted result fetched beyond them is neither assessed nor
            recorded); with ``on_error="raise"`` a failure lets nothing
            through. The text assessed is the whole result (its content,
            location and metadata) unless the guardrail's ``text=`` says
            otherwise, e.g. ``lambda result: result["content"]["text"]``.
        deprecated: ``resource_type``, ``id_key``, ``attributes``,
            ``ancestors_key`` (now in ``metadata``), ``max_candidates``,
            ``max_rounds`` (``limits``): still taken, with a DeprecationWarning.

    .. versionchanged:: 0.2
       ``metadata=`` and ``limits=`` replace six flat keywords.

    Example:
        >>> import agentauthz as az
        >>> from agentauthz.integrations.bedrock import SOURCE_URI_KEY
        >>> authz = az.Authorizer.from_text(
        ...     'permit(principal, action, resource) when { resource.department == "hr" };')
        >>> kb = KnowledgeBaseRetriever("KB12345678", authz, client=object(),
        ...                             metadata=MetadataMapping(attributes={"department": "department"}))
        >>> kb.resource_of({"metadata": {SOURCE_URI_KEY: "s3://b/a.pdf", "department": "hr"}}).uid
        EntityUID(type='Document', id='s3://b/a.pdf')
    """

    def __init__(
        self,
        knowledge_base_id: str,
        authz: Authorizer,
        *,
        action: str | EntityUID = "read",
        metadata: MetadataMapping | None = None,
        resource: ResourceOfResult | None = None,
        k: int = 4,
        limits: FetchLimits | None = None,
        context: Mapping[str, Any] | None = None,
        retrieval_configuration: Mapping[str, Any] | None = None,
        request_options: Mapping[str, Any] | None = None,
        prefilter: bool | None = None,
        client: Any = None,
        region_name: str | None = None,
        guardrail: Guardrail | Detector | None = None,
        **deprecated: Unpack[_RetrieverKeywords],
    ) -> None:
        if not knowledge_base_id:
            raise ConfigurationError("knowledge_base_id is required")
        mapping_keywords, limits = _limits(limits, dict(deprecated))
        if k < 1 or limits.max_candidates < k:
            raise ConfigurationError(
                f"need k >= 1, max_candidates >= k and max_rounds >= 1 "
                f"(k={k}, max_candidates={limits.max_candidates}, max_rounds={limits.max_rounds})"
            )
        config = dict(retrieval_configuration or {})
        if "managedSearchConfiguration" in config and "vectorSearchConfiguration" in config:
            raise ConfigurationError("retrieval_configuration names two search configurations")
        self.knowledge_base_id = knowledge_base_id
        self.authz = authz
        self.action = action
        self.metadata = mapping_from_keywords("KnowledgeBaseRetriever", metadata, mapping_keywords)
        self.resource = resource
        self.k = k
        self.limits = limits
        self.context = dict(context) if context else None
        self.retrieval_configuration = config
        self.request_options = dict(request_options or {})
        reserved = {"knowledgeBaseId", "retrievalQuery", "retrievalConfiguration", "nextToken"}
        if reserved & set(self.request_options):
            raise ConfigurationError(f"request_options may not set {sorted(reserved)}")
        self.prefilter = (resource is None) if prefilter is None else prefilter
        self._client = client
        self._region_name = region_name
        self.guardrail = Guardrail.of(guardrail)
        self.last_stats: RetrievalStats | None = None

    # -- pieces --------------------------------------------------------------------

    @property
    def client(self) -> Any:
        """The ``bedrock-agent-runtime`` client (made with boto3 on first use)."""
        if self._client is None:
            boto3 = optional_import("boto3", extra="aws", needed_by="KnowledgeBaseRetriever")
            self._client = boto3.client("bedrock-agent-runtime", region_name=self._region_name)
        return self._client

    @property
    def metadata_keys(self) -> dict[str, str]:
        """Cedar resource attribute -> metadata key, as the pre-filter compiler wants them."""
        return self.metadata.keys

    @property
    def attributes(self) -> dict[str, MetadataField]:
        """``metadata.fields``: Cedar attribute -> :class:`MetadataField`."""
        return self.metadata.fields

    def resource_of(self, result: Mapping[str, Any]) -> Entity | EntityUID | None:
        """The Cedar resource of one ``retrievalResults`` item (``resource=``, or :attr:`metadata`'s).

        Raises:
            KeyError, ValueError: the metadata lacks the id or an attribute (the
                item is then dropped by the filter).
        """
        if self.resource is not None:
            return self.resource(result)
        return self.metadata.resource_of(result)

    def request(
        self,
        query: str,
        *,
        number_of_results: int,
        filter: Mapping[str, Any] | None = None,
        next_token: str | None = None,
    ) -> dict[str, Any]:
        """The keyword arguments of one ``retrieve`` call."""
        config = copy.deepcopy(self.retrieval_configuration)
        section_name = ("managedSearchConfiguration" if "managedSearchConfiguration" in config
                        else "vectorSearchConfiguration")
        section = dict(config.get(section_name) or {})
        section["numberOfResults"] = number_of_results
        if filter is not None:
            section["filter"] = dict(filter)
        else:
            section.pop("filter", None)
        config[section_name] = section
        request: dict[str, Any] = {
            **copy.deepcopy(self.request_options),
            "knowledgeBaseId": self.knowledge_base_id,
            "retrievalQuery": {"text": query},
            "retrievalConfiguration": config,
        }
        if next_token:
            request["nextToken"] = next_token
        return request

    def compile_prefilter(self) -> Prefilter:
        """The policies compiled for the bound end user (what the pre-filter sends).

        Compiled with the context :meth:`Authorizer.filter` decides with, the
        bound session's ``context.session`` included.

        Raises:
            IdentityError: no end user is bound.
        """
        from agentauthz.retrieval._prefilter import compile_prefilter

        return compile_prefilter(self.authz, action=self.action, context=self.context,
                                 resource_type=self.metadata.resource_type)

    def search_filter(
        self, filter: Mapping[str, Any] | None = None
    ) -> tuple[dict[str, Any] | None, PrefilterState]:
        """The filter to send for the bound user: configured, caller's and compiled, and-ed.

        Returns:
            ``(filter, state)``; state ``"always_denied"`` means: search nothing.
        """
        section = (self.retrieval_configuration.get("managedSearchConfiguration")
                   or self.retrieval_configuration.get("vectorSearchConfiguration") or {})
        configured = section.get("filter")
        state: PrefilterState = "off"
        ours: dict[str, Any] | None = None
        if self.prefilter:
            compiled = self.compile_prefilter()
            if compiled.always_denied:
                return None, "always_denied"
            if compiled.always_allowed:
                state = "always_allowed"
            else:
                ours = compiled.to_bedrock(self.metadata_keys)
                state = "applied" if ours is not None else "unsupported"
        return and_all(configured, filter, ours), state

    # -- retrieval -----------------------------------------------------------------

    def retrieve(
        self,
        query: str,
        *,
        principal: Entity | EntityUID | None = None,
        filter: Mapping[str, Any] | None = None,
    ) -> KnowledgeBaseResults:
        """The permitted results for ``query``, for the bound end user (or ``principal``).

        Args:
            query: the search text.
            principal: the end user, when not bound with ``authz.acting_as``.
            filter: a RetrievalFilter of the caller, and-ed with the others.

        Raises:
            IdentityError: no end user.
            botocore errors: the service failed (never swallowed).
        """
        with self.authz.bound_to(principal, source="the principal argument"):
            return self._retrieve(query, filter)

    async def aretrieve(
        self,
        query: str,
        *,
        principal: Entity | EntityUID | None = None,
        filter: Mapping[str, Any] | None = None,
    ) -> KnowledgeBaseResults:
        """Async twin of :meth:`retrieve` (boto3 is blocking: runs in a worker thread)."""
        return await asyncio.to_thread(self.retrieve, query, principal=principal, filter=filter)

    def _retrieve(self, query: str, caller_filter: Mapping[str, Any] | None) -> KnowledgeBaseResults:
        started = time.perf_counter_ns()
        self.authz.current_principal()  # no end user: IdentityError before any search
        plan: OverFetchPlan[Result] = OverFetchPlan(
            k=self.k, max_candidates=self.limits.max_candidates, key=_result_key,
            max_rounds=self.limits.max_rounds, initial=min(self.k, PAGE_MAX),
        )
        sent, state = self.search_filter(caller_filter)
        if state != "always_denied":
            asked = min(plan.size, PAGE_MAX)
            token: str | None = None
            while True:
                response = self.client.retrieve(**self.request(
                    query, number_of_results=asked, filter=sent, next_token=token))
                batch = _results(response)
                token = response.get("nextToken") or None
                fresh = plan.take(batch)
                if fresh:
                    plan.record(fresh, self.authz.filter(
                        fresh, action=self.action, resource=self.resource_of, context=self.context,
                        guardrail=self.guardrail, limit=plan.wanted))
                if token is None and len(batch) >= asked and asked >= PAGE_MAX:
                    plan.stop()  # a full page of 100 and no token: the service gives no more
                    break
                more = True if token else (False if len(batch) < asked else None)
                if not plan.advance(len(batch), asked=asked, more=more):
                    break
                if token:
                    asked = max(1, min(PAGE_MAX, plan.size - plan.fetched, plan.remaining_budget))
                else:
                    asked = min(plan.size, PAGE_MAX)
        stats = plan.stats(state)
        self.last_stats = stats
        emit_summary(self.authz, action=self.action, retriever=f"bedrock-kb:{self.knowledge_base_id}",
                     stats=stats, started_ns=started)
        return KnowledgeBaseResults(results=plan.results, stats=stats, filter=sent)

    def as_langchain(self, *, principal_key: str = "agentauthz_principal") -> BaseRetriever:
        """This retriever as a LangChain BaseRetriever (needs ``agentauthz[langchain]``).

        Documents carry the result text as ``page_content`` and the result's
        metadata, ``location`` and ``score`` as metadata. The principal comes
        from ``acting_as`` or ``config["configurable"][principal_key]``.
        """
        try:
            from agentauthz.integrations.bedrock._kb_langchain import KnowledgeBaseLangChainRetriever
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise ImportError(
                'as_langchain needs langchain-core: pip install "agentauthz[langchain]"'
            ) from exc
        return KnowledgeBaseLangChainRetriever(knowledge_base=self, chunk_id_key=CHUNK_ID_KEY,
                                               principal_key=principal_key)


def _results(response: Any) -> list[Result]:
    items = response.get("retrievalResults") if isinstance(response, Mapping) else None
    if not isinstance(items, Sequence) or isinstance(items, (str, bytes)):
        raise EngineError("the knowledge base answered without a retrievalResults list")
    return list(items)


def _limits(limits: FetchLimits | None, keywords: dict[str, Any]) -> tuple[dict[str, Any], FetchLimits]:
    """The keywords left for the metadata mapping, and the limits (the deprecated keywords folded in).

    Raises:
        TypeError: a keyword the retriever never took.
        ConfigurationError: ``max_candidates=``/``max_rounds=`` next to ``limits=``.
    """
    unknown = sorted(set(keywords) - _RetrieverKeywords.__optional_keys__)
    if unknown:
        raise TypeError(f"KnowledgeBaseRetriever() got unexpected keyword arguments {unknown}")
    flat = {name: keywords.pop(name) for name in _LIMIT_KEYWORDS if name in keywords}
    if not flat:
        return keywords, limits or FetchLimits()
    names = ", ".join(f"{name}=" for name in flat)
    if limits is not None:
        raise ConfigurationError(
            f"KnowledgeBaseRetriever: {names} and limits= both given: set them in limits=")
    warnings.warn(f"KnowledgeBaseRetriever({names}) is deprecated: use limits=FetchLimits(...)",
                  DeprecationWarning, stacklevel=3)
    return keywords, FetchLimits(**flat)
