"""Amazon Bedrock Knowledge Bases: retrieval authorized for the end user.

Re-exported by :mod:`agentauthz.integrations.bedrock`; import it from there.
boto3 is imported only when no client is given (extra ``aws``).
"""

from __future__ import annotations

import asyncio
import copy
import importlib
import json
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agentauthz._authorizer import Authorizer
from agentauthz._entities import StaticEntityProvider
from agentauthz._errors import AccessDenied, ConfigurationError, EngineError
from agentauthz._model import Decision, Entity, EntityUID
from agentauthz.policy._schema_json import schema_json_text
from agentauthz.policy._store import PolicyStore
from agentauthz.retrieval._overfetch import (
    OverFetchPlan,
    PrefilterState,
    RetrievalStats,
    emit_summary,
)

if TYPE_CHECKING:
    from langchain_core.retrievers import BaseRetriever

    from agentauthz.retrieval._prefilter import Prefilter
    from agentauthz.session._session import Session

__all__ = [
    "CHUNK_ID_KEY",
    "SOURCE_URI_KEY",
    "GenerationFilter",
    "KnowledgeBaseResults",
    "KnowledgeBaseRetriever",
    "MetadataField",
    "and_all",
    "retrieve_and_generate_filter",
]

SOURCE_URI_KEY = "x-amz-bedrock-kb-source-uri"
CHUNK_ID_KEY = "x-amz-bedrock-kb-chunk-id"
# The service caps numberOfResults at 100 per call.
PAGE_MAX = 100
_INSTALL = 'pip install "agentauthz[aws]"'

Result = dict[str, Any]
ResourceOfResult = Callable[[Mapping[str, Any]], "Entity | EntityUID | None"]


@dataclass(frozen=True)
class MetadataField:
    """Where a resource attribute lives in a knowledge-base result's metadata.

    Attributes:
        key: the metadata key (as set in the document's ``.metadata.json``).
        entity_type: when set, the metadata value is the id of an entity of
            this type (``"acme"`` -> ``Tenant::"acme"``).

    Example:
        >>> MetadataField("tenant_id", entity_type="Tenant").key
        'tenant_id'
    """

    key: str
    entity_type: str | None = None


def _field(spec: str | MetadataField) -> MetadataField:
    if isinstance(spec, MetadataField):
        return spec
    if isinstance(spec, str):
        return MetadataField(spec)
    raise ConfigurationError(f"an attribute maps to a metadata key or MetadataField, not {spec!r}")


def _cedar_value(value: Any, spec: MetadataField) -> Any:
    """A metadata value as the Python value of a Cedar attribute."""
    if spec.entity_type is not None:
        if not isinstance(value, str) or not value:
            raise ValueError(f"metadata {spec.key!r} is not an entity id")
        return EntityUID(spec.entity_type, value)
    if isinstance(value, float) and value.is_integer():
        return int(value)  # the service returns numbers as JSON numbers; Cedar has Long only
    if isinstance(value, list):
        return [_cedar_value(item, MetadataField(spec.key)) for item in value]
    return value


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


