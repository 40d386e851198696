"""LangChain tools and agent middleware (see :mod:`agentauthz.integrations.langchain`)."""

from __future__ import annotations

try:
    from langchain_core.callbacks import AsyncCallbackManagerForToolRun, CallbackManagerForToolRun
    from langchain_core.messages import ToolMessage
    from langchain_core.runnables import RunnableConfig, ensure_config
    from langchain_core.tools import BaseTool, ToolException
    from langchain_core.tools import tool as _as_tool
except ImportError as _missing:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        "agentauthz.integrations.langchain._tools needs langchain-core: "
        'pip install "agentauthz[langchain]"'
    ) from _missing

import asyncio
import functools
import inspect
import typing
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, PrivateAttr, SkipValidation, model_validator

from agentauthz._authorizer import Authorizer
from agentauthz._errors import AccessDenied, ConfigurationError, InvalidArguments
from agentauthz._identity import no_end_user
from agentauthz._model import Decision, EntityUID
from agentauthz.integrations.langchain._config import PRINCIPAL_KEY, SESSION_KEY, bound_from_config
from agentauthz.integrations.langchain._retrieval import AuthorizedRetriever, RetrievalResult, RetrievalStats
from agentauthz.session._session import ToolCall
from agentauthz.tools._spec import (
    ContextSpec,
    OnDeny,
    RefusalKind,
    ResourceSpec,
    ToolSpec,
    build_spec_from_model,
    spec_of,
)

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

__all__ = [
    "PRINCIPAL_KEY",
    "SESSION_KEY",
    "AuthorizedRetriever",
    "AuthorizedTool",
    "AuthzMiddleware",
    "RetrievalResult",
    "RetrievalStats",
    "authorize_tools",
]

_AGENTS_HINT = 'AuthzMiddleware needs langchain>=1.0 (create_agent): pip install "agentauthz[langchain]"'


def _failed(result: Any) -> bool:
    """Whether a tool node's result reports a failed run (an error ToolMessage)."""
    return isinstance(result, ToolMessage) and result.status == "error"


# -- tool specs from LangChain argument schemas --------------------------------------


def _argument_model(tool: BaseTool) -> type[BaseModel]:
    """The pydantic model of the arguments the model chooses for a tool.

    The tool's own ``args_schema`` when the model chooses all of its fields (its
    validators then shape the values the policy sees); otherwise LangChain's
    ``tool_call_schema``, which leaves out injected arguments (state, runtime,
    ids) and, with them, the schema's validators.
    """
    schema = tool.tool_call_schema
    if not (isinstance(schema, type) and issubclass(schema, BaseModel)):
        raise ConfigurationError(
            f"tool {tool.name!r}: args_schema must be a pydantic (v2) model or a JSON schema dict"
        )
    own = tool.args_schema
    if isinstance(own, type) and issubclass(own, BaseModel) and set(own.model_fields) == set(
            schema.model_fields):
        return own
    return schema


def _spec_for_tool(
    tool: BaseTool,
    *,
    action: str | EntityUID | None = None,
    resource: ResourceSpec = None,
    resource_types: Iterable[str] = (),
    context: ContextSpec = None,
    on_deny: OnDeny = "message",
) -> ToolSpec:
    if isinstance(tool.tool_call_schema, Mapping):  # a JSON schema (how MCP tools arrive)
        return ToolSpec.from_json_schema(
            tool.name, tool.tool_call_schema, description=tool.description or "", action=action,
            resource=resource, resource_types=resource_types, context=context, on_deny=on_deny,
        )
    return build_spec_from_model(
        _argument_model(tool),
        name=tool.name,
        description=tool.description or "",
        action=action,
        resource=resource,
        resource_types=tuple(resource_types),
        context=context,
        on_deny=on_deny,
    )


