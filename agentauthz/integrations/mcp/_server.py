"""FastMCP server middleware deciding every MCP request (see :mod:`agentauthz.integrations.mcp`)."""

from __future__ import annotations

try:
    import mcp_types as mt
    from fastmcp.exceptions import NotFoundError, ToolError
    from fastmcp.prompts.base import Prompt, PromptResult
    from fastmcp.resources.base import Resource, ResourceResult
    from fastmcp.resources.template import ResourceTemplate, expand_uri_template
    from fastmcp.server.context import Context
    from fastmcp.server.dependencies import get_access_token, get_http_request
    from fastmcp.server.middleware import CallNext, Middleware, MiddlewareContext
    from fastmcp.server.middleware.authorization import _requested_version
    from fastmcp.tools.base import InputRequiredToolResult, Tool, ToolResult
    from mcp_types.version import MODERN_PROTOCOL_VERSIONS
except ImportError as _missing:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        'agentauthz.integrations.mcp needs fastmcp 4.1: pip install "agentauthz[mcp]"'
    ) from _missing

import logging
from collections.abc import Awaitable, Callable, Sequence
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any, NoReturn, TypeAlias, TypeVar

from agentauthz._authorizer import Authorizer
from agentauthz._errors import ConfigurationError, IdentityError, InvalidArguments
from agentauthz._model import Decision, Entity, EntityUID
from agentauthz.integrations.mcp._identity import PrincipalOf, token_principal
from agentauthz.integrations.mcp._specs import ToolSpecs, settings_by_name
from agentauthz.session._session import ToolCall
from agentauthz.tools._spec import RefusalKind, ToolSpec

if TYPE_CHECKING:
    from agentauthz.avp._tokens import TokenIdentity

__all__ = ["AuthzMiddleware", "SessionOf"]

#: ``session=``: False, True (the MCP session of a 2025-era connection), or the application's key.
SessionOf: TypeAlias = "bool | Callable[[Context], str]"
T = TypeVar("T")
_logger = logging.getLogger("agentauthz")
_NO_SESSION = ("no session for the request: session= gave no key, or the connection has no MCP session "
               "(2026-07-28 requests and stateless HTTP have none; give session= a callable)")


class _Refused(Exception):
    """A request refused before it reached the server (already audited)."""

    def __init__(self, decision: Decision, kind: RefusalKind) -> None:
        super().__init__("refused")
        self.decision = decision
        self.kind = kind


