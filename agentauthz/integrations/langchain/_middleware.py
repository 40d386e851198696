"""AuthzMiddleware: Cedar decisions inside ``langchain.agents.create_agent``.

See :mod:`agentauthz.integrations.langchain`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, TypeVar

from langchain_core.messages import HumanMessage, ToolMessage
from langchain_core.runnables import ensure_config
from langchain_core.tools import BaseTool

from agentauthz._authorizer import Authorizer
from agentauthz._errors import AccessDenied, ConfigurationError, InvalidArguments
from agentauthz._model import EntityUID
from agentauthz.guardrails._detector import Detector
from agentauthz.guardrails._guardrail import Guardrail
from agentauthz.integrations.langchain._config import PRINCIPAL_KEY, SESSION_KEY, bound_from_config
from agentauthz.integrations.langchain._tools import (
    AuthorizedTool,
    DecidedTool,
    refusal_error,
    refusal_output,
    refused_as,
    settings_by_tool,
    shown_to_model,
    spec_for_tool,
)
from agentauthz.session._session import ToolCall
from agentauthz.tools._settings import ToolSettings
from agentauthz.tools._spec import OnDeny, ToolSpec, spec_of

if TYPE_CHECKING:
    from langchain.agents.middleware import AgentMiddleware, AgentState, ModelRequest, ModelResponse
    from langchain.agents.middleware.types import ExtendedModelResponse
    from langchain_core.messages import AIMessage
    from langgraph.prebuilt.tool_node import ToolCallRequest
    from langgraph.types import Command

    _MiddlewareBase = AgentMiddleware[AgentState[Any], Any, Any]
    _AGENTS = True
else:
    try:
        from langchain.agents.middleware import AgentMiddleware as _MiddlewareBase

        _AGENTS = True
    except ImportError:  # langchain v1 is optional: only AuthzMiddleware needs it
        _AGENTS = False

        class _MiddlewareBase:
            """Stands in for AgentMiddleware when langchain v1 is not installed."""

__all__ = ["AuthzMiddleware"]

_AGENTS_HINT = 'AuthzMiddleware needs langchain>=1.0 (create_agent): pip install "agentauthz[langchain]"'


R = TypeVar("R")


def _text_of(message: HumanMessage) -> str:
    """The text of a human message: its string content, or its text blocks."""
    if isinstance(message.content, str):
        return message.content
    return "\n".join(block if isinstance(block, str) else str(block.get("text", ""))
                     for block in message.content if isinstance(block, (str, dict)))


def _content_of(result: Any) -> Any:
    """What the model reads of a tool node's result: a ToolMessage's content (a Command as it is)."""
    return result.content if isinstance(result, ToolMessage) else result


def _counted(call: ToolCall, result: R) -> R:
    """The tool node's result; a failed run (an error ToolMessage) is not counted in the session."""
    if isinstance(result, ToolMessage) and result.status == "error":
        call.fail()
    return result


class _Offered:
    """A tool offered to the model, carrying its spec for ``authz.permitted_tools``."""

    def __init__(self, tool: BaseTool, spec: ToolSpec) -> None:
        self.tool = tool
        self.name = tool.name
        self.__agentauthz_tool__ = spec


