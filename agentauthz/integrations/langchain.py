"""LangChain integration: authorized tools and agent middleware (extra ``langchain``).

Three ways to put Cedar decisions between a LangChain agent and its tools
(and :class:`AuthorizedRetriever`, re-exported here, for what it retrieves):

* :class:`AuthorizedTool` wraps any ``BaseTool``; every call is decided for the
  end user before the wrapped tool runs.
* :func:`authorize_tools` wraps a list of tools at once.
* :class:`AuthzMiddleware` plugs into ``langchain.agents.create_agent``
  (langchain v1): it decides every tool call in ``wrap_tool_call`` and shows the
  model, in ``wrap_model_call``, only the tools the user could use.

The end user comes from ``RunnableConfig["configurable"][principal_key]`` (an
:class:`~agentauthz.EntityUID` or :class:`~agentauthz.Entity` put there by the
application) or from ``authz.acting_as(...)``; with neither, the call raises
:class:`~agentauthz.IdentityError`. Tool arguments never name the principal.
The session (:mod:`agentauthz.session`) comes from
``RunnableConfig["configurable"][session_key]`` (default ``"agentauthz_session"``:
the conversation id, e.g. the thread id, or a Session) or ``authz.session(...)``;
tool calls are then decided with ``context.session`` and counted once they complete.

Authorization is never done in a callback handler: LangChain logs and swallows
exceptions raised by callback handlers (unless ``raise_error`` is set), so a
denial there would let the call go ahead.

Example:
    >>> import agentauthz as az
    >>> from langchain_core.tools import tool
    >>> authz = az.Authorizer.from_text(
    ...     '@id("search") permit(principal, action == Action::"search", resource);')
    >>> @tool
    ... def search(query: str) -> str:
    ...     '''Search the knowledge base.'''
    ...     return f"results for {query}"
    >>> [safe_search] = authorize_tools([search], authz)
    >>> config = {"configurable": {PRINCIPAL_KEY: az.EntityUID("User", "alice")}}
    >>> safe_search.invoke({"query": "refunds"}, config=config)
    'results for refunds'
"""

from __future__ import annotations

try:
    from langchain_core.callbacks import AsyncCallbackManagerForToolRun, CallbackManagerForToolRun
    from langchain_core.messages import ToolMessage
    from langchain_core.runnables import RunnableConfig, ensure_config
    from langchain_core.tools import BaseTool, ToolException
    from langchain_core.tools import tool as _as_tool
except ImportError as _missing:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        "agentauthz.integrations.langchain needs langchain-core: "
        'pip install "agentauthz[langchain]"'
    ) from _missing

import asyncio
import functools
import inspect
import typing
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Optional

from pydantic import BaseModel, ConfigDict, PrivateAttr, SkipValidation, create_model, model_validator

from agentauthz._authorizer import Authorizer
from agentauthz._errors import AccessDenied, ConfigurationError, IdentityError, InvalidValueError
from agentauthz._model import Decision, Entity, EntityUID
from agentauthz._tools import (
    ContextSpec,
    OnDeny,
    ResourceSpec,
    ToolSpec,
    build_spec_from_model,
    refusal_message,
    spec_of,
)
from agentauthz.integrations._langchain_retrieval import AuthorizedRetriever, RetrievalResult, RetrievalStats
from agentauthz.session import SESSION_KEY, Session

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

PRINCIPAL_KEY = "agentauthz_principal"
"""Default key of the end user in ``RunnableConfig["configurable"]``."""

_AGENTS_HINT = 'AuthzMiddleware needs langchain>=1.0 (create_agent): pip install "agentauthz[langchain]"'


# -- principal ---------------------------------------------------------------------


def _configured_principal(config: Mapping[str, Any] | None, key: str) -> Entity | EntityUID | None:
    """The end user the application put in ``config["configurable"][key]``, if any."""
    configurable = (config or {}).get("configurable")
    if not isinstance(configurable, Mapping):
        return None
    value = configurable.get(key)
    if value is None:
        return None
    if not isinstance(value, (Entity, EntityUID)):
        # A string or dict could come from a client (e.g. a LangGraph server request);
        # the principal is a value the application built, never parsed from text.
        raise IdentityError(
            f"RunnableConfig['configurable'][{key!r}] must be an EntityUID or Entity set by "
            f"the application, not {type(value).__name__}"
        )
    return value


