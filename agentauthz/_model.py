"""Values that cross the Cedar boundary: entity ids, entities, requests, decisions.

Python values are converted to Cedar JSON (the format of cedarpy, the Cedar CLI and
the Cedar corpus) once, when a model is built, so a request in the hot path only
hands pre-built dicts to the engine. Entity ids always travel as ``{type, id}``
structures; :meth:`EntityUID.__str__` renders Cedar text for people, never for
evaluation.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import decimal as _decimal
import ipaddress
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NoReturn, overload

from pydantic import BaseModel, ConfigDict, PrivateAttr

from agentauthz._errors import InvalidValueError

__all__ = [
    "CedarRecord",
    "Decision",
    "Entity",
    "EntityUID",
    "ExtensionValue",
    "Request",
    "SharedRequests",
    "decimal",
    "from_cedar_value",
    "ipaddr",
    "to_cedar_value",
]

_LONG_MIN = -(2**63)
_LONG_MAX = 2**63 - 1
_DECIMAL_SCALE = 10_000
_RESERVED_KEYS = frozenset({"__entity", "__extn", "__expr"})
# Cedar refuses JSON nested past ~128 levels; stopping earlier keeps Python's stack safe too.
MAX_VALUE_DEPTH = 100
_DECIMAL_TEXT = re.compile(r"-?[0-9]+\.[0-9]{1,4}")

_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t", "\0": "\\0"}
_UNESCAPES = {"n": "\n", "r": "\r", "t": "\t", "0": "\0", "\\": "\\", '"': '"', "'": "'"}


def _escape(text: str) -> str:
    out = []
    for char in text:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{{{ord(char):x}}}")
        else:
            out.append(char)
    return "".join(out)


def unescape(body: str, source: str) -> str:
    """Read the body of a Cedar string literal (escapes `\\n`, `\\"`, `\\u{...}`, ...)."""
    out: list[str] = []
    i = 0
    while i < len(body):
        char = body[i]
        if char == '"':
            raise InvalidValueError(f"unescaped quote in entity id text {source[:80]!r}")
        if char != "\\":
            out.append(char)
            i += 1
            continue
        if i + 1 >= len(body):
            raise InvalidValueError(f"dangling backslash in entity id text {source[:80]!r}")
        code = body[i + 1]
        if code in _UNESCAPES:
            out.append(_UNESCAPES[code])
            i += 2
        elif code == "u" and body[i + 2 : i + 3] == "{":
            end = body.find("}", i + 3)
            if end < 0:
                raise InvalidValueError(f"bad \\u escape in entity id text {source[:80]!r}")
            try:
                out.append(chr(int(body[i + 3 : end], 16)))
            except ValueError as exc:
                raise InvalidValueError(
                    f"bad \\u escape in entity id text {source[:80]!r}"
                ) from exc
            i = end + 1
        else:
            raise InvalidValueError(f"unknown escape \\{code} in entity id text {source[:80]!r}")
    return "".join(out)


_TYPE_PATH = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(::[A-Za-z_][A-Za-z0-9_]*)*")


def _slot_setters(cls: type, *names: str) -> tuple[Callable[[Any, Any], None], ...]:
    """The setters of a frozen slots dataclass's fields, for its own ``__init__``.

    A slot's own setter writes a field in half the time of ``object.__setattr__``
    (which the generated frozen ``__init__`` calls per field): requests and
    decisions are made per document of a filter.
    """
    return tuple(cls.__dict__[name].__set__ for name in names)


# What pydantic's validation stores on a model (its slots), written directly by EntityUID's __init__.
_set_model_dict, _set_fields_set, _set_extra, _set_private = _slot_setters(
    BaseModel, "__dict__", "__pydantic_fields_set__", "__pydantic_extra__", "__pydantic_private__")
#: Whether pydantic lays an EntityUID out as EntityUID's __init__ writes it (checked below the class).
_uid_layout_known = False


class EntityUID(BaseModel):
    """The identity of a Cedar entity: a type and an id.

    ``str(uid)`` renders Cedar text with the id escaped, for people and logs;
    evaluation always uses the structured ``{"type", "id"}`` form.

    Example:
        >>> uid = EntityUID("User", 'al"ice')
        >>> str(uid)
        'User::"al\\\\"ice"'
        >>> EntityUID.parse(str(uid)) == uid
        True
    """

    model_config = ConfigDict(frozen=True)

    type: str
    id: str

    # `type` and `id` shadow builtins on purpose: they are Cedar's own field names.
    def __init__(self, type: str, id: str) -> None:
        if type.__class__ is str and id.__class__ is str and type and _uid_layout_known \
                and self.__class__ is EntityUID:
            # What pydantic's validation would store, stored directly (0.6 us instead of 0.9): a
            # batch builds one per document (the worker processes, each chunk's resources).
            _set_model_dict(self, {"type": type, "id": id})
            _set_fields_set(self, {"type", "id"})
            _set_extra(self, None)
            _set_private(self, None)
            return
        if not isinstance(type, str) or not type:
            raise InvalidValueError("entity type must be a non-empty string")
        if not isinstance(id, str):
            raise InvalidValueError(
                f"entity id of type {type!r} must be a string, not {builtin_type_name(id)}"
            )
        super().__init__(type=type, id=id)

    def __str__(self) -> str:
        return f'{self.type}::"{_escape(self.id)}"'

    # Uids key the dictionaries of every hot path (entities, slices, a filter's resources); pydantic's
    # general comparison costs three times this one, which compares what it compares: the class
    # and both fields. The hash is pydantic's own (the fields' tuple).
    def __eq__(self, other: object) -> bool:
        if type(other) is EntityUID and type(self) is EntityUID:
            return self.id == other.id and self.type == other.type
        return super().__eq__(other)

    def __hash__(self) -> int:
        return hash((self.type, self.id))

    def to_cedar(self) -> dict[str, str]:
        """Return ``{"type": ..., "id": ...}``."""
        return {"type": self.type, "id": self.id}

    @classmethod
    def parse(cls, text: str) -> EntityUID:
        """Parse Cedar entity text such as ``Namespace::User::"alice"``."""
        if not isinstance(text, str):
            raise InvalidValueError(f"entity text must be a string, not {builtin_type_name(text)}")
        quote = text.find('"')
        if quote < 2 or text[quote - 2 : quote] != "::" or not text.endswith('"') or len(text) < quote + 2:
            raise InvalidValueError(f'not an entity reference of the form Type::"id": {text[:80]!r}')
        type_path = text[: quote - 2].strip()
        if not _TYPE_PATH.fullmatch(type_path):
            raise InvalidValueError(f"not a valid entity type {type_path[:80]!r}")
        return cls(type_path, unescape(text[quote + 1 : -1], text))

    @classmethod
    def from_cedar(cls, value: Any) -> EntityUID:
        """Read ``{"type", "id"}``, ``{"__entity": {...}}`` or Cedar text."""
        if isinstance(value, EntityUID):
            return value
        if isinstance(value, str):
            return cls.parse(value)
        if isinstance(value, Mapping):
            if set(value) == {"__entity"}:
                value = value["__entity"]
            if isinstance(value, Mapping) and set(value) == {"type", "id"}:
                return cls(value["type"], value["id"])
        raise InvalidValueError(
            'an entity reference must be {"type": ..., "id": ...}, {"__entity": {...}} '
            'or Cedar text like User::"alice"'
        )


def _uid_layout_matches() -> bool:
    """Whether EntityUID's direct __init__ makes what pydantic's validation makes (else it is not used)."""
    global _uid_layout_known
    if set(EntityUID.model_fields) != {"type", "id"}:
        return False
    validated = EntityUID("Document", "d-1")
    _uid_layout_known = True
    direct = EntityUID("Document", "d-1")
    _uid_layout_known = False
    return bool(direct.__getstate__() == validated.__getstate__()
                and direct.model_dump() == validated.model_dump() and direct == validated)


_uid_layout_known = _uid_layout_matches()


def builtin_type_name(value: object) -> str:
    """The name of a value's type, for error messages that must not echo the value."""
    return type(value).__name__


