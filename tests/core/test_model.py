"""Unit tests of the value model: entity ids, Cedar values, entities, requests, decisions."""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import functools
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import agentauthz as az
from agentauthz._model import from_cedar_value, to_cedar_value
from tests import strategies as S

SECRET = "sk-live-51HsEcReT0kEn"
UTC = dt.UTC


def offset(hours: int = 0, minutes: int = 0) -> dt.timezone:
    return dt.timezone(dt.timedelta(hours=hours, minutes=minutes))


def extn(fn: str, arg: Any) -> dict[str, Any]:
    return {"__extn": {"fn": fn, "arg": arg}}


# -- EntityUID -----------------------------------------------------------------------


def test_entity_uid_positional_construction_sets_type_and_id() -> None:
    uid = az.EntityUID("User", "alice")
    assert (uid.type, uid.id) == ("User", "alice")
    assert uid.to_cedar() == {"type": "User", "id": "alice"}


def test_entity_uid_keyword_construction_equals_positional() -> None:
    assert az.EntityUID(type="User", id="alice") == az.EntityUID("User", "alice")


def test_entity_uids_are_hashable_and_compare_by_value() -> None:
    assert {az.EntityUID("User", "a"): 1}[az.EntityUID("User", "a")] == 1
    assert az.EntityUID("User", "a") != az.EntityUID("Group", "a")
    assert az.EntityUID("User", "a") != az.EntityUID("User", "A")


@given(S.entity_uids, S.entity_uids)
def test_entity_uids_compare_and_hash_as_pydantic_compares_and_hashes_them(
        first: az.EntityUID, second: az.EntityUID) -> None:
    from pydantic import BaseModel

    twin = az.EntityUID(first.type, first.id)
    for other in (first, twin, second):
        assert (first == other) is BaseModel.__eq__(first, other)
        assert (first != other) is not BaseModel.__eq__(first, other)
    assert hash(first) == hash(twin) == hash((first.type, first.id))
    assert {first: 1}.get(twin) == 1


@given(S.entity_types, S.entity_ids)
def test_an_entity_uid_holds_what_pydantic_validation_would_store(kind: str, name: str) -> None:
    import pickle

    built = az.EntityUID(kind, name)
    validated = az.EntityUID.model_validate({"type": kind, "id": name})
    assert built.__getstate__() == validated.__getstate__()
    assert built.model_dump() == validated.model_dump() and built.model_fields_set == {"type", "id"}
    assert built == validated and hash(built) == hash(validated)
    assert pickle.loads(pickle.dumps(built)) == built and built.model_copy(update={"id": "x"}).id == "x"


def test_entity_uid_subclasses_and_string_subclasses_go_through_pydantic_validation() -> None:
    class Named(az.EntityUID):
        pass

    class Text(str):
        pass

    named = Named("User", "alice")
    assert type(named) is Named and named.model_dump() == {"type": "User", "id": "alice"}
    uid = az.EntityUID(Text("User"), Text("alice"))
    validated = az.EntityUID.model_validate({"type": Text("User"), "id": Text("alice")})
    assert uid.__getstate__() == validated.__getstate__()


def test_an_entity_uid_never_equals_another_kind_of_value() -> None:
    class Named(az.EntityUID):
        pass

    uid = az.EntityUID("User", "alice")
    assert uid != Named("User", "alice") and Named("User", "alice") != uid
    assert uid != ("User", "alice") and uid != 'User::"alice"' and uid != {"type": "User", "id": "alice"}


@given(st.lists(S.entity_uids, max_size=8), st.sampled_from([None, {"n": 1}]), st.data())
def test_shared_requests_read_as_the_base_with_each_resource(
        resources: list[az.EntityUID], context: dict[str, int] | None, data: st.DataObject) -> None:
    from agentauthz._model import SharedRequests

    base = az.Request(az.EntityUID("User", "alice"), "read", az.EntityUID("User", "alice"), context)
    batch = SharedRequests(base, resources)
    expected = [base.replace(resource=uid) for uid in resources]
    assert len(batch) == len(expected) and list(batch) == expected
    assert all(request.cedar_context is base.cedar_context for request in batch)  # converted once
    if resources:
        index = data.draw(st.integers(-len(resources), len(resources) - 1))
        assert batch[index] == expected[index]
    start, stop = data.draw(st.integers(0, len(resources))), data.draw(st.integers(0, len(resources)))
    part = batch[start:stop]
    assert isinstance(part, SharedRequests) and list(part) == expected[start:stop]


def test_shared_requests_refuse_a_resource_that_is_not_an_entity_uid() -> None:
    from agentauthz._model import SharedRequests

    base = az.Request(az.EntityUID("User", "alice"), "read", az.EntityUID("Doc", "d"))
    with pytest.raises(az.InvalidValueError, match="resource must be an EntityUID, not str"):
        SharedRequests(base, [az.EntityUID("Doc", "d1"), 'Doc::"d2"'])  # type: ignore[list-item]


def test_entity_uid_is_frozen() -> None:
    uid = az.EntityUID("User", "alice")
    with pytest.raises(Exception):  # noqa: B017 - pydantic's frozen-instance error
        uid.id = "mallory"  # type: ignore[misc]
    assert uid.id == "alice"


@pytest.mark.parametrize("bad_type", ["", None, 3])
def test_entity_uid_rejects_an_empty_or_non_string_type(bad_type: Any) -> None:
    with pytest.raises(az.InvalidValueError):
        az.EntityUID(bad_type, "alice")


