"""Cedar's type errors, explained: which expression of the policy, and the types of its parts.

Cedar's validator names the policy but not the place: ``the types Long and String
are not compatible``, ``unexpected type: expected Long but saw String``. For the
author of a policy with ten conditions that is a search. cedarpy gives no source
span, so the expression is found by asking Cedar again about each part of the
condition (:func:`explain_type_error`):

* a part ``e`` is *at fault* when the policy ``when { e == e }`` (same scope, only
  that part) fails with the same message; the culprit is a part at fault none of
  whose own parts is;
* the type of a part is what Cedar says of ``when { e }``: no error for a
  ``Bool``, else ``expected Bool but saw T``.

The culprit and its operands are written back as Cedar text
(:func:`expression_text`, from Cedar's JSON form of the policy), so the message
reads ``... are not compatible: `context.seats == "three"`: `context.seats` is
Long, `"three"` is String``. This runs only when validation has already failed:
it costs a few validations per erroneous policy and never a correct one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

import cedarpy

from agentauthz._model import EntityUID
from agentauthz.policy._text import _TOKEN

__all__ = ["explain_type_error", "expression_text"]

_TYPE_ERROR = re.compile(r"^(?:the types .+ are not compatible|unexpected type: expected (?P<expected>.+) "
                         r"but saw (?P<saw>.+))$", re.S)
_SAW = re.compile(r"^unexpected type: expected Bool but saw (?P<saw>.+)$", re.S)
_FOR_POLICY = re.compile(r"^for policy(?: `[^`]*`)?, ")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Identifiers Cedar's policy grammar reserves: an attribute of that name is written quoted.
_RESERVED = frozenset({"true", "false", "if", "then", "else", "in", "is", "like", "has", "__cedar"})
_INTERNAL = (("__cedar::internal::AnyEntity", "an entity"), ("__cedar::internal::OpenRecord{}", "a record"),
             ("__cedar::internal::Any", "any type"), ("__cedar::internal::True", "Bool"),
             ("__cedar::internal::False", "Bool"))
#: How many parts of one policy are asked about at most: a bound on the cost of one error.
MAX_PROBES = 200

# Binding strength of Cedar's operators, weakest first (the grammar's levels).
_IF, _OR, _AND, _RELATION, _SUM, _PRODUCT, _UNARY, _MEMBER = range(8)
_INFIX = {"||": _OR, "&&": _AND, "==": _RELATION, "!=": _RELATION, "<": _RELATION, "<=": _RELATION,
          ">": _RELATION, ">=": _RELATION, "in": _RELATION, "+": _SUM, "-": _SUM, "*": _PRODUCT}
_METHODS = ("contains", "containsAll", "containsAny", "getTag", "hasTag")
_CONSTRUCTORS = ("ip", "decimal", "datetime", "duration")


def explain_type_error(statement: str, message: str, schema: Any, occurrence: int = 0) -> str | None:
    """Where in ``statement`` Cedar's type error ``message`` is, and the types of the parts there.

    Args:
        statement: the policy's Cedar text.
        message: the validator's message (with or without ``for policy `...`, ``).
        schema: the cedarpy schema the policy was validated against.
        occurrence: which of the policy's errors with this very message it is
            (0 for the first): Cedar reports them in the order of the text.

    Returns:
        ```culprit`: `part` is T, ...`` (the operand of the wrong type when Cedar says
        which type it expected), or None for another kind of error or when no single
        part reproduces it.

    Example:
        >>> schema = cedarpy.Schema.from_str(
        ...     "entity User; action book appliesTo { principal: User, resource: User, "
        ...     "context: { seats: Long } };")
        >>> explain_type_error('permit(principal, action, resource) when { context.seats == "two" };',
        ...                    "the types Long and String are not compatible", schema)
        '`context.seats == "two"`: `context.seats` is Long, `"two"` is String'
    """
    problem = _FOR_POLICY.sub("", message)
    wanted = _TYPE_ERROR.match(problem)
    if wanted is None:
        return None
    try:
        probe = _Probe(statement, schema)
        found = [culprit for condition in probe.conditions for culprit in probe.culprits(condition, problem)]
        if not found:
            return None
        culprit = found[min(occurrence, len(found) - 1)]
        return _described(probe, culprit, wanted.group("expected"), wanted.group("saw"))
    except (ValueError, KeyError, TypeError, RecursionError, _Unprintable):
        return None  # only an explanation: Cedar's own message stands


def _described(probe: _Probe, culprit: Any, expected: str | None, saw: str | None) -> str:
    parts = [(expression_text(part), probe.type_of(part)) for part in _parts(culprit)]
    typed = [(text, kind) for text, kind in parts if kind is not None]
    if saw is not None:
        wrong = [text for text, kind in typed if kind == saw]
        if wrong:
            return (f"`{expression_text(culprit)}`: "
                    + ", ".join(f"`{text}` is {_readable(saw)}" for text in wrong)
                    + f", expected {_readable(expected or '')}")
    listed = ", ".join(f"`{text}` is {_readable(kind)}" for text, kind in typed)
    return f"`{expression_text(culprit)}`" + (f": {listed}" if listed else "")


def _readable(type_name: str) -> str:
    for internal, word in _INTERNAL:
        type_name = type_name.replace(internal, word)
    return type_name


class _Unprintable(Exception):
    """A part of Cedar's JSON form this module cannot write back as text."""


