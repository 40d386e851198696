"""Model Context Protocol integration: MCP servers and clients (extra ``mcp``).

``pip install "agentauthz[mcp]"``.

Two places to put Cedar decisions, one per side of the protocol:

* :class:`AuthzMiddleware` in a FastMCP server you run: every ``tools/call``,
  ``resources/read`` and ``prompts/get`` is decided for the user of the
  request's verified access token, and the lists show only what that user
  could be allowed. The tool receives only the arguments the policy
  evaluated.
* :class:`AuthorizedClientSession` around an ``mcp`` ``ClientSession`` your
  agent uses to call servers you do not control: each ``call_tool`` is decided
  for the end user your application bound before it is sent.

Both build a tool's :class:`~agentauthz.ToolSpec` from its MCP input schema
(:meth:`ToolSpec.from_json_schema <agentauthz.ToolSpec.from_json_schema>`), so
a call is validated and decided exactly as ``@authz.guard`` decides a call of
a function with the same arguments: the same ``context.input``, the same
refusal text, the same audit event. LangChain tools shaped as
``langchain-mcp-adapters`` makes them (a JSON-schema ``args_schema``) are
authorized by :func:`agentauthz.integrations.langchain.authorize_tools`.

Tested with fastmcp 4.1.1 and mcp 2.1.1 (docs/integrations/mcp.md).

Example:
    >>> import agentauthz as az
    >>> from fastmcp import FastMCP
    >>> authz = az.Authorizer.from_text("permit(principal, action, resource);")
    >>> server = FastMCP("assistant", middleware=[AuthzMiddleware(authz)])
    >>> type(server.middleware[0]).__name__
    'AuthzMiddleware'
"""

from __future__ import annotations

from agentauthz.integrations.mcp._client import AuthorizedClientSession
from agentauthz.integrations.mcp._server import AuthzMiddleware

__all__ = ["AuthorizedClientSession", "AuthzMiddleware"]