@pytest.mark.parametrize("bad_id", [None, 3, b"alice", ["alice"]])
def test_entity_uid_rejects_a_non_string_id_naming_its_type(bad_id: Any) -> None:
    with pytest.raises(az.InvalidValueError) as info:
        az.EntityUID("User", bad_id)
    assert type(bad_id).__name__ in str(info.value)


@pytest.mark.parametrize(
    ("entity_id", "text"),
    [
        ("alice", 'User::"alice"'),
        ('al"ice', 'User::"al\\"ice"'),
        ("back\\slash", 'User::"back\\\\slash"'),
        ("line\nbreak", 'User::"line\\nbreak"'),
        ("cr\rtab\t", 'User::"cr\\rtab\\t"'),
        ("nul\0", 'User::"nul\\0"'),
        ("bell\x07del\x7f", 'User::"bell\\u{7}del\\u{7f}"'),
        ("a::b", 'User::"a::b"'),
        ('Admin::"root"', 'User::"Admin::\\"root\\""'),
        ("日本語 🦜 é", 'User::"日本語 🦜 é"'),
        ("", 'User::""'),
        ("'", "User::\"'\""),
    ],
)
def test_str_renders_cedar_text_with_the_id_escaped(entity_id: str, text: str) -> None:
    assert str(az.EntityUID("User", entity_id)) == text


def test_str_of_an_injection_attempt_stays_one_string_literal() -> None:
    uid = az.EntityUID("User", '" || true || "')
    assert str(uid) == 'User::"\\" || true || \\""'


def test_str_keeps_a_namespaced_type_as_written() -> None:
    assert str(az.EntityUID("App::Docs::Doc", "d1")) == 'App::Docs::Doc::"d1"'


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('User::"alice"', az.EntityUID("User", "alice")),
        ('A::B::"x"', az.EntityUID("A::B", "x")),
        ('App::Docs::Doc::"d::1"', az.EntityUID("App::Docs::Doc", "d::1")),
        ('User::""', az.EntityUID("User", "")),
        ('User::"al\\"ice"', az.EntityUID("User", 'al"ice')),
        ('User::"back\\\\slash"', az.EntityUID("User", "back\\slash")),
        ('User::"a\\nb\\rc\\td\\0"', az.EntityUID("User", "a\nb\rc\td\0")),
        ("User::\"it\\'s\"", az.EntityUID("User", "it's")),
        ('User::"\\u{41}\\u{1F99C}"', az.EntityUID("User", "A🦜")),
        ('User::"日本語"', az.EntityUID("User", "日本語")),
        ('  User::"padded"', az.EntityUID("User", "padded")),
    ],
)
def test_parse_reads_cedar_entity_text(text: str, expected: az.EntityUID) -> None:
    assert az.EntityUID.parse(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "alice",
        "User::alice",
        '"alice"',
        '::"alice"',
        'User:"alice"',
        'User::"alice',
        'User::"alice" ',
        'User::"al"ice"',
        'User::"alice\\"',
        'User::"\\q"',
        'User::"\\u{zz}"',
        'User::"\\u{110000}"',
        'User::"\\u{41"',
        '1User::"a"',
        'Us er::"a"',
        'A::::B::"x"',
        'A::B::"x"x',
        "",
    ],
)
def test_parse_rejects_text_that_is_not_an_entity_reference(text: str) -> None:
    with pytest.raises(az.InvalidValueError):
        az.EntityUID.parse(text)


@pytest.mark.parametrize("value", [None, 3, {"type": "User", "id": "a"}])
def test_parse_rejects_non_text(value: Any) -> None:
    with pytest.raises(az.InvalidValueError):
        az.EntityUID.parse(value)


@pytest.mark.parametrize(
    "value",
    [
        {"type": "User", "id": "alice"},
        {"__entity": {"type": "User", "id": "alice"}},
        'User::"alice"',
        az.EntityUID("User", "alice"),
    ],
)
def test_entity_uid_from_cedar_reads_every_uid_form(value: Any) -> None:
    assert az.EntityUID.from_cedar(value) == az.EntityUID("User", "alice")


@pytest.mark.parametrize(
    "value",
    [
        {"type": "User"},
        {"type": "User", "id": "a", "extra": 1},
        {"__entity": {"type": "User", "id": "a"}, "x": 1},
        {"type": "User", "id": 3},
        ["User", "a"],
        None,
    ],
)
def test_entity_uid_from_cedar_rejects_other_shapes(value: Any) -> None:
    with pytest.raises(az.InvalidValueError):
        az.EntityUID.from_cedar(value)


# -- Python -> Cedar JSON values ---------------------------------------------------------


def test_bools_stay_bools() -> None:
    assert to_cedar_value(True) is True
    assert to_cedar_value(False) is False


@pytest.mark.parametrize("number", [0, 1, -1, 2**63 - 1, -(2**63)])
def test_ints_within_64_bits_are_cedar_longs(number: int) -> None:
    assert to_cedar_value(number) == number


@pytest.mark.parametrize("number", [2**63, -(2**63) - 1, 10**30])
def test_ints_outside_64_bits_are_rejected_without_echoing_them(number: int) -> None:
    with pytest.raises(az.InvalidValueError, match="64-bit") as info:
        to_cedar_value(number)
    assert str(number) not in str(info.value)


