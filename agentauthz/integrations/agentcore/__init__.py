"""Amazon Bedrock AgentCore Policy: our tool policies on an AgentCore Gateway's policy engine.

(extra ``aws`` for push, pull and diff; translation and local evaluation need only cedarpy.)
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
