"""Authorizing the tool calls a client makes to MCP servers (see :mod:`agentauthz.integrations.mcp`)."""

from __future__ import annotations

try:
    import mcp_types as mt
except ImportError as _missing:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        'agentauthz.integrations.mcp needs the MCP SDK 2.x: pip install "agentauthz[mcp]"'
    ) from _missing

from collections.abc import Mapping
from typing import Any

from agentauthz._authorizer import Authorizer
from agentauthz._errors import ConfigurationError, InvalidArguments
from agentauthz._model import Decision, EntityUID
from agentauthz.integrations.mcp._specs import ToolSpecs, settings_by_name
from agentauthz.tools._spec import RefusalKind, ToolSpec

__all__ = ["AuthorizedClientSession"]

# A server that keeps answering with a next page cannot keep a call waiting forever.
_MAX_PAGES = 100


class AuthorizedClientSession:
    """An MCP ``ClientSession`` whose tool calls are decided by Cedar before they are sent.

    For a client agent calling MCP servers it does not control: each
    ``call_tool`` is decided for the end user bound with
    ``authz.acting_as(...)`` (and the session bound with
    ``authz.session(...)``, where it is counted once the server answers
    without error), exactly as ``@authz.guard`` decides a call: action = the
    tool name, resource = ``Tool::"<name>"``, the arguments validated against
    the tool's input schema (as the server lists it) in ``context.input``. The
    server receives **only** those validated arguments, coerced as the policy
    saw them; an argument the schema does not declare is refused.

    A refused call is not sent: ``call_tool`` returns a ``CallToolResult``
    with ``is_error=True`` whose text is ``authz.refusal(...)`` (generic, with
    the audited decision id), the shape a server's own tool error has, so an
    agent loop reads it as it reads any failed call. A tool the server does
    not list (or whose schema has no Cedar equivalent) is refused too.
    ``list_tools`` returns only the tools the user could ever be allowed.

    Everything else (resources, prompts, ping, ...) is on :attr:`session`,
    not decided here.

    Args:
        session: a connected ``mcp.ClientSession`` (for a ``fastmcp.Client``:
            ``client.session``).
        authz: the Authorizer deciding the calls.
        tools: per tool name, a ToolSpec or guarded tool whose action,
            resource, context and summed arguments decide that tool's calls
            (e.g. ``{"search": ToolSpec.from_json_schema("search", {}, action="crm__search")}``).

    Raises:
        ConfigurationError: a malformed option.

    Example:
        >>> import asyncio
        >>> import agentauthz as az
        >>> from fastmcp import Client, FastMCP
        >>> server = FastMCP("third-party")
        >>> @server.tool
        ... def refund(order_id: str, amount: int) -> str:
        ...     return f"refunded {amount!r}"
        >>> authz = az.Authorizer.from_text(
        ...     'permit(principal, action == Action::"refund", resource)'
        ...     ' when { context.input.amount <= 100 };',
        ...     audit=[])
        >>> async def agent():
        ...     async with Client(server) as client:
        ...         mcp = AuthorizedClientSession(client.session, authz)
        ...         with authz.acting_as(az.EntityUID("User", "bob")):
        ...             small = await mcp.call_tool("refund", {"order_id": "o-1", "amount": "50"})
        ...             large = await mcp.call_tool("refund", {"order_id": "o-1", "amount": 500})
        ...     return small.content[0].text, large.is_error
        >>> asyncio.run(agent())
        ('refunded 50', True)
    """

    def __init__(self, session: Any, authz: Authorizer, *, tools: Mapping[str, Any] | None = None) -> None:
        if not isinstance(authz, Authorizer):
            raise ConfigurationError("AuthorizedClientSession needs an agentauthz Authorizer")
        for method in ("list_tools", "call_tool"):
            if not callable(getattr(session, method, None)):
                raise ConfigurationError(
                    f"AuthorizedClientSession wraps an mcp ClientSession, not {type(session).__name__}")
        self.session = session
        self.authz = authz
        self.specs = ToolSpecs(settings_by_name(tools))
        self._listed: dict[str, mt.Tool] = {}

    async def list_tools(self, **options: Any) -> mt.ListToolsResult:
        """The server's tools (one page, as ``ClientSession.list_tools``) the bound user could ever call.

        Raises:
            IdentityError: no end user is bound.
        """
        self.authz.current_principal()  # refuse before asking the server
        listed: mt.ListToolsResult = await self.session.list_tools(**options)
        specs: dict[int, ToolSpec] = {}
        for tool in listed.tools:
            self._listed[tool.name] = tool
            try:
                specs[id(tool)] = self._spec(tool)
            except ConfigurationError:
                continue
        kept = {id(spec) for spec in self.authz.permitted_tools(specs.values())}
        visible = [tool for tool in listed.tools if id(tool) in specs and id(specs[id(tool)]) in kept]
        return listed.model_copy(update={"tools": visible})

    async def call_tool(self, name: str, arguments: Mapping[str, Any] | None = None, *,
                        call_id: str | None = None, **options: Any) -> mt.CallToolResult:
        """Decide the call; send it with exactly the validated arguments, or return the refusal.

        Args:
            name: the tool.
            arguments: the arguments the model chose.
            call_id: the model's tool call id: a call with the same id already
                running or completed in the bound session is refused.
            options: passed to ``ClientSession.call_tool`` (timeouts, progress, meta).

        Raises:
            IdentityError: no end user is bound (audited).
        """
        action = self.specs.action_of(name)
        resource = EntityUID(self.authz.tool_entity_type, name)
        if self.authz.identity is None:
            self._no_user(action, resource)
        tool = self._listed.get(name) or await self._find(name)
        if tool is None:
            return self._refused(name, self._refusal(action, resource, "unknown tool"), "unknown")
        try:
            spec = self._spec(tool)
        except ConfigurationError:
            reason = "the tool's input schema has no Cedar equivalent"
            return self._refused(name, self._refusal(action, resource, reason), "unknown")
        try:
            call = await self.authz.abegin_tool_call(spec, dict(arguments or {}), call_id=call_id)
        except InvalidArguments as exc:
            return self._refused(name, exc.decision, "invalid")
        if not call.admits:  # a held call (the approver did not grant it) reads "awaits approval"
            return self._refused(name, call.decision, "approval" if call.approval is not None else "denied")
        with call:  # counted in the bound session once the server answered without error
            result: mt.CallToolResult = await self.session.call_tool(name, call.arguments, **options)
            if getattr(result, "is_error", False) or not isinstance(result, mt.CallToolResult):
                call.fail()
        call.record_result(result)  # a source of the session, before the model reads it
        return await self.authz.ascreen_tool_result(spec, result)  # its findings, before it too

    def _spec(self, tool: mt.Tool) -> ToolSpec:
        return self.specs.tool(tool)

    async def _find(self, name: str) -> mt.Tool | None:
        """The tool as the server lists it, paging through the list (at most ``_MAX_PAGES`` pages)."""
        cursor: str | None = None
        for _ in range(_MAX_PAGES):
            params = mt.PaginatedRequestParams(cursor=cursor) if cursor else None
            listed: mt.ListToolsResult = await self.session.list_tools(params=params)
            for tool in listed.tools:
                self._listed[tool.name] = tool
            if name in self._listed or not listed.next_cursor:
                break
            cursor = listed.next_cursor
        return self._listed.get(name)

    def _no_user(self, action: str | EntityUID, resource: EntityUID) -> None:
        self.authz.audit_missing_identity(action, resource)
        self.authz.current_principal()  # raises IdentityError

    def _refusal(self, action: str | EntityUID, resource: EntityUID, reason: str) -> Decision:
        return self.authz.audit_refusal(action=action, resource=resource, reason=reason)

    def _refused(self, name: str, decision: Decision, kind: RefusalKind) -> mt.CallToolResult:
        text = self.authz.refusal(name, decision, kind=kind)
        return mt.CallToolResult(content=[mt.TextContent(type="text", text=text)], is_error=True)
