"""Tool authorization: ``@authz.guard``, Python types as Cedar types, tool descriptions.

A guarded tool is one Cedar action (the Cedar-for-agents convention): its
arguments, validated against the function signature, travel as
``context.input``; the resource is the tool itself (``Tool::"<name>"``) unless
the guard names one. The principal is always the bound end user, never an
argument.
"""

from __future__ import annotations

import datetime as _dt
import decimal as _decimal
import enum
import functools
import inspect
import types
import typing
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from agentauthz._errors import ConfigurationError, InvalidValueError
from agentauthz._model import Entity, EntityUID, float_to_decimal

__all__ = [
    "OnDeny",
    "ToolSpec",
    "cedar_type",
    "refusal_message",
    "tool_input",
]

OnDeny = Literal["raise", "message"]
ResourceSpec = EntityUID | Entity | Callable[[dict[str, Any]], "EntityUID | Entity"] | None
ContextSpec = Mapping[str, Any] | Callable[[dict[str, Any]], Mapping[str, Any]] | None
F = TypeVar("F", bound=Callable[..., Any])

_EXTENSION_TYPES: dict[type, str] = {
    _decimal.Decimal: "decimal",
    float: "decimal",
    _dt.datetime: "datetime",
    _dt.date: "datetime",
    _dt.timedelta: "duration",
}


def cedar_type(annotation: Any, *, where: str = "") -> dict[str, Any]:
    """The Cedar JSON-schema type of a Python annotation.

    int -> Long, float/Decimal -> decimal, str/Enum/Literal -> String,
    bool -> Bool, list/set/tuple[T, ...] -> Set<T>, pydantic models and
    TypedDicts -> records (``Optional`` fields become optional attributes),
    datetime/date -> datetime, timedelta -> duration.

    Raises:
        ConfigurationError: the type has no Cedar equivalent; the message
            names ``where`` (the tool and argument).
    """
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is inspect.Parameter.empty or annotation is Any:
        raise ConfigurationError(f"{where}: needs a type annotation that maps to Cedar")
    if origin is typing.Annotated:
        return cedar_type(args[0], where=where)
    if annotation is bool:
        return {"type": "Boolean"}
    if annotation is int:
        return {"type": "Long"}
    if annotation is str:
        return {"type": "String"}
    if annotation in _EXTENSION_TYPES:
        return {"type": "Extension", "name": _EXTENSION_TYPES[annotation]}
    if origin is Literal:
        if all(isinstance(a, str) for a in args):
            return {"type": "String"}
        if all(isinstance(a, int) and not isinstance(a, bool) for a in args):
            return {"type": "Long"}
        raise ConfigurationError(f"{where}: a Literal must hold only strings or only integers")
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        values = [member.value for member in annotation]
        if values and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            return {"type": "Long"}
        if any(isinstance(v, (str, int)) for v in values) and not all(isinstance(v, str) for v in values):
            raise ConfigurationError(f"{where}: an Enum must have only str or only int values")
        return {"type": "String"}
    if origin in (list, set, frozenset, tuple) or annotation in (list, set, frozenset, tuple):
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            raise ConfigurationError(f"{where}: only tuple[T, ...] maps to a Cedar Set")
        if not args:
            raise ConfigurationError(f"{where}: a collection needs an element type, e.g. list[str]")
        return {"type": "Set", "element": cedar_type(args[0], where=f"{where}[]")}
    if origin in (typing.Union, types.UnionType):
        present = [a for a in args if a is not type(None)]
        if len(present) == 1:
            return cedar_type(present[0], where=where)
        raise ConfigurationError(f"{where}: a union of several types has no Cedar equivalent")
    if annotation is EntityUID or annotation is Entity:
        raise ConfigurationError(
            f"{where}: an entity cannot be a tool argument (the model must not choose entities): "
            "take an id string and build the resource with resource="
        )
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return _record(
            {name: (f.annotation, not f.is_required()) for name, f in annotation.model_fields.items()},
            where,
        )
    if typing.is_typeddict(annotation):
        # __required_keys__ is wrong under postponed annotations: read NotRequired/Required here.
        hints = typing.get_type_hints(annotation, include_extras=True)
        total = getattr(annotation, "__total__", True)
        fields: dict[str, tuple[Any, bool]] = {}
        for name, hint in hints.items():
            optional = not total
            while typing.get_origin(hint) in (typing.NotRequired, typing.Required, typing.Annotated):
                if typing.get_origin(hint) is typing.NotRequired:
                    optional = True
                elif typing.get_origin(hint) is typing.Required:
                    optional = False
                hint = typing.get_args(hint)[0]
            fields[name] = (hint, optional)
        return _record(fields, where)
    raise ConfigurationError(
        f"{where}: type {getattr(annotation, '__name__', annotation)!s} has no Cedar equivalent "
        "(use bool, int, str, float/Decimal, Enum/Literal, list/set, datetime, timedelta "
        "or a pydantic model)"
    )


