"""LangChain tools: :class:`AuthorizedTool` and :func:`authorize_tools`.

Also what the middleware (``_middleware``) shares with them: the spec of a
LangChain tool, the call as LangChain hands it over, running the wrapped tool,
and the one refusal a model reads on every LangChain path.
"""

from __future__ import annotations

try:
    from langchain_core.callbacks import AsyncCallbackManagerForToolRun, CallbackManagerForToolRun
    from langchain_core.messages import ToolMessage
    from langchain_core.runnables import RunnableConfig, ensure_config
    from langchain_core.tools import BaseTool, ToolException
    from langchain_core.tools import tool as _as_tool
    from langchain_core.tools.base import ArgsSchema, get_all_basemodel_annotations
except ImportError as _missing:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        "agentauthz.integrations.langchain needs langchain-core: "
        'pip install "agentauthz[langchain]"'
    ) from _missing

import dataclasses
import functools
import inspect
import typing
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, PrivateAttr, SkipValidation, create_model, model_validator

from agentauthz._authorizer import Authorizer
from agentauthz._errors import (
    AccessDenied,
    ApprovalRequired,
    AuthzError,
    ConfigurationError,
    InvalidArguments,
)
from agentauthz._model import Decision
from agentauthz.integrations.langchain._config import (
    INJECTED_KEY,
    PRINCIPAL_KEY,
    SESSION_KEY,
    bound_from_config,
    supplied_from_config,
)
from agentauthz.session._session import ToolCall
from agentauthz.tools._injected import is_injected, pydantic_ready
from agentauthz.tools._settings import ToolSettings
from agentauthz.tools._spec import OnDeny, RefusalKind, ToolSpec

__all__ = [
    "AuthorizedTool",
    "DecidedTool",
    "arun_wrapped",
    "authorize_tools",
    "refusal_output",
    "refused_as",
    "run_wrapped",
    "settings_by_tool",
    "shown_to_model",
    "spec_for_tool",
]

# -- tool specs from LangChain argument schemas --------------------------------------


def application_keys(tool: BaseTool) -> tuple[str, ...]:
    """The tool's arguments marked ``Annotated[T, az.Injected]``: the application's, never the model's.

    LangChain's own markers (``InjectedToolArg``, state, ``ToolRuntime``) are
    LangChain's to inject and not counted here.
    """
    if isinstance(tool.args_schema, Mapping):
        return ()
    annotations = get_all_basemodel_annotations(tool.get_input_schema())
    return tuple(name for name, hint in annotations.items() if is_injected(hint, langchain=False))


def model_schema(tool: BaseTool, schema: ArgsSchema, application: tuple[str, ...]) -> ArgsSchema:
    """``schema`` (a ``tool_call_schema``) without the application's arguments: what a model is shown."""
    if not application or not (isinstance(schema, type) and issubclass(schema, BaseModel)):
        return schema
    kept: dict[str, Any] = {name: (info.annotation, info) for name, info in schema.model_fields.items()
                            if name not in application}
    config = ConfigDict(arbitrary_types_allowed=True)
    shown: type[BaseModel] = create_model(schema.__name__, __config__=config, __doc__=schema.__doc__, **kept)
    return shown


def shown_to_model(tool: BaseTool) -> BaseTool:
    """The tool as a model is shown it: a copy without the application's arguments, if it has any."""
    application = application_keys(tool)
    if not application:
        return tool
    shown = tool.model_copy()
    shown.args_schema = model_schema(tool, tool.tool_call_schema, application)
    return shown