class ExtensionValue(BaseModel):
    """A Cedar extension value (``ip``, ``decimal``, ``datetime``, ``duration``, ...).

    It keeps the exact Cedar text it was given, so a value read from Cedar JSON
    is written back unchanged (Cedar datetimes reach year 0000, which Python's
    ``datetime`` cannot hold). ``args`` holds the arguments of multi-argument
    constructors such as ``offset``; otherwise ``arg`` holds the one argument.
    """

    model_config = ConfigDict(frozen=True)

    fn: str
    arg: Any = None
    args: tuple[Any, ...] | None = None

    def to_cedar(self) -> dict[str, Any]:
        """Return the ``{"__extn": {...}}`` form."""
        body: dict[str, Any] = {"fn": self.fn}
        if self.args is not None:
            body["args"] = [to_cedar_value(a) for a in self.args]
        else:
            body["arg"] = to_cedar_value(self.arg)
        return {"__extn": body}

    def __str__(self) -> str:
        if self.args is not None:
            return f"{self.fn}({', '.join(map(str, self.args))})"
        return f'{self.fn}("{self.arg}")'


def ipaddr(text: str) -> ExtensionValue:
    """Cedar ``ip("...")`` value: an IPv4/IPv6 address or CIDR range.

    Example:
        >>> ipaddr("10.0.0.0/8").to_cedar()
        {'__extn': {'fn': 'ip', 'arg': '10.0.0.0/8'}}
    """
    try:
        address = text.split("/", 1)[0]
        # Cedar's ip() takes neither IPv6 zone ids nor dotted IPv4 inside IPv6 text.
        if ":" in address and ("%" in address or "." in address):
            raise ValueError("unsupported IPv6 form")
        if "/" in text:
            ipaddress.ip_network(text, strict=False)
        else:
            ipaddress.ip_address(text)
    except (ValueError, TypeError, AttributeError) as exc:
        raise InvalidValueError("not an IP address or CIDR range Cedar accepts") from exc
    return ExtensionValue(fn="ip", arg=text)