class AuthzMiddleware(Middleware):
    """FastMCP middleware: every tool call, resource read and prompt is decided by Cedar for the token's user.

    Add it to the server, **last** in the middleware list (innermost, so no
    middleware after it changes the arguments it decided)::

        server = FastMCP("svc", auth=JWTVerifier(...), middleware=[AuthzMiddleware(authz)])

    The end user is read from the request's verified access token
    (``get_access_token()``, set by the server's ``auth=``): ``User::"<sub>"``
    by default, ``identity=`` maps the claims as an AVP identity source does,
    ``principal=`` is the application's own mapping. Never the ``client_id``.
    A request without a token (a server without ``auth=``, stdio, an
    in-process client) is refused and audited; so is a token the mapping
    rejects.

    * ``tools/call``: the tool's :class:`~agentauthz.ToolSpec` is built from
      its input schema (cached per tool and schema) and the call decided as
      ``@authz.guard`` decides one: action = the tool name, resource =
      ``Tool::"<name>"`` (``authz.tool_entity_type``), the validated arguments
      in ``context.input``. The arguments are validated and coerced as the
      tool will receive them (``"42"`` -> 42, ``"false"`` -> False), an
      argument the schema does not declare is refused, and the tool gets
      **only** those validated arguments. A refusal is a tool error result
      (``isError``) whose text is ``authz.refusal(...)``: generic, naming the
      decision id of the audit event. An unknown tool, or one whose schema has
      no Cedar equivalent, is refused the same way (audited).
    * ``tools/list``, ``resources/list``, ``prompts/list``: only what the user
      could ever be allowed (partial evaluation with the arguments unknown).
      Listing shapes what a client shows; every call is still decided.
    * ``resources/read``: action ``read_resource`` on ``Resource::"<uri>"``
      with ``context.uri``; a template read is decided on the URI the template
      expands to from the parameters FastMCP extracts (``%``-escapes decoded,
      an undeclared query dropped), the parameters in ``context.input``.
      ``prompts/get``: action ``get_prompt`` on
      ``Prompt::"<name>"`` with the (string) arguments in ``context.input``;
      one the prompt does not declare is refused. Either refusal reads
      exactly as FastMCP's own "Unknown resource"/"Unknown prompt" error
      (JSON-RPC -32602), so it does not tell whether the resource exists.
    * Sessions (off by default): ``session=True`` decides every call in the
      MCP session of the connection (``context.session``, owned by the user:
      another user's session id is refused), counting a call once the tool
      returns without error. Only 2025-era connections with a server-assigned
      session have one; a 2026-07-28 request has none and is refused. Pass
      ``session=`` a callable of the FastMCP ``Context`` returning a key the
      application trusts (a conversation id) to count across requests there.
    * Approvals (they need a session): a call only ``@approval("required")``
      forbids deny is held (see ``docs/approvals.md``). The Authorizer's
      approver is asked first, if it has one; otherwise the client's user is
      asked through MCP elicitation (``elicit_approvals``): accepting with
      ``true`` grants the call and it runs at once; declining refuses it. A
      client that cannot elicit gets the "awaits approval" refusal.

    Args:
        authz: the Authorizer deciding the requests.
        principal: maps the verified ``AccessToken`` to the end user (an
            EntityUID or Entity, or an awaitable of one).
        identity: a :class:`~agentauthz.TokenIdentity` mapping the token's
            claims (principal type, id prefix, groups).
        tools: per tool name, a ToolSpec or guarded tool whose action,
            resource (e.g. computed from the arguments), context and summed
            arguments decide that tool's calls; arguments always follow the
            tool's input schema.
        session: False, True, or a callable of the FastMCP ``Context`` giving
            the session key (see above).
        resource_type: entity type of a resource read (``Resource::"<uri>"``).
        resource_action: action of a resource read.
        prompt_type: entity type of a prompt (``Prompt::"<name>"``).
        prompt_action: action of getting a prompt.
        elicit_approvals: ask the client's user to approve a held call (MCP
            elicitation); False leaves it to the Authorizer's approver.

    Raises:
        ConfigurationError: both ``principal`` and ``identity``, or a malformed option.

    Example:
        >>> import asyncio
        >>> import agentauthz as az
        >>> from fastmcp import FastMCP
        >>> from fastmcp.server.auth.providers.jwt import StaticTokenVerifier
        >>> from fastmcp.utilities.tests import asgi_server
        >>> authz = az.Authorizer.from_text(
        ...     'permit(principal == User::"alice", action == Action::"echo", resource);', audit=[])
        >>> tokens = {"t-alice": {"client_id": "app", "sub": "alice"},
        ...           "t-bob": {"client_id": "app", "sub": "bob"}}
        >>> server = FastMCP("svc", auth=StaticTokenVerifier(tokens), middleware=[AuthzMiddleware(authz)])
        >>> @server.tool
        ... def echo(text: str) -> str:
        ...     return text
        >>> async def call(token):
        ...     async with asgi_server(server) as running, running.client(auth=token) as client:
        ...         result = await client.call_tool("echo", {"text": "hi"}, raise_on_error=False)
        ...         return result.is_error, result.content[0].text.split(" (")[0]
        >>> asyncio.run(call("t-alice"))
        (False, 'hi')
        >>> asyncio.run(call("t-bob"))
        (True, "Tool 'echo' is not permitted for this user")
    """

    def __init__(
        self,
        authz: Authorizer,
        *,
        principal: PrincipalOf | None = None,
        identity: TokenIdentity | None = None,
        tools: dict[str, Any] | None = None,
        session: SessionOf = False,
        resource_type: str = "Resource",
        resource_action: str = "read_resource",
        prompt_type: str = "Prompt",
        prompt_action: str = "get_prompt",
        elicit_approvals: bool = True,
    ) -> None:
        if not isinstance(authz, Authorizer):
            raise ConfigurationError("AuthzMiddleware needs an agentauthz Authorizer")
        if principal is not None and identity is not None:
            raise ConfigurationError("give principal= or identity=, not both")
        if principal is not None and not callable(principal):
            raise ConfigurationError("principal= must be a callable of the access token")
        if not isinstance(session, bool) and not callable(session):
            raise ConfigurationError("session= must be True, False or a callable of the FastMCP Context")
        for option, value in (("resource_type", resource_type), ("resource_action", resource_action),
                              ("prompt_type", prompt_type), ("prompt_action", prompt_action)):
            if not isinstance(value, str) or not value:
                raise ConfigurationError(f"{option}= must be a non-empty string")
        self.authz = authz
        self.principal = principal
        self.identity = identity
        self.session = session
        self.resource_type = resource_type
        self.resource_action = resource_action
        self.prompt_type = prompt_type
        self.prompt_action = prompt_action
        self.elicit_approvals = elicit_approvals
        self.specs = ToolSpecs(settings_by_name(tools))

    # -- tools ---------------------------------------------------------------------------

    async def on_call_tool(
        self,
        context: MiddlewareContext[mt.CallToolRequestParams],
        call_next: CallNext[mt.CallToolRequestParams, ToolResult],
    ) -> ToolResult:
        """Decide the call; run the tool with exactly the validated arguments, or refuse it."""
        message = context.message
        name = message.name
        action = self.specs.action_of(name)
        tool_uid = EntityUID(self.authz.tool_entity_type, name)
        try:
            with await self._bound(context, action, tool_uid, count=True):
                spec, call = await self._begin_call(context, action, tool_uid, message.arguments or {})
                with call:  # counted in the bound session once the tool returned without error
                    decided = message.model_copy(update={"arguments": call.arguments})
                    result = await call_next(context.copy(message=decided))
                    if result.is_error or isinstance(result, InputRequiredToolResult):
                        call.fail()
                call.record_result(result)  # a source of the session, before the client reads it
                return await self._screened(spec, result, action, tool_uid)
        except _Refused as refused:
            raise ToolError(self.authz.refusal(name, refused.decision, kind=refused.kind)) from None

    async def _begin_call(self, context: MiddlewareContext[Any], action: str | EntityUID, tool_uid: EntityUID,
                          arguments: dict[str, Any]) -> tuple[ToolSpec, ToolCall]:
        """The spec and admitted call of the tool the request names, or :class:`_Refused` (audited)."""
        tool = await _found(context, lambda server, version: server.get_tool(context.message.name,
                                                                            version=version))
        if not isinstance(tool, Tool):
            self._refuse(action, tool_uid, "unknown tool", "unknown")
        try:
            spec = self.specs.tool(_described(tool))
        except ConfigurationError:
            self._refuse(action, tool_uid, "the tool's input schema has no Cedar equivalent", "unknown")
        call = await self._decided(lambda: self.authz.abegin_tool_call(spec, arguments), action, tool_uid)
        if call.approval is not None and self.elicit_approvals and await self._elicited(context, call):
            call = await self._decided(lambda: self.authz.abegin_tool_call(spec, arguments), action, tool_uid)
        if not call.admits:
            raise _Refused(call.decision, "approval" if call.approval is not None else "denied")
        return spec, call

    async def _screened(self, spec: ToolSpec, result: ToolResult, action: str | EntityUID,
                        tool_uid: EntityUID) -> ToolResult:
        """The result, once the tool's guardrail findings are in the session; else withheld (audited)."""
        try:
            return await self.authz.ascreen_tool_result(spec, result)
        except Exception as exc:  # unassessed or unrecorded: the client does not read it
            _logger.warning("MCP tool %r: its result could not be screened and is withheld (%s)",
                            tool_uid.id, type(exc).__name__)
            self._refuse(action, tool_uid, f"the result could not be screened ({type(exc).__name__})",
                         "denied")

    async def _elicited(self, context: MiddlewareContext[Any], call: ToolCall) -> bool:
        """Ask the client's user to approve a held call (MCP elicitation); True once it is granted.

        A client that cannot elicit (or fails to) leaves the call held; a user
        who declines, cancels or answers anything but ``true`` refuses it.
        """
        request, fastmcp_context = call.approval, context.fastmcp_context
        if request is None or fastmcp_context is None:
            return False
        try:
            answer = await fastmcp_context.elicit(f"Approve this call? {request.describe()}",
                                                  response_type=bool)
        except Exception:  # no elicitation on this connection: the call stays held
            _logger.warning("approval request %s: the MCP client could not be asked", request.id,
                            exc_info=True)
            return False
        if getattr(answer, "action", None) == "accept" and getattr(answer, "data", None) is True:
            self.authz.approve(request, granted_by="mcp-elicitation")
            return True
        self.authz.decline(request, declined_by="mcp-elicitation")
        call.approval = None
        return False

    async def on_list_tools(
        self,
        context: MiddlewareContext[mt.ListToolsRequest],
        call_next: CallNext[mt.ListToolsRequest, Sequence[Tool]],
    ) -> Sequence[Tool]:
        """Only the tools the user could ever be allowed to call."""
        tools = await call_next(context)
        specs: dict[int, ToolSpec] = {}
        for tool in tools:
            try:
                specs[id(tool)] = self.specs.tool(_described(tool))
            except ConfigurationError:
                continue  # every call of it is refused: not shown
        return await self._visible(tools, specs)

    # -- resources -------------------------------------------------------------------------

    async def on_read_resource(
        self,
        context: MiddlewareContext[mt.ReadResourceRequestParams],
        call_next: CallNext[mt.ReadResourceRequestParams, ResourceResult],
    ) -> ResourceResult:
        """Decide the read of the resource the URI names; a refusal reads as an unknown resource."""
        uri = str(context.message.uri)
        named = EntityUID(self.resource_type, uri)
        try:
            with await self._bound(context, self.resource_action, named):
                target, params = await self._decided(lambda: _read_target(context, uri), self.resource_action,
                                                     named)
                resource = EntityUID(self.resource_type, target)
                read = {"uri": target, **({"input": params} if params is not None else {})}
                decision = await self._decided(lambda: self.authz.aauthorize(
                    action=self.resource_action, resource=resource, context=read),
                    self.resource_action, resource)
                if not decision.admits:
                    raise _Refused(decision, "denied")
                return await call_next(context)
        except _Refused:
            raise NotFoundError(f"Unknown resource: {uri!r}") from None

    async def on_list_resources(
        self,
        context: MiddlewareContext[mt.ListResourcesRequest],
        call_next: CallNext[mt.ListResourcesRequest, Sequence[Resource]],
    ) -> Sequence[Resource]:
        """Only the resources the user could be allowed to read."""
        resources = await call_next(context)
        specs = {id(resource): self._resource_spec(str(resource.uri)) for resource in resources}
        return await self._visible(resources, specs)

    async def on_list_resource_templates(
        self,
        context: MiddlewareContext[mt.ListResourceTemplatesRequest],
        call_next: CallNext[mt.ListResourceTemplatesRequest, Sequence[ResourceTemplate]],
    ) -> Sequence[ResourceTemplate]:
        """Only the templates of a user who could be allowed to read some resource."""
        templates = await call_next(context)
        spec = self.specs.cached(("resource template", "*"), {}, lambda: ToolSpec.from_json_schema(
            "resource template", {"type": "object"}, action=self.resource_action,
            resource=lambda arguments: EntityUID(self.resource_type, "")))
        return await self._visible(templates, {id(template): spec for template in templates})

    def _resource_spec(self, uri: str) -> ToolSpec:
        return self.specs.cached(("resource", uri), {}, lambda: ToolSpec.from_json_schema(
            uri, {"type": "object"}, action=self.resource_action,
            resource=EntityUID(self.resource_type, uri)))

    # -- prompts ---------------------------------------------------------------------------

    async def on_get_prompt(
        self,
        context: MiddlewareContext[mt.GetPromptRequestParams],
        call_next: CallNext[mt.GetPromptRequestParams, PromptResult],
    ) -> PromptResult:
        """Decide getting ``Prompt::"<name>"`` with its arguments; a refusal reads as an unknown prompt."""
        message = context.message
        name = message.name
        resource = EntityUID(self.prompt_type, name)
        try:
            with await self._bound(context, self.prompt_action, resource):
                prompt = await _found(context, lambda server, version: server.get_prompt(
                    name, version=version))
                if not isinstance(prompt, Prompt):
                    self._refuse(self.prompt_action, resource, "unknown prompt", "unknown")
                spec = self._prompt_spec(prompt)
                call = await self._decided(
                    lambda: self.authz.abegin_tool_call(spec, dict(message.arguments or {}), record=False),
                    self.prompt_action, resource)
                if not call.admits:
                    raise _Refused(call.decision, "denied")
                decided = message.model_copy(update={"arguments": call.arguments})
                return await call_next(context.copy(message=decided))
        except _Refused:
            raise NotFoundError(f"Unknown prompt: {name!r}") from None

    async def on_list_prompts(
        self,
        context: MiddlewareContext[mt.ListPromptsRequest],
        call_next: CallNext[mt.ListPromptsRequest, Sequence[Prompt]],
    ) -> Sequence[Prompt]:
        """Only the prompts the user could be allowed to get."""
        prompts = await call_next(context)
        specs: dict[int, ToolSpec] = {}
        for prompt in prompts:
            try:
                specs[id(prompt)] = self._prompt_spec(prompt)
            except ConfigurationError:
                continue
        return await self._visible(prompts, specs)

    def _prompt_spec(self, prompt: Prompt) -> ToolSpec:
        """A prompt's arguments as a spec: strings (MCP sends prompt arguments as strings)."""
        arguments = prompt.arguments or []
        schema = {"type": "object", "properties": {a.name: {"type": "string"} for a in arguments},
                  "required": [a.name for a in arguments if a.required]}
        return self.specs.cached(("prompt", prompt.name), schema, lambda: ToolSpec.from_json_schema(
            prompt.name, schema, action=self.prompt_action,
            resource=EntityUID(self.prompt_type, prompt.name)))

    # -- shared steps ------------------------------------------------------------------------

    async def _bound(self, context: MiddlewareContext[Any], action: str | EntityUID,
                     resource: EntityUID, *, count: bool = False) -> ExitStack:
        """The token's user bound (and, for calls, the session), or :class:`_Refused` (audited)."""
        stack = ExitStack()
        try:
            user = await token_principal(get_access_token(), principal=self.principal, identity=self.identity)
            stack.enter_context(self.authz.bound_to(user, source="the MCP access token"))
        except Exception:  # no token, no subject, a mapping that failed: no end user, refused
            stack.close()
            raise _Refused(self.authz.audit_missing_identity(action, resource), "no-identity") from None
        try:
            if count and self.session is not False:
                key = self._session_key(context.fastmcp_context)
                if key is None:
                    self._refuse(action, resource, _NO_SESSION, "denied")
                stack.enter_context(self.authz.session(key))
        except BaseException:
            stack.close()
            raise
        return stack

    def _session_key(self, fastmcp_context: Context | None) -> str | None:
        """The session of this request: the application's key, or the connection's MCP session."""
        if fastmcp_context is None:
            return None
        if callable(self.session):
            try:
                key = self.session(fastmcp_context)
            except Exception:  # no key: no session, and the call is refused
                return None
            return key if isinstance(key, str) and key else None
        return _mcp_session(fastmcp_context)

    async def _decided(self, decide: Callable[[], Awaitable[T]], action: str | EntityUID,
                       resource: EntityUID | Entity) -> T:
        """``await decide()``; any failure is an audited refusal, never an allow."""
        try:
            return await decide()
        except InvalidArguments as exc:
            raise _Refused(exc.decision, "invalid") from None
        except IdentityError as exc:  # e.g. the session belongs to another user
            raise _Refused(exc.decision or self.authz.audit_missing_identity(action, resource),
                           "no-identity") from None
        except Exception as exc:  # a resource callable, an entity provider, a store: fail closed
            self._refuse(action, resource, f"authorization failed: {type(exc).__name__}", "denied")

    def _refuse(self, action: str | EntityUID, resource: EntityUID | Entity, reason: str,
                kind: RefusalKind) -> NoReturn:
        raise _Refused(self.authz.audit_refusal(action=action, resource=resource, reason=reason), kind)

    async def _visible(self, items: Sequence[T], specs: dict[int, ToolSpec]) -> list[T]:
        """The items whose spec the token's user could be allowed (none without a user)."""
        try:
            user = await token_principal(get_access_token(), principal=self.principal, identity=self.identity)
            with self.authz.bound_to(user, source="the MCP access token"):
                kept = {id(spec) for spec in self.authz.permitted_tools(specs.values())}
        except Exception:  # no user, a failing engine: list nothing rather than too much
            return []
        return [item for item in items if id(item) in specs and id(specs[id(item)]) in kept]