def _configured_session(config: Mapping[str, Any] | None, key: str) -> str | Session | None:
    """The session the application put in ``config["configurable"][key]``, if any."""
    configurable = (config or {}).get("configurable")
    if not isinstance(configurable, Mapping):
        return None
    value = configurable.get(key)
    if value is None or isinstance(value, (str, Session)):
        return value
    raise ConfigurationError(
        f"RunnableConfig['configurable'][{key!r}] must be a session id string or a Session, "
        f"not {type(value).__name__}")


@contextmanager
def _bound(authz: Authorizer, config: Mapping[str, Any] | None, key: str,
           session_key: str = SESSION_KEY) -> Iterator[None]:
    """Bind the configured end user and session for the block, or keep what is bound."""
    with authz.bound_to(_configured_principal(config, key),
                        source=f"RunnableConfig['configurable'][{key!r}]"), \
            authz.session_bound_to(_configured_session(config, session_key),
                                   source=f"RunnableConfig['configurable'][{session_key!r}]"):
        yield


def _failed(result: Any) -> bool:
    """Whether a tool node's result reports a failed run (an error ToolMessage)."""
    return isinstance(result, ToolMessage) and result.status == "error"


# -- tool specs from LangChain argument schemas --------------------------------------


_JSON_SCALARS: dict[str, type] = {"string": str, "integer": int, "number": float, "boolean": bool}


def _model_from_json_schema(name: str, schema: Mapping[str, Any]) -> type[BaseModel]:
    """A pydantic model for a JSON-schema ``args_schema`` (objects of Cedar-mappable types).

    Raises:
        ConfigurationError: a property has no Cedar equivalent (free-form
            objects, unions of several types, ``$ref`` cycles).
    """
    definitions = {**schema.get("definitions", {}), **schema.get("$defs", {})}

    def annotation(node: Mapping[str, Any], where: str, depth: int = 0) -> Any:
        if depth > 32:
            raise ConfigurationError(f"{where}: JSON schema nests too deeply (or refers to itself)")
        if "$ref" in node:
            ref = str(node["$ref"]).rsplit("/", 1)[-1]
            if ref not in definitions:
                raise ConfigurationError(f"{where}: unresolved $ref {node['$ref']!r}")
            return annotation(definitions[ref], where, depth + 1)
        for key in ("anyOf", "oneOf"):
            if key in node:
                options = [o for o in node[key] if o.get("type") != "null"]
                if len(options) != 1:
                    raise ConfigurationError(f"{where}: a union of several types has no Cedar equivalent")
                inner = annotation(options[0], where, depth + 1)
                return Optional[inner] if len(options) < len(node[key]) else inner  # noqa: UP045
        kind = node.get("type")
        nullable = False
        if isinstance(kind, list):
            present = [k for k in kind if k != "null"]
            if len(present) != 1:
                raise ConfigurationError(f"{where}: a union of several types has no Cedar equivalent")
            nullable = len(present) < len(kind)
            kind = present[0]
        if kind is None and "enum" in node:
            values = node["enum"]
            kind = "string" if all(isinstance(v, str) for v in values) else "integer"
        result: Any
        if kind in _JSON_SCALARS:
            result = _JSON_SCALARS[kind]
        elif kind == "array":
            if not isinstance(node.get("items"), Mapping):
                raise ConfigurationError(f"{where}: an array needs an item type")
            result = list[annotation(node["items"], f"{where}[]", depth + 1)]  # type: ignore[misc]
        elif kind == "object" and node.get("properties"):
            result = record(node, where, depth + 1)
        else:
            raise ConfigurationError(f"{where}: JSON schema type {kind!r} has no Cedar equivalent")
        return Optional[result] if nullable else result  # noqa: UP045

    def record(node: Mapping[str, Any], where: str, depth: int) -> type[BaseModel]:
        required = set(node.get("required", ()))
        fields: dict[str, Any] = {}
        for prop, sub in node.get("properties", {}).items():
            hint = annotation(sub, f"{where} argument {prop!r}" if depth == 0 else f"{where}.{prop}", depth)
            if prop in required:
                fields[prop] = (hint, ...)
            else:
                default = sub.get("default")
                fields[prop] = (hint if default is not None else Optional[hint], default)  # noqa: UP045
        model_name = "_".join("".join(c if c.isalnum() else " " for c in where).split()) + "_input"
        model: type[BaseModel] = create_model(model_name, __config__=ConfigDict(extra="forbid"), **fields)
        hidden = sorted(set(fields) - set(model.model_fields))
        if hidden:
            # pydantic keeps names like "_x" or "model_config" out of its fields: such an argument
            # would reach the tool without ever being authorized.
            raise ConfigurationError(f"{where}: argument names {hidden} cannot be authorized "
                                     "(a leading underscore or a pydantic-reserved name)")
        return model

    if schema.get("type", "object") != "object":
        raise ConfigurationError(f"tool {name!r}: a JSON args_schema must describe an object")
    return record({**schema, "properties": schema.get("properties", {})}, f"tool {name!r}", 0)


