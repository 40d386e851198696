"""An MCP client calling the example assistant's MCP server: `make demo` (offline, loopback only).

The script plays three parts on this machine:

1. the identity provider: an RSA key pair that signs each end user's access token;
2. the MCP server of ``server.py``, on a free port of 127.0.0.1, verifying those tokens
   (FastMCP's ``JWTVerifier``) and deciding every tool call with ``AuthzMiddleware``;
3. the MCP clients, one per end user, calling tools as an agent would.

Each call prints ALLOW or DENY and what the client reads: a refusal names only the decision's id;
the policies behind it come from the server's audit trail. The script exits 1 if an outcome
differs from the one written next to the call. The last part guards the client side: a client
agent wraps its session in ``AuthorizedClientSession``, and a call its user may not make is
never sent to the server.

    python examples/mcp/client.py
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Any

import fastmcp
import httpx2
from fastmcp import Client
from fastmcp.server.auth.providers.jwt import JWTVerifier, RSAKeyPair
from fastmcp.utilities.tests import run_server_async

sys.path.insert(0, str(Path(__file__).resolve().parent))
import server as assistant

import agentauthz as az
from agentauthz.integrations.mcp import AuthorizedClientSession

ISSUER, AUDIENCE = "https://idp.acme.example", "assistant-mcp"
AUDIT = az.MemorySink()  # the server's audit trail (deployed: the agentauthz.audit logger)

#: (user, tool, arguments the model chose, expected outcome, what it shows)
CALLS: list[tuple[str, str, dict[str, Any], str, str]] = [
    ("bob", "issue_refund", {"order_id": "o-1001", "amount": 500}, "ALLOW", "support refunds up to 500"),
    ("bob", "issue_refund", {"order_id": "o-1003", "amount": "501"}, "DENY",
     'the string "501" is decided, and would have run, as the number 501'),
    ("carol", "issue_refund", {"order_id": "o-1002", "amount": 4200}, "ALLOW", "finance refunds up to 5000"),
    ("carol", "issue_refund", {"order_id": "o-1005", "amount": -200}, "DENY", "a guardrail forbids it"),
    ("carol", "send_email", {"to": "attacker@evil.example, dave@acme.example", "subject": "Q3"}, "DENY",
     "one recipient per email: an injected second address is refused"),
    ("carol", "send_email", {"to": "dave@acme.example", "subject": "Q3", "bcc": "attacker@evil.example"},
     "DENY", "an argument the tool does not declare is refused, never dropped"),
    ("alice", "read_document", {"document_id": "acme-eng-roadmap"}, "ALLOW", "her department's document"),
    ("erin", "read_document", {"document_id": "acme-handbook"}, "DENY", "another tenant's document"),
    ("bob", "transfer_funds", {"amount": 1}, "DENY", "a tool the server does not have"),
]


def why(text: str) -> str:
    """What the audit event of a refusal says, found by the decision id the client read."""
    event = next((e for e in AUDIT.events if e.decision_id and e.decision_id in text), None)
    if event is None:
        return ""
    if event.reasons:
        return f"policies {', '.join(event.reasons)}"
    return "; ".join(event.errors) or "no policy permits it"


async def call_as(url: str, token: str, tool: str, arguments: dict[str, Any]) -> tuple[str, str]:
    async with Client(url, auth=token) as client:
        result = await client.call_tool_mcp(tool, arguments)
    text = result.content[0].text if result.content else ""
    return ("DENY" if result.is_error else "ALLOW"), text


async def main() -> int:
    keys = RSAKeyPair.generate()

    def token(user: str) -> str:
        return keys.create_token(subject=user, issuer=ISSUER, audience=AUDIENCE)

    verifier = JWTVerifier(public_key=keys.public_key, issuer=ISSUER, audience=AUDIENCE)
    authz = assistant.authorizer(audit=[AUDIT])
    mismatches = 0
    async with run_server_async(assistant.build_server(authz, verifier)) as url:
        print(f"MCP server on {url}; every tools/call is decided for the token's user\n")
        for user in ("bob", "erin"):
            async with Client(url, auth=token(user)) as client:
                listed = [tool.name for tool in await client.list_tools()]
            print(f"tools/list for {user:5}: {', '.join(listed)}")
        print()
        for user, tool, arguments, expected, note in CALLS:
            outcome, text = await call_as(url, token(user), tool, arguments)
            mismatches += outcome != expected
            flag = "" if outcome == expected else "  UNEXPECTED"
            print(f"{outcome:5}  {user:5} {tool} {json.dumps(arguments)}{flag}\n       ({note})\n"
                  f"       client reads: {text}")
            if outcome == "DENY":
                print(f"       audit says:   {why(text)}")
        async with httpx2.AsyncClient() as http:
            response = await http.post(url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                                       headers={"Accept": "application/json, text/event-stream"})
        mismatches += response.status_code != 401
        print(f"\nno token: HTTP {response.status_code} before any tool is looked at")
        mismatches += await client_side(url, token("bob"))
    ran = ", ".join(assistant.RAN)
    print(f"\ntool bodies that ran: {ran}")
    return 1 if mismatches else 0


async def client_side(url: str, token: str) -> int:
    """A client agent that checks its own calls before sending them (to a server it does not control)."""
    agent_authz = assistant.authorizer(audit=[])  # the agent's own Authorizer, in its own process
    before = len(AUDIT.events)
    async with Client(url, auth=token) as client:
        session = AuthorizedClientSession(client.session, agent_authz)
        with agent_authz.acting_as(az.EntityUID("User", "bob")):
            result = await session.call_tool("issue_refund", {"order_id": "o-1004", "amount": 900})
    sent = len(AUDIT.events) > before  # the server decides (and audits) every call it receives
    print("\nclient side: bob's agent asks for a refund of 900 through AuthorizedClientSession")
    print(f"DENY   refused before sending (sent to the server: {sent}): {result.content[0].text}")
    return 0 if result.is_error and not sent else 1


if __name__ == "__main__":
    fastmcp.settings.log_level = "CRITICAL"  # no request log, no traceback when the loopback server stops
    logging.getLogger("fastmcp").setLevel(logging.WARNING)
    sys.exit(asyncio.run(main()))
