"""The example assistant's action-group Lambda for Amazon Bedrock Agents, authorized by agentauthz.

One Lambda serves two action groups over the example store (../../policies):

* ``assistant-tools``, a function-details group whose functions are named like
  the store's tool actions (``issue_refund``, ``read_document``, ...);
* ``assistant-api``, an OpenAPI group whose operations (``POST /refunds``, ...)
  map to the same actions.

The end user is the ``userId`` session attribute, which the application that
calls ``InvokeAgent`` sets server-side for its signed-in user (see
docs/integrations/bedrock-agents.md). Deployed, the Lambda runtime calls
``lambda_function.lambda_handler``; ``run.py`` beside this file calls it with
the sample events of ``events/``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import agentauthz as az
from agentauthz.integrations.bedrock import ActionInvocation, action_group_handler

POLICIES = Path(__file__).resolve().parents[2] / "policies"

# audit=[]: the local runner prints outcomes itself; deployed, keep the default
# (JSON audit events on the `agentauthz.audit` logger, i.e. CloudWatch Logs).
authz = az.Authorizer.from_directory(POLICIES, audit=[])

# OpenAPI operations of the `assistant-api` group -> the store's tool actions.
OPERATIONS: dict[str, str] = {
    "GET /search": "search_documents",
    "GET /documents/{document_id}": "read_document",
    "DELETE /documents/{document_id}": "delete_document",
    "POST /emails": "send_email",
    "POST /refunds": "issue_refund",
}
DOCUMENT_ACTIONS = ("read_document", "delete_document")


def action(event: Any) -> str | None:
    """Function groups call the tool by name; OpenAPI operations are mapped (None: refused)."""
    if "function" in event:
        return str(event["function"])
    return OPERATIONS.get(f"{event['httpMethod']} {event['apiPath']}")


def resource(invocation: ActionInvocation) -> az.EntityUID | None:
    """Document tools act on the document the call names; the others on the tool (default)."""
    if invocation.action in DOCUMENT_ACTIONS:
        return az.EntityUID("Document", invocation.arguments["document_id"])
    return None


def end_user(event: dict[str, Any]) -> az.EntityUID:
    """The signed-in user the application put in the session attributes (never the model's text)."""
    return az.EntityUID("User", event["sessionAttributes"]["userId"])


IMPLEMENTATIONS: dict[str, Any] = {
    "search_documents": lambda a: {"results": [f"hit for {a['query']!r}"]},
    "read_document": lambda a: f"contents of {a['document_id']}",
    "delete_document": lambda a: f"deleted {a['document_id']}",
    "send_email": lambda a: f"email to {a['to']} sent",
    "issue_refund": lambda a: {"order_id": a["order_id"], "refunded": a["amount"]},
}


@action_group_handler(authz, principal=end_user, action=action, resource=resource)
def lambda_handler(event: dict[str, Any], context: Any, invocation: ActionInvocation) -> Any:
    """Runs only for allowed calls; returns what the agent reads (wrapped by the decorator)."""
    return IMPLEMENTATIONS[str(invocation.action)](invocation.arguments)