def _argument_model(tool: BaseTool) -> type[BaseModel]:
    """The arguments the model chooses for a tool, without injected ones (state, runtime, ids)."""
    schema = tool.tool_call_schema
    if isinstance(schema, Mapping):
        return _model_from_json_schema(tool.name, schema)
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        return schema
    raise ConfigurationError(
        f"tool {tool.name!r}: args_schema must be a pydantic (v2) model or a JSON schema dict"
    )


def _spec_for_tool(
    tool: BaseTool,
    *,
    action: str | EntityUID | None = None,
    resource: ResourceSpec = None,
    resource_types: Iterable[str] = (),
    context: ContextSpec = None,
    on_deny: OnDeny = "message",
) -> ToolSpec:
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


def _arguments(spec: ToolSpec, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """The model-chosen arguments of one call (injected arguments left out)."""
    if args:
        if len(args) != 1 or len(spec.parameters) != 1 or kwargs.keys() & set(spec.parameters):
            raise InvalidValueError(f"tool {spec.name!r} takes its arguments by name")
        return {spec.parameters[0]: args[0]}
    return {name: kwargs[name] for name in spec.parameters if name in kwargs}


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
    tool: BaseTool, args: tuple[Any, ...], kwargs: dict[str, Any],
    run_manager: CallbackManagerForToolRun | None,
) -> Any:
    takes_manager, config_param = _call_options(_unbound(tool._run))
    if takes_manager:
        kwargs["run_manager"] = run_manager
    if config_param:
        kwargs[config_param] = ensure_config()
    return tool._run(*args, **kwargs)


async def _arun_wrapped(
    tool: BaseTool, args: tuple[Any, ...], kwargs: dict[str, Any],
    run_manager: AsyncCallbackManagerForToolRun | None,
) -> Any:
    method = tool._run if type(tool)._arun is BaseTool._arun else tool._arun
    takes_manager, config_param = _call_options(_unbound(method))
    if takes_manager:
        kwargs["run_manager"] = run_manager
    if config_param:
        kwargs[config_param] = ensure_config()
    return await tool._arun(*args, **kwargs)


# -- AuthorizedTool ----------------------------------------------------------------------

_COPIED = (
    "name", "description", "args_schema", "return_direct", "verbose", "callbacks", "tags",
    "metadata", "handle_tool_error", "handle_validation_error", "response_format", "extras",
)