@pytest.mark.parametrize(("context", "message"), [
    ({"a": {"b": [1, 2**70]}}, "integer at context.a.b[] does not fit in Cedar's 64-bit Long"),
    ({"x": [{"y": 1.5}]}, "float at context.x[].y has no exact Cedar type"),
    ({"ok": 1, "deep": {"__extn": 1}}, "record key '__extn' at context.deep is reserved"),
    ({"n": {1: 2}}, "record keys must be strings at context.n, not int"),
])
def test_a_bad_request_value_is_named_by_its_path_in_the_context(context: dict[Any, Any],
                                                                 message: str) -> None:
    with pytest.raises(az.InvalidValueError) as info:
        az.Request(az.EntityUID("User", "a"), "read", az.EntityUID("Doc", "d"), context)
    assert str(info.value).startswith(message)


def test_int_subclasses_become_plain_longs() -> None:
    class Level(enum.IntEnum):
        HIGH = 3

    converted = to_cedar_value(Level.HIGH)
    assert converted == 3 and type(converted) is int


def test_an_int_subclass_outside_64_bits_is_rejected() -> None:
    class Big(int):
        pass

    with pytest.raises(az.InvalidValueError):
        to_cedar_value(Big(2**64))


@pytest.mark.parametrize("text", ["", "alice", "日本語\n\"'\\", "__entity"])
def test_strings_are_unchanged(text: str) -> None:
    assert to_cedar_value(text) == text


@pytest.mark.parametrize(
    "collection", [[1, 2, 3], (1, 2, 3), {1, 2, 3}, frozenset({1, 2, 3})]
)
def test_lists_tuples_and_sets_become_cedar_sets(collection: Any) -> None:
    converted = to_cedar_value(collection)
    assert isinstance(converted, list)
    assert sorted(converted) == [1, 2, 3]


def test_nested_collections_are_converted_element_by_element() -> None:
    value = [(az.EntityUID("User", "a"),), {"when": dt.date(2024, 1, 2)}]
    assert to_cedar_value(value) == [
        [{"__entity": {"type": "User", "id": "a"}}],
        {"when": extn("datetime", "2024-01-02")},
    ]


def test_dicts_become_records_and_none_values_are_dropped() -> None:
    value = {"a": 1, "gone": None, "inner": {"b": "x", "gone": None}}
    assert to_cedar_value(value) == {"a": 1, "inner": {"b": "x"}}


def test_an_empty_dict_is_an_empty_record() -> None:
    assert to_cedar_value({}) == {}


def test_a_dict_shaped_like_an_entity_uid_stays_a_record() -> None:
    assert to_cedar_value({"type": "User", "id": "a"}) == {"type": "User", "id": "a"}


@pytest.mark.parametrize("key", [1, None, ("a",), b"a"])
def test_record_keys_that_are_not_strings_are_rejected(key: Any) -> None:
    with pytest.raises(az.InvalidValueError, match="keys must be strings"):
        to_cedar_value({key: "v"})


@pytest.mark.parametrize("key", ["__entity", "__extn", "__expr"])
@pytest.mark.parametrize("nesting", ["top", "record", "list"])
def test_reserved_cedar_json_keys_are_rejected_as_an_injection_guard(key: str, nesting: str) -> None:
    # {"__entity": {...}} in a record would otherwise be read as an entity reference.
    forged = {key: {"type": "User", "id": "admin"}}
    value: Any = {"top": forged, "record": {"meta": forged}, "list": {"xs": [forged]}}[nesting]
    with pytest.raises(az.InvalidValueError, match="reserved"):
        to_cedar_value(value)


def test_entity_uids_become_entity_escapes() -> None:
    assert to_cedar_value(az.EntityUID("User", 'a"b')) == {
        "__entity": {"type": "User", "id": 'a"b'}
    }


def test_an_entity_is_rejected_as_a_value_pointing_at_its_uid() -> None:
    entity = az.Entity(uid=az.EntityUID("User", "a"))
    with pytest.raises(az.InvalidValueError, match="uid"):
        to_cedar_value({"owner": entity})


@pytest.mark.parametrize("value", [object(), b"bytes", bytearray(b"x"), 1 + 2j, print])
def test_values_without_a_cedar_type_are_rejected_naming_their_type(value: Any) -> None:
    with pytest.raises(az.InvalidValueError, match="no Cedar equivalent") as info:
        to_cedar_value({"field": value})
    assert type(value).__name__ in str(info.value)
    assert "field" in str(info.value)


# ip


@pytest.mark.parametrize(
    "text", ["10.0.0.1", "10.0.0.0/8", "10.0.0.1/8", "0.0.0.0/0", "::1", "2001:db8::/32", "::"]
)
def test_ipaddr_accepts_addresses_and_ranges(text: str) -> None:
    value = az.ipaddr(text)
    assert value.to_cedar() == extn("ip", text)
    assert to_cedar_value({"ip": value}) == {"ip": extn("ip", text)}


@pytest.mark.parametrize(
    "text", ["", "10.0.0.256", "10.0.0.1/33", "1.2.3", "not an ip", "::1/129", "10.0.0.1 "]
)
def test_ipaddr_rejects_what_is_not_an_address(text: str) -> None:
    with pytest.raises(az.InvalidValueError):
        az.ipaddr(text)


@pytest.mark.parametrize("value", [None, 10, b"10.0.0.1"])
def test_ipaddr_rejects_non_text(value: Any) -> None:
    with pytest.raises(az.InvalidValueError):
        az.ipaddr(value)


@pytest.mark.parametrize("text", ["fe80::1%eth0", "::ffff:1.2.3.4"])
def test_ipaddr_rejects_addresses_cedar_cannot_parse(text: str) -> None:
    with pytest.raises(az.InvalidValueError):
        az.ipaddr(text)