def decimal(value: str | _decimal.Decimal) -> ExtensionValue:
    """Cedar ``decimal("...")`` value: at most 4 fractional digits.

    Example:
        >>> decimal("12.50").to_cedar()
        {'__extn': {'fn': 'decimal', 'arg': '12.50'}}
    """
    if isinstance(value, _decimal.Decimal):
        return _decimal_from_python(value)
    if not isinstance(value, str) or not _DECIMAL_TEXT.fullmatch(value):
        raise InvalidValueError("not a Cedar decimal (digits, a point, 1 to 4 fractional digits)")
    _check_decimal_range(_decimal.Decimal(value))
    return ExtensionValue(fn="decimal", arg=value)


def _check_decimal_range(number: _decimal.Decimal) -> None:
    scaled = number * _DECIMAL_SCALE
    if not _LONG_MIN <= scaled <= _LONG_MAX:
        raise InvalidValueError("decimal is outside Cedar's decimal range")


def _decimal_from_python(number: _decimal.Decimal) -> ExtensionValue:
    if not number.is_finite():
        raise InvalidValueError("a NaN or infinite decimal has no Cedar equivalent")
    sign, digits, exponent = number.as_tuple()
    assert isinstance(exponent, int)
    if exponent < -4:
        # Drop trailing zeros by hand: normalize() would round to the context precision.
        kept = list(digits)
        while exponent < 0 and len(kept) > 1 and kept[-1] == 0:
            kept.pop()
            exponent += 1
        if exponent < -4:
            raise InvalidValueError("decimal has more than 4 fractional digits, Cedar's limit")
        number = _decimal.Decimal((sign, tuple(kept), exponent))
    _check_decimal_range(number)
    text = f"{number:f}"
    if "." not in text:
        text += ".0"
    return ExtensionValue(fn="decimal", arg=text)


def float_to_decimal(number: float) -> ExtensionValue:
    """A float as a Cedar decimal, where a schema or signature declares decimal."""
    if number != number or number in (float("inf"), float("-inf")):
        raise InvalidValueError("a NaN or infinite float has no Cedar decimal")
    return _decimal_from_python(_decimal.Decimal(repr(number)))


def _datetime_text(value: _dt.datetime) -> str:
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidValueError(
            "a datetime must be timezone-aware to become a Cedar datetime "
            "(use datetime.now(timezone.utc) or .replace(tzinfo=...))"
        )
    if value.microsecond % 1000:
        raise InvalidValueError(
            "Cedar datetimes have millisecond precision; drop the microseconds "
            "(dt.replace(microsecond=dt.microsecond // 1000 * 1000))"
        )
    base = value.strftime("%Y-%m-%dT%H:%M:%S")
    if value.year < 1000:
        base = f"{value.year:04d}" + base[base.index("-") :]
    if value.microsecond:
        base += f".{value.microsecond // 1000:03d}"
    offset = value.utcoffset()
    assert offset is not None
    if not offset:
        return base + "Z"
    if offset % _dt.timedelta(minutes=1):
        raise InvalidValueError("Cedar datetimes take UTC offsets in whole minutes")
    sign = "+" if offset > _dt.timedelta(0) else "-"
    minutes = abs(offset) // _dt.timedelta(minutes=1)
    return f"{base}{sign}{minutes // 60:02d}{minutes % 60:02d}"


def _duration_text(value: _dt.timedelta) -> str:
    if value % _dt.timedelta(milliseconds=1):
        raise InvalidValueError(
            "Cedar durations have millisecond precision; the timedelta has microseconds"
        )
    total_ms = value // _dt.timedelta(milliseconds=1)
    sign = "-" if total_ms < 0 else ""
    remaining = abs(total_ms)
    parts = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count}{unit}")
    if remaining or not parts:
        parts.append(f"{remaining}ms")
    return sign + "".join(parts)