def _argument_model(tool: BaseTool) -> type[BaseModel]:
    """The pydantic model of the arguments the model chooses for a tool.

    The tool's own ``args_schema`` when the model chooses all of its fields (its
    validators then shape the values the policy sees); otherwise LangChain's
    ``tool_call_schema``, which leaves out injected arguments (state, runtime,
    ids, ``az.Injected``) and, with them, the schema's validators.
    """
    application = application_keys(tool)
    schema = model_schema(tool, tool.tool_call_schema, application)
    if not (isinstance(schema, type) and issubclass(schema, BaseModel)):
        raise ConfigurationError(
            f"tool {tool.name!r}: args_schema must be a pydantic (v2) model or a JSON schema dict"
        )
    own = tool.args_schema
    if isinstance(own, type) and issubclass(own, BaseModel) and set(own.model_fields) == set(
            schema.model_fields):
        return own
    return schema


def spec_for_tool(tool: BaseTool, settings: ToolSettings, on_deny: OnDeny) -> ToolSpec:
    """How the calls of a LangChain tool become Cedar requests (``on_deny``: unless the settings say).

    A JSON-schema ``args_schema`` (how MCP tools arrive) is read as
    :meth:`ToolSpec.from_json_schema` reads it; a pydantic one as
    :func:`_argument_model` picks it.
    """
    description = tool.description or ""
    if isinstance(tool.tool_call_schema, Mapping):
        return settings.spec_from_json_schema(tool.tool_call_schema, name=tool.name,
                                              description=description, on_deny=on_deny)
    spec = settings.spec_from_model(_argument_model(tool), name=tool.name, description=description,
                                    on_deny=on_deny)
    application = application_keys(tool)
    return dataclasses.replace(spec, injected=application) if application else spec


# The keywords of earlier releases: mappings by tool name (authorize_tools, AuthzMiddleware) and the
# ToolSettings option each one sets (AuthorizedTool's own keywords of the same names).
_DEPRECATED_MAPPINGS = {"actions": "action", "resources": "resource", "resource_types": "resource_types",
                        "contexts": "context"}
_DEPRECATED_OPTIONS = tuple(_DEPRECATED_MAPPINGS.values())


def settings_by_tool(
    settings: Mapping[str, ToolSettings] | None,
    deprecated: Mapping[str, Mapping[str, Any] | None],
    *,
    caller: str,
) -> dict[str, ToolSettings]:
    """The per-tool settings, with the deprecated keyword mappings folded in.

    Args:
        settings: ``{tool name: ToolSettings}``.
        deprecated: the old mappings by keyword (``actions``, ``resources``,
            ``resource_types``, ``contexts``), None where not given.
        caller: the API taking them, for the warning and errors.

    Raises:
        ConfigurationError: a value of ``settings`` is not a ToolSettings, or a
            tool has settings both ways (which to keep would be a guess).
    """
    merged: dict[str, ToolSettings] = {}
    for name, value in (settings or {}).items():
        if not isinstance(value, ToolSettings):
            raise ConfigurationError(f"{caller}: settings[{name!r}] must be an agentauthz.ToolSettings, "
                                     f"not {type(value).__name__}")
        merged[name] = value
    given = {option: mapping for option, mapping in deprecated.items() if mapping is not None}
    if not given:
        return merged
    warnings.warn(
        f"{caller}({'=, '.join(given)}=) is deprecated: pass settings={{tool name: ToolSettings(...)}} "
        "(agentauthz.ToolSettings); the keyword mappings go in the next release",
        DeprecationWarning, stacklevel=3)
    options: dict[str, dict[str, Any]] = {}
    for option, mapping in given.items():
        for name, value in mapping.items():
            options.setdefault(name, {})[_DEPRECATED_MAPPINGS[option]] = value
    for name, chosen in options.items():
        if name in merged:
            raise ConfigurationError(f"{caller}: tool {name!r} has settings both in settings= and in "
                                     "the deprecated keyword mappings; keep only settings=")
        merged[name] = ToolSettings(**chosen)
    return merged


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
    tool's schema would change them again. The application's arguments
    (``az.Injected``) come from the run's config (:data:`INJECTED_KEY`).
    """
    injected = {**injected, **_supplied(tool)}
    if not _injected_keys(tool):
        return {**injected, **arguments}
    parsed = tool._parse_input({**arguments, **injected}, tool_call_id)
    assert isinstance(parsed, dict)
    return {**{k: v for k, v in parsed.items() if k not in arguments}, **arguments}


def _supplied(tool: BaseTool) -> dict[str, Any]:
    """The application's arguments of this run (``config["configurable"][INJECTED_KEY]``).

    Raises:
        ConfigurationError: one without a default is missing.
    """
    names = application_keys(tool)
    supplied = supplied_from_config(ensure_config(), names)
    fields = typing.cast("type[BaseModel]", tool.get_input_schema()).model_fields if names else {}
    missing = [name for name in names if name not in supplied and fields[name].is_required()]
    if missing:
        raise ConfigurationError(
            f"tool {tool.name!r} needs {missing[0]!r}, which the application supplies (it is az.Injected): "
            f"put it in RunnableConfig['configurable'][{INJECTED_KEY!r}]")
    return supplied


def _injected_keys(tool: BaseTool) -> frozenset[str]:
    """Arguments LangChain injects into a tool (state, ToolRuntime, tool call id): never the model's."""
    keys: Iterable[str] = getattr(tool, "_injected_args_keys", frozenset())
    return frozenset(keys)