# decimal


@pytest.mark.parametrize(
    "text",
    ["12.50", "0.0", "-1.0", "0.0001", "-0.0001", "922337203685477.5807", "-922337203685477.5808"],
)
def test_decimal_accepts_one_to_four_fractional_digits_in_range(text: str) -> None:
    assert az.decimal(text).to_cedar() == extn("decimal", text)


@pytest.mark.parametrize(
    "text", ["12", "1.", ".5", "1.12345", "1e3", "+1.0", "1,5", " 1.0", "NaN", ""]
)
def test_decimal_rejects_text_that_is_not_a_cedar_decimal(text: str) -> None:
    with pytest.raises(az.InvalidValueError):
        az.decimal(text)


@pytest.mark.parametrize("text", ["922337203685477.5808", "-922337203685477.5809", "1" * 20 + ".0"])
def test_decimal_rejects_values_outside_cedars_range(text: str) -> None:
    with pytest.raises(az.InvalidValueError, match="range"):
        az.decimal(text)


def test_decimal_rejects_a_float_argument() -> None:
    with pytest.raises(az.InvalidValueError):
        az.decimal(12.5)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("number", "text"),
    [
        (decimal.Decimal("12.5"), "12.5"),
        (decimal.Decimal("12.50"), "12.50"),
        (decimal.Decimal("1.50000"), "1.5"),
        (decimal.Decimal("7"), "7.0"),
        (decimal.Decimal("-7"), "-7.0"),
        (decimal.Decimal("1E+3"), "1000.0"),
        (decimal.Decimal("0.0001"), "0.0001"),
        (decimal.Decimal("922337203685477.5807"), "922337203685477.5807"),
    ],
)
def test_python_decimals_become_cedar_decimals(number: decimal.Decimal, text: str) -> None:
    assert to_cedar_value(number) == extn("decimal", text)
    assert az.decimal(number).to_cedar() == extn("decimal", text)


@pytest.mark.parametrize(
    "number",
    [
        decimal.Decimal("0.00001"),
        decimal.Decimal("1.23456"),
        decimal.Decimal("NaN"),
        decimal.Decimal("Infinity"),
        decimal.Decimal("-Infinity"),
        decimal.Decimal("922337203685477.5808"),
        decimal.Decimal("1E+20"),
    ],
)
def test_python_decimals_without_a_cedar_decimal_are_rejected(number: decimal.Decimal) -> None:
    with pytest.raises(az.InvalidValueError):
        to_cedar_value(number)


def test_a_python_decimal_with_many_fractional_digits_is_rejected_not_rounded() -> None:
    with pytest.raises(az.InvalidValueError):
        to_cedar_value(decimal.Decimal("1.000000000000000000000000000001"))


# floats


def test_floats_are_rejected_with_a_message_suggesting_decimal() -> None:
    with pytest.raises(az.InvalidValueError, match="decimal") as info:
        to_cedar_value({"price": 37.25})
    assert "price" in str(info.value)
    assert "37.25" not in str(info.value)


@pytest.mark.parametrize(
    ("number", "text"), [(12.5, "12.5"), (0.1, "0.1"), (-3.0, "-3.0"), (1e3, "1000.0")]
)
def test_floats_become_decimals_where_decimal_is_declared(number: float, text: str) -> None:
    assert to_cedar_value(number, decimal_floats=True) == extn("decimal", text)
    assert to_cedar_value({"p": [number]}, decimal_floats=True) == {"p": [extn("decimal", text)]}


@pytest.mark.parametrize("number", [1e-5, 0.123456, float("nan"), float("inf"), 1e20])
def test_floats_that_are_no_cedar_decimal_are_rejected_even_where_declared(number: float) -> None:
    with pytest.raises(az.InvalidValueError):
        to_cedar_value(number, decimal_floats=True)


# datetimes, dates, durations


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=UTC), "2024-05-06T07:08:09Z"),
        (dt.datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=UTC), "2024-05-06T07:08:09.123Z"),
        (dt.datetime(2024, 5, 6, 7, 8, 9, 5000, tzinfo=UTC), "2024-05-06T07:08:09.005Z"),
        (dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=offset(5, 30)), "2024-05-06T07:08:09+0530"),
        (dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=offset(-8)), "2024-05-06T07:08:09-0800"),
        (
            dt.datetime(2024, 5, 6, 7, 8, 9, 10000, tzinfo=offset(-3, -30)),
            "2024-05-06T07:08:09.010-0330",
        ),
        (dt.datetime(5, 1, 2, 3, 4, 5, tzinfo=UTC), "0005-01-02T03:04:05Z"),
        (dt.datetime(999, 12, 31, tzinfo=UTC), "0999-12-31T00:00:00Z"),
    ],
)
def test_aware_datetimes_become_cedar_datetimes(value: dt.datetime, text: str) -> None:
    assert to_cedar_value(value) == extn("datetime", text)


def test_naive_datetimes_are_rejected_asking_for_a_timezone() -> None:
    with pytest.raises(az.InvalidValueError, match="timezone-aware"):
        to_cedar_value(dt.datetime(2024, 5, 6, 7, 8, 9))


def test_datetimes_with_microseconds_are_rejected_explaining_millisecond_precision() -> None:
    with pytest.raises(az.InvalidValueError, match="millisecond") as info:
        to_cedar_value(dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC))
    assert "microsecond" in str(info.value)


