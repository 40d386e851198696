"""What Cedar refuses in the author's files, in the author's words.

cedarpy says what is wrong without saying where, and says it about positions in
the text it was given (``policy3``) or not at all (``does not conform``). These
checks ask it file by file and statement by statement, so that each problem
names its file and line (:mod:`agentauthz.policy._locate` adds the column), the
policy's ``@id``, the expression at fault in a type error
(:mod:`agentauthz.policy._type_errors`), and the first entity that does not fit
the schema with Cedar's reason, values included: the files are the author's own
(:mod:`agentauthz.policy._messages`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cedarpy

from agentauthz._errors import PolicyError
from agentauthz._model import Entity
from agentauthz.policy._messages import author_message
from agentauthz.policy._text import Statement
from agentauthz.policy._type_errors import explain_type_error

__all__ = [
    "ParsedFile",
    "PolicyFile",
    "entity_handle",
    "first_nonconforming_entity",
    "parse_problems",
    "parse_schema",
    "policy_json",
    "validation_problems",
]

_POSITIONAL = re.compile(r"policy(\d+)")


@dataclass
class PolicyFile:
    """One policy file (or the policy text) as read."""

    name: str
    text: str


@dataclass(frozen=True)
class ParsedFile:
    """A policy file that parsed, with its statements (Cedar counts the same number)."""

    source: PolicyFile
    statements: list[Statement]


def parse_schema(text: str) -> Any:
    """A cedarpy schema handle of Cedar schema text or Cedar JSON (raises ValueError)."""
    if text.lstrip().startswith("{"):
        return cedarpy.Schema.from_json_str(text)
    return cedarpy.Schema.from_str(text)


def entity_handle(entities: Sequence[Entity], schema: Any, name: str) -> Any:
    """The cedarpy entities handle, or a PolicyError naming the first entity Cedar refuses and why."""
    document = json.dumps([entity.cedar for entity in entities])
    try:
        return cedarpy.Entities.from_json_str(document, schema)
    except ValueError as exc:
        culprit = first_nonconforming_entity(entities, schema)
        where = f" (first nonconforming entity: {culprit})" if culprit else ""
        raise PolicyError(f"{name}: {author_message(str(exc))}{where}") from exc


def first_nonconforming_entity(entities: Sequence[Entity], schema: Any) -> str | None:
    """``#index uid: why`` of the first entity Cedar refuses, in the author's words (not redacted)."""
    for index, entity in enumerate(entities):
        try:
            cedarpy.Entities.from_json_str(json.dumps([entity.cedar]), schema)
        except ValueError:
            why = _why_nonconforming(entity, schema)
            return f"#{index} {entity.uid}" + (f": {why}" if why else "")
    return None


def _why_nonconforming(entity: Entity, schema: Any) -> str | None:
    # Entities.from_json_str says only "does not conform"; is_authorized says why, after a
    # dump of the entities it was given: keep what follows the dump.
    try:
        result = cedarpy.is_authorized(
            {"principal": entity.uid.to_cedar(), "action": {"type": "Action", "id": "x"},
             "resource": entity.uid.to_cedar(), "context": {}},
            "", json.dumps([entity.cedar]), schema=schema)
        errors = list(result.diagnostics.errors)
    except Exception:  # only a diagnostic: never let it hide the real error
        return None
    if not errors or "]: " not in errors[0]:
        return None
    detail = errors[0][errors[0].rfind("]: ") + 3:]
    return author_message(detail.removeprefix("entity does not conform to the schema: "))


def parse_problems(source: PolicyFile, statements: Sequence[Statement]) -> list[str]:
    """``file:line: message`` of each statement Cedar cannot parse (cedarpy gives no position)."""
    found = []
    for statement in statements:
        try:
            cedarpy.PolicySet.from_str(statement.text)
        except ValueError as exc:
            found.append(f"{source.name}:{statement.line}: {author_message(str(exc))}")
    return found or [f"{source.name}:1: cannot parse the policies"]


def validation_problems(parsed: Sequence[ParsedFile], schema: Any) -> list[str]:
    """Validation problems, file by file (so that Cedar's ``policyN`` names a statement of the file)."""
    problems: list[str] = []
    for file in parsed:
        result = cedarpy.validate_policies(file.source.text, schema)
        seen: dict[tuple[str, str], int] = {}
        for error in result.errors:
            key = (error.policy_id, error.error)
            seen[key] = seen.get(key, -1) + 1
            problems.append(_validation_problem(file, error, schema, seen[key]))
    return problems


def _validation_problem(file: ParsedFile, error: Any, schema: Any, occurrence: int) -> str:
    """``file:line: [id] message``; a type error also says which expression and its types."""
    match = _POSITIONAL.fullmatch(error.policy_id or "")
    if not (match and int(match.group(1)) < len(file.statements)):
        return f"{file.source.name}: {author_message(error.error)}"
    statement = file.statements[int(match.group(1))]
    label = statement.annotations.get("id")
    named = f" [{label}]" if label else ""
    message = error.error.replace(f"policy `{error.policy_id}`", "policy")
    explained = explain_type_error(statement.text, message, schema, occurrence)
    message = f"{message}: {explained}" if explained else message
    return f"{file.source.name}:{statement.line}:{named} {author_message(message)}"


def policy_json(text: str) -> dict[str, Any] | None:
    """The Cedar JSON (EST) of one policy or template, None if it does not convert.

    Example:
        >>> policy_json('forbid(principal, action, resource);')["effect"]
        'forbid'
    """
    try:
        document = json.loads(cedarpy.policies_to_json_str(text))
    except (ValueError, TypeError):
        return None
    for group in ("staticPolicies", "templates"):
        for body in (document.get(group) or {}).values():
            return dict(body)
    return None