def refusal_output(tool: BaseTool | None, name: str, text: str, tool_call_id: str | None) -> Any:
    """The one refusal a model reads on every LangChain path (AuthorizedTool and the middleware).

    Answering a tool call, an error ``ToolMessage`` (``status="error"``);
    called with plain arguments, the content alone. The content is ``text``,
    or what the tool's ``handle_tool_error`` makes of it, as LangChain handles
    a ``ToolException`` the tool raised.
    """
    content = _handled(text, tool.handle_tool_error if tool is not None else None)
    if tool_call_id is None:
        return content
    return ToolMessage(content=content, name=name, tool_call_id=tool_call_id, status="error")


def _handled(text: str, handler: bool | str | Callable[[ToolException], Any] | None) -> Any:
    """What LangChain's ``handle_tool_error`` setting makes of a ToolException carrying ``text``."""
    if not handler or handler is True:
        return text
    if isinstance(handler, str):
        return handler
    return handler(ToolException(text))


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


def _wrapped_kwargs(method: Callable[..., Any], kwargs: dict[str, Any], run_manager: Any) -> dict[str, Any]:
    """The keyword arguments of the wrapped tool's ``_run``/``_arun``, as ``BaseTool.run`` builds them."""
    takes_manager, config_param = _call_options(_unbound(method))
    if takes_manager:
        kwargs["run_manager"] = run_manager
    if config_param:
        kwargs[config_param] = ensure_config()
    return kwargs


def run_wrapped(
    tool: BaseTool, kwargs: dict[str, Any], run_manager: CallbackManagerForToolRun | None,
) -> Any:
    """Run the wrapped tool's ``_run`` with these (decided) arguments."""
    return tool._run(**_wrapped_kwargs(tool._run, kwargs, run_manager))


async def arun_wrapped(
    tool: BaseTool, kwargs: dict[str, Any], run_manager: AsyncCallbackManagerForToolRun | None,
) -> Any:
    """Async twin of :func:`run_wrapped` (a tool without its own ``_arun`` runs ``_run`` in a thread)."""
    method = tool._run if type(tool)._arun is BaseTool._arun else tool._arun
    return await tool._arun(**_wrapped_kwargs(method, kwargs, run_manager))


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

    @functools.cached_property
    def _application_keys(self) -> tuple[str, ...]:
        return application_keys(self.tool)

    @property
    def tool_call_schema(self) -> ArgsSchema:
        """The wrapped tool's schema for models, without the application's (``az.Injected``) arguments."""
        return model_schema(self, super().tool_call_schema, self._application_keys)

    def _to_args_and_kwargs(self, tool_input: str | dict[str, Any],
                            tool_call_id: str | None) -> tuple[tuple[Any, ...], dict[str, Any]]:
        return (_Invocation(tool_input, tool_call_id),), {}