def test_datetimes_with_an_offset_in_seconds_are_rejected() -> None:
    tz = dt.timezone(dt.timedelta(hours=1, seconds=30))
    with pytest.raises(az.InvalidValueError, match="minutes"):
        to_cedar_value(dt.datetime(2024, 5, 6, tzinfo=tz))


@pytest.mark.parametrize(
    ("value", "text"),
    [(dt.date(2024, 2, 29), "2024-02-29"), (dt.date(1, 1, 1), "0001-01-01")],
)
def test_dates_become_cedar_datetimes_at_midnight(value: dt.date, text: str) -> None:
    assert to_cedar_value(value) == extn("datetime", text)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (dt.timedelta(days=1, hours=2, minutes=3, seconds=4, milliseconds=5), "1d2h3m4s5ms"),
        (-dt.timedelta(days=1, hours=2, minutes=3, seconds=4, milliseconds=5), "-1d2h3m4s5ms"),
        (dt.timedelta(hours=2), "2h"),
        (dt.timedelta(minutes=90), "1h30m"),
        (dt.timedelta(milliseconds=5), "5ms"),
        (dt.timedelta(milliseconds=-5), "-5ms"),
        (dt.timedelta(days=400), "400d"),
        (dt.timedelta(0), "0ms"),
    ],
)
def test_timedeltas_become_cedar_durations(value: dt.timedelta, text: str) -> None:
    assert to_cedar_value(value) == extn("duration", text)


def test_timedeltas_with_microseconds_are_rejected() -> None:
    with pytest.raises(az.InvalidValueError, match="millisecond"):
        to_cedar_value(dt.timedelta(microseconds=1500))


# error messages never echo values


@pytest.mark.parametrize(
    "value",
    [
        {"token": SECRET, "amount": 12.5},
        [SECRET, object()],
        {"token": SECRET, "n": 2**70},
        {"token": SECRET, "when": dt.datetime(2024, 1, 1)},
        {"token": SECRET, "when": dt.datetime(2024, 1, 1, 0, 0, 0, 1, tzinfo=UTC)},
        {"token": SECRET, "__entity": SECRET},
        {"nested": {"token": SECRET, "k": {1: SECRET}}},
        (SECRET, {"x": decimal.Decimal("0.000001")}),
    ],
)
def test_error_messages_never_contain_values(value: Any) -> None:
    with pytest.raises(az.InvalidValueError) as info:
        to_cedar_value(value)
    assert SECRET not in str(info.value)


def test_error_messages_name_the_type_not_the_repr_of_an_unknown_value() -> None:
    class Credentials:
        def __repr__(self) -> str:
            return SECRET

    with pytest.raises(az.InvalidValueError) as info:
        to_cedar_value({"creds": Credentials()})
    assert SECRET not in str(info.value)
    assert "Credentials" in str(info.value)


def test_entity_and_request_errors_never_contain_attribute_values() -> None:
    with pytest.raises(az.InvalidValueError) as info:
        az.Entity(uid=az.EntityUID("User", "a"), attrs={"token": SECRET, "x": 0.5})
    assert SECRET not in str(info.value)
    with pytest.raises(az.InvalidValueError) as info:
        az.Request(
            principal=az.EntityUID("User", "a"),
            action="read",
            resource=az.EntityUID("Doc", "d"),
            context={"token": SECRET, "x": 0.5},
        )
    assert SECRET not in str(info.value)


@pytest.mark.parametrize("make", [az.ipaddr, az.decimal])
def test_extension_constructors_do_not_echo_the_rejected_value(make: Any) -> None:
    with pytest.raises(az.InvalidValueError) as info:
        make(SECRET)
    assert SECRET not in str(info.value)


def test_a_request_with_a_non_record_context_raises_invalid_value_without_echoing_it() -> None:
    with pytest.raises(az.InvalidValueError) as info:
        az.Request(
            principal=az.EntityUID("User", "a"),
            action="read",
            resource=az.EntityUID("Doc", "d"),
            context=SECRET,  # type: ignore[arg-type]
        )
    assert SECRET not in str(info.value)


