"""Amazon Bedrock AgentCore Policy: the same tool policies on an AgentCore Gateway's policy engine.

``pip install "agentauthz[aws]"`` for push, pull and diff (boto3's
``bedrock-agentcore-control``); translation and local evaluation need only cedarpy.

* :func:`translate` rewrites our tool policies for one gateway target
  (:class:`AgentCoreProfile`): principal ``AgentCore::OAuthUser`` (id: the token's
  ``sub``; other claims as tags, mapped by :class:`TagMapping`), actions
  ``AgentCore::Action::"<target>___<tool>"``, resource ``AgentCore::Gateway::"<arn>"``,
  ``context.input`` only. What a gateway request cannot carry (session facts,
  resource attributes, unmapped user attributes, templates) is refused with
  ``file:line``, never dropped; the result is validated against the schema
  AgentCore generates from the tools (:func:`gateway_schema`) and its limits.
* :class:`LocalGateway` decides calls with the translated policies here, on
  requests shaped as the gateway builds them; :func:`write_store` writes them for
  ``agentauthz test``.
* :func:`plan_push` / :func:`apply_push` / :func:`pull` sync a policy engine
  (``agentauthz agentcore diff|push|pull``); ``@mode("shadow")`` is ``LOG_ONLY``.

See docs/integrations/agentcore.md.

Example:
    >>> import agentauthz as az
    >>> spec = az.ToolSpec.from_json_schema("lookup", {"type": "object", "properties": {}})
    >>> profile = AgentCoreProfile("arn:aws:bedrock-agentcore:us-east-1:123456789012:gateway/gw-1",
    ...                            "Search", [spec])
    >>> store = az.PolicyStore.from_text('@id("all") permit(principal, action, resource);')
    >>> LocalGateway(translate(store, profile), audit=[]).decide({"sub": "u1"}, "lookup", {}).allowed
    True
"""

from __future__ import annotations

from agentauthz.integrations.agentcore._limits import policy_names
from agentauthz.integrations.agentcore._local import LocalGateway, claim_tags, write_store
from agentauthz.integrations.agentcore._profile import AgentCoreProfile, TagMapping
from agentauthz.integrations.agentcore._schema import gateway_schema
from agentauthz.integrations.agentcore._sync import (
    PolicyChange,
    PullResult,
    PushPlan,
    apply_push,
    plan_push,
    policy_engine_id,
    pull,
)
from agentauthz.integrations.agentcore._translate import (
    NotApplicable,
    TranslatedPolicy,
    Translation,
    translate,
)

__all__ = [
    "AgentCoreProfile",
    "LocalGateway",
    "NotApplicable",
    "PolicyChange",
    "PullResult",
    "PushPlan",
    "TagMapping",
    "TranslatedPolicy",
    "Translation",
    "apply_push",
    "claim_tags",
    "gateway_schema",
    "plan_push",
    "policy_engine_id",
    "policy_names",
    "pull",
    "translate",
    "write_store",
]