def _argument_type(annotation: Any, *, where: str) -> dict[str, Any]:
    """:func:`cedar_type` of a tool argument; a type that contains itself is a configuration error."""
    try:
        return cedar_type(annotation, where=where)
    except RecursionError:
        raise ConfigurationError(f"{where}: a type that contains itself has no Cedar equivalent") from None


def _optional(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in (
        typing.get_args(annotation)
    )


def _record(fields: Mapping[str, tuple[Any, bool]], where: str) -> dict[str, Any]:
    attributes: dict[str, Any] = {}
    for name, (annotation, optional) in fields.items():
        attribute = cedar_type(annotation, where=f"{where}.{name}" if where else name)
        if optional or _optional(annotation):
            attribute["required"] = False
        attributes[name] = attribute
    return {"type": "Record", "attributes": attributes}


def tool_input(value: Any) -> Any:
    """Validated tool arguments as Python values the Cedar converter accepts.

    Enums become their value, pydantic models records, and floats decimals
    (the signature declared them, so the conversion is intended).
    """
    if isinstance(value, enum.Enum):
        return value.value if isinstance(value.value, (str, int)) else value.name
    if isinstance(value, BaseModel):
        return {name: tool_input(getattr(value, name)) for name in type(value).model_fields}
    if isinstance(value, float):
        return float_to_decimal(value)
    if isinstance(value, Mapping):
        return {key: tool_input(item) for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [tool_input(item) for item in value]
    return value


@dataclass(frozen=True)
class ToolSpec:
    """What the Authorizer knows about a guarded tool.

    Attributes:
        name: the tool name (the function name unless given).
        action: the Cedar action name (defaults to the tool name).
        input_model: pydantic model of the arguments, built from the signature.
        input_type: the Cedar record type of ``context.input``.
        resource: a fixed uid/entity, a callable of the validated arguments, or
            None for the tool itself.
        resource_types: entity types the resource can have, for schema generation.
        context: extra context, fixed or computed from the arguments.
        on_deny: ``"raise"`` (AccessDenied) or ``"message"`` (a refusal string).
        description: first line of the docstring, for tool descriptions.
        parameters: the argument names, in signature order.
        sums: numeric arguments whose values a session adds up per action
            (``context.session.totals.<action>.<argument>``).
    """

    name: str
    action: str | EntityUID
    input_model: type[BaseModel]
    input_type: dict[str, Any]
    resource: ResourceSpec
    resource_types: tuple[str, ...]
    context: ContextSpec
    on_deny: OnDeny
    description: str = ""
    parameters: tuple[str, ...] = field(default_factory=tuple)
    sums: tuple[str, ...] = ()

    def validate(self, arguments: Mapping[str, Any]) -> BaseModel:
        """Validate arguments against the signature.

        Raises:
            InvalidValueError: an argument is missing or of the wrong type; the
                message names the argument, never its value.
        """
        try:
            return self.input_model.model_validate(dict(arguments))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, error['loc'])) or 'arguments'}: {error['msg']}"
                for error in exc.errors(include_input=False, include_url=False)
            )
            raise InvalidValueError(f"tool {self.name!r} got invalid arguments: {problems}") from None

    def resource_for(self, arguments: dict[str, Any], tool_type: str) -> EntityUID | Entity:
        """The resource of one call: fixed, computed from the arguments, or the tool itself."""
        if self.resource is None:
            return EntityUID(tool_type, self.name)
        if isinstance(self.resource, (EntityUID, Entity)):
            return self.resource
        resource = self.resource(arguments)
        if not isinstance(resource, (EntityUID, Entity)):
            raise ConfigurationError(
                f"the resource callable of tool {self.name!r} must return an EntityUID or Entity"
            )
        return resource

    def context_for(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """Extra context of one call (``input`` is added by the guard)."""
        if self.context is None:
            return {}
        extra = self.context(arguments) if callable(self.context) else self.context
        if "input" in extra:
            raise ConfigurationError(f"the context of tool {self.name!r} must not set 'input'")
        return dict(extra)


def build_spec(
    fn: Callable[..., Any],
    *,
    name: str | None,
    action: str | EntityUID | None,
    resource: ResourceSpec,
    resource_types: tuple[str, ...],
    context: ContextSpec,
    on_deny: OnDeny,
    sums: Sequence[str] = (),
) -> ToolSpec:
    """Read a function's signature into a :class:`ToolSpec`."""
    tool_name = name or fn.__name__
    signature = inspect.signature(fn)
    hints = typing.get_type_hints(fn, include_extras=True)
    fields: dict[str, Any] = {}
    for parameter in signature.parameters.values():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            raise ConfigurationError(
                f"tool {tool_name!r} argument {parameter.name!r}: *args/**kwargs cannot be "
                "authorized argument by argument"
            )
        annotation = hints.get(parameter.name, parameter.annotation)
        _argument_type(annotation, where=f"tool {tool_name!r} argument {parameter.name!r}")
        default = ... if parameter.default is parameter.empty else parameter.default
        fields[parameter.name] = (annotation, default)
    model = create_model(f"{tool_name}_input", __config__=ConfigDict(extra="forbid"), **fields)
    return build_spec_from_model(
        model, name=tool_name, description=inspect.getdoc(fn) or "", action=action,
        resource=resource, resource_types=resource_types, context=context, on_deny=on_deny,
        sums=sums,
    )


def build_spec_from_model(
    model: type[BaseModel],
    *,
    name: str,
    description: str,
    action: str | EntityUID | None,
    resource: ResourceSpec,
    resource_types: tuple[str, ...],
    context: ContextSpec,
    on_deny: OnDeny,
    sums: Sequence[str] = (),
) -> ToolSpec:
    """A :class:`ToolSpec` whose arguments are the fields of a pydantic model.

    An argument is an optional attribute of ``context.input`` when its default
    is None or its type is Optional; every other argument is required.

    Raises:
        ConfigurationError: an argument type has no Cedar equivalent,
            ``on_deny`` is not ``"raise"``/``"message"``, or a summed argument
            is not a Long or decimal argument of the tool.
    """
    if on_deny not in ("raise", "message"):
        raise ConfigurationError(f"on_deny must be 'raise' or 'message', not {on_deny!r}")
    attributes: dict[str, Any] = {}
    for field_name, model_field in model.model_fields.items():
        attribute = _argument_type(model_field.annotation, where=f"tool {name!r} argument {field_name!r}")
        default = None if model_field.is_required() else model_field.get_default(
            call_default_factory=False)
        if (not model_field.is_required() and default is None) or _optional(model_field.annotation):
            attribute["required"] = False
        attributes[field_name] = attribute
    if isinstance(resource, EntityUID):
        resource_types = resource_types or (resource.type,)
    elif isinstance(resource, Entity):
        resource_types = resource_types or (resource.uid.type,)
    summary = description.strip().splitlines()[0] if description.strip() else ""
    if isinstance(sums, str):
        sums = (sums,)
    for summed in sums:
        kind = attributes.get(summed, {})
        if kind.get("type") != "Long" and kind.get("name") != "decimal":
            raise ConfigurationError(
                f"tool {name!r}: sum_arguments names {summed!r}, which is not an int or decimal "
                "argument of the tool")
    return ToolSpec(
        name=name,
        action=action or name,
        input_model=model,
        input_type={"type": "Record", "attributes": attributes},
        resource=resource,
        resource_types=resource_types,
        context=context,
        on_deny=on_deny,
        description=summary,
        parameters=tuple(model.model_fields),
        sums=tuple(dict.fromkeys(sums)),
    )


def refusal_message(tool: str, reasons: tuple[str, ...], errors: tuple[str, ...]) -> str:
    """A short refusal the model can read: the tool and determining policies, no values."""
    if reasons:
        because = f"denied by policy {', '.join(reasons)}"
    elif errors:
        because = "denied: the request could not be evaluated"
    else:
        because = "denied: no policy permits it"
    return f"Tool '{tool}' is not permitted for this user ({because}). Do not retry it."


def bind_arguments(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
                   tool: str) -> dict[str, Any]:
    """Map a call's positional and keyword arguments to parameter names."""
    try:
        bound = inspect.signature(fn).bind(*args, **kwargs)
    except TypeError as exc:
        raise InvalidValueError(f"tool {tool!r}: {exc}") from None
    return dict(bound.arguments)


def is_coroutine_function(fn: Callable[..., Any]) -> bool:
    """Whether calling ``fn`` returns an awaitable we must await."""
    return inspect.iscoroutinefunction(fn)


def wraps_tool(fn: F, wrapper: Callable[..., Any] | Callable[..., Awaitable[Any]], spec: ToolSpec) -> F:
    """Copy the function's metadata onto the wrapper and attach the spec."""
    wrapped = functools.wraps(fn)(wrapper)
    wrapped.__agentauthz_tool__ = spec  # type: ignore[attr-defined]
    return typing.cast(F, wrapped)


def spec_of(tool: Any) -> ToolSpec | None:
    """The ToolSpec of a guarded function, if it is one."""
    spec = getattr(tool, "__agentauthz_tool__", None)
    return spec if isinstance(spec, ToolSpec) else None