@dataclass(frozen=True)
class _Invocation:
    """One call as LangChain hands it to a tool: the raw input and the model's tool call id."""

    tool_input: Any
    tool_call_id: str | None = None

    @classmethod
    def of(cls, args: tuple[Any, ...], kwargs: dict[str, Any]) -> _Invocation:
        """The invocation ``_run`` was given: by LangChain, or by an outer wrapper as arguments."""
        if len(args) == 1 and not kwargs and isinstance(args[0], _Invocation):
            return args[0]
        if args:  # a string input, or positional arguments of an outer wrapper
            return cls(args[0] if len(args) == 1 and not kwargs else (*args, kwargs))
        return cls(kwargs)

    def split(self, spec: ToolSpec, injected: frozenset[str]) -> tuple[Any, dict[str, Any]]:
        """The arguments the model chose (for the spec to validate) and the ones LangChain injects."""
        given = self.tool_input
        if isinstance(given, Mapping):
            return ({k: v for k, v in given.items() if k not in injected},
                    {k: v for k, v in given.items() if k in injected})
        if isinstance(given, str) and len(spec.parameters) == 1:
            return {spec.parameters[0]: given}, {}
        return given, {}  # not arguments by name: the spec refuses them


def _call_kwargs(tool: BaseTool, arguments: dict[str, Any], injected: dict[str, Any],
                 tool_call_id: str | None) -> dict[str, Any]:
    """What the wrapped tool's ``_run`` gets: the validated arguments, and the injected ones.

    The tool's own parsing runs only for the injected arguments, as LangChain
    injects them (it adds the tool call id where the tool asks for it); the
    model-chosen values are the validated ones, as they are, even where the
    tool's schema would change them again.
    """
    if not _injected_keys(tool):
        return dict(arguments)
    parsed = tool._parse_input({**arguments, **injected}, tool_call_id)
    assert isinstance(parsed, dict)
    return {**{k: v for k, v in parsed.items() if k not in arguments}, **arguments}


def _injected_keys(tool: BaseTool) -> frozenset[str]:
    """Arguments LangChain injects into a tool (state, ToolRuntime, tool call id): never the model's."""
    keys: Iterable[str] = getattr(tool, "_injected_args_keys", frozenset())
    return frozenset(keys)


def _refusal_result(tool: BaseTool, text: str, tool_call_id: str | None) -> Any:
    """A refusal as a tool's result: an error ``ToolMessage`` answering the call, as the middleware's."""
    if tool.handle_tool_error:
        raise ToolException(text)
    result: Any = text
    if tool_call_id is not None:
        result = ToolMessage(content=text, name=tool.name, tool_call_id=tool_call_id, status="error")
    return (result, None) if tool.response_format == "content_and_artifact" else result


# -- calling the wrapped tool the way BaseTool.run would ------------------------------


@functools.cache
def _call_options(method: Callable[..., Any]) -> tuple[bool, str | None]:
    """Whether a ``_run``/``_arun`` takes ``run_manager``, and its RunnableConfig parameter."""
    try:
        parameters = inspect.signature(method).parameters
    except (TypeError, ValueError):
        return False, None
    try:
        hints = typing.get_type_hints(method)
    except Exception:  # unresolvable annotations: no config parameter, as LangChain decides
        hints = {}
    config = next((name for name, hint in hints.items() if hint is RunnableConfig), None)
    return "run_manager" in parameters, config


def _unbound(method: Any) -> Callable[..., Any]:
    return typing.cast("Callable[..., Any]", getattr(method, "__func__", method))


def _run_wrapped(
    tool: BaseTool, kwargs: dict[str, Any], run_manager: CallbackManagerForToolRun | None,
) -> Any:
    takes_manager, config_param = _call_options(_unbound(tool._run))
    if takes_manager:
        kwargs["run_manager"] = run_manager
    if config_param:
        kwargs[config_param] = ensure_config()
    return tool._run(**kwargs)


async def _arun_wrapped(
    tool: BaseTool, kwargs: dict[str, Any], run_manager: AsyncCallbackManagerForToolRun | None,
) -> Any:
    method = tool._run if type(tool)._arun is BaseTool._arun else tool._arun
    takes_manager, config_param = _call_options(_unbound(method))
    if takes_manager:
        kwargs["run_manager"] = run_manager
    if config_param:
        kwargs[config_param] = ensure_config()
    return await tool._arun(**kwargs)


