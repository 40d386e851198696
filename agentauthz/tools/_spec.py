"""Tool authorization: ``@authz.guard``, Python types as Cedar types, tool descriptions.

A guarded tool is one Cedar action (the Cedar-for-agents convention): its
arguments, validated against the function signature, travel as
``context.input``; the resource is the tool itself (``Tool::"<name>"``) unless
the guard names one. The principal is always the bound end user, never an
argument.

:meth:`ToolSpec.arguments` is the one place where the arguments a model chose
become the arguments of a call: every integration decides on its result and
hands the tool exactly that, nothing more. :func:`refusal_message` is the one
text a model reads when a call is refused.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import decimal as _decimal
import enum
import functools
import inspect
import types
import typing
import warnings
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Optional, TypeVar

import typing_extensions
from pydantic import BaseModel, ConfigDict, PydanticUserError, TypeAdapter, ValidationError, create_model

from agentauthz._errors import ConfigurationError, InvalidValueError
from agentauthz._model import (
    _LONG_MAX,
    _LONG_MIN,
    Decision,
    Entity,
    EntityUID,
    float_to_decimal,
    to_cedar_value,
)
from agentauthz.guardrails._guardrail import Guardrail
from agentauthz.session._provenance import ResultLabel
from agentauthz.tools._annotations import validatable
from agentauthz.tools._injected import injected_parameters

__all__ = [
    "OnDeny",
    "RefusalKind",
    "ToolSpec",
    "cedar_type",
    "refusal_message",
    "tool_input",
]

OnDeny = Literal["raise", "message"]
RefusalKind = Literal["denied", "invalid", "unknown", "no-identity", "approval"]
ResourceSpec = EntityUID | Entity | Callable[[dict[str, Any]], EntityUID | Entity] | None
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
    if typing.is_typeddict(annotation) or typing_extensions.is_typeddict(annotation):
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
        json_arguments: the tool takes JSON values (it was described by a JSON
            Schema): :meth:`arguments` gives records as dicts and leaves out an
            optional argument that was not given.
        injected: arguments the application supplies (``Annotated[T, az.Injected]``):
            not in ``input_type`` nor ``context.input``; a model that sends one
            is refused.
        provenance: how the tool's results are labelled as sources of the
            session (a label, labels, or a function of the result); None for
            ``SessionConfig.provenance``'s own choice.
        guardrail: assesses the arguments (``context.guardrail.input``) and
            the result (session labels); None for none.
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
    json_arguments: bool = False
    injected: tuple[str, ...] = ()
    provenance: ResultLabel | None = None
    guardrail: Guardrail | None = None

    @classmethod
    def from_json_schema(
        cls,
        name: str,
        schema: Mapping[str, Any],
        *,
        description: str | None = None,
        action: str | EntityUID | None = None,
        resource: ResourceSpec = None,
        resource_types: Iterable[str] = (),
        context: ContextSpec = None,
        on_deny: OnDeny = "raise",
        sum_arguments: Iterable[str] = (),
    ) -> ToolSpec:
        """The spec of a tool described by a JSON Schema (an MCP ``inputSchema``, a JSON ``args_schema``).

        Properties map to Cedar as ``@authz.guard`` maps Python types: ``string``
        -> String, ``integer`` -> Long, ``number`` -> decimal, ``boolean`` ->
        Bool, ``array`` -> Set, ``object`` with ``properties`` -> record,
        ``enum``/``const`` of strings or of integers -> String/Long (only the
        listed values validate). A property not ``required`` (or nullable) is an
        optional attribute. ``$ref`` to local definitions, a single ``allOf``
        and single-type ``anyOf``/``oneOf`` are followed; ``format`` (a
        ``date-time`` stays a String) and value constraints (``minimum``,
        ``pattern``, ...) are not checked here.

        Arguments validate as a guarded function's do (see :meth:`arguments`):
        one outside ``properties`` is refused whatever ``additionalProperties``
        says (a policy could not see it), and the tool receives JSON values:
        the coerced values the policy saw, records as dicts, optional
        arguments that were not given left out.

        Args:
            name: the tool name (the Cedar action unless ``action`` is given).
            schema: the JSON Schema of the arguments (an object schema).
            description: the tool description (default: the schema's).
            action: Cedar action name or uid.
            resource: a fixed EntityUID/Entity, or a callable of the validated arguments.
            resource_types: entity types a computed resource can have.
            context: extra context, fixed or a callable of the validated arguments.
            on_deny: ``"raise"`` or ``"message"``, for guards built on the spec.
            sum_arguments: integer or number arguments a session adds up.

        Raises:
            ConfigurationError: a property has no Cedar equivalent (a free-form
                object, a union of several types, a ``$ref`` cycle), or an
                argument name cannot be authorized.

        Example:
            >>> spec = ToolSpec.from_json_schema("send_email", {
            ...     "type": "object", "required": ["to"],
            ...     "properties": {"to": {"type": "string"}, "urgent": {"type": "boolean"}}})
            >>> spec.input_type["attributes"]["urgent"]
            {'type': 'Boolean', 'required': False}
            >>> spec.arguments({"to": "dave@example.com", "urgent": "false"})
            {'to': 'dave@example.com', 'urgent': False}
        """
        if not isinstance(schema, Mapping):
            raise ConfigurationError(f"tool {name!r}: a JSON Schema must be an object")
        text = description if description is not None else schema.get("description")
        try:
            model = _json_schema_model(name, schema)
        except ConfigurationError:
            raise
        except Exception as exc:  # a schema we cannot read is a configuration error, never a raw one
            raise ConfigurationError(
                f"tool {name!r}: its JSON Schema cannot be read ({type(exc).__name__})") from exc
        spec = build_spec_from_model(
            model, name=name, description=text if isinstance(text, str) else "",
            action=action, resource=resource, resource_types=tuple(resource_types), context=context,
            on_deny=on_deny, sums=tuple(sum_arguments),
        )
        return dataclasses.replace(spec, json_arguments=True)

    @classmethod
    def from_mcp_tool(
        cls,
        tool: Any,
        *,
        description: str | None = None,
        action: str | EntityUID | None = None,
        resource: ResourceSpec = None,
        resource_types: Iterable[str] = (),
        context: ContextSpec = None,
        on_deny: OnDeny = "raise",
        sum_arguments: Iterable[str] = (),
    ) -> ToolSpec:
        """The spec of an MCP tool (an ``mcp.types.Tool`` or its JSON form): name, description, input schema.

        The same as :meth:`from_json_schema` on ``tool.inputSchema``, named and
        described as the tool is (``description=`` overrides it).

        Args:
            tool: an ``mcp.types.Tool`` (or any object with ``name``,
                ``description`` and ``input_schema``/``inputSchema``), or a
                tool description as a mapping (``{"name", "description", "inputSchema"}``).
            description: the tool description (default: the tool's own).
            action: Cedar action name or uid (default: the tool name).
            resource: a fixed EntityUID/Entity, or a callable of the validated arguments.
            resource_types: entity types a computed resource can have.
            context: extra context, fixed or a callable of the validated arguments.
            on_deny: ``"raise"`` or ``"message"``, for guards built on the spec.
            sum_arguments: integer or number arguments a session adds up.

        Raises:
            ConfigurationError: the tool has no name or no input schema, or see
                :meth:`from_json_schema`.

        Example:
            >>> import mcp.types
            >>> tool = mcp.types.Tool(name="add", description="Add two numbers.", inputSchema={
            ...     "type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]})
            >>> spec = ToolSpec.from_mcp_tool(tool)
            >>> spec.name, spec.description, spec.arguments({"a": "2"})
            ('add', 'Add two numbers.', {'a': 2})
        """
        def read(*keys: str) -> Any:
            for key in keys:
                value = tool.get(key) if isinstance(tool, Mapping) else getattr(tool, key, None)
                if value is not None:
                    return value
            return None

        name = read("name")
        if not isinstance(name, str) or not name:
            raise ConfigurationError("an MCP tool needs a name")
        schema = read("input_schema", "inputSchema")
        if not isinstance(schema, Mapping):
            raise ConfigurationError(f"MCP tool {name!r}: needs an inputSchema object")
        given = read("description")
        if description is None:
            description = given if isinstance(given, str) else ""
        return cls.from_json_schema(name, schema, description=description, action=action, resource=resource,
                                    resource_types=resource_types, context=context, on_deny=on_deny,
                                    sum_arguments=sum_arguments)

    def validate(self, arguments: Mapping[str, Any]) -> BaseModel:
        """Validate arguments against the tool's argument model.

        Every key must be an argument the tool declares, at any depth: an
        undeclared one is refused even where the model would allow or drop it
        (``extra="allow"``/``"ignore"``), since no policy could see it.

        Raises:
            InvalidValueError: an argument is unknown, missing or of the wrong
                type; the message names the argument, never its value.
        """
        if type(arguments) is not dict:  # a dict is validated as it is (pydantic copies what it keeps)
            if not isinstance(arguments, Mapping):
                raise InvalidValueError(
                    f"tool {self.name!r} got invalid arguments: they must be an object of named "
                    f"arguments, not {type(arguments).__name__}")
            arguments = dict(arguments)
        supplied = sorted(set(self.injected) & set(arguments)) if self.injected else None
        if supplied:
            raise InvalidValueError(f"tool {self.name!r} got invalid arguments: {supplied[0]}: supplied by "
                                    "the application, never by the model")
        try:
            model = self.input_model.model_validate(arguments, extra="forbid")
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(map(str, error['loc'])) or 'arguments'}: "
                + ("unknown argument" if error["type"] == "extra_forbidden" else error["msg"])
                for error in exc.errors(include_input=False, include_url=False)
            )
            raise InvalidValueError(f"tool {self.name!r} got invalid arguments: {problems}") from None
        # Only a model instance passed in as it was can hold undeclared fields: scalars cannot.
        plain = not model.model_extra and _scalars_only(model.__dict__.values())
        undeclared = None if plain else _undeclared(model, "")
        if undeclared is not None:  # a model instance passed in as it was, with extra fields
            raise InvalidValueError(
                f"tool {self.name!r} got invalid arguments: {undeclared}: unknown argument")
        return model

    def arguments(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """The arguments of one call as the policy evaluates them and the tool receives them.

        The one place where what a model sent becomes a call: validated by
        :meth:`validate` (unknown arguments refused), values coerced as
        pydantic's lax mode does (``"5"`` -> 5 for an int, ``"false"`` -> False
        for a bool), defaults filled in. ``context.input`` is built from the
        result, and integrations hand the tool exactly the result: the coerced
        value the policy saw, never the raw one.

        Raises:
            InvalidValueError: the arguments do not validate, or a value has no
                Cedar form (an integer beyond 64 bits, a float with more than
                four decimals): the message names the argument, never its value.

        Example:
            >>> spec = ToolSpec.from_json_schema(
            ...     "delete", {"type": "object", "properties": {"force": {"type": "boolean"}}})
            >>> spec.arguments({"force": "false"})
            {'force': False}
            >>> spec.arguments({"force": False, "bcc": "x"})
            Traceback (most recent call last):
            ...
            agentauthz._errors.InvalidValueError: tool 'delete' got invalid arguments: bcc: unknown argument
        """
        return self.call_arguments(arguments)[0]

    def call_arguments(self, arguments: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        """:meth:`arguments`, and the ``context.input`` built from them (:func:`tool_input`), at once.

        Raises:
            InvalidValueError: as :meth:`arguments`.
        """
        values = _exact_values(self._exact_types, arguments)
        if values is not None:  # what pydantic would give back, each value its own Cedar form
            return values, dict(values)
        model = self.validate(arguments)
        if self.json_arguments:
            values = _json_values(model)
        else:
            values = {name: getattr(model, name) for name in self.parameters}
        cedar_input = dict(values) if _scalars_only(values.values()) else tool_input(values)
        try:
            to_cedar_value(cedar_input)
        except InvalidValueError as exc:
            raise InvalidValueError(f"tool {self.name!r} got invalid arguments: {exc}") from None
        return values, cedar_input

    @functools.cached_property
    def _exact_types(self) -> tuple[tuple[str, type], ...] | None:
        """The argument names and types when validation can only hand back values of exactly those types.

        Worked out once per spec: a model built from a signature of required
        ``int``, ``str`` and ``bool`` arguments, with no validator, alias,
        constraint or configuration that could change or refuse such a value.
        None when any of that does not hold (pydantic validates every call).
        """
        model = self.input_model
        if self.json_arguments or model.__bases__ != (BaseModel,) or set(model.model_config) - {"extra"}:
            return None
        decorators = model.__pydantic_decorators__
        if (decorators.validators or decorators.field_validators or decorators.root_validators
                or decorators.model_validators or model.model_post_init is not BaseModel.model_post_init):
            return None
        fields = model.model_fields
        if tuple(fields) != self.parameters:
            return None
        exact: list[tuple[str, type]] = []
        for name, info in fields.items():
            if (info.annotation not in (int, str, bool) or info.metadata or not info.is_required()
                    or info.alias is not None or info.validation_alias is not None
                    or name.startswith("__")):  # Cedar JSON reserves __entity and __extn
                return None
            exact.append((name, typing.cast(type, info.annotation)))
        return tuple(exact)

    def resource_for(self, arguments: dict[str, Any], tool_type: str) -> EntityUID | Entity:
        """The resource of one call: fixed, computed from the arguments, or the tool itself."""
        if self.resource is None:
            return tool_uid(tool_type, self.name)
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
    injected = injected_parameters(fn)
    fields: dict[str, Any] = {}
    for parameter in signature.parameters.values():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            raise ConfigurationError(
                f"tool {tool_name!r} argument {parameter.name!r}: *args/**kwargs cannot be "
                "authorized argument by argument"
            )
        if parameter.name in injected:
            continue  # the application's, never the model's: no Cedar type, not in context.input
        annotation = hints.get(parameter.name, parameter.annotation)
        _argument_type(annotation, where=f"tool {tool_name!r} argument {parameter.name!r}")
        default = ... if parameter.default is parameter.empty else parameter.default
        fields[parameter.name] = (validatable(annotation), default)
    model = create_model(f"{tool_name}_input", __config__=ConfigDict(extra="forbid"), **fields)
    spec = build_spec_from_model(
        model, name=tool_name, description=inspect.getdoc(fn) or "", action=action,
        resource=resource, resource_types=resource_types, context=context, on_deny=on_deny,
        sums=sums,
    )
    return dataclasses.replace(spec, injected=injected) if injected else spec


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

    An argument is an optional attribute of ``context.input`` when it has a
    default or its type is Optional (as in the JSON Schema of the arguments,
    where it is not ``required``); every other argument is required. A
    default is filled in before the request is built, so ``context.input``
    holds it, but policies test ``has`` as for any optional attribute.

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
        if not model_field.is_required() or _optional(model_field.annotation):
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


_REFUSALS: dict[str, tuple[str, str]] = {
    "denied": ("is not permitted for this user", "Do not retry it."),
    "invalid": ("was not called: its arguments do not match the tool's schema",
                "Check them against the schema before calling it again."),
    "unknown": ("is not available to this agent", "Do not retry it."),
    "no-identity": ("was not called: the end user's identity is missing or could not be verified",
                    "Do not retry it."),
    "approval": ("was not called: it needs a person's approval first",
                 "Tell the user it awaits approval; call it again only once they approved it."),
}


def refusal_message(tool: str, decision: Decision, *, kind: RefusalKind = "denied",
                    disclose: bool = False) -> str:
    """The text a model reads when a call of ``tool`` is refused; every integration uses it.

    By default it says which kind of refusal it is and names the decision by
    its opaque id (the audit event's ``decision_id``), and nothing else: no
    policy id, no evaluation error, no argument problem. Those are in the
    audit event. ``disclose=True`` (``Authorizer(disclose_reasons=True)``)
    adds them: the determining policy ids of a denial, the problems of invalid
    arguments. That discloses how the policies are built to the model and to
    whoever steers it (a policy named ``exec-records-need-clearance`` tells it
    who is an executive).

    Args:
        tool: the tool (or operation) name the model called.
        decision: the refusal: a denying decision, or the audited refusal of a
            call refused before policies were evaluated.
        kind: ``"denied"`` (by policy), ``"invalid"`` (arguments), ``"unknown"``
            (a tool this agent does not have), ``"no-identity"``, or
            ``"approval"`` (held until a person approves it).
        disclose: add the policy ids or problems.

    Example:
        >>> refused = Decision(allowed=False, reasons=("no-external-email",), id="7f3a")
        >>> refusal_message("send_email", refused)
        "Tool 'send_email' is not permitted for this user (decision 7f3a). Do not retry it."
        >>> refusal_message("send_email", refused, disclose=True)
        "Tool 'send_email' is not permitted for this user (denied by policy no-external-email; \
decision 7f3a). Do not retry it."
    """
    what, advice = _REFUSALS[kind]
    details = _disclosed(decision, kind) if disclose else []
    if decision.id:
        details.append(f"decision {decision.id}")
    said = f" ({'; '.join(details)})" if details else ""
    return f"Tool '{tool}' {what}{said}. {advice}"


def _disclosed(decision: Decision, kind: RefusalKind) -> list[str]:
    if kind == "approval":
        return [f"held by policy {', '.join(decision.reasons)}"]
    if kind != "denied":
        return list(decision.errors)
    if decision.reasons:
        return [f"denied by policy {', '.join(decision.reasons)}"]
    if decision.errors:  # evaluation errors may name attributes: never shown, even when disclosing
        return ["the request could not be evaluated"]
    return ["no policy permits it"]


def bind_arguments(names: Sequence[str], args: tuple[Any, ...], kwargs: dict[str, Any],
                   tool: str) -> dict[str, Any]:
    """Map a call's positional and keyword arguments to the function's parameter ``names``.

    Keywords are taken as given: one the function does not declare is for the
    spec to refuse, as an unknown argument, like on every other path.
    """
    if not args:
        return kwargs
    if len(args) > len(names):
        raise InvalidValueError(f"tool {tool!r} got invalid arguments: it takes {len(names)} "
                                f"positional arguments, not {len(args)}")
    positional = dict(zip(names, args, strict=False))
    twice = sorted(positional.keys() & kwargs.keys())
    if twice:
        raise InvalidValueError(f"tool {tool!r} got invalid arguments: {twice[0]}: given twice")
    return {**positional, **kwargs}


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



# -- validated arguments -----------------------------------------------------------------


_SCALARS = frozenset({str, int, bool, type(None)})


def _scalars_only(values: Iterable[Any]) -> bool:
    """Whether every value is exactly a str, int, bool or None: its own Cedar input, holding no model."""
    return all(type(value) in _SCALARS for value in values)


@functools.lru_cache(maxsize=4096)
def tool_uid(tool_type: str, name: str) -> EntityUID:
    """The uid of a tool as a resource (``Tool::"<name>"``), built once per tool, not per call."""
    return EntityUID(tool_type, name)


def _exact_values(types: tuple[tuple[str, type], ...] | None, arguments: object) -> dict[str, Any] | None:
    """The arguments in ``types``' order when they are a dict of exactly those names and types, else None.

    An integer must also fit in Cedar's Long: any other value is left to the
    argument model and :func:`~agentauthz._model.to_cedar_value` (and their errors).
    """
    if types is None or type(arguments) is not dict or len(arguments) != len(types):
        return None
    values: dict[str, Any] = {}
    for name, kind in types:
        value: Any = arguments.get(name, None)
        if type(value) is not kind:  # absent, None, a subclass (True for an int): pydantic decides
            return None
        if type(value) is int and not _LONG_MIN <= value <= _LONG_MAX:
            return None
        values[name] = value
    return values


def _undeclared(value: Any, path: str) -> str | None:
    """The path of the first field a model instance holds beyond its declared ones, if any."""
    if isinstance(value, BaseModel):
        extra = value.model_extra
        if extra:
            name = sorted(map(str, extra))[0]
            return f"{path}.{name}" if path else name
        for name in type(value).model_fields:
            found = _undeclared(getattr(value, name), f"{path}.{name}" if path else name)
            if found is not None:
                return found
    elif isinstance(value, Mapping):
        for key, item in value.items():
            found = _undeclared(item, f"{path}.{key}" if path else str(key))
            if found is not None:
                return found
    elif isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            found = _undeclared(item, f"{path}[]")
            if found is not None:
                return found
    return None


def _json_values(value: Any) -> Any:
    """Validated arguments of a JSON-Schema tool as JSON values: records as dicts.

    An optional field that was not given (its default is None) stays absent, as
    the model left it: a tool whose schema does not allow null gets no null. So
    does one the model set to null where the schema does not allow null: the
    policy saw it absent (Cedar has no null), and so does the tool.
    """
    if isinstance(value, BaseModel):
        fields = type(value).model_fields
        absent_if_null: frozenset[str] = getattr(type(value), _ABSENT_IF_NULL, frozenset())
        return {
            name: _json_values(getattr(value, name)) for name, info in fields.items()
            if (name in value.model_fields_set or info.default is not None)
            and not (name in absent_if_null and getattr(value, name) is None)
        }
    if isinstance(value, list):
        return [_json_values(item) for item in value]
    return value


_JSON_SCALARS: dict[str, type] = {"string": str, "integer": int, "number": float, "boolean": bool}
# On a model built from a JSON Schema: the optional fields whose schema does not allow null.
_ABSENT_IF_NULL = "__agentauthz_absent_if_null__"
_MAX_JSON_DEPTH = 32


def _json_schema_model(name: str, schema: Mapping[str, Any]) -> type[BaseModel]:
    """A pydantic model for a JSON Schema of tool arguments (objects of Cedar-mappable types).

    Raises:
        ConfigurationError: a property has no Cedar equivalent (free-form
            objects, unions of several types, ``$ref`` cycles), or a name cannot
            be authorized.
    """
    definitions: dict[str, Any] = {}
    for key in ("definitions", "$defs"):
        given = schema.get(key, {})
        if not isinstance(given, Mapping):
            raise ConfigurationError(f"tool {name!r}: {key} must be an object of named schemas")
        definitions.update(given)

    def annotation(node: Any, where: str, depth: int) -> Any:
        if depth > _MAX_JSON_DEPTH:
            raise ConfigurationError(f"{where}: JSON schema nests too deeply (or refers to itself)")
        if not isinstance(node, Mapping):
            raise ConfigurationError(f"{where}: is not a JSON Schema object")
        if "$ref" in node:
            given = node["$ref"]
            ref = given.rsplit("/", 1)[-1] if isinstance(given, str) and given.startswith("#/") else None
            if ref not in definitions:
                raise ConfigurationError(f"{where}: unresolved $ref {given!r} (only local refs, "
                                         "#/$defs/<name>, are followed)")
            return annotation(definitions[ref], where, depth + 1)
        if "allOf" in node:
            parts = node["allOf"]
            if not isinstance(parts, list) or len(parts) != 1:
                raise ConfigurationError(f"{where}: allOf of several schemas has no Cedar equivalent")
            return annotation(parts[0], where, depth + 1)
        for key in ("anyOf", "oneOf"):
            if key in node:
                if not isinstance(node[key], list) or not node[key]:
                    raise ConfigurationError(f"{where}: {key} must be a non-empty list of schemas")
                options = [o for o in node[key] if not (isinstance(o, Mapping) and o.get("type") == "null")]
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
        if kind is not None and not isinstance(kind, str):
            raise ConfigurationError(f"{where}: type must be a type name or a list of them")
        result: Any
        if "enum" in node or "const" in node:
            result = _json_choices(node, where)
        elif kind in _JSON_SCALARS:
            result = _JSON_SCALARS[kind]
        elif kind == "array":
            if not isinstance(node.get("items"), Mapping):
                raise ConfigurationError(f"{where}: an array needs an item type")
            result = list[annotation(node["items"], f"{where}[]", depth + 1)]  # type: ignore[misc]
        elif kind in ("object", None) and node.get("properties"):
            result = record(node, where, depth + 1)
        else:
            raise ConfigurationError(f"{where}: JSON schema type {kind!r} has no Cedar equivalent")
        return Optional[result] if nullable else result  # noqa: UP045

    def record(node: Mapping[str, Any], where: str, depth: int) -> type[BaseModel]:
        required = node.get("required", [])
        properties = node.get("properties", {})
        if not isinstance(properties, Mapping):
            raise ConfigurationError(f"{where}: properties must be an object")
        if not isinstance(required, list) or not all(isinstance(item, str) for item in required):
            raise ConfigurationError(f"{where}: required must be a list of property names")
        fields: dict[str, Any] = {}
        absent_if_null: set[str] = set()
        for prop, sub in properties.items():
            if not isinstance(prop, str):
                raise ConfigurationError(f"{where}: property names must be strings")
            place = f"{where} argument {prop!r}" if depth == 0 else f"{where}.{prop}"
            hint = annotation(sub, place, depth)
            default = _json_default(sub["default"], hint, place) if "default" in sub else None
            if prop in required:
                fields[prop] = (hint, ...)
            else:
                fields[prop] = (hint if default is not None else Optional[hint], default)  # noqa: UP045
                if default is None and type(None) not in typing.get_args(hint):
                    absent_if_null.add(prop)
        model_name = "_".join("".join(c if c.isalnum() else " " for c in where).split()) + "_input"
        try:
            with warnings.catch_warnings():  # a property named like a BaseModel attribute is still a field
                warnings.simplefilter("ignore")
                model: type[BaseModel] = create_model(model_name, __config__=ConfigDict(extra="forbid"),
                                                      **fields)
        except (PydanticUserError, NameError, TypeError, ValueError) as exc:
            raise ConfigurationError(f"{where}: property names {sorted(fields)} cannot make a model "
                                     f"({type(exc).__name__})") from exc
        hidden = sorted(set(fields) - set(model.model_fields))
        if hidden:
            # pydantic keeps names like "_x" or "model_config" out of its fields: such an argument
            # would reach the tool without ever being authorized.
            raise ConfigurationError(f"{where}: argument names {hidden} cannot be authorized "
                                     "(a leading underscore or a pydantic-reserved name)")
        setattr(model, _ABSENT_IF_NULL, frozenset(absent_if_null))
        return model

    top = _top_object(schema, definitions, f"tool {name!r}")
    return record({**top, "properties": top.get("properties", {})}, f"tool {name!r}", 0)


def _top_object(schema: Mapping[str, Any], definitions: Mapping[str, Any], where: str) -> Mapping[str, Any]:
    """The object schema of the arguments: a top-level ``$ref``, single ``allOf`` or single-type
    ``anyOf``/``oneOf`` followed (as schema generation follows them), never silently skipped.

    Raises:
        ConfigurationError: the schema does not describe one object.
    """
    for _ in range(_MAX_JSON_DEPTH):
        if "$ref" in schema:
            given = schema["$ref"]
            ref = given.rsplit("/", 1)[-1] if isinstance(given, str) and given.startswith("#/") else None
            if ref is None or ref not in definitions:
                raise ConfigurationError(f"{where}: unresolved $ref {given!r}")
            schema = definitions[ref]
        elif any(key in schema for key in ("allOf", "anyOf", "oneOf")):
            key = next(key for key in ("allOf", "anyOf", "oneOf") if key in schema)
            parts = schema[key]
            listed = parts if isinstance(parts, list) else []
            options = [part for part in listed
                       if not (isinstance(part, Mapping) and part.get("type") == "null")]
            if len(options) != 1:
                raise ConfigurationError(f"{where}: the arguments must be one object schema, not a {key} "
                                         "of several")
            schema = options[0]
        else:
            break
        if not isinstance(schema, Mapping):
            raise ConfigurationError(f"{where}: is not a JSON Schema object")
    else:
        raise ConfigurationError(f"{where}: JSON schema nests too deeply (or refers to itself)")
    if schema.get("type", "object") != "object":
        raise ConfigurationError(f"{where}: a JSON Schema of arguments must describe an object")
    return schema


def _json_default(default: Any, hint: Any, where: str) -> Any:
    """A property's ``default`` as the value validation makes of it (what the policy sees when it is used).

    Raises:
        ConfigurationError: the default does not validate against the property's
            type, or has no Cedar form.
    """
    if default is None:
        return None
    try:
        value = TypeAdapter(hint).validate_python(default)
        to_cedar_value(tool_input(_json_values(value)))
    except (ValidationError, InvalidValueError) as exc:
        raise ConfigurationError(f"{where}: its default does not match its type") from exc
    return value


def _json_choices(node: Mapping[str, Any], where: str) -> Any:
    """``enum``/``const``: a Literal of the strings or integers it lists (null makes it optional)."""
    listed = node["enum"] if "enum" in node else [node["const"]]
    if not isinstance(listed, list) or not listed:
        raise ConfigurationError(f"{where}: enum must be a non-empty list")
    values = [value for value in listed if value is not None]
    strings = all(isinstance(v, str) for v in values)
    integers = all(isinstance(v, int) and not isinstance(v, bool) for v in values)
    if not values or not (strings or integers):
        raise ConfigurationError(f"{where}: an enum maps to Cedar only when it holds only strings or "
                                 "only integers")
    choice = Literal[tuple(dict.fromkeys(values))]  # type: ignore[valid-type]
    return Optional[choice] if len(values) < len(listed) else choice  # noqa: UP045