def to_cedar_value(value: Any, *, decimal_floats: bool = False) -> Any:
    """Convert a Python value to its Cedar JSON form.

    bool, int (64-bit), str, list/tuple/set/frozenset (Cedar set), dict with
    string keys (record; ``None`` values mean the attribute is absent),
    :class:`EntityUID`, :class:`ExtensionValue`, ``decimal.Decimal``,
    timezone-aware ``datetime``, ``date`` and ``timedelta``.

    Args:
        value: the Python value.
        decimal_floats: accept floats as Cedar decimals (only where a schema or
            signature declares decimal); otherwise a float is an error.

    Raises:
        InvalidValueError: the value has no Cedar equivalent. The message names
            the type and the path, never the value.
    """
    return _to_cedar(value, decimal_floats, "")


def _to_cedar(value: Any, decimal_floats: bool, path: str) -> Any:
    try:
        return _convert(value, decimal_floats, 0)
    except _ValueProblem as problem:
        where = path + "".join(reversed(problem.steps))
        raise InvalidValueError(f"{problem.before}{_at(where)}{problem.after}") from None


class _ValueProblem(Exception):
    """A value without a Cedar form; the path to it is collected on the way out."""

    def __init__(self, before: str, after: str) -> None:
        super().__init__(before)
        self.before = before
        self.after = after
        self.steps: list[str] = []


def _convert(value: Any, decimal_floats: bool, depth: int) -> Any:
    # Exact-type checks first: they cover nearly every value in the hot path.
    kind = type(value)
    if kind is str or kind is bool:
        return value
    if kind is int:
        if not _LONG_MIN <= value <= _LONG_MAX:
            raise _ValueProblem("integer", " does not fit in Cedar's 64-bit Long")
        return value
    if kind is CedarRecord and depth + value.nesting <= MAX_VALUE_DEPTH + 1:
        return value.cedar  # converted when it was built; too deep here, it is walked (and refused) below
    if depth > MAX_VALUE_DEPTH:
        raise _ValueProblem("value", f" is nested deeper than {MAX_VALUE_DEPTH} levels")
    if kind is dict or isinstance(value, Mapping):
        record: dict[str, Any] = {}
        for key, item in value.items():
            if type(key) is not str:
                if not isinstance(key, str):
                    raise _ValueProblem("record keys must be strings", f", not {builtin_type_name(key)}")
                key = str(key)
            if key in _RESERVED_KEYS:
                raise _ValueProblem(f"record key {key!r}", " is reserved by Cedar JSON and cannot be "
                                    "used as an attribute name")
            item_kind = type(item)
            if item_kind is str or item_kind is bool:
                record[key] = item
                continue
            if item is None:
                continue
            try:
                record[key] = _convert(item, decimal_floats, depth + 1)
            except _ValueProblem as problem:
                problem.steps.append(f".{key}")
                raise
        return record
    if kind is list or isinstance(value, (list, tuple, set, frozenset)):
        try:
            return [_convert(item, decimal_floats, depth + 1) for item in value]
        except _ValueProblem as problem:
            problem.steps.append("[]")
            raise
    if isinstance(value, EntityUID):
        return {"__entity": {"type": value.type, "id": value.id}}
    if isinstance(value, ExtensionValue):
        return value.to_cedar()
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return _convert(int(value), decimal_floats, depth)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, _decimal.Decimal):
        return _decimal_from_python(value).to_cedar()
    if isinstance(value, _dt.datetime):
        return {"__extn": {"fn": "datetime", "arg": _datetime_text(value)}}
    if isinstance(value, _dt.date):
        return {"__extn": {"fn": "datetime", "arg": value.isoformat()}}
    if isinstance(value, _dt.timedelta):
        return {"__extn": {"fn": "duration", "arg": _duration_text(value)}}
    if isinstance(value, float):
        if decimal_floats:
            return float_to_decimal(value).to_cedar()
        raise _ValueProblem("float", " has no exact Cedar type: use az.decimal('12.50') or "
                            "decimal.Decimal, or declare the attribute as decimal in the schema")
    if isinstance(value, Entity):
        raise _ValueProblem("an Entity", " cannot be an attribute value: use its uid "
                            "and pass the entity itself in entities=[...]")
    raise _ValueProblem(builtin_type_name(value), " has no Cedar equivalent")


