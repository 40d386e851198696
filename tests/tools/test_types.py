"""Python annotations of tool arguments as Cedar schema types (cedar_type, @guard's context.input)."""

from __future__ import annotations

import datetime as dt
import decimal
import enum
from typing import Annotated, Any, Literal, NotRequired, Optional, TypedDict

import pytest
from pydantic import BaseModel

import agentauthz as az
from agentauthz.tools._spec import cedar_type

LONG = {"type": "Long"}
STRING = {"type": "String"}
BOOL = {"type": "Boolean"}


def ext(name: str) -> dict[str, Any]:
    return {"type": "Extension", "name": name}


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Priority(enum.IntEnum):
    LOW = 1
    HIGH = 2


class Address(BaseModel):
    city: str
    zip: str | None = None


class Customer(BaseModel):
    name: str
    address: Address
    tags: list[str] = []


# Functional syntax: the types are objects, not strings (this module uses PEP 563 annotations).
Filters = TypedDict("Filters", {"owner": str, "limit": NotRequired[int]})  # noqa: UP013


class Options(TypedDict, total=False):
    verbose: bool


class PostponedFilters(TypedDict):
    owner: str
    limit: NotRequired[int]  # a string under PEP 563: typing cannot see NotRequired


class Meta(BaseModel):
    extra: dict[str, str]


def authorizer() -> az.Authorizer:
    return az.Authorizer.from_text("permit(principal, action, resource);")


# -- mappings ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("annotation", "expected"),
    [
        (int, LONG),
        (str, STRING),
        (bool, BOOL),
        (float, ext("decimal")),
        (decimal.Decimal, ext("decimal")),
        (dt.datetime, ext("datetime")),
        (dt.date, ext("datetime")),
        (dt.timedelta, ext("duration")),
        (Color, STRING),
        (Literal["a", "b"], STRING),
        (Literal[1, 2], LONG),
        (list[str], {"type": "Set", "element": STRING}),
        (set[int], {"type": "Set", "element": LONG}),
        (frozenset[bool], {"type": "Set", "element": BOOL}),
        (tuple[float, ...], {"type": "Set", "element": ext("decimal")}),
        (list[list[int]], {"type": "Set", "element": {"type": "Set", "element": LONG}}),
        (Optional[int], LONG),  # noqa: UP045 - the typing spelling is what is tested
        (int | None, LONG),
        (Annotated[str, "doc"], STRING),
    ],
    ids=lambda value: getattr(value, "__name__", None) or str(value),
)
def test_python_annotation_maps_to_cedar_type(annotation: Any, expected: dict[str, Any]) -> None:
    assert cedar_type(annotation, where="x") == expected


def test_bool_is_bool_not_long_although_bool_subclasses_int() -> None:
    assert cedar_type(bool) == BOOL


def test_nested_pydantic_models_become_records_with_optional_fields() -> None:
    assert cedar_type(Customer) == {
        "type": "Record",
        "attributes": {
            "name": STRING,
            "address": {
                "type": "Record",
                "attributes": {"city": STRING, "zip": {**STRING, "required": False}},
            },
            "tags": {"type": "Set", "element": STRING, "required": False},
        },
    }


def test_typeddict_becomes_record_and_not_required_keys_are_optional() -> None:
    assert cedar_type(Filters) == {
        "type": "Record",
        "attributes": {"owner": STRING, "limit": {**LONG, "required": False}},
    }


def test_typeddict_with_total_false_has_only_optional_attributes() -> None:
    assert cedar_type(Options) == {"type": "Record", "attributes": {"verbose": {**BOOL, "required": False}}}


def test_not_required_key_is_optional_under_postponed_annotations() -> None:
    assert cedar_type(PostponedFilters)["attributes"]["limit"] == {**LONG, "required": False}


