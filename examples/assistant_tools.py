"""The example assistant's tools, guarded by agentauthz against ../policies.

Shared by the demos and by the tests that check the schema generated from these
signatures (policies/schema.cedarschema must agree with it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import agentauthz as az

POLICIES = Path(__file__).resolve().parent.parent / "policies"


def document(arguments: dict[str, Any]) -> az.EntityUID:
    """The document a call touches: built from the argument, typed by us, never by the model."""
    return az.EntityUID("Document", arguments["document_id"])


def build_tools(authz: az.Authorizer, *, on_deny: az.OnDeny = "message") -> dict[str, Any]:
    """Guard the assistant's five tools with ``authz``; returns them by name."""

    @authz.guard(on_deny=on_deny)
    def search_documents(query: str) -> str:
        """Search the knowledge base."""
        return f"results for {query!r}"

    @authz.guard(resource=document, resource_types=["Document"], on_deny=on_deny)
    def read_document(document_id: str) -> str:
        """Read one document by id."""
        return f"contents of {document_id}"

    @authz.guard(resource=document, resource_types=["Document"], on_deny=on_deny)
    def delete_document(document_id: str) -> str:
        """Delete one document by id."""
        return f"deleted {document_id}"

    @authz.guard(on_deny=on_deny)
    def send_email(to: str, subject: str) -> str:
        """Send an email on the user's behalf."""
        return f"email to {to} sent"

    @authz.guard(on_deny=on_deny, sum_arguments=["amount"])  # context.session.totals.issue_refund.amount
    def issue_refund(order_id: str, amount: int) -> str:
        """Refund an order, amount in whole currency units."""
        return f"refunded {amount} on {order_id}"

    return {
        tool.__name__: tool
        for tool in (search_documents, read_document, delete_document, send_email, issue_refund)
    }
