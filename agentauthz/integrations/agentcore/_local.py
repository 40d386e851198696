"""Evaluate translated policies here, on requests built as an AgentCore Gateway builds them.

No AgentCore endpoint decides offline, so a gateway's policies are tested with
the embedded engine: the principal ``AgentCore::OAuthUser::"<sub>"`` carries the
token's claims as String tags (cedarpy 4.12 evaluates entity tags), the
resource is the Gateway, the action ``AgentCore::Action::"<target>___<tool>"``
and the context holds ``input`` only, JSON numbers as decimals.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from agentauthz._audit import AuditSink
from agentauthz._authorizer import Authorizer
from agentauthz._errors import IdentityError
from agentauthz._model import Decision, Entity, EntityUID
from agentauthz._model import _escape as escape
from agentauthz.engines.local import LocalEngine
from agentauthz.integrations.agentcore._profile import ACTION, GATEWAY, PRINCIPAL
from agentauthz.integrations.agentcore._schema import gateway_schema
from agentauthz.integrations.agentcore._translate import TranslatedPolicy, Translation
from agentauthz.policy._store import PolicyStore
from agentauthz.tools._spec import tool_input

__all__ = ["LocalGateway", "claim_tags", "policy_text", "write_store"]


def claim_tags(claims: Mapping[str, Any]) -> dict[str, str]:
    """The principal's tags as AgentCore makes them: every claim a string, null claims left out.

    Strings stay as they are; numbers and booleans become their JSON text
    (``1735689600``, ``true``); arrays and objects their compact JSON text.

    Example:
        >>> claim_tags({"sub": "u1", "roles": ["a", "b"], "exp": 17, "nick": None})
        {'sub': 'u1', 'roles': '["a","b"]', 'exp': '17'}
    """
    tags: dict[str, str] = {}
    for name, value in claims.items():
        if value is None:
            continue
        tags[name] = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"),
                                                                        ensure_ascii=False)
    return tags


def policy_text(policies: Sequence[TranslatedPolicy]) -> str:
    """The translated statements as one policy file: ``@id`` our id, ``@mode("shadow")`` for LOG_ONLY."""
    blocks = []
    for policy in policies:
        mode = '@mode("shadow")\n' if policy.shadow else ""
        blocks.append(f'@id("{escape(policy.id)}")\n{mode}{policy.statement}')
    return "\n\n".join(blocks) + "\n"


def write_store(translation: Translation, out_dir: str | Path) -> tuple[Path, Path]:
    """Write the translated policies and the gateway schema as a policy store directory.

    ``agentauthz test <out_dir>`` then runs decision cases (``cases/*.toml``,
    with the ``AgentCore::OAuthUser`` entity and its tags in ``entities``)
    against the gateway's policies before they are deployed. Existing files of
    the same names are replaced; other files (your cases) are kept.

    Returns:
        The paths of ``policies.cedar`` and ``schema.cedarschema.json``.
    """
    root = Path(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    policies, schema = root / "policies.cedar", root / "schema.cedarschema.json"
    policies.write_text(policy_text(translation.policies), encoding="utf-8")
    schema.write_text(json.dumps(gateway_schema(translation.profile), indent=2) + "\n", encoding="utf-8")
    return policies, schema


class LocalGateway:
    """A gateway's policy engine, embedded: decides tool calls as AgentCore would.

    ``LOG_ONLY`` policies (our ``@mode("shadow")``) never change a decision;
    what they would have done is in each audit event, as with the Authorizer's
    shadow mode.

    Args:
        translation: what :func:`~agentauthz.integrations.agentcore.translate` produced.
        audit: audit sinks (default: the ``agentauthz.audit`` logger); one event per decision.

    Example:
        >>> import agentauthz as az
        >>> from agentauthz.integrations.agentcore import AgentCoreProfile, TagMapping, translate
        >>> spec = az.ToolSpec.from_json_schema("issue_refund", {"type": "object", "properties": {
        ...     "amount": {"type": "number"}}, "required": ["amount"]})
        >>> store = az.PolicyStore.from_text(
        ...     '@id("finance") permit(principal in Role::"finance", action == Action::"issue_refund", '
        ...     'resource) when { context.input.amount.lessThan(decimal("99.5")) };')
        >>> profile = AgentCoreProfile("arn:aws:bedrock-agentcore:us-east-1:123456789012:gateway/gw-1",
        ...                            "Refunds", [spec], tags=TagMapping(groups={"Role": "roles"}))
        >>> gateway = LocalGateway(translate(store, profile), audit=[])
        >>> gateway.decide({"sub": "carol", "roles": ["finance"]}, "issue_refund", {"amount": 12.25}).allowed
        True
        >>> gateway.decide({"sub": "bob", "roles": ["support"]}, "issue_refund", {"amount": 12.25}).allowed
        False
    """

    def __init__(self, translation: Translation, *, audit: Sequence[AuditSink] | None = None) -> None:
        self.translation = translation
        self.profile = translation.profile
        self.store = PolicyStore.from_text(policy_text(translation.policies) if translation.policies else "",
                                           schema=gateway_schema(self.profile))
        self.authz = Authorizer(LocalEngine(self.store), audit=audit)

    def decide(self, claims: Mapping[str, Any], tool: str, arguments: Mapping[str, Any]) -> Decision:
        """Decide one call of ``tool`` for the user of a verified token's ``claims``.

        Raises:
            IdentityError: the claims have no ``sub`` (no user: refused).
            InvalidValueError: the arguments do not fit the tool's input schema,
                or a number has more than four decimals.
            ConfigurationError: the gateway target has no such tool.
        """
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub:
            raise IdentityError("the token has no sub claim: no AgentCore user to decide for")
        spec = self.profile.tool(tool)
        values = tool_input(spec.arguments(arguments))
        user = Entity(uid=EntityUID(PRINCIPAL, sub), tags=claim_tags(claims))
        return self.authz.authorize(
            principal=user, action=EntityUID(ACTION, self.profile.action_id(tool)),
            resource=EntityUID(GATEWAY, self.profile.gateway_arn), context={"input": values})
