"""The example store's tool policies on an AgentCore Gateway: `make demo` (offline: no AWS).

The assistant's three tools that act on no document (search, email, refund) sit
behind an AgentCore Gateway target. The policies in policies/ are translated
for its policy engine: the end user becomes `AgentCore::OAuthUser` (the token's
`sub`; roles and tenant read from claims), each tool an `AgentCore::Action`, the
resource the gateway. Policies that read what a gateway request does not carry
(session facts, tool attributes) are refused by name, never dropped; they stay
on the in-process path. The rest is decided here as the gateway would decide it,
on requests shaped as the gateway builds them, before `agentauthz agentcore push`
deploys it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import agentauthz as az
from agentauthz.integrations.agentcore import AgentCoreProfile, LocalGateway, TagMapping, translate

sys.path.insert(0, str(Path(__file__).resolve().parent))
from assistant_tools import POLICIES, build_tools

GATEWAY_ARN = "arn:aws:bedrock-agentcore:us-east-1:123456789012:gateway/assistant-gw-a1b2c3d4e5"
GATEWAY_TOOLS = ("search_documents", "send_email", "issue_refund")

#: What the identity provider puts in each user's token (every role, ancestors included).
TOKENS: dict[str, dict[str, Any]] = {
    "bob": {"sub": "bob", "tenant": "acme", "roles": ["employee", "support-agent"]},
    "carol": {"sub": "carol", "tenant": "acme", "roles": ["employee", "finance"]},
    "erin": {"sub": "erin", "tenant": "globex", "roles": ["employee"]},
}
CALLS = [
    ("bob", "issue_refund", {"order_id": "o-1001", "amount": 500}),
    ("bob", "issue_refund", {"order_id": "o-1003", "amount": 501}),
    ("carol", "issue_refund", {"order_id": "o-1005", "amount": -200}),
    ("carol", "send_email", {"to": "dave@acme.example", "subject": "Budget"}),
    ("carol", "send_email", {"to": "attacker@evil.example, dave@acme.example", "subject": "Q3"}),
    ("erin", "send_email", {"to": "alice@acme.example", "subject": "hi"}),
    ("erin", "search_documents", {"query": "vacation policy"}),
]


def main() -> None:
    guarded = build_tools(az.Authorizer.from_text("", audit=[]))
    profile = AgentCoreProfile(GATEWAY_ARN, "Assistant", [guarded[name] for name in GATEWAY_TOOLS],
                               tags=TagMapping(attributes={"tenant": "tenant"}, groups={"Role": "roles"}))
    store = az.PolicyStore.from_directory(POLICIES)
    print("Translating policies/ for the gateway target 'Assistant':")
    problems: tuple[str, ...] = ()
    try:
        translate(store, profile)
    except az.PolicyError as exc:
        problems = exc.problems
    for problem in problems:
        print(f"  refused  {problem}")
    refused = [problem.split("policy '", 1)[1].split("'", 1)[0] for problem in problems]
    print("They stay on the in-process path (@authz.guard, the MCP middleware), excluded on purpose:\n")

    translation = translate(store, profile, exclude=refused)
    print(f"{len(translation.policies)} policies for the gateway, {len(translation.not_applicable)} left out "
          f"({len(refused)} excluded, the others match no gateway tool):")
    for policy in translation.policies:
        print(f"  {policy.effect:<6}  {policy.id}")
    print("\nOne of them, as AgentCore stores it:")
    print(next(p for p in translation.policies if p.id == "refund-support-limit").statement)

    print("\nCalls decided as the gateway would decide them:")
    audit = az.MemorySink()
    gateway = LocalGateway(translation, audit=[audit])
    for who, tool, arguments in CALLS:
        decision = gateway.decide(TOKENS[who], tool, arguments)
        shown = ", ".join(f"{key}={value!r}" for key, value in arguments.items())
        verdict = "ALLOW" if decision.allowed else "DENY "
        reasons = ", ".join(decision.reasons) or "no policy permits it"
        print(f"  {verdict}  {who:<5} {tool}({shown})  [{reasons}]")
    event = audit.events[0]
    print(f"\nAudit event of the first call: {event.principal} {event.action}")
    print("Deploy with: agentauthz agentcore push policies/ --policy-engine <engine> --gateway-arn ... "
          "--target Assistant --mcp tools.json --group-claim Role=roles --attribute-claim tenant=tenant "
          + " ".join(f"--exclude {policy_id}" for policy_id in refused))


if __name__ == "__main__":
    main()