async def _found(context: MiddlewareContext[Any], lookup: Callable[[Any, Any], Any]) -> Any:
    """The component the request names (the version it asks for), as the server will resolve it.

    None when there is none, or when looking it up failed: the request is then refused.
    """
    fastmcp_context = context.fastmcp_context
    if fastmcp_context is None:
        return None
    try:
        return await lookup(fastmcp_context.fastmcp, _requested_version(context.message.meta))
    except Exception:
        return None


async def _read_target(context: MiddlewareContext[Any], uri: str) -> tuple[str, dict[str, Any] | None]:
    """What a read of ``uri`` reads, found as the server finds it: the URI and the template's parameters.

    A concrete resource is its URI. A template read is decided on the URI
    FastMCP's own ``expand_uri_template`` builds from the parameters it
    extracted (and hands the template function): ``users://b%6Fb/profile``
    and ``users://bob/profile?x`` read ``users://bob/profile`` and are decided
    as that. Anything else (unknown, synthesized) is its URI as given.
    """
    fastmcp_context = context.fastmcp_context
    if fastmcp_context is None:
        return uri, None
    server, version = fastmcp_context.fastmcp, _requested_version(context.message.meta)
    if await server.get_resource(uri, version=version) is not None:
        return uri, None
    template = await server.get_resource_template(uri, version=version)
    params = template.matches(uri) if template is not None else None
    if template is None or params is None:
        return uri, None
    return expand_uri_template(template.uri_template, params), params


def _mcp_session(fastmcp_context: Context) -> str | None:
    """The MCP session id, when the connection has one the server assigned (2025-era protocol)."""
    request_context = fastmcp_context.request_context
    if request_context is None or request_context.protocol_version in MODERN_PROTOCOL_VERSIONS:
        return None
    try:
        key = fastmcp_context.session_id
    except RuntimeError:
        return None
    try:
        header = get_http_request().headers.get("mcp-session-id")
    except RuntimeError:  # stdio, in-process: one session per connection
        return key
    return key if header == key else None  # stateless HTTP: no session


def _described(tool: Tool) -> dict[str, Any]:
    """A FastMCP tool as MCP describes it (name, description, input schema), without building an mcp Tool."""
    return {"name": tool.name, "description": tool.description, "inputSchema": tool.parameters}