def _nested_list(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("convert", [to_cedar_value, from_cedar_value])
def test_deeply_nested_values_are_rejected_with_invalid_value_error(convert: Any) -> None:
    with pytest.raises(az.InvalidValueError):
        convert(_nested_list(5000))


# -- Cedar JSON -> Python values -----------------------------------------------------------


def test_from_cedar_value_reads_entity_and_extension_escapes() -> None:
    assert from_cedar_value({"__entity": {"type": "User", "id": "a"}}) == az.EntityUID("User", "a")
    value = from_cedar_value(extn("ip", "10.0.0.1"))
    assert value == az.ExtensionValue(fn="ip", arg="10.0.0.1")


def test_from_cedar_value_keeps_records_shaped_like_entity_uids() -> None:
    assert from_cedar_value({"type": "User", "id": "a"}) == {"type": "User", "id": "a"}


def test_from_cedar_value_reads_lists_and_nested_records() -> None:
    data = [1, "a", True, {"r": [{"__entity": {"type": "U", "id": "x"}}]}]
    assert from_cedar_value(data) == [1, "a", True, {"r": [az.EntityUID("U", "x")]}]


@pytest.mark.parametrize(
    "data",
    [
        1.5,
        None,
        2**63,
        {"__entity": {"type": "U", "id": "x"}, "other": 1},
        {"__extn": {"fn": "ip", "arg": "1.1.1.1"}, "other": 1},
        {"__expr": "1 + 1"},
        {"__extn": {"fn": "ip"}},
        {"__extn": {"arg": "1.1.1.1"}},
        {"__extn": {"fn": "ip", "arg": "1.1.1.1", "args": []}},
        {"__extn": "ip"},
        {"__entity": {"type": "U"}},
    ],
)
def test_from_cedar_value_rejects_what_is_not_cedar_json(data: Any) -> None:
    with pytest.raises(az.InvalidValueError):
        from_cedar_value(data)


# -- Entity ----------------------------------------------------------------------------

FULL_ENTITY = {
    "uid": {"type": "User", "id": "alice"},
    "attrs": {
        "dept": "hr",
        "clearance": 3,
        "active": True,
        "boss": {"__entity": {"type": "User", "id": "bob"}},
        "ip": extn("ip", "10.0.0.0/8"),
        "limit": extn("decimal", "12.50"),
        "born": extn("datetime", "0000-01-01"),
        "shift": {
            "__extn": {
                "fn": "offset",
                "args": [extn("datetime", "2024-01-01"), extn("duration", "1h")],
            }
        },
        "looks_like_uid": {"type": "User", "id": "mallory"},
        "groups": [{"__entity": {"type": "Group", "id": "g"}}, "x", [1, 2]],
        "nested": {"inner": {"deep": [extn("duration", "-1d2h")]}},
    },
    "parents": [{"type": "Group", "id": "hr"}, {"type": "App::Role", "id": 'a"b'}],
    "tags": {"color": "red", "owner": {"__entity": {"type": "User", "id": "carol"}}},
}


def test_entity_from_cedar_to_cedar_is_an_exact_round_trip() -> None:
    entity = az.Entity.from_cedar(FULL_ENTITY)
    assert entity.to_cedar() == FULL_ENTITY
    assert az.Entity.from_cedar(entity.to_cedar()) == entity


def test_entity_from_cedar_reads_uids_parents_and_tags() -> None:
    entity = az.Entity.from_cedar(FULL_ENTITY)
    assert entity.uid == az.EntityUID("User", "alice")
    assert entity.parents == (az.EntityUID("Group", "hr"), az.EntityUID("App::Role", 'a"b'))
    assert entity.tags is not None and entity.tags["color"] == "red"
    assert entity.attrs["boss"] == az.EntityUID("User", "bob")


def test_entity_from_cedar_keeps_a_record_shaped_like_a_uid_as_a_record() -> None:
    entity = az.Entity.from_cedar(FULL_ENTITY)
    assert entity.attrs["looks_like_uid"] == {"type": "User", "id": "mallory"}
    assert entity.to_cedar()["attrs"]["looks_like_uid"] == {"type": "User", "id": "mallory"}


def test_entity_from_cedar_keeps_multi_argument_extension_calls() -> None:
    shift = az.Entity.from_cedar(FULL_ENTITY).attrs["shift"]
    assert isinstance(shift, az.ExtensionValue)
    assert shift.fn == "offset"
    assert shift.args == (
        az.ExtensionValue(fn="datetime", arg="2024-01-01"),
        az.ExtensionValue(fn="duration", arg="1h"),
    )


def test_entity_from_cedar_keeps_the_exact_text_of_a_year_zero_datetime() -> None:
    entity = az.Entity.from_cedar(
        {"uid": {"type": "U", "id": "a"}, "attrs": {"t": extn("datetime", "0000-01-01")}}
    )
    assert entity.attrs["t"] == az.ExtensionValue(fn="datetime", arg="0000-01-01")
    assert entity.to_cedar()["attrs"]["t"] == extn("datetime", "0000-01-01")


@pytest.mark.parametrize(
    "uid", ['User::"alice"', {"__entity": {"type": "User", "id": "alice"}}]
)
def test_entity_from_cedar_reads_uid_in_other_forms(uid: Any) -> None:
    entity = az.Entity.from_cedar({"uid": uid, "parents": ['Group::"g"']})
    assert entity.to_cedar() == {
        "uid": {"type": "User", "id": "alice"},
        "attrs": {},
        "parents": [{"type": "Group", "id": "g"}],
    }


def test_entity_without_tags_has_no_tags_key_and_empty_tags_are_kept() -> None:
    bare = az.Entity.from_cedar({"uid": {"type": "U", "id": "a"}, "attrs": {}, "parents": []})
    assert "tags" not in bare.to_cedar()
    tagged = az.Entity.from_cedar({"uid": {"type": "U", "id": "a"}, "tags": {}})
    assert tagged.to_cedar()["tags"] == {}


def test_entity_constructor_converts_python_values() -> None:
    entity = az.Entity(
        uid=az.EntityUID("User", "alice"),
        attrs={"dept": "hr", "clearance": 3, "manager": az.EntityUID("User", "bob"), "gone": None},
        parents=[az.EntityUID("Group", "hr")],
        tags={"since": dt.date(2024, 1, 1)},
    )
    assert entity.to_cedar() == {
        "uid": {"type": "User", "id": "alice"},
        "attrs": {
            "dept": "hr",
            "clearance": 3,
            "manager": {"__entity": {"type": "User", "id": "bob"}},
        },
        "parents": [{"type": "Group", "id": "hr"}],
        "tags": {"since": extn("datetime", "2024-01-01")},
    }


def test_entity_to_cedar_returns_a_copy_the_caller_may_change() -> None:
    entity = az.Entity(uid=az.EntityUID("User", "a"), attrs={"x": 1})
    out = entity.to_cedar()
    out["attrs"]["x"] = 2
    out["parents"].append({"type": "Group", "id": "admins"})
    assert entity.to_cedar() == {"uid": {"type": "User", "id": "a"}, "attrs": {"x": 1}, "parents": []}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"uid": {"type": "User", "id": "a"}},
        {"uid": 'User::"a"'},
        {"uid": az.EntityUID("User", "a"), "parents": ['Group::"g"']},
        {"uid": az.EntityUID("User", "a"), "attrs": {"x": 1.5}},
        {"uid": az.EntityUID("User", "a"), "attrs": {"__entity": {"type": "U", "id": "b"}}},
        {"uid": az.EntityUID("User", "a"), "tags": {"t": object()}},
    ],
)
def test_entity_constructor_rejects_bad_parts_when_built(kwargs: dict[str, Any]) -> None:
    with pytest.raises(az.InvalidValueError):
        az.Entity(**kwargs)