class CedarRecord(dict[str, Any]):
    """A read-only record converted to Cedar JSON once, for a fact that many requests carry.

    Converting a context that holds one takes its Cedar JSON as it is, without
    walking it: the result is exactly what converting the record's value gives
    (it was computed by that very conversion when the record was built). Its
    values are frozen (lists and tuples become tuples, sets frozensets, records
    CedarRecords), so what a request shows is what its Cedar JSON says.

    Args:
        value: the record (a mapping of attribute names to Cedar-convertible values).

    Raises:
        InvalidValueError: the value has no Cedar form (as :func:`to_cedar_value`).

    Example:
        >>> fact = CedarRecord({"pii": ["EMAIL"], "prompt_attack": 0})
        >>> fact["pii"], fact.cedar
        (('EMAIL',), {'pii': ['EMAIL'], 'prompt_attack': 0})
        >>> Request(EntityUID("User", "u"), "send", EntityUID("Tool", "t"),
        ...         {"guardrail": fact}).cedar_context["guardrail"] is fact.cedar
        True
    """

    __slots__ = ("cedar", "nesting")

    cedar: dict[str, Any]
    nesting: int

    def __init__(self, value: Mapping[str, Any]) -> None:
        if not isinstance(value, Mapping):
            raise InvalidValueError(f"a CedarRecord is built from a mapping, not {builtin_type_name(value)}")
        flat = _flat_record(value)
        if flat is not None:  # strings, booleans, Longs and lists of strings: a fact, built per assessment
            frozen, self.cedar, self.nesting = flat
        else:
            self.cedar = _to_cedar(value, False, "")
            frozen = {key: _frozen(item) for key, item in value.items()}
            # How many levels of values (this record's own included) the checks of conversion count.
            self.nesting = _nesting(value)
        super().__init__(frozen)

    def _read_only(self, *args: object, **kwargs: object) -> NoReturn:
        raise TypeError("a CedarRecord is read-only: build a new one")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = __ior__ = _read_only

    def __reduce__(self) -> tuple[type[CedarRecord], tuple[dict[str, Any]]]:
        return CedarRecord, (dict(self),)


def _flat_record(value: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any], int] | None:
    """Frozen view, Cedar JSON and nesting of a record of strings, booleans, Longs and lists or
    tuples of strings, as :func:`_convert` and :func:`_nesting` give them; None for any other record."""
    frozen: dict[str, Any] = {}
    cedar: dict[str, Any] = {}
    nesting = 1
    for key, item in value.items():
        if type(key) is not str or key in _RESERVED_KEYS:
            return None
        kind = type(item)
        if kind is str or kind is bool or (kind is int and _LONG_MIN <= item <= _LONG_MAX):
            frozen[key] = cedar[key] = item
        elif (kind is list or kind is tuple) and all(type(element) is str for element in item):
            frozen[key] = tuple(item)
            cedar[key] = list(item)
            nesting = 2
        else:
            return None
    return frozen, cedar, nesting


def _frozen(value: Any) -> Any:
    if isinstance(value, CedarRecord) or not isinstance(value, (Mapping, list, tuple, set)):
        return value
    if isinstance(value, Mapping):
        return CedarRecord(value)
    if isinstance(value, set):
        return frozenset(value)
    return tuple(_frozen(item) for item in value)


def _nesting(value: Any) -> int:
    """Levels of a value that conversion checks against MAX_VALUE_DEPTH (0 for a str, bool or int)."""
    kind = type(value)
    if kind is str or kind is bool or kind is int or value is None:
        return 0
    if isinstance(value, CedarRecord):
        return value.nesting
    if isinstance(value, Mapping):
        items: Iterable[Any] = value.values()
    elif isinstance(value, (list, tuple, set, frozenset)):
        items = value
    else:
        return 1
    return 1 + max(map(_nesting, items), default=0)


def _at(path: str) -> str:
    return f" at {path.lstrip('.')}" if path else ""


def from_cedar_value(value: Any) -> Any:
    """Read a Cedar JSON value into Python.

    ``{"__entity": ...}`` becomes :class:`EntityUID`, ``{"__extn": ...}``
    becomes :class:`ExtensionValue` with its exact text, arrays become lists
    and records dicts. A record shaped ``{type, id}`` without ``__entity``
    stays a record.
    """
    return _from_cedar(value, 0)


def _from_cedar(value: Any, depth: int) -> Any:
    kind = type(value)
    if kind is str or kind is bool:
        return value
    if kind is int:
        if not _LONG_MIN <= value <= _LONG_MAX:
            raise InvalidValueError("integer does not fit in Cedar's 64-bit Long")
        return value
    if depth > MAX_VALUE_DEPTH:
        raise InvalidValueError(f"value is nested deeper than {MAX_VALUE_DEPTH} levels")
    if isinstance(value, list):
        return [_from_cedar(item, depth + 1) for item in value]
    if isinstance(value, dict):
        if len(value) == 1:
            if "__entity" in value:
                return EntityUID.from_cedar(value)
            if "__extn" in value:
                return _extension_from_cedar(value["__extn"])
        if "__entity" in value or "__extn" in value or "__expr" in value:
            raise InvalidValueError("an __entity/__extn escape must be the only key of its object")
        return {key: _from_cedar(item, depth + 1) for key, item in value.items()}
    raise InvalidValueError(f"{builtin_type_name(value)} is not a Cedar JSON value")