class AuthzMiddleware(_MiddlewareBase):
    """Agent middleware for ``langchain.agents.create_agent`` (langchain v1).

    * ``wrap_tool_call`` / ``awrap_tool_call`` decide every tool call the model
      makes, with its validated arguments as ``context.input``, before the tool
      runs, and the tool then runs with exactly those arguments (an argument
      its schema does not declare is refused; values are coerced, and the tool
      gets the coerced value the policy saw). A refused call is not executed:
      the agent gets the refusal :class:`AuthorizedTool` gives, a
      ``ToolMessage`` with ``authz.refusal(...)`` (``status="error"``; the
      decision's id, not its policies; shaped by the tool's
      ``handle_tool_error``), or AccessDenied/InvalidArguments is raised with
      ``on_deny="raise"``. An :class:`AuthorizedTool` of the same Authorizer
      decides its own calls and is passed through, so a call is decided once.
      Put this middleware last in ``middleware=[...]`` (innermost): a
      middleware inside it can still change the call after it was decided.
    * ``wrap_model_call`` / ``awrap_model_call`` show the model only the tools
      the user could call with some arguments (``authz.permitted_tools``
      semantics: partial evaluation). This only shapes the prompt; a call of a
      hidden tool is still decided, and denied, in ``wrap_tool_call``.
      Provider-side tools given as dicts (e.g. a hosted web search) run outside
      the agent where no call can be decided, so they are removed too.

    The end user is ``config["configurable"][principal_key]`` or the one bound
    with ``authz.acting_as(...)``; with neither, the agent run raises
    IdentityError naming both. Never enforce authorization in a callback
    handler instead: LangChain logs and swallows exceptions raised by callback
    handlers (unless the handler sets ``raise_error``), so a denial there would
    not stop the call.

    How a tool call maps to Cedar: the settings given here by tool name win,
    then the spec of an AuthorizedTool or of a tool of that name registered
    with the Authorizer (``@authz.guard``, AuthorizedTool), then the defaults:
    the action is the tool name and the resource ``Tool::"<name>"``. A call of
    a tool the agent does not know is refused.

    Args:
        authz: the Authorizer deciding the calls.
        settings: ``{tool name: ToolSettings(...)}``: action, resource,
            resource types, context, summed arguments and on_deny of a tool.
        principal_key: key of the end user in ``RunnableConfig["configurable"]``.
        on_deny: ``"message"`` (a refusal ToolMessage) or ``"raise"``
            (AccessDenied), for the tools whose settings set none.
        filter_tools: hide the tools the user can never call from the model.
        session_key: key of the session in ``RunnableConfig["configurable"]``
            (e.g. the thread id). In a session each call is decided with
            ``context.session`` and counted once the tool returns, labelled with
            the model's tool call id (a repeated id does not run again); an
            error ToolMessage does not count. The session belongs to the end
            user whose run created it: another end user naming it is refused.
        guardrail: an ``az.Guardrail`` or a detector (off by default): the
            human messages are assessed before each model call and their
            findings recorded in the run's session as ``guardrail:user:...``
            labels (``guardrail:user:prompt_attack:high``;
            ``guardrail:user:unavailable`` when the detector failed), which
            policies read in ``context.session.seen``. It needs a session
            (``session_key``): without one the model call raises
            ConfigurationError. A tool's own guardrail
            (``ToolSettings(guardrail=...)``) assesses its results.
        actions: deprecated: ``settings={name: ToolSettings(action=...)}``.
        resources: deprecated: ``settings={name: ToolSettings(resource=...)}``.
        resource_types: deprecated: ``settings={name: ToolSettings(resource_types=...)}``.
        contexts: deprecated: ``settings={name: ToolSettings(context=...)}``.

    Raises:
        ImportError: langchain v1 is not installed.

    Example:
        >>> import agentauthz as az
        >>> from langchain.agents import create_agent
        >>> from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
        >>> from langchain_core.messages import AIMessage
        >>> from langchain_core.tools import tool
        >>> authz = az.Authorizer.from_text('permit(principal, action == Action::"search", resource);')
        >>> @tool
        ... def search(query: str) -> str:
        ...     '''Search.'''
        ...     return "found"
        >>> class Model(GenericFakeChatModel):
        ...     def bind_tools(self, tools, **kwargs):
        ...         return self
        >>> model = Model(messages=iter([
        ...     AIMessage("", tool_calls=[{"name": "search", "args": {"query": "q"}, "id": "1"}]),
        ...     AIMessage("done")]))
        >>> agent = create_agent(model, tools=[search], middleware=[AuthzMiddleware(authz)])
        >>> config = {"configurable": {PRINCIPAL_KEY: az.EntityUID("User", "alice")}}
        >>> agent.invoke({"messages": [("user", "hi")]}, config=config)["messages"][2].content
        'found'
    """

    def __init__(
        self,
        authz: Authorizer,
        *,
        settings: Mapping[str, ToolSettings] | None = None,
        principal_key: str = PRINCIPAL_KEY,
        on_deny: OnDeny = "message",
        filter_tools: bool = True,
        session_key: str = SESSION_KEY,
        guardrail: Guardrail | Detector | None = None,
        actions: Mapping[str, Any] | None = None,
        resources: Mapping[str, Any] | None = None,
        resource_types: Mapping[str, Any] | None = None,
        contexts: Mapping[str, Any] | None = None,
    ) -> None:
        if not _AGENTS:
            raise ImportError(_AGENTS_HINT)
        if not isinstance(authz, Authorizer):
            raise ConfigurationError("AuthzMiddleware needs an agentauthz Authorizer")
        if on_deny not in ("raise", "message"):
            raise ConfigurationError(f"on_deny must be 'raise' or 'message', not {on_deny!r}")
        self.authz = authz
        self.settings = settings_by_tool(
            settings, {"actions": actions, "resources": resources, "resource_types": resource_types,
                       "contexts": contexts}, caller="AuthzMiddleware")
        self.principal_key = principal_key
        self.session_key = session_key
        self.on_deny: OnDeny = on_deny
        self.filter_tools = filter_tools
        self.guardrail = Guardrail.of(guardrail)
        self._specs: dict[int, tuple[BaseTool, ToolSpec]] = {}

    # -- specs -------------------------------------------------------------------

    def spec_for(self, name: str, tool: BaseTool | None) -> ToolSpec | None:
        """How calls of this tool become Cedar requests (None: unknown tool, refused)."""
        configured = name in self.settings
        if tool is not None and not configured:
            spec = spec_of(tool)
            if spec is not None:
                return spec
        if tool is None or not configured:
            registered = self.authz.tools.get(name)
            if registered is not None:
                return registered
        if tool is None:
            return None
        cached = self._specs.get(id(tool))
        if cached is not None and cached[0] is tool:
            return cached[1]
        spec = spec_for_tool(tool, self.settings.get(name, ToolSettings()), self.on_deny)
        self._specs[id(tool)] = (tool, spec)  # the tool is kept, so its id is not reused
        return spec

    def _on_deny(self, name: str) -> OnDeny:
        """The tool's own ``on_deny`` given here, else the middleware's (a guard's default is not used)."""
        return self.settings.get(name, ToolSettings()).on_deny_or(self.on_deny)

    def _decides_itself(self, tool: BaseTool | None) -> bool:
        return (
            isinstance(tool, AuthorizedTool) and tool.authz is self.authz
            and tool.name not in self.settings
        )

    # -- tool calls: the I/O-free steps ----------------------------------------------

    def _bound(self, request: ToolCallRequest) -> AbstractContextManager[None]:
        """The end user and session of the agent run, bound while the call is decided and runs."""
        runtime = getattr(request, "runtime", None)
        config = getattr(runtime, "config", None)
        config = config if isinstance(config, Mapping) else ensure_config()
        return bound_from_config(self.authz, config, self.principal_key, self.session_key)

    def _known(self, request: ToolCallRequest) -> tuple[BaseTool, ToolSpec] | ToolMessage:
        """The tool and its spec, or the (audited) refusal of a tool the agent does not have."""
        name = request.tool_call["name"]
        tool = request.tool
        spec = self.spec_for(name, tool)
        if spec is not None and tool is not None:
            return tool, spec
        refused = self.authz.audit_refusal(
            action=name, resource=EntityUID(self.authz.tool_entity_type, name), reason="unknown tool")
        if self.on_deny == "raise":
            raise AccessDenied(refused, subject=f"tool '{name}'")
        return self._message(request, self.authz.refusal(name, refused, kind="unknown"))

    @staticmethod
    def _arguments(request: ToolCallRequest) -> tuple[Mapping[str, Any], str | None]:
        """The arguments the model chose and its tool call id."""
        return request.tool_call.get("args") or {}, request.tool_call.get("id") or None

    def _refused(self, request: ToolCallRequest, outcome: ToolCall | InvalidArguments) -> ToolMessage:
        """The refusal the agent gets (with ``on_deny="raise"``: the error raised)."""
        name = request.tool_call["name"]
        kind, decision = refused_as(outcome)
        if self._on_deny(name) == "raise":
            raise refusal_error(outcome, name)
        return self._message(request, self.authz.refusal(name, decision, kind=kind))

    @staticmethod
    def _message(request: ToolCallRequest, text: str) -> ToolMessage:
        call = request.tool_call
        message = refusal_output(request.tool, call["name"], text, call["id"] or "")
        assert isinstance(message, ToolMessage)  # a tool call id was given
        return message

    @staticmethod
    def _decided(request: ToolCallRequest, tool: BaseTool, call: ToolCall) -> ToolCallRequest:
        """The call as it runs: the decided arguments, by a tool that runs with nothing else."""
        return request.override(tool_call={**request.tool_call, "args": dict(call.arguments)},
                                tool=DecidedTool(tool=tool, arguments=call.arguments))

    # -- tool calls: the twins differ only by their awaits -------------------------------

    def wrap_tool_call(
        self,
        request: ToolCallRequest,
        handler: Callable[[ToolCallRequest], ToolMessage | Command[Any]],
    ) -> ToolMessage | Command[Any]:
        """Decide the call; run the tool, with the arguments decided, only when it is allowed."""
        if self._decides_itself(request.tool):
            return handler(request)
        with self._bound(request):
            known = self._known(request)
            if isinstance(known, ToolMessage):
                return known
            tool, spec = known
            arguments, call_id = self._arguments(request)
            try:
                call = self.authz.begin_tool_call(spec, arguments, call_id=call_id)
            except InvalidArguments as exc:
                return self._refused(request, exc)
            if not call.admits:
                return self._refused(request, call)
            with call:  # counted in the session once the tool ran without error
                result = _counted(call, handler(self._decided(request, tool, call)))
            call.record_result(result)  # a source of the session, before the model reads it
            self.authz.screen_tool_result(spec, _content_of(result))  # its findings, before it too
            return result

    async def awrap_tool_call(
        self,
        request: ToolCallRequest,
        handler: Callable[[ToolCallRequest], Awaitable[ToolMessage | Command[Any]]],
    ) -> ToolMessage | Command[Any]:
        """Async twin of :meth:`wrap_tool_call`."""
        if self._decides_itself(request.tool):
            return await handler(request)
        with self._bound(request):
            known = self._known(request)
            if isinstance(known, ToolMessage):
                return known
            tool, spec = known
            arguments, call_id = self._arguments(request)
            try:
                call = await self.authz.abegin_tool_call(spec, arguments, call_id=call_id)
            except InvalidArguments as exc:
                return self._refused(request, exc)
            if not call.admits:
                return self._refused(request, call)
            with call:
                result = _counted(call, await handler(self._decided(request, tool, call)))
            call.record_result(result)
            await self.authz.ascreen_tool_result(spec, _content_of(result))
            return result

    # -- model calls ----------------------------------------------------------------

    def _user_said(self, request: ModelRequest[Any], config: Mapping[str, Any]) -> None:
        """Register the human messages of the conversation as what the user said (provenance), and
        record the guardrail's findings in them (``guardrail=``) before the model reads them."""
        if self.authz.session_config.provenance is None and self.guardrail is None:
            return
        texts = [_text_of(message) for message in getattr(request, "messages", ()) or ()
                 if isinstance(message, HumanMessage)]
        with bound_from_config(self.authz, config, self.principal_key, self.session_key):
            session = self.authz.current_session
            for text in texts:
                if self.guardrail is not None:  # each text is assessed once per session (cached)
                    self.authz.screen_user_message(text, self.guardrail)
                if session is not None and text and self.authz.session_config.provenance is not None:
                    session.user_said(text)

    def _permitted(self, tools: Sequence[BaseTool | dict[str, Any]], config: Mapping[str, Any]) -> list[Any]:
        offered: list[_Offered] = []
        for tool in tools:
            if isinstance(tool, BaseTool):
                spec = self.spec_for(tool.name, tool)
                if spec is not None:
                    offered.append(_Offered(tool, spec))
        with bound_from_config(self.authz, config, self.principal_key, self.session_key):
            kept = self.authz.permitted_tools(offered)  # no end user: IdentityError, as every path says
        return [item.tool for item in kept]

    def _offered(self, tools: Sequence[BaseTool | dict[str, Any]], config: Mapping[str, Any]) -> list[Any]:
        """The tools the model is shown: those the user could call (``filter_tools``), without
        the application's arguments (``az.Injected``)."""
        kept = self._permitted(tools, config) if self.filter_tools else list(tools)
        return [shown_to_model(tool) if isinstance(tool, BaseTool) else tool for tool in kept]

    def wrap_model_call(
        self,
        request: ModelRequest[Any],
        handler: Callable[[ModelRequest[Any]], ModelResponse[Any]],
    ) -> ModelResponse[Any] | AIMessage | ExtendedModelResponse[Any]:
        """Offer the model only the tools the user could call (and register what the user said)."""
        self._user_said(request, ensure_config())
        return handler(request.override(tools=self._offered(request.tools, ensure_config())))

    async def awrap_model_call(
        self,
        request: ModelRequest[Any],
        handler: Callable[[ModelRequest[Any]], Awaitable[ModelResponse[Any]]],
    ) -> ModelResponse[Any] | AIMessage | ExtendedModelResponse[Any]:
        """Async twin of :meth:`wrap_model_call` (the filtering runs in a worker thread)."""
        await asyncio.to_thread(self._user_said, request, ensure_config())
        tools = await asyncio.to_thread(self._offered, request.tools, ensure_config())
        return await handler(request.override(tools=tools))