class AuthorizedTool(BaseTool):
    """A LangChain tool whose every call is decided by Cedar before the wrapped tool runs.

    The wrapper shows the model the wrapped tool's ``name``, ``description`` and
    ``args_schema`` and takes over its run settings (callbacks, tags, metadata,
    ``handle_tool_error``, ``handle_validation_error``, ``response_format``,
    ``return_direct``), so LangChain sees one tool run per call. Each call is a
    Cedar request: the bound end user, the tool's action (default: the tool
    name), the resource (default ``Tool::"<name>"``), and the validated
    arguments the model chose as ``context.input`` (injected arguments such as
    state or ``ToolRuntime`` are passed to the tool but not sent to Cedar).

    The end user is ``config["configurable"][principal_key]`` (an EntityUID or
    Entity the application put there; strings and dicts are refused) or the one
    bound with ``authz.acting_as(...)``. With neither, the call raises
    IdentityError; when both name different users, too. The user stays bound
    while the wrapped tool runs.

    When a call is denied the wrapped tool does not run, and with
    ``on_deny="message"`` (the default) the model reads a refusal naming the
    determining policies: the tool result (``ToolMessage`` content) is the
    refusal, unless the wrapped tool sets ``handle_tool_error``, in which case
    a ``ToolException`` carrying the refusal is raised and LangChain turns it
    into the tool result through that handler (a ``ToolMessage`` with
    ``status="error"``). ``on_deny="raise"`` raises AccessDenied out of the agent.

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
        ...     print(safe.invoke({"order_id": "o-1", "amount": 5000}))
        refunded 50
        Tool 'refund' is not permitted for this user (denied: no policy permits it). Do not retry it.
    """

    tool: SkipValidation[BaseTool]
    authz: SkipValidation[Authorizer]
    action: SkipValidation[str | EntityUID | None] = None
    resource: SkipValidation[ResourceSpec] = None
    resource_types: tuple[str, ...] = ()
    context: SkipValidation[ContextSpec] = None
    principal_key: str = PRINCIPAL_KEY
    session_key: str = SESSION_KEY
    on_deny: OnDeny = "message"
    name: str = ""
    description: str = ""

    _spec: ToolSpec = PrivateAttr()

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
        if not isinstance(data.get("authz"), Authorizer):
            raise ConfigurationError("AuthorizedTool needs authz=<an agentauthz Authorizer>")
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

    @functools.cached_property
    def _injected_args_keys(self) -> frozenset[str]:
        # Arguments LangChain injects (state, ToolRuntime, tool call id) are the wrapped tool's.
        keys: Iterable[str] = getattr(self.tool, "_injected_args_keys", frozenset())
        return frozenset(keys)

    # -- calls -------------------------------------------------------------------

    def _run(
        self, *args: Any, run_manager: CallbackManagerForToolRun | None = None, **kwargs: Any
    ) -> Any:
        with _bound(self.authz, ensure_config(), self.principal_key, self.session_key):
            try:
                call = self.authz.begin_tool_call(self._spec, _arguments(self._spec, args, kwargs))
            except InvalidValueError as exc:
                return self._not_called(exc)
            if not call.admits:
                return self._refuse(call.decision)
            with call:  # counted in the session when the wrapped tool returns
                return _run_wrapped(self.tool, args, kwargs, run_manager)

    async def _arun(
        self, *args: Any, run_manager: AsyncCallbackManagerForToolRun | None = None, **kwargs: Any
    ) -> Any:
        with _bound(self.authz, ensure_config(), self.principal_key, self.session_key):
            try:
                call = await self.authz.abegin_tool_call(self._spec, _arguments(self._spec, args, kwargs))
            except InvalidValueError as exc:
                return self._not_called(exc)
            if not call.admits:
                return self._refuse(call.decision)
            with call:
                return await _arun_wrapped(self.tool, args, kwargs, run_manager)

    def _refuse(self, decision: Decision) -> Any:
        if self.on_deny == "raise":
            raise AccessDenied(decision, subject=f"tool '{self.name}'")
        return self._result(refusal_message(self.name, decision.reasons, decision.errors))

    def _not_called(self, exc: InvalidValueError) -> Any:
        if self.on_deny == "raise":
            raise exc
        return self._result(f"Tool '{self.name}' was not called: {exc}")

    def _result(self, text: str) -> Any:
        if self.handle_tool_error:
            raise ToolException(text)
        return (text, None) if self.response_format == "content_and_artifact" else text


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
      makes, with its arguments as ``context.input``, before the tool runs. A
      denied call is not executed: the agent gets a ``ToolMessage`` with the
      refusal (``status="error"``), or AccessDenied is raised with
      ``on_deny="raise"``. An :class:`AuthorizedTool` of the same Authorizer
      decides its own calls and is passed through, so a call is decided once.
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

    def _refusal(self, request: ToolCallRequest, text: str) -> ToolMessage:
        call = request.tool_call
        return ToolMessage(content=text, name=call["name"], tool_call_id=call["id"] or "", status="error")

    def _config(self, request: ToolCallRequest) -> Mapping[str, Any]:
        runtime = getattr(request, "runtime", None)
        config = getattr(runtime, "config", None)
        return config if isinstance(config, Mapping) else ensure_config()

    def _verdict(
        self, request: ToolCallRequest, spec: ToolSpec | None, outcome: Decision | InvalidValueError | None
    ) -> ToolMessage | None:
        """None when the call may go ahead; otherwise the refusal the agent gets."""
        name = request.tool_call["name"]
        if spec is None or outcome is None:
            if self.on_deny == "raise":
                raise AccessDenied(Decision.deny("unknown tool"), subject=f"tool '{name}'")
            return self._refusal(request, refusal_message(name, (), ("unknown tool",)))
        if isinstance(outcome, InvalidValueError):
            if self.on_deny == "raise":
                raise outcome
            return self._refusal(request, f"Tool '{name}' was not called: {outcome}")
        if outcome.admits:
            return None
        if self.on_deny == "raise":
            raise AccessDenied(outcome, subject=f"tool '{name}'")
        return self._refusal(request, refusal_message(name, outcome.reasons, outcome.errors))

    def wrap_tool_call(
        self,
        request: ToolCallRequest,
        handler: Callable[[ToolCallRequest], ToolMessage | Command[Any]],
    ) -> ToolMessage | Command[Any]:
        """Decide the call; run the tool only when it is allowed."""
        if self._decides_itself(request.tool):
            return handler(request)
        with _bound(self.authz, self._config(request), self.principal_key, self.session_key):
            spec = self.spec_for(request.tool_call["name"], request.tool)
            outcome: Decision | InvalidValueError | None = None
            call = None
            if spec is not None:
                try:
                    call = self.authz.begin_tool_call(spec, dict(request.tool_call["args"] or {}),
                                                      call_id=request.tool_call.get("id") or None)
                    outcome = call.decision
                except InvalidValueError as exc:
                    outcome = exc
            refusal = self._verdict(request, spec, outcome)
            if refusal is not None or call is None:
                return refusal if refusal is not None else self._refusal(request, "not decided")
            with call:  # counted in the session once the tool ran without error
                result = handler(request)
                if _failed(result):
                    call.fail()
            return result

    async def awrap_tool_call(
        self,
        request: ToolCallRequest,
        handler: Callable[[ToolCallRequest], Awaitable[ToolMessage | Command[Any]]],
    ) -> ToolMessage | Command[Any]:
        """Async twin of :meth:`wrap_tool_call`."""
        if self._decides_itself(request.tool):
            return await handler(request)
        with _bound(self.authz, self._config(request), self.principal_key, self.session_key):
            spec = self.spec_for(request.tool_call["name"], request.tool)
            outcome: Decision | InvalidValueError | None = None
            call = None
            if spec is not None:
                try:
                    call = await self.authz.abegin_tool_call(
                        spec, dict(request.tool_call["args"] or {}),
                        call_id=request.tool_call.get("id") or None)
                    outcome = call.decision
                except InvalidValueError as exc:
                    outcome = exc
            refusal = self._verdict(request, spec, outcome)
            if refusal is not None or call is None:
                return refusal if refusal is not None else self._refusal(request, "not decided")
            with call:
                result = await handler(request)
                if _failed(result):
                    call.fail()
            return result

    # -- model calls ----------------------------------------------------------------

    def _permitted(self, tools: Sequence[BaseTool | dict[str, Any]], config: Mapping[str, Any]) -> list[Any]:
        offered: list[_Offered] = []
        for tool in tools:
            if isinstance(tool, BaseTool):
                spec = self.spec_for(tool.name, tool)
                if spec is not None:
                    offered.append(_Offered(tool, spec))
        with _bound(self.authz, config, self.principal_key, self.session_key):
            if self.authz.identity is None:
                raise IdentityError(
                    "no end user is bound: pass it in RunnableConfig['configurable']"
                    f"[{self.principal_key!r}] or wrap the call in authz.acting_as(user)"
                )
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