def _extension_from_cedar(body: Any) -> ExtensionValue:
    if not isinstance(body, dict) or not isinstance(body.get("fn"), str):
        raise InvalidValueError('an __extn escape needs {"fn": ..., "arg": ...} or "args"')
    if "args" in body and isinstance(body["args"], list) and set(body) == {"fn", "args"}:
        return ExtensionValue(fn=body["fn"], args=tuple(from_cedar_value(a) for a in body["args"]))
    if set(body) == {"fn", "arg"}:
        return ExtensionValue(fn=body["fn"], arg=from_cedar_value(body["arg"]))
    raise InvalidValueError('an __extn escape needs {"fn": ..., "arg": ...} or "args"')


def _copy_json(value: Any) -> Any:
    """A deep copy of Cedar JSON (dicts, lists and immutable scalars), faster than deepcopy."""
    if isinstance(value, dict):
        return {key: _copy_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy_json(item) for item in value]
    return value


def _uids(values: Iterable[Any]) -> tuple[EntityUID, ...]:
    return tuple(EntityUID.from_cedar(value) for value in values)


class Entity(BaseModel):
    """A Cedar entity: uid, attributes, parents (ancestors' uids) and tags.

    Attribute and tag values are converted to Cedar JSON when the entity is
    built, so a bad value fails here with a clear error and never at
    authorization time.

    Example:
        >>> alice = Entity(uid=EntityUID("User", "alice"), attrs={"dept": "hr"},
        ...                parents=[EntityUID("Group", "hr")])
        >>> alice.to_cedar()["parents"]
        [{'type': 'Group', 'id': 'hr'}]
    """

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    uid: EntityUID
    attrs: dict[str, Any] = {}
    parents: tuple[EntityUID, ...] = ()
    tags: dict[str, Any] | None = None

    _cedar: dict[str, Any] = PrivateAttr()

    def __init__(
        self,
        uid: EntityUID,
        attrs: Mapping[str, Any] | None = None,
        parents: Iterable[EntityUID] = (),
        tags: Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(uid, EntityUID):
            raise InvalidValueError(f"Entity uid must be an EntityUID, not {builtin_type_name(uid)}")
        parent_uids = tuple(parents)
        for parent in parent_uids:
            if not isinstance(parent, EntityUID):
                raise InvalidValueError(
                    f"parents of {uid} must be EntityUIDs, not {builtin_type_name(parent)}"
                )
        attrs = dict(attrs or {})
        cedar_attrs = _to_cedar(attrs, False, "")
        cedar: dict[str, Any] = {
            "uid": uid.to_cedar(),
            "attrs": cedar_attrs,
            "parents": [p.to_cedar() for p in parent_uids],
        }
        if tags is not None:
            tags = dict(tags)
            cedar["tags"] = _to_cedar(tags, False, "")
        super().__init__(uid=uid, attrs=attrs, parents=parent_uids, tags=tags)
        self._cedar = cedar

    def to_cedar(self) -> dict[str, Any]:
        """Return the Cedar JSON entity (``uid``, ``attrs``, ``parents``, ``tags`` if any)."""
        # A deep copy: the engine decides on _cedar, so a caller editing a nested
        # record or a parent in the result must not change what the entity means.
        return {key: _copy_json(value) for key, value in self.cedar.items()}

    @property
    def cedar(self) -> dict[str, Any]:
        """The Cedar JSON form, shared and read-only by convention (no copy)."""
        # Read from pydantic's store of private attributes directly: ``self._cedar`` goes through
        # BaseModel.__getattr__ (30 times slower), and every entity sent to the engine is read here.
        cedar: dict[str, Any] = self.__pydantic_private__["_cedar"]  # type: ignore[index]
        return cedar

    @classmethod
    def from_cedar(cls, data: Mapping[str, Any]) -> Entity:
        """Read a Cedar JSON entity (``__entity`` / ``__extn`` escapes understood)."""
        if not isinstance(data, Mapping) or "uid" not in data:
            raise InvalidValueError('a Cedar JSON entity needs at least a "uid"')
        unknown = set(data) - {"uid", "attrs", "parents", "tags"}
        if unknown:
            raise InvalidValueError(f"unknown keys in a Cedar JSON entity: {sorted(unknown)}")
        attrs = data.get("attrs", {})
        tags = data.get("tags")
        if not isinstance(attrs, Mapping) or (tags is not None and not isinstance(tags, Mapping)):
            raise InvalidValueError("entity attrs and tags must be JSON objects")
        if not isinstance(data.get("parents", ()), (list, tuple)):
            # null or a number would fail as a TypeError, a string as one parent per character
            raise InvalidValueError("entity parents must be a JSON array")
        return cls(
            uid=EntityUID.from_cedar(data["uid"]),
            attrs={k: from_cedar_value(v) for k, v in attrs.items()},
            parents=_uids(data.get("parents", ())),
            tags=None if tags is None else {k: from_cedar_value(v) for k, v in tags.items()},
        )


def _check_request_parts(principal: Any, action: Any, resource: Any) -> None:
    for role, uid in (("principal", principal), ("resource", resource)):
        if not isinstance(uid, EntityUID):
            raise InvalidValueError(
                f"the request {role} must be an EntityUID, not {builtin_type_name(uid)}"
            )
    if not isinstance(action, (EntityUID, str)) or action == "":
        raise InvalidValueError(
            f"the request action must be an EntityUID or a name, not {builtin_type_name(action)}"
        )


@dataclass(frozen=True, slots=True, init=False)
class Request:
    """One authorization question: may ``principal`` do ``action`` on ``resource``?

    ``action`` is an :class:`EntityUID` or a bare action name such as ``"read"``
    that the Authorizer resolves in the schema's namespace. The context is
    converted to Cedar JSON once, here, so a bad value fails at construction.

    Example:
        >>> req = Request(principal=EntityUID("User", "alice"), action="read",
        ...               resource=EntityUID("Document", "d1"))
        >>> req.context
        {}
    """

    principal: EntityUID
    action: EntityUID | str
    resource: EntityUID
    context: dict[str, Any]
    cedar_context: dict[str, Any] = field(repr=False, compare=False)

    def __init__(
        self,
        principal: EntityUID,
        action: EntityUID | str,
        resource: EntityUID,
        context: Mapping[str, Any] | None = None,
    ) -> None:
        _check_request_parts(principal, action, resource)
        if context is None:
            context = {}
        elif not isinstance(context, Mapping):
            raise InvalidValueError(
                f"the request context must be a mapping, not {builtin_type_name(context)}"
            )
        cedar_context = _to_cedar(context, False, "context")
        _set_principal(self, principal)
        _set_action(self, action)
        _set_resource(self, resource)
        _set_context(self, dict(context))
        _set_cedar_context(self, cedar_context)

    def replace(self, **changes: Any) -> Request:
        """A copy with some of ``principal``, ``action``, ``resource``, ``context`` changed."""
        unknown = set(changes) - {"principal", "action", "resource", "context"}
        if unknown:
            raise InvalidValueError(f"a request has no field {sorted(unknown)[0]!r}")
        principal = changes.get("principal", self.principal)
        action = changes.get("action", self.action)
        resource = changes.get("resource", self.resource)
        if "context" in changes:
            return Request(principal, action, resource, changes["context"])
        _check_request_parts(principal, action, resource)
        return self._with_parts(principal, action, resource)

    def _with_parts(self, principal: EntityUID, action: EntityUID | str, resource: EntityUID) -> Request:
        # The context is unchanged: share its converted form instead of converting again.
        # The parts were checked by the caller.
        copy = object.__new__(Request)
        _set_principal(copy, principal)
        _set_action(copy, action)
        _set_resource(copy, resource)
        _set_context(copy, self.context)
        _set_cedar_context(copy, self.cedar_context)
        return copy

    def to_cedar(self) -> dict[str, Any]:
        """Return the request in Cedar JSON form (entity ids as ``{type, id}``)."""
        action = self.action
        if isinstance(action, str):
            action = EntityUID("Action", action)
        return {
            "principal": self.principal.to_cedar(),
            "action": action.to_cedar(),
            "resource": self.resource.to_cedar(),
            # Copied: the engine reads cedar_context, which must not change under it.
            "context": _copy_json(self.cedar_context),
        }

    @classmethod
    def from_cedar(cls, data: Mapping[str, Any]) -> Request:
        """Read a Cedar JSON request (uids as ``{type, id}``, ``__entity`` or Cedar text)."""
        if not isinstance(data, Mapping):
            raise InvalidValueError("a Cedar request must be a JSON object")
        missing = [key for key in ("principal", "action", "resource") if key not in data]
        if missing:
            raise InvalidValueError(f"a Cedar request needs {', '.join(missing)}")
        context = data.get("context") or {}
        if not isinstance(context, Mapping):
            raise InvalidValueError("a Cedar request context must be a JSON object")
        return cls(
            principal=EntityUID.from_cedar(data["principal"]),
            action=EntityUID.from_cedar(data["action"]),
            resource=EntityUID.from_cedar(data["resource"]),
            context={k: from_cedar_value(v) for k, v in context.items()},
        )


_set_principal, _set_action, _set_resource, _set_context, _set_cedar_context = _slot_setters(
    Request, "principal", "action", "resource", "context", "cedar_context")


class SharedRequests(Sequence[Request]):
    """Requests alike but for their resource: ``base`` asked of each of ``resources``, in order.

    A retrieval's batch is one principal, action and context and a resource per
    document. Each :class:`Request` is built when it is read, sharing ``base``'s
    parts; an engine that only ships the batch elsewhere (the worker processes)
    reads ``base`` and ``resources`` and builds none. A slice is a
    ``SharedRequests`` again.

    Example:
        >>> base = Request(EntityUID("User", "alice"), "read", EntityUID("User", "alice"))
        >>> batch = SharedRequests(base, [EntityUID("Doc", "d1"), EntityUID("Doc", "d2")])
        >>> [str(request.resource) for request in batch[1:]]
        ['Doc::"d2"']
    """

    __slots__ = ("base", "resources")

    def __init__(self, base: Request, resources: Sequence[EntityUID]) -> None:
        for resource in resources:
            if not isinstance(resource, EntityUID):
                raise InvalidValueError(
                    f"the request resource must be an EntityUID, not {builtin_type_name(resource)}")
        self.base = base
        self.resources = resources

    def __len__(self) -> int:
        return len(self.resources)

    @overload
    def __getitem__(self, index: int) -> Request: ...

    @overload
    def __getitem__(self, index: slice) -> SharedRequests: ...

    def __getitem__(self, index: int | slice) -> Request | SharedRequests:
        if isinstance(index, slice):
            part = object.__new__(SharedRequests)
            part.base = self.base
            part.resources = self.resources[index]
            return part
        base = self.base
        return base._with_parts(base.principal, base.action, self.resources[index])

    def __iter__(self) -> Iterator[Request]:
        base = self.base
        principal, action, with_parts = base.principal, base.action, base._with_parts
        for resource in self.resources:
            yield with_parts(principal, action, resource)

    def __repr__(self) -> str:
        return f"SharedRequests({self.base!r}, {len(self.resources)} resources)"


@dataclass(frozen=True, slots=True, init=False)
class Decision:
    """The outcome of one request.

    Attributes:
        allowed: True only when Cedar said Allow; errors, no decision and
            exceptions are all False.
        reasons: ids of the determining policies (their ``@id`` annotation), sorted.
        errors: evaluation errors, truncated, never whole entity dumps.
        enforced: False when the decision was taken in shadow mode: it is
            audited, but the call goes ahead.
        policy_version: fingerprint of the policy-store version that decided,
            when the engine knows it (a reload may land between decision and audit).
        id: opaque id the Authorizer gives every decision it makes; the audit
            event carries it as ``decision_id``, and refusals shown to a model
            name it instead of policy ids ("" on a decision the Authorizer did not make).

    Example:
        >>> Decision(allowed=False, reasons=("no-external-email",)).admits
        False
    """

    allowed: bool
    reasons: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()
    enforced: bool = True
    policy_version: str = field(default="", compare=False)
    id: str = field(default="", compare=False, repr=False)

    # Written out: a batch makes two Decisions per request (the engine's, then the Authorizer's with
    # its id); the generated frozen __init__ took 0.82 us per Decision, this one 0.50 us.
    def __init__(self, allowed: bool, reasons: tuple[str, ...] = (), errors: tuple[str, ...] = (),
                 enforced: bool = True, policy_version: str = "", id: str = "") -> None:
        if type(allowed) is not bool:
            raise InvalidValueError("Decision.allowed must be a bool")
        _set_allowed(self, allowed)
        _set_reasons(self, reasons if type(reasons) is tuple else tuple(reasons))
        _set_errors(self, errors if type(errors) is tuple else tuple(errors))
        _set_enforced(self, enforced)
        _set_policy_version(self, policy_version)
        _set_id(self, id)

    @property
    def admits(self) -> bool:
        """Whether the call may go ahead: allowed, or decided in shadow mode."""
        return self.allowed or not self.enforced

    @classmethod
    def deny(cls, *errors: str) -> Decision:
        """A fail-closed denial carrying the given errors."""
        return cls(allowed=False, errors=tuple(errors))

    def replace(self, **changes: Any) -> Decision:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    @property
    def outcome(self) -> Literal["allow", "deny"]:
        """``"allow"`` or ``"deny"``, as written in audit events."""
        return "allow" if self.allowed else "deny"


_set_allowed, _set_reasons, _set_errors, _set_enforced, _set_policy_version, _set_id = _slot_setters(
    Decision, "allowed", "reasons", "errors", "enforced", "policy_version", "id")