@pytest.mark.parametrize(
    "data",
    [
        {"attrs": {}},
        {"uid": {"type": "U", "id": "a"}, "extra": 1},
        {"uid": {"type": "U", "id": "a"}, "attrs": []},
        {"uid": {"type": "U", "id": "a"}, "tags": "x"},
        {"uid": {"type": "U", "id": "a"}, "attrs": {"x": 1.5}},
        {"uid": {"type": "U", "id": "a"}, "attrs": {"x": None}},
        {"uid": {"type": "U", "id": "a"}, "parents": [{"type": "G"}]},
        ["uid"],
    ],
)
def test_entity_from_cedar_rejects_malformed_entities(data: Any) -> None:
    with pytest.raises(az.InvalidValueError):
        az.Entity.from_cedar(data)


# -- Request -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "form",
    [
        lambda t, i: {"type": t, "id": i},
        lambda t, i: {"__entity": {"type": t, "id": i}},
        lambda t, i: str(az.EntityUID(t, i)),
    ],
    ids=["type-id", "__entity", "cedar-text"],
)
def test_request_from_cedar_reads_every_uid_form(form: Any) -> None:
    request = az.Request.from_cedar(
        {
            "principal": form("User", "alice"),
            "action": form("Action", "read"),
            "resource": form("Doc", 'd"1'),
            "context": {"ip": extn("ip", "10.0.0.1"), "who": {"__entity": {"type": "U", "id": "b"}}},
        }
    )
    assert request.principal == az.EntityUID("User", "alice")
    assert request.action == az.EntityUID("Action", "read")
    assert request.resource == az.EntityUID("Doc", 'd"1')
    assert request.context["who"] == az.EntityUID("U", "b")
    assert request.cedar_context == {
        "ip": extn("ip", "10.0.0.1"),
        "who": {"__entity": {"type": "U", "id": "b"}},
    }


def test_request_from_cedar_without_context_has_an_empty_context() -> None:
    request = az.Request.from_cedar(
        {"principal": 'User::"a"', "action": 'Action::"read"', "resource": 'Doc::"d"'}
    )
    assert request.context == {} and request.cedar_context == {}


def test_request_from_cedar_names_missing_parts() -> None:
    with pytest.raises(az.InvalidValueError, match="action, resource"):
        az.Request.from_cedar({"principal": 'User::"a"'})


def test_request_from_cedar_rejects_a_context_that_is_not_an_object() -> None:
    with pytest.raises(az.InvalidValueError):
        az.Request.from_cedar(
            {"principal": 'User::"a"', "action": 'Action::"r"', "resource": 'D::"d"', "context": [1]}
        )


def test_request_to_cedar_turns_a_bare_action_name_into_an_action_uid() -> None:
    request = az.Request(
        principal=az.EntityUID("User", "a"),
        action="read",
        resource=az.EntityUID("Doc", "d"),
        context={"n": 1, "gone": None},
    )
    assert request.to_cedar() == {
        "principal": {"type": "User", "id": "a"},
        "action": {"type": "Action", "id": "read"},
        "resource": {"type": "Doc", "id": "d"},
        "context": {"n": 1},
    }


def test_request_context_is_converted_when_the_request_is_built() -> None:
    with pytest.raises(az.InvalidValueError, match=r"context\.amount"):
        az.Request(
            principal=az.EntityUID("User", "a"),
            action="pay",
            resource=az.EntityUID("Acct", "1"),
            context={"amount": 1.5},
        )


# -- Decision ----------------------------------------------------------------------------


def test_decision_defaults_to_enforced_without_reasons_or_errors() -> None:
    decision = az.Decision(allowed=True)
    assert decision.reasons == () and decision.errors == () and decision.enforced is True


@pytest.mark.parametrize(
    ("allowed", "enforced", "admits"),
    [(True, True, True), (False, True, False), (True, False, True), (False, False, True)],
)
def test_decision_admits_when_allowed_or_in_shadow_mode(
    allowed: bool, enforced: bool, admits: bool
) -> None:
    decision = az.Decision(allowed=allowed, enforced=enforced)
    assert decision.admits is admits
    assert decision.allowed is allowed


def test_decision_deny_is_a_denial_carrying_its_errors() -> None:
    decision = az.Decision.deny("engine down", "timeout")
    assert decision.allowed is False and decision.admits is False
    assert decision.errors == ("engine down", "timeout")
    assert decision.reasons == ()


def test_decision_outcome_is_allow_or_deny() -> None:
    assert az.Decision(allowed=True).outcome == "allow"
    assert az.Decision(allowed=False, reasons=("forbid-x",)).outcome == "deny"