def test_guard_records_arguments_as_context_input_record() -> None:
    authz = authorizer()

    @authz.guard
    def book(
        customer: Customer,
        when: dt.datetime,
        nights: int,
        budget: float,
        note: str | None = None,
        rooms: tuple[str, ...] = (),
        color: Color = Color.RED,
    ) -> str:
        return "ok"

    attributes = authz.tools["book"].input_type["attributes"]
    assert authz.tools["book"].input_type["type"] == "Record"
    assert attributes["customer"] == cedar_type(Customer)
    assert attributes["when"] == ext("datetime")
    assert attributes["nights"] == LONG
    assert attributes["budget"] == ext("decimal")
    # an argument with a default is optional, as in the arguments' JSON Schema (it is not "required")
    assert attributes["note"] == {**STRING, "required": False}
    assert attributes["rooms"] == {"type": "Set", "element": STRING, "required": False}
    assert attributes["color"] == {**STRING, "required": False}


def test_optional_argument_without_default_is_an_optional_attribute() -> None:
    authz = authorizer()

    @authz.guard
    def find(limit: int | None) -> str:
        return "ok"

    assert authz.tools["find"].input_type["attributes"]["limit"] == {**LONG, "required": False}


# -- rejections -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("annotation", "fragment"),
    [
        (dict[str, int], "type dict has no Cedar equivalent"),
        (bytes, "type bytes has no Cedar equivalent"),
        (Any, "needs a type annotation"),
        (int | str, "union of several types"),
        (list, "needs an element type"),
        (tuple[int, str], "only tuple[T, ...]"),
        (Literal["a", 1], "only strings or only integers"),
        (dt.time, "type time has no Cedar equivalent"),
        (complex, "type complex has no Cedar equivalent"),
    ],
    ids=lambda value: getattr(value, "__name__", None) or str(value),
)
def test_unsupported_argument_type_is_rejected_naming_tool_and_argument(
    annotation: Any, fragment: str
) -> None:
    authz = authorizer()

    def transfer(amount: int, payload: Any) -> str:
        return "ok"

    transfer.__annotations__["payload"] = annotation
    with pytest.raises(az.ConfigurationError) as info:
        authz.guard(transfer)
    message = str(info.value)
    assert "tool 'transfer' argument 'payload'" in message
    assert fragment in message
    assert "transfer" not in authz.tools


def test_unsupported_type_inside_a_model_names_the_field_path() -> None:
    authz = authorizer()

    def save(meta: Meta) -> str:
        return "ok"

    with pytest.raises(az.ConfigurationError, match=r"tool 'save' argument 'meta'\.extra: type dict"):
        authz.guard(save)


def test_missing_annotation_is_rejected_naming_tool_and_argument() -> None:
    authz = authorizer()

    def search(query):  # type: ignore[no-untyped-def]
        return query

    with pytest.raises(az.ConfigurationError, match=r"tool 'search' argument 'query': needs a type"):
        authz.guard(search)


@pytest.mark.parametrize("kind", ["args", "kwargs"])
def test_star_args_and_kwargs_are_rejected_naming_the_tool(kind: str) -> None:
    authz = authorizer()

    def star(*args: int) -> str:
        return "ok"

    def double_star(**kwargs: int) -> str:
        return "ok"

    with pytest.raises(az.ConfigurationError, match=r"\*args/\*\*kwargs") as info:
        authz.guard(star if kind == "args" else double_star)
    assert "tool 'star'" in str(info.value) or "tool 'double_star'" in str(info.value)


def test_star_args_message_names_the_argument() -> None:
    authz = authorizer()

    def star(*items: int) -> str:
        return "ok"

    with pytest.raises(az.ConfigurationError, match="items"):
        authz.guard(star)


def test_entity_uid_argument_is_rejected_naming_tool_and_argument() -> None:
    authz = authorizer()

    def open_account(account: az.EntityUID) -> str:
        return "ok"

    with pytest.raises(az.ConfigurationError, match=r"tool 'open_account' argument 'account'"):
        authz.guard(open_account)


def test_entity_argument_is_rejected_naming_tool_and_argument() -> None:
    authz = authorizer()

    def open_account(account: az.Entity) -> str:
        return "ok"

    with pytest.raises(az.ConfigurationError, match=r"tool 'open_account' argument 'account'"):
        authz.guard(open_account)


def test_enum_of_integers_maps_to_long_like_its_runtime_value() -> None:
    assert cedar_type(Priority) == LONG
