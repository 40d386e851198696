"""The metadata filter for Bedrock's ``retrieve_and_generate``, where only that filter protects.

``retrieve_and_generate`` retrieves and generates inside the service: nothing
retrieved passes through this process, so :func:`retrieve_and_generate_filter`
gives a filter only where it keeps exactly what
:class:`~agentauthz.integrations.bedrock.KnowledgeBaseRetriever` would let
through, and refuses otherwise (fail closed).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypedDict, Unpack

from agentauthz._authorizer import Authorizer
from agentauthz._entities import StaticEntityProvider
from agentauthz._errors import AccessDenied, ConfigurationError
from agentauthz._model import Decision, Entity, EntityUID
from agentauthz.integrations.bedrock._kb import and_all
from agentauthz.integrations.bedrock._metadata import MetadataField, MetadataMapping, mapping_from_keywords
from agentauthz.policy._cedar_checks import policy_json
from agentauthz.policy._schema_json import schema_json_text
from agentauthz.policy._store import PolicyStore
from agentauthz.retrieval._dialects import bedrock_inexpressible

if TYPE_CHECKING:
    from agentauthz.retrieval._prefilter import Prefilter
    from agentauthz.session._session import Session

__all__ = ["GenerationFilter", "retrieve_and_generate_filter"]


class _GenerationKeywords(TypedDict, total=False):
    """The flat keywords ``metadata=`` replaces (deprecated)."""

    resource_type: str
    attributes: Mapping[str, str | MetadataField] | None
    ancestors_key: str | None


def _known(keywords: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(keywords) - _GenerationKeywords.__optional_keys__)
    if unknown:
        raise TypeError(f"retrieve_and_generate_filter() got unexpected keyword arguments {unknown}")
    return dict(keywords)


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
    metadata: MetadataMapping | None = None,
    context: Mapping[str, Any] | None = None,
    filter: Mapping[str, Any] | None = None,
    principal: Entity | EntityUID | None = None,
    session: str | Session | None = None,
    allow_inexact: bool = False,
    **deprecated: Unpack[_GenerationKeywords],
) -> GenerationFilter:
    """The metadata filter that stands in for authorization in ``retrieve_and_generate``.

    ``retrieve_and_generate`` retrieves and generates in one service call: no
    retrieved chunk passes through this process, so nothing can be
    post-authorized and the filter is the only protection. This function is
    therefore fail-closed: it returns a filter only when it keeps *exactly*
    the documents :class:`~agentauthz.integrations.bedrock.KnowledgeBaseRetriever`
    (same arguments) would let through for this user in this session, and
    raises otherwise.

    The policies are compiled as :meth:`Authorizer.filter` decides: for the
    bound end user, with ``context`` and, in a bound session, its
    ``context.session`` (what was seen, calls, approvals). A resource carries
    only the ``metadata.attributes`` mapped (and parents only with an
    ``ancestors_key``). It refuses where a Bedrock filter cannot say what the policies say: a
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

    Prefer :class:`~agentauthz.integrations.bedrock.KnowledgeBaseRetriever` and
    generate with the authorized results yourself. ``allow_inexact=True`` returns an over-approximating
    filter instead of refusing a condition (``exact=False``): documents the
    user may not read can then reach the model; it still never returns "no
    filter" for policies that do not allow every document.

    Args:
        authz: the Authorizer; the end user is the bound one or ``principal``.
        action: the Cedar action, as for
            :class:`~agentauthz.integrations.bedrock.KnowledgeBaseRetriever`.
        metadata: how a result's metadata becomes its resource, as for the
            retriever (its ``id_key`` plays no part here).
        context: extra request context, as for the retriever.
        filter: the caller's own RetrievalFilter, and-ed with the compiled one.
        principal: the end user, when not bound with ``authz.acting_as``.
        session: the session (id or :class:`~agentauthz.session._session.Session`), when
            not bound with ``authz.session``.
        allow_inexact: accept a filter that may keep documents the user may not read.
        **deprecated: ``resource_type``, ``attributes``, ``ancestors_key`` (now in
            ``metadata``): still taken, with a DeprecationWarning.

    Returns:
        The :class:`GenerationFilter`.

    Raises:
        AccessDenied: the policies allow the user no document at all (do not call
            ``retrieve_and_generate``).
        ConfigurationError: the filter is not exact and ``allow_inexact`` is False
            (the message says why), or nothing narrows the search at all.
        IdentityError: no end user.

    .. versionchanged:: 0.2
       ``metadata=`` replaces ``resource_type=``, ``attributes=`` and ``ancestors_key=``.

    Example:
        >>> import agentauthz as az
        >>> authz = az.Authorizer.from_text('permit(principal, action, resource);')
        >>> with authz.acting_as(az.EntityUID("User", "ann")):
        ...     retrieve_and_generate_filter(authz, filter={"equals": {"key": "lang", "value": "en"}})
        GenerationFilter(filter={'equals': {'key': 'lang', 'value': 'en'}}, exact=True)
    """
    from agentauthz.retrieval._prefilter import compile_prefilter

    mapping = mapping_from_keywords("retrieve_and_generate_filter", metadata, _known(deprecated))
    fields, resource_type = mapping.fields, mapping.resource_type
    with authz.bound_to(principal, source="the principal argument"), \
            authz.session_bound_to(session, source="the session argument") as bound:
        compiled = compile_prefilter(authz, action=action, context=context, resource_type=resource_type)
        if bound is not None:
            _refuse_unrecorded_reads(authz, fields)
    if compiled.always_denied:
        raise AccessDenied(Decision(allowed=False), subject="retrieve_and_generate")
    # What KnowledgeBaseRetriever builds: the mapped attributes only, parents only from ancestors.
    restricted = compiled.restricted_to(set(fields), ancestors=mapping.ancestors_key is not None)
    keys = mapping.keys
    try:
        _refuse_what_metadata_cannot_decide(authz, restricted, fields, resource_type)
        ours = restricted.to_bedrock(keys, exact=True)  # None: every document is allowed
    except ConfigurationError as exc:
        if not allow_inexact:
            raise ConfigurationError(
                f"{exc}{_policies_named(authz, restricted, keys)}. retrieve_and_generate cannot "
                "post-filter, so documents the user may not "
                "read could reach the model. Use KnowledgeBaseRetriever (it post-authorizes every "
                "result), or pass allow_inexact=True to accept that risk") from exc
        ours = restricted.to_bedrock(keys)
        if ours is None and not restricted.always_allowed:
            raise ConfigurationError(
                "nothing in the policies narrows the search: even with allow_inexact=True, every "
                "document would reach the model. Use KnowledgeBaseRetriever") from exc
        return GenerationFilter(filter=and_all(filter, ours), exact=False, prefilter=compiled)
    return GenerationFilter(filter=and_all(filter, ours), exact=True, prefilter=compiled)


def _policies_named(authz: Authorizer, restricted: Prefilter, keys: Mapping[str, str]) -> str:
    """The policies reading the attributes no Bedrock filter can write, for the refusal's message."""
    attributes = frozenset(bedrock_inexpressible(restricted.expression, keys)) if restricted.filters else ()
    store = getattr(authz.engine, "store", None)
    if not attributes or not isinstance(store, PolicyStore):
        return ""
    named = [f"{policy.id!r} ({policy.location})" for policy in store.enforced_policies
             if attributes & _resource_attributes(policy_json(policy.text))]
    return f" (read by {', '.join(named)})" if named else ""


def _resource_attributes(node: Any) -> frozenset[str]:
    """The attributes of ``resource`` a policy's Cedar JSON reads (``resource.a``, ``resource has a``)."""
    found: set[str] = set()
    pending = [node]
    while pending:
        item = pending.pop()
        if isinstance(item, list):
            pending.extend(item)
        elif isinstance(item, Mapping):
            for operator in (".", "has"):
                access = item.get(operator)
                if isinstance(access, Mapping) and access.get("left") == {"Var": "resource"} \
                        and isinstance(access.get("attr"), str):
                    found.add(access["attr"])
            pending.extend(item.values())
    return frozenset(found)


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