class DecidedTool(_WrappingTool):
    """Runs a call the middleware decided: the wrapped tool gets the validated arguments.

    Whatever arguments the call carries by the time it runs (another
    middleware may edit them), the model-chosen ones are those decided.
    """

    arguments: SkipValidation[dict[str, Any]]

    def _run(self, *args: Any, run_manager: CallbackManagerForToolRun | None = None, **kwargs: Any) -> Any:
        return run_wrapped(self.tool, self._kwargs(_Invocation.of(args, kwargs)), run_manager)

    async def _arun(
        self, *args: Any, run_manager: AsyncCallbackManagerForToolRun | None = None, **kwargs: Any
    ) -> Any:
        return await arun_wrapped(self.tool, self._kwargs(_Invocation.of(args, kwargs)), run_manager)

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
    IdentityError naming both; when both name different users, too. The user
    stays bound while the wrapped tool runs.

    When a call is refused (denied, or invalid arguments) the wrapped tool does
    not run, and with ``on_deny="message"`` (the default) the model reads
    ``authz.refusal(...)``: a generic refusal naming the decision's id (the
    audit event's ``decision_id``); the policy ids only with
    ``Authorizer(disclose_reasons=True)``. Called with a tool call, the result
    is a ``ToolMessage`` with ``status="error"``, the same as the middleware's
    refusals; the wrapped tool's ``handle_tool_error`` (a fixed text or a
    handler of a ``ToolException`` carrying the refusal) shapes the content,
    as LangChain's own error handling would. ``on_deny="raise"`` raises
    AccessDenied (or InvalidArguments) out of the agent.

    The keywords ``action``, ``resource``, ``resource_types`` and ``context``
    still work, deprecated (DeprecationWarning): pass ``settings=ToolSettings(...)``.

    Attributes:
        tool: the wrapped tool.
        authz: the Authorizer deciding the calls.
        settings: how its calls become Cedar requests (:class:`~agentauthz.ToolSettings`:
            action, resource, resource types, context, summed arguments, on_deny).
        principal_key: key of the end user in ``RunnableConfig["configurable"]``.
        session_key: key of the session in ``RunnableConfig["configurable"]``: a
            call made in a session is counted in it once the wrapped tool returns.
        on_deny: ``"message"`` (a refusal the model reads) or ``"raise"``, unless
            ``settings.on_deny`` says otherwise.

    Example:
        >>> import agentauthz as az
        >>> from langchain_core.tools import tool
        >>> authz = az.Authorizer.from_text(
        ...     'permit(principal, action == Action::"refund", resource) '
        ...     'when { context.input.amount <= 100 };')
        >>> @tool
        ... def issue_refund(order_id: str, amount: int) -> str:
        ...     '''Refund an order.'''
        ...     return f"refunded {amount}"
        >>> safe = AuthorizedTool(tool=issue_refund, authz=authz, settings=az.ToolSettings(action="refund"))
        >>> with authz.acting_as(az.EntityUID("User", "bob")):
        ...     print(safe.invoke({"order_id": "o-1", "amount": 50}))
        ...     print(safe.invoke({"order_id": "o-1", "amount": 5000}).split(" (")[0])
        refunded 50
        Tool 'issue_refund' is not permitted for this user
    """

    authz: SkipValidation[Authorizer]
    settings: SkipValidation[ToolSettings] = ToolSettings()
    principal_key: str = PRINCIPAL_KEY
    session_key: str = SESSION_KEY
    on_deny: OnDeny = "message"

    _spec: ToolSpec = PrivateAttr()

    def __init__(self, **data: Any) -> None:
        old = {option: data.pop(option) for option in _DEPRECATED_OPTIONS if option in data}
        if old:
            if "settings" in data:
                raise ConfigurationError(
                    f"AuthorizedTool takes settings= or the deprecated {'=, '.join(old)}=, not both")
            warnings.warn(
                f"AuthorizedTool({'=, '.join(old)}=) is deprecated: pass settings=ToolSettings(...) "
                "(agentauthz.ToolSettings); these keywords go in the next release",
                DeprecationWarning, stacklevel=2)
            data["settings"] = ToolSettings(**{k: v for k, v in old.items() if v is not None})
        super().__init__(**data)

    @model_validator(mode="before")
    @classmethod
    def _needs_authorizer_and_settings(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            if not isinstance(data.get("authz"), Authorizer):
                raise ConfigurationError("AuthorizedTool needs authz=<an agentauthz Authorizer>")
            if not isinstance(data.get("settings", ToolSettings()), ToolSettings):
                raise ConfigurationError("AuthorizedTool settings= takes an agentauthz.ToolSettings")
        return data

    def model_post_init(self, context: Any, /) -> None:
        """Build the tool's ToolSpec and register it with the Authorizer."""
        super().model_post_init(context)
        self._spec = spec_for_tool(self.tool, self.settings, self.on_deny)
        self.authz.tools[self._spec.name] = self._spec

    @property
    def spec(self) -> ToolSpec:
        """What the Authorizer knows about this tool (action, resource, argument types)."""
        return self._spec

    @property
    def __agentauthz_tool__(self) -> ToolSpec:
        """Lets ``authz.permitted_tools`` and ``authz.authorize_tool_call`` take this tool."""
        return self._spec

    # -- calls: the twins differ only by their awaits -------------------------------------

    def _run(self, *args: Any, run_manager: CallbackManagerForToolRun | None = None, **kwargs: Any) -> Any:
        invocation = _Invocation.of(args, kwargs)
        with bound_from_config(self.authz, ensure_config(), self.principal_key, self.session_key):
            chosen, injected = invocation.split(self._spec, self._injected_args_keys)
            try:
                call = self.authz.begin_tool_call(self._spec, chosen)
            except InvalidArguments as exc:
                return self._refused(invocation, exc)
            if not call.admits:
                return self._refused(invocation, call)
            with call:  # counted in the session when the wrapped tool returns
                result = run_wrapped(self.tool, self._kwargs(call, injected, invocation), run_manager)
            call.record_result(result)  # a source of the session, before the model reads it
            return self.authz.screen_tool_result(self._spec, result)

    async def _arun(
        self, *args: Any, run_manager: AsyncCallbackManagerForToolRun | None = None, **kwargs: Any
    ) -> Any:
        invocation = _Invocation.of(args, kwargs)
        with bound_from_config(self.authz, ensure_config(), self.principal_key, self.session_key):
            chosen, injected = invocation.split(self._spec, self._injected_args_keys)
            try:
                call = await self.authz.abegin_tool_call(self._spec, chosen)
            except InvalidArguments as exc:
                return self._refused(invocation, exc)
            if not call.admits:
                return self._refused(invocation, call)
            with call:
                result = await arun_wrapped(self.tool, self._kwargs(call, injected, invocation), run_manager)
            call.record_result(result)
            return await self.authz.ascreen_tool_result(self._spec, result)

    def _kwargs(self, call: ToolCall, injected: dict[str, Any], invocation: _Invocation) -> dict[str, Any]:
        return _call_kwargs(self.tool, call.arguments, injected, invocation.tool_call_id)

    def _refused(self, invocation: _Invocation, outcome: ToolCall | InvalidArguments) -> Any:
        """The refused call's result (with ``on_deny="raise"``: the error raised)."""
        kind, decision = refused_as(outcome)
        if self._spec.on_deny == "raise":
            raise refusal_error(outcome, self.name)
        result = refusal_output(self, self.name, self.authz.refusal(self.name, decision, kind=kind),
                                invocation.tool_call_id)
        return (result, None) if self.response_format == "content_and_artifact" else result