def _metadata_keys(attributes: Mapping[str, MetadataField], ancestors_key: str | None) -> dict[str, str]:
    from agentauthz.retrieval._prefilter import ANCESTORS

    keys = {name: spec.key for name, spec in attributes.items()}
    if ancestors_key is not None:
        keys[ANCESTORS] = ancestors_key
    return keys


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
        resource_type: entity type of the resources (default ``"Document"``).
        id_key: metadata key holding the resource id (default the source URI).
        attributes: Cedar attribute -> metadata key (or :class:`MetadataField`
            for entity-typed attributes).
        ancestors_key: metadata key listing the Cedar text of every ancestor of
            the resource (``['Folder::"hr"', 'Folder::"root"']``): they become
            its parents, and ``resource in ...`` conditions can be pre-filtered.
        resource: builds the resource from a whole result instead (then the
            pre-filter is off unless ``prefilter=True``).
        k: results wanted.
        max_candidates: most distinct results examined per call.
        max_rounds: most ``retrieve`` calls per query.
        context: Cedar context of every request.
        retrieval_configuration: the caller's ``retrievalConfiguration``
            (search type, reranking, its own filter, ...); ``numberOfResults``
            is set by the retriever.
        request_options: more ``retrieve`` arguments (``guardrailConfiguration``, ...).
        prefilter: send the compiled policies as a filter (default: on when
            the resource is built from ``attributes``).
        client: a ``bedrock-agent-runtime`` client (default: one made with boto3).
        region_name: region of the default client.

    Example:
        >>> import agentauthz as az
        >>> authz = az.Authorizer.from_text(
        ...     'permit(principal, action, resource) when { resource.department == "hr" };')
        >>> kb = KnowledgeBaseRetriever("KB12345678", authz, client=object(),
        ...                             attributes={"department": "department"})
        >>> kb.resource_of({"metadata": {SOURCE_URI_KEY: "s3://b/a.pdf", "department": "hr"}}).uid
        EntityUID(type='Document', id='s3://b/a.pdf')
    """

    def __init__(
        self,
        knowledge_base_id: str,
        authz: Authorizer,
        *,
        action: str | EntityUID = "read",
        resource_type: str = "Document",
        id_key: str = SOURCE_URI_KEY,
        attributes: Mapping[str, str | MetadataField] | None = None,
        ancestors_key: str | None = None,
        resource: ResourceOfResult | None = None,
        k: int = 4,
        max_candidates: int = 100,
        max_rounds: int = 10,
        context: Mapping[str, Any] | None = None,
        retrieval_configuration: Mapping[str, Any] | None = None,
        request_options: Mapping[str, Any] | None = None,
        prefilter: bool | None = None,
        client: Any = None,
        region_name: str | None = None,
    ) -> None:
        if not knowledge_base_id:
            raise ConfigurationError("knowledge_base_id is required")
        if k < 1 or max_candidates < k or max_rounds < 1:
            raise ConfigurationError(
                f"need k >= 1, max_candidates >= k and max_rounds >= 1 "
                f"(k={k}, max_candidates={max_candidates}, max_rounds={max_rounds})"
            )
        config = dict(retrieval_configuration or {})
        if "managedSearchConfiguration" in config and "vectorSearchConfiguration" in config:
            raise ConfigurationError("retrieval_configuration names two search configurations")
        self.knowledge_base_id = knowledge_base_id
        self.authz = authz
        self.action = action
        self.resource_type = resource_type
        self.id_key = id_key
        self.attributes: dict[str, MetadataField] = {
            name: _field(spec) for name, spec in (attributes or {}).items()
        }
        self.ancestors_key = ancestors_key
        self.resource = resource
        self.k = k
        self.max_candidates = max_candidates
        self.max_rounds = max_rounds
        self.context = dict(context) if context else None
        self.retrieval_configuration = config
        self.request_options = dict(request_options or {})
        reserved = {"knowledgeBaseId", "retrievalQuery", "retrievalConfiguration", "nextToken"}
        if reserved & set(self.request_options):
            raise ConfigurationError(f"request_options may not set {sorted(reserved)}")
        self.prefilter = (resource is None) if prefilter is None else prefilter
        self._client = client
        self._region_name = region_name
        self.last_stats: RetrievalStats | None = None

    # -- pieces --------------------------------------------------------------------

    @property
    def client(self) -> Any:
        """The ``bedrock-agent-runtime`` client (made with boto3 on first use)."""
        if self._client is None:
            try:
                boto3 = importlib.import_module("boto3")
            except ImportError as exc:  # pragma: no cover - depends on the environment
                raise ImportError(f"KnowledgeBaseRetriever needs boto3: {_INSTALL}") from exc
            self._client = boto3.client("bedrock-agent-runtime", region_name=self._region_name)
        return self._client

    @property
    def metadata_keys(self) -> dict[str, str]:
        """Cedar resource attribute -> metadata key, as the pre-filter compiler wants them."""
        return _metadata_keys(self.attributes, self.ancestors_key)

    def resource_of(self, result: Mapping[str, Any]) -> Entity | EntityUID | None:
        """The Cedar resource of one ``retrievalResults`` item.

        Raises:
            KeyError, ValueError: the metadata lacks the id or an attribute (the
                item is then dropped by the filter).
        """
        if self.resource is not None:
            return self.resource(result)
        metadata = result.get("metadata")
        if not isinstance(metadata, Mapping):
            raise KeyError("result has no metadata")
        resource_id = metadata[self.id_key]
        if not isinstance(resource_id, str) or not resource_id:
            raise ValueError(f"metadata {self.id_key!r} is not a resource id")
        attrs = {name: _cedar_value(metadata[spec.key], spec) for name, spec in self.attributes.items()}
        parents: list[EntityUID] = []
        if self.ancestors_key is not None:
            ancestors = metadata[self.ancestors_key]  # missing: dropped (a forbid may need them)
            if not isinstance(ancestors, list) or not all(isinstance(a, str) for a in ancestors):
                raise ValueError(f"metadata {self.ancestors_key!r} is not a list of entity uids")
            parents = [EntityUID.parse(text) for text in ancestors]
        return Entity(uid=EntityUID(self.resource_type, resource_id), attrs=attrs, parents=parents)

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
                                 resource_type=self.resource_type)

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
            k=self.k, max_candidates=self.max_candidates, key=_result_key,
            max_rounds=self.max_rounds, initial=min(self.k, PAGE_MAX),
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
                        fresh, action=self.action, resource=self.resource_of, context=self.context))
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


@dataclass(frozen=True)
class GenerationFilter:
    """The RetrievalFilter for ``retrieve_and_generate`` and whether it is exact.

    Attributes:
        filter: the filter for
            ``retrieveAndGenerateConfiguration.knowledgeBaseConfiguration.retrievalConfiguration
            .vectorSearchConfiguration.filter``. None only when the policies allow
            this user every document and the caller gave no filter of its own.
        exact: the filter keeps exactly the documents the policies allow. False
            only when the caller accepted an inexact filter (``allow_inexact=True``):
            documents the user may not read can then reach the model.
        prefilter: the compiled policies it was built from.
    """

    filter: dict[str, Any] | None
    exact: bool
    prefilter: Prefilter = field(repr=False)


def retrieve_and_generate_filter(
    authz: Authorizer,
    *,
    action: str | EntityUID = "read",
    resource_type: str = "Document",
    attributes: Mapping[str, str | MetadataField] | None = None,
    ancestors_key: str | None = None,
    context: Mapping[str, Any] | None = None,
    filter: Mapping[str, Any] | None = None,
    principal: Entity | EntityUID | None = None,
    session: str | Session | None = None,
    allow_inexact: bool = False,
) -> GenerationFilter:
    """The metadata filter that stands in for authorization in ``retrieve_and_generate``.

    ``retrieve_and_generate`` retrieves and generates in one service call: no
    retrieved chunk passes through this process, so nothing can be
    post-authorized and the filter is the only protection. This function is
    therefore fail-closed: it returns a filter only when it keeps *exactly*
    the documents :class:`KnowledgeBaseRetriever` (same arguments) would let
    through for this user in this session, and raises otherwise.

    The policies are compiled as :meth:`Authorizer.filter` decides: for the
    bound end user, with ``context`` and, in a bound session, its
    ``context.session`` (what was seen, calls, approvals). A resource carries
    only the ``attributes`` mapped (and parents only with ``ancestors_key``).
    It refuses where a Bedrock filter cannot say what the policies say: a
    condition the compiler over-approximates (entity comparisons such as
    tenant isolation, ``resource == Document::"..."`` share links, an engine
    without partial evaluation), a condition Bedrock filters cannot express
    (``has``, a negated ``contains``, ``like`` with a wildcard, ``!=`` on a key
    that may be missing), stored entities of ``resource_type`` (authorization
    would decide those on their stored attributes, the filter on metadata),
    a schema attribute the resource requires and the filter does not imply
    (authorization denies a resource without it; no Bedrock filter tests
    that a key is present), and a bound session that records labels of what
    is read (nothing read by the service can be recorded).

    Prefer :class:`KnowledgeBaseRetriever` and generate with the authorized
    results yourself. ``allow_inexact=True`` returns an over-approximating
    filter instead of refusing a condition (``exact=False``): documents the
    user may not read can then reach the model; it still never returns "no
    filter" for policies that do not allow every document.

    Args:
        authz: the Authorizer; the end user is the bound one or ``principal``.
        action: as for :class:`KnowledgeBaseRetriever`.
        resource_type: as for :class:`KnowledgeBaseRetriever`.
        attributes: as for :class:`KnowledgeBaseRetriever`.
        ancestors_key: as for :class:`KnowledgeBaseRetriever`.
        context: as for :class:`KnowledgeBaseRetriever`.
        filter: the caller's own RetrievalFilter, and-ed with the compiled one.
        principal: the end user, when not bound with ``authz.acting_as``.
        session: the session (id or :class:`~agentauthz.session._session.Session`), when
            not bound with ``authz.session``.
        allow_inexact: accept a filter that may keep documents the user may not read.

    Returns:
        The :class:`GenerationFilter`.

    Raises:
        AccessDenied: the policies allow the user no document at all (do not call
            ``retrieve_and_generate``).
        ConfigurationError: the filter is not exact and ``allow_inexact`` is False
            (the message says why), or nothing narrows the search at all.
        IdentityError: no end user.

    Example:
        >>> import agentauthz as az
        >>> authz = az.Authorizer.from_text('permit(principal, action, resource);')
        >>> with authz.acting_as(az.EntityUID("User", "ann")):
        ...     retrieve_and_generate_filter(authz, filter={"equals": {"key": "lang", "value": "en"}})
        GenerationFilter(filter={'equals': {'key': 'lang', 'value': 'en'}}, exact=True)
    """
    from agentauthz.retrieval._prefilter import compile_prefilter

    fields = {name: _field(spec) for name, spec in (attributes or {}).items()}
    with authz.bound_to(principal, source="the principal argument"), \
            authz.session_bound_to(session, source="the session argument") as bound:
        compiled = compile_prefilter(authz, action=action, context=context, resource_type=resource_type)
        if bound is not None:
            _refuse_unrecorded_reads(authz, fields)
    if compiled.always_denied:
        raise AccessDenied(Decision(allowed=False), subject="retrieve_and_generate")
    # What KnowledgeBaseRetriever builds: the mapped attributes only, parents only from ancestors.
    restricted = compiled.restricted_to(set(fields), ancestors=ancestors_key is not None)
    keys = _metadata_keys(fields, ancestors_key)
    try:
        _refuse_what_metadata_cannot_decide(authz, restricted, fields, resource_type)
        ours = restricted.to_bedrock(keys, exact=True)  # None: every document is allowed
    except ConfigurationError as exc:
        if not allow_inexact:
            raise ConfigurationError(
                f"{exc}. retrieve_and_generate cannot post-filter, so documents the user may not "
                "read could reach the model. Use KnowledgeBaseRetriever (it post-authorizes every "
                "result), or pass allow_inexact=True to accept that risk") from exc
        ours = restricted.to_bedrock(keys)
        if ours is None and not restricted.always_allowed:
            raise ConfigurationError(
                "nothing in the policies narrows the search: even with allow_inexact=True, every "
                "document would reach the model. Use KnowledgeBaseRetriever") from exc
        return GenerationFilter(filter=and_all(filter, ours), exact=False, prefilter=compiled)
    return GenerationFilter(filter=and_all(filter, ours), exact=True, prefilter=compiled)


def _refuse_what_metadata_cannot_decide(
    authz: Authorizer, restricted: Prefilter, fields: Mapping[str, MetadataField], resource_type: str
) -> None:
    """Raise where the resource is not what the metadata says, as the filter assumes."""
    if restricted.always_denied:
        return  # nothing passes: rendering refuses it
    unexact = "the policies do not translate exactly into a Bedrock metadata filter"
    entity_typed = sorted(name for name in restricted.attributes if fields[name].entity_type is not None)
    if entity_typed:
        # An entity there compares unlike the id string in metadata (never equal to a string).
        raise ConfigurationError(f"{unexact}: they read the entity-typed attributes {entity_typed}")
    stored = "" if restricted.always_allowed else _stored_resources(authz, resource_type)
    if stored:
        raise ConfigurationError(
            f"{unexact}: {stored} may hold {resource_type} entities, which authorization decides "
            "on their stored attributes, not on metadata")
    declared = _declared_attributes(authz, resource_type)
    if declared is not None:
        # Authorization denies a resource that does not conform to the schema; a Bedrock filter
        # cannot test that a key is present, only imply it with a condition on the key.
        names, required = declared
        undeclared = sorted(set(fields) - names)
        if undeclared:
            raise ConfigurationError(f"{unexact}: {undeclared} are mapped but not declared for "
                                     f"{resource_type} in the schema")
        unchecked = sorted(required - restricted.attributes_present)
        if unchecked:
            raise ConfigurationError(
                f"{unexact}: the schema requires {unchecked} of {resource_type}, and the filter does "
                "not keep only documents that have them (no filter tests that a key is present)")


def _refuse_unrecorded_reads(authz: Authorizer, fields: Mapping[str, MetadataField]) -> None:
    """A bound session records the labels of what is read: the service's reads cannot be."""
    labels = authz.session_config.labels
    names = () if callable(labels) else ((labels,) if isinstance(labels, str) else tuple(labels))
    if callable(labels) or set(names) & set(fields):
        raise ConfigurationError(
            "the bound session records the labels of the documents read, and retrieve_and_generate "
            "reads them inside the service where they cannot be recorded: use KnowledgeBaseRetriever "
            "in a session")