def test_decision_keeps_reasons_and_errors_in_order_and_is_frozen() -> None:
    decision = az.Decision(allowed=False, reasons=("b", "a"), errors=("e1",))
    assert decision.reasons == ("b", "a") and decision.errors == ("e1",)
    with pytest.raises(Exception):  # noqa: B017 - pydantic's frozen-instance error
        decision.allowed = True  # type: ignore[misc]


@pytest.mark.parametrize("allowed", [1, 0, None, "True"])
def test_decision_refuses_an_allowed_that_is_not_a_bool(allowed: Any) -> None:
    with pytest.raises(az.InvalidValueError, match="must be a bool"):
        az.Decision(allowed)


def test_decision_keeps_every_field_through_replace_pickle_and_comparison() -> None:
    import pickle

    decision = az.Decision(True, ["p1"], iter(["e1"]), False, "v1", "id-1")  # type: ignore[arg-type]
    assert (decision.reasons, decision.errors, decision.enforced) == (("p1",), ("e1",), False)
    assert (decision.policy_version, decision.id) == ("v1", "id-1")
    copy = pickle.loads(pickle.dumps(decision))
    assert copy == decision and (copy.policy_version, copy.id) == ("v1", "id-1")
    assert decision.replace(id="id-2").id == "id-2" and decision.replace(id="id-2") == decision
    assert decision != decision.replace(enforced=True)
    assert "id-1" not in repr(decision)


# -- properties ------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(S.cedar_python_values)
def test_any_accepted_value_survives_the_cedar_json_round_trip(value: Any) -> None:
    cedar = to_cedar_value(value)
    assert to_cedar_value(from_cedar_value(cedar)) == cedar
    # The Cedar JSON form is plain JSON.
    assert json.loads(json.dumps(cedar)) == cedar


@settings(max_examples=100, deadline=None)
@given(S.entities)
def test_entity_to_cedar_from_cedar_to_cedar_is_identical(entity: az.Entity) -> None:
    cedar = entity.to_cedar()
    again = az.Entity.from_cedar(json.loads(json.dumps(cedar)))
    assert again.to_cedar() == cedar
    assert again.uid == entity.uid and again.parents == entity.parents


@settings(max_examples=200, deadline=None)
@given(S.entity_uids)
def test_entity_uid_parse_inverts_str_for_any_id(uid: az.EntityUID) -> None:
    assert az.EntityUID.parse(str(uid)) == uid


def _request_for(principal_id: str, context: dict[str, Any] | None = None) -> az.Request:
    return az.Request(
        principal=az.EntityUID("User", principal_id),
        action=az.EntityUID("Action", "a"),
        resource=az.EntityUID("R", "r"),
        context=context or {},
    )


@settings(max_examples=150, deadline=None)
@given(S.entity_ids)
def test_any_entity_id_is_evaluated_as_exactly_that_id(entity_id: str) -> None:
    escaped = str(az.EntityUID("User", entity_id))
    store = az.PolicyStore.from_text(
        f'@id("p") permit(principal == {escaped}, action, resource);'
    )
    exact, other = az.LocalEngine(store).decide(
        [_request_for(entity_id), _request_for(entity_id + "x")]
    )
    assert exact.allowed and exact.reasons == ("p",), exact.errors
    assert not other.allowed and other.errors == ()


@functools.cache
def _semantics_engine() -> az.LocalEngine:
    store = az.PolicyStore.from_text(
        """
        @id("datetime") permit(principal == User::"t", action, resource) when {
            context.v.durationSince(datetime("1970-01-01")).toMilliseconds() == context.ms };
        @id("duration") permit(principal == User::"d", action, resource) when {
            context.v.toMilliseconds() == context.ms };
        @id("decimal-less") permit(principal == User::"lt", action, resource) when {
            context.v.lessThan(context.w) };
        """
    )
    return az.LocalEngine(store)


EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)


@settings(max_examples=100, deadline=None)
@given(S.aware_datetimes)
def test_datetimes_mean_the_same_instant_in_cedar(value: dt.datetime) -> None:
    ms = (value - EPOCH) // dt.timedelta(milliseconds=1)
    [decision] = _semantics_engine().decide([_request_for("t", {"v": value, "ms": ms})])
    assert decision.allowed, (to_cedar_value(value), ms, decision.errors)


@settings(max_examples=100, deadline=None)
@given(S.millisecond_timedeltas)
def test_timedeltas_mean_the_same_duration_in_cedar(value: dt.timedelta) -> None:
    ms = value // dt.timedelta(milliseconds=1)
    [decision] = _semantics_engine().decide([_request_for("d", {"v": value, "ms": ms})])
    assert decision.allowed, (to_cedar_value(value), decision.errors)


@settings(max_examples=100, deadline=None)
@given(S.decimal_texts, S.decimal_texts)
def test_decimals_compare_in_cedar_as_they_do_in_python(left: str, right: str) -> None:
    [decision] = _semantics_engine().decide(
        [_request_for("lt", {"v": az.decimal(left), "w": az.decimal(right)})]
    )
    assert not decision.errors
    assert decision.allowed is (decimal.Decimal(left) < decimal.Decimal(right))


@settings(max_examples=50, deadline=None)
@given(st.lists(S.ip_values, min_size=1, max_size=5))
def test_ip_values_the_model_builds_are_accepted_by_cedar(values: list[az.ExtensionValue]) -> None:
    store = az.PolicyStore.from_text(
        '@id("ip") permit(principal, action, resource) when { context has ips };'
    )
    [decision] = az.LocalEngine(store).decide([_request_for("x", {"ips": values})])
    assert decision.allowed, decision.errors
