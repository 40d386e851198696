"""The example assistant as an MCP server: its five tools, every call decided by agentauthz.

``build_server(authz, auth)`` makes a FastMCP server with the assistant's tools
(the same names and arguments as ``../assistant_tools.py``, the actions of
``../../policies``). ``AuthzMiddleware`` decides each ``tools/call`` for the
user of the request's verified access token (``auth=``: here a JWT verifier),
lists each user only the tools they could call, and hands a tool only the
arguments the policies evaluated. ``client.py`` runs it (`make demo`).
"""

from __future__ import annotations

import sys
from pathlib import Path

from fastmcp import FastMCP
from fastmcp.server.auth import AuthProvider

import agentauthz as az
from agentauthz.integrations.mcp import AuthzMiddleware as MCPAuthzMiddleware

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from assistant_tools import POLICIES, document

RAN: list[str] = []  # the tool bodies that actually ran

#: Document tools act on the document they name: Document::"<document_id>", typed by us.
DOCUMENT_TOOLS = {
    "read_document": az.ToolSettings(resource=document, resource_types="Document"),
    "delete_document": az.ToolSettings(resource=document, resource_types="Document"),
}


def build_server(authz: az.Authorizer, auth: AuthProvider | None) -> FastMCP:
    """The assistant's MCP server; ``auth`` verifies the bearer tokens the end users' clients send."""
    server = FastMCP("assistant", auth=auth,
                     middleware=[MCPAuthzMiddleware(authz, tools=DOCUMENT_TOOLS)])

    @server.tool
    def search_documents(query: str) -> str:
        """Search the knowledge base."""
        RAN.append("search_documents")
        return f"results for {query!r}"

    @server.tool
    def read_document(document_id: str) -> str:
        """Read one document by id."""
        RAN.append("read_document")
        return f"contents of {document_id}"

    @server.tool
    def delete_document(document_id: str) -> str:
        """Delete one document by id."""
        RAN.append("delete_document")
        return f"deleted {document_id}"

    @server.tool
    def send_email(to: str, subject: str) -> str:
        """Send an email on the user's behalf."""
        RAN.append("send_email")
        return f"email to {to} sent"

    @server.tool
    def issue_refund(order_id: str, amount: int) -> str:
        """Refund an order, amount in whole currency units."""
        RAN.append("issue_refund")
        return f"refunded {amount!r} on {order_id}"

    return server


def authorizer(audit: list[az.AuditSink] | None = None) -> az.Authorizer:
    """The example store's Authorizer (the policies, schema and entities in ../../policies)."""
    return az.Authorizer.from_directory(POLICIES, audit=audit)