# -- AuthorizedTool ----------------------------------------------------------------------

_COPIED = (
    "name", "description", "args_schema", "return_direct", "verbose", "callbacks", "tags",
    "metadata", "handle_tool_error", "handle_validation_error", "response_format", "extras",
)


class _WrappingTool(BaseTool):
    """A tool that shows itself, and runs, as the tool it wraps (name, schema, run settings).

    LangChain hands ``_run`` the call as it came (:class:`_Invocation`): the
    arguments are validated by the spec, not by LangChain's parsing, so what
    the wrapped tool gets is what the policy evaluated.
    """

    tool: SkipValidation[BaseTool]
    name: str = ""
    description: str = ""

    @model_validator(mode="before")
    @classmethod
    def _mirror_wrapped_tool(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        wrapped = data.get("tool")
        if not isinstance(wrapped, BaseTool):
            raise ConfigurationError(
                f"AuthorizedTool wraps a LangChain BaseTool, not {type(wrapped).__name__}"
            )
        mirrored = dict(data)
        for field in _COPIED:
            if field not in type(wrapped).model_fields:  # e.g. `extras`, new in langchain-core 1.x
                continue
            value = getattr(wrapped, field)
            if field in ("name", "description", "args_schema") and field in data and data[field] != value:
                raise ConfigurationError(
                    f"AuthorizedTool keeps the wrapped tool's {field}; rename the wrapped tool instead"
                )
            mirrored.setdefault(field, value)
        return mirrored

    @functools.cached_property
    def _injected_args_keys(self) -> frozenset[str]:
        # Arguments LangChain injects (state, ToolRuntime, tool call id) are the wrapped tool's.
        return _injected_keys(self.tool)

    def _to_args_and_kwargs(self, tool_input: str | dict[str, Any],
                            tool_call_id: str | None) -> tuple[tuple[Any, ...], dict[str, Any]]:
        return (_Invocation(tool_input, tool_call_id),), {}


class _Decided(_WrappingTool):
    """Runs a call the middleware decided: the wrapped tool gets the validated arguments.

    Whatever arguments the call carries by the time it runs (another
    middleware may edit them), the model-chosen ones are those decided.
    """

    arguments: SkipValidation[dict[str, Any]]

    def _run(self, *args: Any, run_manager: CallbackManagerForToolRun | None = None, **kwargs: Any) -> Any:
        invocation = _Invocation.of(args, kwargs)
        return _run_wrapped(self.tool, self._kwargs(invocation), run_manager)

    async def _arun(
        self, *args: Any, run_manager: AsyncCallbackManagerForToolRun | None = None, **kwargs: Any
    ) -> Any:
        invocation = _Invocation.of(args, kwargs)
        return await _arun_wrapped(self.tool, self._kwargs(invocation), run_manager)

    def _kwargs(self, invocation: _Invocation) -> dict[str, Any]:
        given = invocation.tool_input if isinstance(invocation.tool_input, Mapping) else {}
        injected = {k: v for k, v in given.items() if k in self._injected_args_keys}
        return _call_kwargs(self.tool, self.arguments, injected, invocation.tool_call_id)


class AuthorizedTool(_WrappingTool):
    """A LangChain tool whose every call is decided by Cedar before the wrapped tool runs.

    The wrapper shows the model the wrapped tool's ``name``, ``description`` and
    ``args_schema`` and takes over its run settings (callbacks, tags, metadata,
    ``handle_tool_error``, ``handle_validation_error``, ``response_format``,
    ``return_direct``), so LangChain sees one tool run per call. Each call is a
    Cedar request: the bound end user, the tool's action (default: the tool
    name), the resource (default ``Tool::"<name>"``), and the validated
    arguments the model chose as ``context.input`` (injected arguments such as
    state or ``ToolRuntime`` are passed to the tool but not sent to Cedar). The
    wrapped tool runs with exactly those validated arguments: an argument its
    schema does not declare is refused (even under ``extra="allow"`` or with a
    JSON-schema ``args_schema``), and it gets the coerced value the policy saw
    (``False`` for ``"false"``), never the raw one.

    The end user is ``config["configurable"][principal_key]`` (an EntityUID or
    Entity the application put there; strings and dicts are refused) or the one
    bound with ``authz.acting_as(...)``. With neither, the call raises
    IdentityError; when both name different users, too. The user stays bound
    while the wrapped tool runs.

    When a call is refused (denied, or invalid arguments) the wrapped tool does
    not run, and with ``on_deny="message"`` (the default) the model reads
    ``authz.refusal(...)``: a generic refusal naming the decision's id (the
    audit event's ``decision_id``); the policy ids only with
    ``Authorizer(disclose_reasons=True)``. Called with a tool call, the result
    is a ``ToolMessage`` with ``status="error"``, as the middleware's refusals;
    when the wrapped tool sets ``handle_tool_error``, a ``ToolException``
    carrying the refusal is raised instead and LangChain turns it into the
    result through that handler. ``on_deny="raise"`` raises AccessDenied (or
    InvalidArguments) out of the agent.

    Attributes:
        tool: the wrapped tool.
        authz: the Authorizer deciding the calls.
        action: Cedar action name or uid (default: the tool name).
        resource: a fixed EntityUID/Entity, or a callable of the validated
            arguments returning one (e.g. the document being read).
        resource_types: entity types a computed resource can have.
        context: extra context, fixed or a callable of the validated arguments.
        principal_key: key of the end user in ``RunnableConfig["configurable"]``.
        session_key: key of the session in ``RunnableConfig["configurable"]``: a
            call made in a session is counted in it once the wrapped tool returns.
        on_deny: ``"message"`` (a refusal the model reads) or ``"raise"``.

    Example:
        >>> import agentauthz as az
        >>> from langchain_core.tools import tool
        >>> authz = az.Authorizer.from_text(
        ...     'permit(principal, action == Action::"refund", resource) '
        ...     'when { context.input.amount <= 100 };')
        >>> @tool
        ... def refund(order_id: str, amount: int) -> str:
        ...     '''Refund an order.'''
        ...     return f"refunded {amount}"
        >>> safe = AuthorizedTool(tool=refund, authz=authz)
        >>> with authz.acting_as(az.EntityUID("User", "bob")):
        ...     print(safe.invoke({"order_id": "o-1", "amount": 50}))
        ...     print(safe.invoke({"order_id": "o-1", "amount": 5000}).split(" (")[0])
        refunded 50
        Tool 'refund' is not permitted for this user
    """

    authz: SkipValidation[Authorizer]
    action: SkipValidation[str | EntityUID | None] = None
    resource: SkipValidation[ResourceSpec] = None
    resource_types: tuple[str, ...] = ()
    context: SkipValidation[ContextSpec] = None
    principal_key: str = PRINCIPAL_KEY
    session_key: str = SESSION_KEY
    on_deny: OnDeny = "message"

    _spec: ToolSpec = PrivateAttr()

    @model_validator(mode="before")
    @classmethod
    def _needs_authorizer(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and not isinstance(data.get("authz"), Authorizer):
            raise ConfigurationError("AuthorizedTool needs authz=<an agentauthz Authorizer>")
        return data

    def model_post_init(self, context: Any, /) -> None:
        """Build the tool's ToolSpec and register it with the Authorizer."""
        super().model_post_init(context)
        self._spec = _spec_for_tool(
            self.tool, action=self.action, resource=self.resource,
            resource_types=self.resource_types, context=self.context, on_deny=self.on_deny,
        )
        self.authz.tools[self._spec.name] = self._spec

    @property
    def spec(self) -> ToolSpec:
        """What the Authorizer knows about this tool (action, resource, argument types)."""
        return self._spec

    @property
    def __agentauthz_tool__(self) -> ToolSpec:
        """Lets ``authz.permitted_tools`` and ``authz.authorize_tool_call`` take this tool."""
        return self._spec

    # -- calls -------------------------------------------------------------------

    def _run(self, *args: Any, run_manager: CallbackManagerForToolRun | None = None, **kwargs: Any) -> Any:
        invocation = _Invocation.of(args, kwargs)
        with bound_from_config(self.authz, ensure_config(), self.principal_key, self.session_key):
            chosen, injected = invocation.split(self._spec, self._injected_args_keys)
            try:
                call = self.authz.begin_tool_call(self._spec, chosen)
            except InvalidArguments as exc:
                return self._refused(exc.decision, "invalid", invocation, exc)
            if not call.admits:
                return self._refused(call.decision, "denied", invocation)
            with call:  # counted in the session when the wrapped tool returns
                return _run_wrapped(self.tool, self._kwargs(call, injected, invocation), run_manager)

    async def _arun(
        self, *args: Any, run_manager: AsyncCallbackManagerForToolRun | None = None, **kwargs: Any
    ) -> Any:
        invocation = _Invocation.of(args, kwargs)
        with bound_from_config(self.authz, ensure_config(), self.principal_key, self.session_key):
            chosen, injected = invocation.split(self._spec, self._injected_args_keys)
            try:
                call = await self.authz.abegin_tool_call(self._spec, chosen)
            except InvalidArguments as exc:
                return self._refused(exc.decision, "invalid", invocation, exc)
            if not call.admits:
                return self._refused(call.decision, "denied", invocation)
            with call:
                return await _arun_wrapped(self.tool, self._kwargs(call, injected, invocation), run_manager)

    def _kwargs(self, call: ToolCall, injected: dict[str, Any], invocation: _Invocation) -> dict[str, Any]:
        return _call_kwargs(self.tool, call.arguments, injected, invocation.tool_call_id)

    def _refused(self, decision: Decision, kind: RefusalKind, invocation: _Invocation,
                 error: InvalidArguments | None = None) -> Any:
        if self.on_deny == "raise":
            raise error if error is not None else AccessDenied(decision, subject=f"tool '{self.name}'")
        return _refusal_result(self, self.authz.refusal(self.name, decision, kind=kind),
                               invocation.tool_call_id)


def authorize_tools(
    tools: Iterable[BaseTool | Callable[..., Any]],
    authz: Authorizer,
    *,
    actions: Mapping[str, str | EntityUID] | None = None,
    resources: Mapping[str, ResourceSpec] | None = None,
    resource_types: Mapping[str, Sequence[str]] | None = None,
    contexts: Mapping[str, ContextSpec] | None = None,
    principal_key: str = PRINCIPAL_KEY,
    on_deny: OnDeny = "message",
    session_key: str = SESSION_KEY,
) -> list[BaseTool]:
    """Wrap each tool in an :class:`AuthorizedTool`; same names, descriptions and schemas.

    Plain functions are first made tools with ``langchain_core.tools.tool``.
    Per-tool settings are keyed by tool name; a name that matches no tool is a
    configuration error (a typo would otherwise leave a tool on its defaults).

    Args:
        tools: LangChain tools (or functions) in the order the agent gets them.
        authz: the Authorizer deciding the calls.
        actions: Cedar action per tool name (default: the tool name).
        resources: resource per tool name: an EntityUID/Entity or a callable of
            the validated arguments (default: ``Tool::"<name>"``).
        resource_types: entity types of a computed resource, per tool name.
        contexts: extra context per tool name, fixed or computed from the arguments.
        principal_key: key of the end user in ``RunnableConfig["configurable"]``.
        on_deny: ``"message"`` (a refusal the model reads) or ``"raise"`` (AccessDenied).
        session_key: key of the session in ``RunnableConfig["configurable"]``.

    Returns:
        The wrapped tools, in input order.

    Raises:
        ConfigurationError: a setting names no tool, or an argument type has no
            Cedar equivalent.

    Example:
        >>> import agentauthz as az
        >>> from langchain_core.tools import tool
        >>> authz = az.Authorizer.from_text('permit(principal, action, resource);')
        >>> @tool
        ... def read_document(document_id: str) -> str:
        ...     '''Read one document.'''
        ...     return "..."
        >>> [read] = authorize_tools(
        ...     [read_document], authz,
        ...     resources={"read_document": lambda args: az.EntityUID("Document", args["document_id"])})
        >>> read.name, read.spec.resource_types
        ('read_document', ())
    """
    converted = [t if isinstance(t, BaseTool) else _as_tool(t) for t in tools]
    actions, resources = dict(actions or {}), dict(resources or {})
    resource_types, contexts = dict(resource_types or {}), dict(contexts or {})
    _check_names(
        {"actions": actions, "resources": resources, "resource_types": resource_types,
         "contexts": contexts},
        {t.name for t in converted},
    )
    wrapped: list[BaseTool] = []
    for item in converted:
        configured = any(item.name in m for m in (actions, resources, resource_types, contexts))
        if isinstance(item, AuthorizedTool) and item.authz is authz and not configured:
            wrapped.append(item)
            continue
        wrapped.append(AuthorizedTool(
            tool=item, authz=authz,
            action=actions.get(item.name),
            resource=resources.get(item.name),
            resource_types=tuple(resource_types.get(item.name, ())),
            context=contexts.get(item.name),
            principal_key=principal_key, on_deny=on_deny, session_key=session_key,
        ))
    return wrapped


def _check_names(settings: Mapping[str, Mapping[str, Any]], names: set[str]) -> None:
    for option, mapping in settings.items():
        unknown = sorted(set(mapping) - names)
        if unknown:
            raise ConfigurationError(f"{option} names no tool: {', '.join(unknown)}")


# -- middleware for create_agent ------------------------------------------------------------


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
      the agent gets a ``ToolMessage`` with ``authz.refusal(...)``
      (``status="error"``; the decision's id, not its policies), or
      AccessDenied/InvalidArguments is raised with ``on_deny="raise"``. An
      :class:`AuthorizedTool` of the same Authorizer decides its own calls and
      is passed through, so a call is decided once. Put this middleware last
      in ``middleware=[...]`` (innermost): a middleware inside it can still
      change the call after it was decided.
    * ``wrap_model_call`` / ``awrap_model_call`` show the model only the tools
      the user could call with some arguments (``authz.permitted_tools``
      semantics: partial evaluation). This only shapes the prompt; a call of a
      hidden tool is still decided, and denied, in ``wrap_tool_call``.
      Provider-side tools given as dicts (e.g. a hosted web search) run outside
      the agent where no call can be decided, so they are removed too.

    The end user is ``config["configurable"][principal_key]`` or the one bound
    with ``authz.acting_as(...)``; with neither, the agent run raises
    IdentityError. Never enforce authorization in a callback handler instead:
    LangChain logs and swallows exceptions raised by callback handlers (unless
    the handler sets ``raise_error``), so a denial there would not stop the call.

    How a tool call maps to Cedar: the settings given here by tool name win,
    then the spec of an AuthorizedTool or of a tool of that name registered
    with the Authorizer (``@authz.guard``, AuthorizedTool), then the defaults:
    the action is the tool name and the resource ``Tool::"<name>"``. A call of
    a tool the agent does not know is refused.

    Args:
        authz: the Authorizer deciding the calls.
        actions: Cedar action per tool name.
        resources: resource per tool name (EntityUID/Entity or a callable of the
            validated arguments).
        resource_types: entity types of a computed resource, per tool name.
        contexts: extra context per tool name.
        principal_key: key of the end user in ``RunnableConfig["configurable"]``.
        on_deny: ``"message"`` (a refusal ToolMessage) or ``"raise"`` (AccessDenied).
        filter_tools: hide the tools the user can never call from the model.
        session_key: key of the session in ``RunnableConfig["configurable"]``
            (e.g. the thread id). In a session each call is decided with
            ``context.session`` and counted once the tool returns, labelled with
            the model's tool call id (a repeated id does not run again); an
            error ToolMessage does not count. The session belongs to the end
            user whose run created it: another end user naming it is refused.

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
        actions: Mapping[str, str | EntityUID] | None = None,
        resources: Mapping[str, ResourceSpec] | None = None,
        resource_types: Mapping[str, Sequence[str]] | None = None,
        contexts: Mapping[str, ContextSpec] | None = None,
        principal_key: str = PRINCIPAL_KEY,
        on_deny: OnDeny = "message",
        filter_tools: bool = True,
        session_key: str = SESSION_KEY,
    ) -> None:
        if not _AGENTS:
            raise ImportError(_AGENTS_HINT)
        if not isinstance(authz, Authorizer):
            raise ConfigurationError("AuthzMiddleware needs an agentauthz Authorizer")
        if on_deny not in ("raise", "message"):
            raise ConfigurationError(f"on_deny must be 'raise' or 'message', not {on_deny!r}")
        self.authz = authz
        self.actions = dict(actions or {})
        self.resources = dict(resources or {})
        self.resource_types = {name: tuple(types) for name, types in (resource_types or {}).items()}
        self.contexts = dict(contexts or {})
        self.principal_key = principal_key
        self.session_key = session_key
        self.on_deny: OnDeny = on_deny
        self.filter_tools = filter_tools
        self._specs: dict[int, tuple[BaseTool, ToolSpec]] = {}

    # -- specs -------------------------------------------------------------------

    def _configured(self, name: str) -> bool:
        return any(name in m for m in (self.actions, self.resources, self.resource_types, self.contexts))

    def spec_for(self, name: str, tool: BaseTool | None) -> ToolSpec | None:
        """How calls of this tool become Cedar requests (None: unknown tool, refused)."""
        if tool is not None and not self._configured(name):
            spec = spec_of(tool)
            if spec is not None:
                return spec
        if tool is None or not self._configured(name):
            registered = self.authz.tools.get(name)
            if registered is not None:
                return registered
        if tool is None:
            return None
        cached = self._specs.get(id(tool))
        if cached is not None and cached[0] is tool:
            return cached[1]
        spec = _spec_for_tool(
            tool, action=self.actions.get(name), resource=self.resources.get(name),
            resource_types=self.resource_types.get(name, ()), context=self.contexts.get(name),
            on_deny=self.on_deny,
        )
        self._specs[id(tool)] = (tool, spec)  # the tool is kept, so its id is not reused
        return spec

    def _decides_itself(self, tool: BaseTool | None) -> bool:
        return (
            isinstance(tool, AuthorizedTool) and tool.authz is self.authz
            and not self._configured(tool.name)
        )

    # -- tool calls -----------------------------------------------------------------

    def _refusal(self, request: ToolCallRequest, decision: Decision, kind: RefusalKind) -> ToolMessage:
        call = request.tool_call
        text = self.authz.refusal(call["name"], decision, kind=kind)
        return ToolMessage(content=text, name=call["name"], tool_call_id=call["id"] or "", status="error")

    def _config(self, request: ToolCallRequest) -> Mapping[str, Any]:
        runtime = getattr(request, "runtime", None)
        config = getattr(runtime, "config", None)
        return config if isinstance(config, Mapping) else ensure_config()

    def _unknown(self, request: ToolCallRequest) -> ToolMessage:
        """Refuse (and audit) a call of a tool the agent does not have."""
        name = request.tool_call["name"]
        refused = self.authz.audit_refusal(
            action=name, resource=EntityUID(self.authz.tool_entity_type, name), reason="unknown tool")
        if self.on_deny == "raise":
            raise AccessDenied(refused, subject=f"tool '{name}'")
        return self._refusal(request, refused, "unknown")

    def _refused(self, request: ToolCallRequest, outcome: ToolCall | InvalidArguments) -> ToolMessage:
        """The refusal the agent gets (with ``on_deny="raise"``: the error raised)."""
        if isinstance(outcome, InvalidArguments):
            if self.on_deny == "raise":
                raise outcome
            return self._refusal(request, outcome.decision, "invalid")
        if self.on_deny == "raise":
            raise AccessDenied(outcome.decision, subject=f"tool '{request.tool_call['name']}'")
        return self._refusal(request, outcome.decision, "denied")

    @staticmethod
    def _decided(request: ToolCallRequest, tool: BaseTool, call: ToolCall) -> ToolCallRequest:
        """The call as it runs: the decided arguments, by a tool that runs with nothing else."""
        return request.override(tool_call={**request.tool_call, "args": dict(call.arguments)},
                                tool=_Decided(tool=tool, arguments=call.arguments))

    def wrap_tool_call(
        self,
        request: ToolCallRequest,
        handler: Callable[[ToolCallRequest], ToolMessage | Command[Any]],
    ) -> ToolMessage | Command[Any]:
        """Decide the call; run the tool, with the arguments decided, only when it is allowed."""
        if self._decides_itself(request.tool):
            return handler(request)
        with bound_from_config(self.authz, self._config(request), self.principal_key, self.session_key):
            tool = request.tool
            spec = self.spec_for(request.tool_call["name"], tool)
            if spec is None or tool is None:
                return self._unknown(request)
            outcome: ToolCall | InvalidArguments
            try:
                outcome = self.authz.begin_tool_call(spec, request.tool_call.get("args") or {},
                                                     call_id=request.tool_call.get("id") or None)
            except InvalidArguments as exc:
                outcome = exc
            if isinstance(outcome, InvalidArguments) or not outcome.admits:
                return self._refused(request, outcome)
            with outcome:  # counted in the session once the tool ran without error
                result = handler(self._decided(request, tool, outcome))
                if _failed(result):
                    outcome.fail()
            return result

    async def awrap_tool_call(
        self,
        request: ToolCallRequest,
        handler: Callable[[ToolCallRequest], Awaitable[ToolMessage | Command[Any]]],
    ) -> ToolMessage | Command[Any]:
        """Async twin of :meth:`wrap_tool_call`."""
        if self._decides_itself(request.tool):
            return await handler(request)
        with bound_from_config(self.authz, self._config(request), self.principal_key, self.session_key):
            tool = request.tool
            spec = self.spec_for(request.tool_call["name"], tool)
            if spec is None or tool is None:
                return self._unknown(request)
            outcome: ToolCall | InvalidArguments
            try:
                outcome = await self.authz.abegin_tool_call(
                    spec, request.tool_call.get("args") or {}, call_id=request.tool_call.get("id") or None)
            except InvalidArguments as exc:
                outcome = exc
            if isinstance(outcome, InvalidArguments) or not outcome.admits:
                return self._refused(request, outcome)
            with outcome:
                result = await handler(self._decided(request, tool, outcome))
                if _failed(result):
                    outcome.fail()
            return result

    # -- model calls ----------------------------------------------------------------

    def _permitted(self, tools: Sequence[BaseTool | dict[str, Any]], config: Mapping[str, Any]) -> list[Any]:
        offered: list[_Offered] = []
        for tool in tools:
            if isinstance(tool, BaseTool):
                spec = self.spec_for(tool.name, tool)
                if spec is not None:
                    offered.append(_Offered(tool, spec))
        with bound_from_config(self.authz, config, self.principal_key, self.session_key):
            if self.authz.identity is None:
                raise no_end_user(
                    f"this middleware reads RunnableConfig['configurable'][{self.principal_key!r}]")
            kept = self.authz.permitted_tools(offered)
        return [item.tool for item in kept]

    def wrap_model_call(
        self,
        request: ModelRequest[Any],
        handler: Callable[[ModelRequest[Any]], ModelResponse[Any]],
    ) -> ModelResponse[Any] | AIMessage | ExtendedModelResponse[Any]:
        """Offer the model only the tools the user could call."""
        if not self.filter_tools:
            return handler(request)
        return handler(request.override(tools=self._permitted(request.tools, ensure_config())))

    async def awrap_model_call(
        self,
        request: ModelRequest[Any],
        handler: Callable[[ModelRequest[Any]], Awaitable[ModelResponse[Any]]],
    ) -> ModelResponse[Any] | AIMessage | ExtendedModelResponse[Any]:
        """Async twin of :meth:`wrap_model_call` (the filtering runs in a worker thread)."""
        if not self.filter_tools:
            return await handler(request)
        tools = await asyncio.to_thread(self._permitted, request.tools, ensure_config())
        return await handler(request.override(tools=tools))

