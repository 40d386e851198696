"""Amazon Bedrock integration (extra ``aws``: ``pip install "agentauthz[aws]"``).

Knowledge Bases: :class:`KnowledgeBaseRetriever` sends the policies compiled
for the end user as a metadata filter with every ``retrieve`` call and
post-authorizes every result; :func:`retrieve_and_generate_filter` gives the
filter for ``retrieve_and_generate``, where only that filter protects.
Guardrails: :class:`BedrockGuardrail` runs ``ApplyGuardrail`` as a detector whose
findings policies read (``context.guardrail.input``, session labels).

boto3 is imported only when a client has to be made.

Example:
    >>> import agentauthz as az
    >>> from agentauthz.integrations.bedrock import KnowledgeBaseRetriever, MetadataMapping
    >>> authz = az.Authorizer.from_directory("policies")
    >>> kb = KnowledgeBaseRetriever("KB12345678", authz, client=object(),
    ...                             metadata=MetadataMapping(attributes={"department": "department"}))
    >>> kb.k
    4
"""

from __future__ import annotations

from agentauthz.guardrails._bedrock import BedrockGuardrail
from agentauthz.integrations.bedrock._agents import (
    ActionInvocation,
    ReturnControlAuthorization,
    TokenVerifier,
    aauthorize_return_control,
    action_group_handler,
    authorize_return_control,
)
from agentauthz.integrations.bedrock._generation import GenerationFilter, retrieve_and_generate_filter
from agentauthz.integrations.bedrock._kb import (
    FetchLimits,
    KnowledgeBaseResults,
    KnowledgeBaseRetriever,
    and_all,
)
from agentauthz.integrations.bedrock._metadata import (
    CHUNK_ID_KEY,
    SOURCE_URI_KEY,
    MetadataField,
    MetadataMapping,
)
from agentauthz.retrieval._overfetch import RetrievalStats

__all__ = [
    "CHUNK_ID_KEY",
    "SOURCE_URI_KEY",
    "ActionInvocation",
    "BedrockGuardrail",
    "FetchLimits",
    "GenerationFilter",
    "KnowledgeBaseResults",
    "KnowledgeBaseRetriever",
    "MetadataField",
    "MetadataMapping",
    "RetrievalStats",
    "ReturnControlAuthorization",
    "TokenVerifier",
    "aauthorize_return_control",
    "action_group_handler",
    "and_all",
    "authorize_return_control",
    "retrieve_and_generate_filter",
]