class _Probe:
    """Asks Cedar about parts of one policy's conditions, in the policy's own scope."""

    def __init__(self, statement: str, schema: Any) -> None:
        document: dict[str, Any] = json.loads(cedarpy.policies_to_json_str(statement))
        policies = [*document["staticPolicies"].values(), *document["templates"].values()]
        if len(policies) != 1:
            raise _Unprintable("not one policy")
        self.conditions = [condition["body"] for condition in policies[0].get("conditions", [])]
        self.scope = _scope_text(statement)
        self.schema = schema
        self.asked = 0

    def errors(self, condition: Any) -> list[str]:
        self.asked += 1
        if self.asked > MAX_PROBES:
            raise _Unprintable("too many parts to ask about")
        text = f"{self.scope} when {{ {expression_text(condition)} }};"
        return [_FOR_POLICY.sub("", error.error) for error in
                cedarpy.validate_policies(text, self.schema).errors]

    def at_fault(self, part: Any, problem: str) -> bool:
        return problem in self.errors({"==": {"left": part, "right": part}})

    def culprits(self, part: Any, problem: str) -> Iterator[Any]:
        """The smallest parts of ``part`` that fail with ``problem``, in text order."""
        if not self.at_fault(part, problem):
            return
        found = False
        for child in _parts(part):
            for culprit in self.culprits(child, problem):
                found = True
                yield culprit
        if not found:
            yield part

    def type_of(self, part: Any) -> str | None:
        errors = self.errors(part)
        if not errors:
            return "Bool"
        saw = _SAW.match(errors[0])
        return saw.group("saw") if saw and len(errors) == 1 else None


def _scope_text(statement: str) -> str:
    """``permit (principal, action, resource)`` of a statement: the effect and scope, as written."""
    start = depth = None
    for match in _TOKEN.finditer(statement):
        kind, token = match.lastgroup, match.group()
        if kind in ("space", "comment", "string"):
            continue
        if start is None and kind == "ident" and token in ("permit", "forbid"):
            start, depth = match.start(), 0
        elif start is not None and depth is not None:
            if token == "(":
                depth += 1
            elif token == ")":
                depth -= 1
                if depth == 0:
                    return statement[start:match.end()]
    raise _Unprintable("no scope")


def _parts(node: Any) -> list[Any]:
    """The direct sub-expressions of an expression in Cedar's JSON form."""
    ((kind, body),) = node.items()
    if kind in ("Value", "Var", "Slot", "Unknown"):
        return []
    if kind == "Record":
        return list(body.values())
    if isinstance(body, list):
        return list(body)
    return [body[key] for key in ("left", "right", "arg", "if", "then", "else", "in") if key in body]


def expression_text(node: Mapping[str, Any]) -> str:
    """Cedar text of an expression in Cedar's JSON form, with only the parentheses it needs.

    Raises:
        _Unprintable: a form this function does not know (Cedar reads back what it writes).

    Example:
        >>> expression_text({"&&": {"left": {"==": {"left": {".": {"left": {"Var": "context"},
        ...     "attr": "seats"}}, "right": {"Value": 2}}}, "right": {"Value": True}}})
        'context.seats == 2 && true'
    """
    return _text(node)[0]