def _declared_attributes(
    authz: Authorizer, resource_type: str
) -> tuple[frozenset[str], frozenset[str]] | None:
    """The attributes the store's schema declares for ``resource_type``, and the required ones.

    Returns:
        None when the store has no schema.

    Raises:
        ConfigurationError: the schema does not declare the type, or its shape cannot be read.
    """
    store = getattr(authz.engine, "store", None)
    if not isinstance(store, PolicyStore) or store.schema_text is None:
        return None
    namespace, _, name = resource_type.rpartition("::")
    declarations = json.loads(schema_json_text(store.schema_text)).get(namespace) or {}
    entity = (declarations.get("entityTypes") or {}).get(name)
    if not isinstance(entity, Mapping):
        raise ConfigurationError(f"the schema declares no entity type {resource_type}")
    shape = entity.get("shape", {"type": "Record", "attributes": {}})
    if isinstance(shape, Mapping) and shape.get("type") != "Record":  # a common type by name
        shape = (declarations.get("commonTypes") or {}).get(shape.get("name", shape.get("type")))
    if not isinstance(shape, Mapping) or shape.get("type") != "Record":
        raise ConfigurationError(f"cannot read the attributes the schema declares for {resource_type}")
    attributes = shape.get("attributes") or {}
    required = {key for key, spec in attributes.items() if not isinstance(spec, Mapping)
                or spec.get("required", True) is not False}
    return frozenset(attributes), frozenset(required)


def _stored_resources(authz: Authorizer, resource_type: str) -> str:
    """Where stored entities of ``resource_type`` may come from (empty: nowhere)."""
    store = getattr(authz.engine, "store", None)
    if isinstance(store, PolicyStore) and any(
            uid.type == resource_type for uid in store.snapshot.entity_index):
        return "the policy store"
    provider = authz.entity_provider
    if provider is None:
        return ""
    if not isinstance(provider, StaticEntityProvider):
        return f"the entity provider {type(provider).__name__}"
    return "the Authorizer's entities" if any(e.uid.type == resource_type for e in provider) else ""