def refused_as(outcome: ToolCall | InvalidArguments) -> tuple[RefusalKind, Decision]:
    """The kind of refusal and its audited decision: invalid arguments, a held call, or a denial."""
    if isinstance(outcome, InvalidArguments):
        return "invalid", outcome.decision
    return "approval" if outcome.approval is not None else "denied", outcome.decision


def refusal_error(outcome: ToolCall | InvalidArguments, name: str) -> AuthzError:
    """What a refused call raises with ``on_deny="raise"``."""
    if isinstance(outcome, InvalidArguments):
        return outcome
    if outcome.approval is not None:
        return ApprovalRequired(outcome.decision, outcome.approval, subject=f"tool '{name}'")
    return AccessDenied(outcome.decision, subject=f"tool '{name}'")


def authorize_tools(
    tools: Iterable[BaseTool | Callable[..., Any]],
    authz: Authorizer,
    *,
    settings: Mapping[str, ToolSettings] | None = None,
    principal_key: str = PRINCIPAL_KEY,
    on_deny: OnDeny = "message",
    session_key: str = SESSION_KEY,
    actions: Mapping[str, Any] | None = None,
    resources: Mapping[str, Any] | None = None,
    resource_types: Mapping[str, Any] | None = None,
    contexts: Mapping[str, Any] | None = None,
) -> list[BaseTool]:
    """Wrap each tool in an :class:`AuthorizedTool`; same names, descriptions and schemas.

    Plain functions are first made tools with ``langchain_core.tools.tool``.
    Per-tool settings are one :class:`~agentauthz.ToolSettings` per tool name; a
    name that matches no tool is a configuration error (a typo would otherwise
    leave a tool on its defaults).

    Args:
        tools: LangChain tools (or functions) in the order the agent gets them.
        authz: the Authorizer deciding the calls.
        settings: ``{tool name: ToolSettings(...)}``: action, resource,
            resource types, context, summed arguments and on_deny of a tool
            (default: the action is the tool name, the resource ``Tool::"<name>"``).
        principal_key: key of the end user in ``RunnableConfig["configurable"]``.
        on_deny: ``"message"`` (a refusal the model reads) or ``"raise"``
            (AccessDenied), for the tools whose settings set none.
        session_key: key of the session in ``RunnableConfig["configurable"]``.
        actions: deprecated: ``settings={name: ToolSettings(action=...)}``.
        resources: deprecated: ``settings={name: ToolSettings(resource=...)}``.
        resource_types: deprecated: ``settings={name: ToolSettings(resource_types=...)}``.
        contexts: deprecated: ``settings={name: ToolSettings(context=...)}``.

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
        >>> [read] = authorize_tools([read_document], authz, settings={
        ...     "read_document": az.ToolSettings(
        ...         resource=lambda args: az.EntityUID("Document", args["document_id"]),
        ...         resource_types=["Document"])})
        >>> read.name, read.spec.resource_types
        ('read_document', ('Document',))
    """
    converted = [t if isinstance(t, BaseTool) else _as_tool(pydantic_ready(t)) for t in tools]
    chosen = settings_by_tool(
        settings, {"actions": actions, "resources": resources, "resource_types": resource_types,
                   "contexts": contexts}, caller="authorize_tools")
    unknown = sorted(set(chosen) - {t.name for t in converted})
    if unknown:
        raise ConfigurationError(f"settings name no tool: {', '.join(unknown)}")
    wrapped: list[BaseTool] = []
    for item in converted:
        if isinstance(item, AuthorizedTool) and item.authz is authz and item.name not in chosen:
            wrapped.append(item)
            continue
        wrapped.append(AuthorizedTool(
            tool=item, authz=authz, settings=chosen.get(item.name, ToolSettings()),
            principal_key=principal_key, on_deny=on_deny, session_key=session_key,
        ))
    return wrapped