def _text(node: Mapping[str, Any]) -> tuple[str, int]:
    ((kind, body),) = node.items()
    if kind == "Value":
        return _value_text(body), _UNARY if isinstance(body, int) and body < 0 else _MEMBER
    if kind == "Var":
        return str(body), _MEMBER
    if kind == "Slot":
        return str(body), _MEMBER
    if kind in _INFIX:
        level = _INFIX[kind]
        # Relations do not chain; the others associate to the left.
        left = _operand(body["left"], level + 1 if level == _RELATION else level)
        return f"{left} {kind} {_operand(body['right'], level + 1)}", level
    if kind in ("!", "neg"):
        return ("!" if kind == "!" else "-") + _unary_operand(kind, body["arg"]), _UNARY
    if kind == "isEmpty":
        return f"{_operand(body['arg'], _MEMBER)}.isEmpty()", _MEMBER
    if kind in _METHODS:
        return f"{_operand(body['left'], _MEMBER)}.{kind}({_text(body['right'])[0]})", _MEMBER
    if kind == ".":
        return _operand(body["left"], _MEMBER) + _access(body["attr"]), _MEMBER
    if kind == "has":
        return f"{_operand(body['left'], _SUM)} has {_attribute(body['attr'])}", _RELATION
    if kind == "like":
        return f"{_operand(body['left'], _SUM)} like {_pattern(body['pattern'])}", _RELATION
    if kind == "is":
        within = f" in {_operand(body['in'], _SUM)}" if "in" in body else ""
        return f"{_operand(body['left'], _SUM)} is {body['entity_type']}{within}", _RELATION
    if kind == "if-then-else":
        return (f"if {_text(body['if'])[0]} then {_text(body['then'])[0]} "
                f"else {_text(body['else'])[0]}"), _IF
    if kind == "Set":
        return "[" + ", ".join(_text(item)[0] for item in body) + "]", _MEMBER
    if kind == "Record":
        members = (f"{_attribute(key)}: {_text(value)[0]}" for key, value in body.items())
        return "{" + ", ".join(members) + "}", _MEMBER
    if isinstance(body, list) and kind in _CONSTRUCTORS:
        return f"{kind}({', '.join(_text(argument)[0] for argument in body)})", _MEMBER
    if isinstance(body, list) and body and _IDENTIFIER.fullmatch(kind):
        receiver, *arguments = body
        listed = ", ".join(_text(argument)[0] for argument in arguments)
        return f"{_operand(receiver, _MEMBER)}.{kind}({listed})", _MEMBER
    raise _Unprintable(kind)


def _unary_operand(operator: str, node: Mapping[str, Any]) -> str:
    """Cedar chains one unary operator (``!!x``, ``--x``) but not both, and ``-3`` is a literal."""
    text, own = _text(node)
    ((kind, body),) = node.items()
    integer = kind == "Value" and isinstance(body, int) and not isinstance(body, bool)
    if kind == operator or (operator == "neg" and integer and body < 0):
        return text  # `!!x`, `--x`, `--3`
    if own == _MEMBER and not (operator == "neg" and integer):
        return text  # `!x`, `-x`; but `-(3)`, since `-3` is the literal
    return f"({text})"


def _operand(node: Mapping[str, Any], level: int) -> str:
    text, own = _text(node)
    return text if own >= level else f"({text})"


def _value_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, Mapping) and isinstance(value.get("__entity"), Mapping):
        return str(EntityUID.from_cedar(value["__entity"]))
    raise _Unprintable("value")


def _string(value: str) -> str:
    return '"' + str(EntityUID("T", value))[len('T::"'):]


def _bare(name: str) -> bool:
    return _IDENTIFIER.fullmatch(name) is not None and name not in _RESERVED


def _attribute(name: str) -> str:
    return name if _bare(name) else _string(name)


def _access(name: str) -> str:
    return f".{name}" if _bare(name) else f"[{_string(name)}]"


def _pattern(parts: list[Any]) -> str:
    out = []
    for part in parts:
        if part == "Wildcard":
            out.append("*")
        else:
            out.append(_string(part["Literal"])[1:-1].replace("*", "\\*"))
    return '"' + "".join(out) + '"'
