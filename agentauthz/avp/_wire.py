"""Amazon Verified Permissions wire shapes, limits and naming, shared by engine and local endpoint.

Pure data conversion, no boto3: the engine (:mod:`agentauthz.avp._engine`) turns
Cedar JSON into AVP request shapes with it, and the local endpoint
(:mod:`agentauthz.avp._server`) turns them back.

Limits come from the ``verifiedpermissions`` service model (botocore 1.44) and
the AVP quotas page; botocore itself checks none of them (see DESIGN.md).

How our policy ids ride in AVP (AVP generates its own policy ids):

* a static policy or a template carries ``agentauthz:<our id>`` as its
  description (up to 150 characters; no other constraint);
* every policy may also carry a name, ``name/<our id>`` when the id uses only
  ``[A-Za-z0-9_/-]``, else ``name/agentauthz-b64/<base64url of the id>``.
  Names are the only place a template-linked policy can keep our id (AVP gives
  links no description).

Example:
    >>> our_policy_id({"policyId": "SP1", "name": policy_name("share-1")})
    'share-1'
    >>> attribute_value({"__extn": {"fn": "decimal", "arg": "1.5"}})
    {'decimal': '1.5'}
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = [
    "BATCH_LIMIT",
    "DESCRIPTION_PREFIX",
    "MAX_REQUEST_BYTES",
    "ShapeError",
    "Unrepresentable",
    "attribute_value",
    "cedar_value",
    "entity_identifier",
    "entity_item",
    "entity_problems",
    "hierarchy_problem",
    "is_action_type",
    "our_policy_id",
    "policy_description",
    "policy_name",
    "reference_problem",
    "uid_problem",
]

BATCH_LIMIT = 30
"""Requests per BatchIsAuthorized call (AVP API reference)."""
MAX_REQUEST_BYTES = 1_000_000
"""Authorization request size quota (1 MB, not adjustable)."""
ENTITY_TYPE_MAX = 200
ENTITY_ID_MAX = 612
ACTION_TYPE_MAX = 200
ACTION_ID_MAX = 512
DESCRIPTION_MAX = 150
TRANSITIVE_PARENTS_MAX = 99
"""Transitive parents of a principal or resource per authorization request (AVP ``EntityItem``)."""
NAME_MAX = 150
DESCRIPTION_PREFIX = "agentauthz:"
NAME_PREFIX = "name/"
_ENCODED_NAME = "agentauthz-b64/"
_NAME_TEXT = re.compile(r"[A-Za-z0-9_/-]+")
# The service model's patterns, read whole (Smithy patterns are searches; these are
# the forms the API reference documents).
_ACTION_TYPE = re.compile(r"(?:.+::)?Action")
_DECIMAL = re.compile(r"-?[0-9]{1,15}\.[0-9]{1,4}")
_DATETIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}(?:T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{3})?(?:Z|[+-][0-9]{4}))?")
_DURATION = re.compile(r"-?(?:[0-9]+d)?(?:[0-9]+h)?(?:[0-9]+m)?(?:[0-9]+s)?(?:[0-9]+ms)?")
_IPADDR = re.compile(r"[0-9a-fA-F.:/]{1,44}")
# Cedar JSON extension function -> AttributeValue member.
EXTENSION_MEMBERS = {"ip": "ipaddr", "ipaddr": "ipaddr", "decimal": "decimal",
                     "datetime": "datetime", "duration": "duration"}
_MEMBER_FUNCTIONS = {"ipaddr": "ip", "decimal": "decimal", "datetime": "datetime", "duration": "duration"}
_EXTENSION_FORMS = {"ipaddr": (_IPADDR, 1, 44), "decimal": (_DECIMAL, 3, 23),
                    "datetime": (_DATETIME, 10, 28), "duration": (_DURATION, 2, 100)}


class ShapeError(ValueError):
    """A value breaks one of AVP's limits or formats: such a request is never sent."""


class Unrepresentable(ValueError):
    """A Cedar value has no AttributeValue form (it can still travel as ``cedarJson``)."""


# -- ids and names ---------------------------------------------------------------------


def is_action_type(entity_type: str) -> bool:
    """Whether an entity type is an action type (``Action`` or ``NS::Action``)."""
    return entity_type == "Action" or entity_type.endswith("::Action")


def uid_problem(entity_type: str, entity_id: str, *, action: bool = False) -> str | None:
    """Why AVP would refuse this entity (or action) identifier, or None."""
    type_max, id_max = (ACTION_TYPE_MAX, ACTION_ID_MAX) if action else (ENTITY_TYPE_MAX, ENTITY_ID_MAX)
    kind = "action" if action else "entity"
    if not 1 <= len(entity_type) <= type_max:
        return f"{kind} type must be 1 to {type_max} characters, not {len(entity_type)}"
    if not 1 <= len(entity_id) <= id_max:
        return f"{kind} id of type {entity_type} must be 1 to {id_max} characters, not {len(entity_id)}"
    if action and not _ACTION_TYPE.fullmatch(entity_type):
        return f"action type {entity_type} must be Action or end in ::Action"
    return None


def policy_description(our_id: str) -> str | None:
    """``agentauthz:<our id>``, or None when it would not fit AVP's 150 characters."""
    text = DESCRIPTION_PREFIX + our_id
    return text if len(text) <= DESCRIPTION_MAX else None


def policy_name(our_id: str) -> str | None:
    """The AVP policy name carrying our id, or None when it cannot fit in 150 characters."""
    if _NAME_TEXT.fullmatch(our_id) and not our_id.startswith(_ENCODED_NAME):
        name = NAME_PREFIX + our_id
    else:
        encoded = base64.urlsafe_b64encode(our_id.encode("utf-8")).decode("ascii").rstrip("=")
        name = NAME_PREFIX + _ENCODED_NAME + encoded
    return name if len(name) <= NAME_MAX else None


def id_from_name(name: str) -> str | None:
    """Our id from an AVP policy name written by :func:`policy_name`, else None."""
    if not name.startswith(NAME_PREFIX):
        return None
    body = name[len(NAME_PREFIX):]
    if not body.startswith(_ENCODED_NAME):
        return body or None
    encoded = body[len(_ENCODED_NAME):]
    try:
        return base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None


def our_policy_id(item: Mapping[str, Any]) -> str:
    """Our id of an AVP policy (a ListPolicies item): description, then name, else its AVP id."""
    definition = item.get("definition")
    static = definition.get("static") if isinstance(definition, Mapping) else None
    description = static.get("description") if isinstance(static, Mapping) else None
    if isinstance(description, str) and description.startswith(DESCRIPTION_PREFIX) and len(
            description) > len(DESCRIPTION_PREFIX):
        return description[len(DESCRIPTION_PREFIX):]
    name = item.get("name")
    if isinstance(name, str):
        decoded = id_from_name(name)
        if decoded:
            return decoded
    return str(item.get("policyId", ""))


# -- Cedar JSON -> AVP -----------------------------------------------------------------


def entity_identifier(uid: Mapping[str, Any]) -> dict[str, str]:
    """``{"type", "id"}`` -> ``{"entityType", "entityId"}``; ShapeError past AVP's limits."""
    problem = uid_problem(uid["type"], uid["id"])
    if problem:
        raise ShapeError(problem)
    return {"entityType": uid["type"], "entityId": uid["id"]}


def attribute_value(value: Any, members: frozenset[str] | None = None, depth: int = 0) -> dict[str, Any]:
    """A Cedar JSON value as an AVP ``AttributeValue`` union.

    Args:
        value: Cedar JSON (``__entity`` / ``__extn`` escapes).
        members: the AttributeValue members the client's service model has
            (older botocore lacks the extension ones); None means all.
        depth: nesting depth so far.

    Raises:
        ShapeError: a value AVP would refuse (an id or an extension text outside its limits).
        Unrepresentable: no AttributeValue member can carry it.
    """
    if depth > 100:
        raise ShapeError("value nested deeper than 100 levels")
    if isinstance(value, bool):
        return {"boolean": value}
    if isinstance(value, int):
        return {"long": value}
    if isinstance(value, str):
        return {"string": value}
    if isinstance(value, list):
        return {"set": [attribute_value(item, members, depth + 1) for item in value]}
    if isinstance(value, Mapping):
        if len(value) == 1 and "__entity" in value:
            return {"entityIdentifier": entity_identifier(value["__entity"])}
        if len(value) == 1 and "__extn" in value:
            return _extension(value["__extn"], members)
        return {"record": {key: attribute_value(item, members, depth + 1) for key, item in value.items()}}
    raise Unrepresentable(f"{type(value).__name__} is not a Cedar JSON value")


def _extension(body: Mapping[str, Any], members: frozenset[str] | None) -> dict[str, Any]:
    fn = body.get("fn")
    member = EXTENSION_MEMBERS.get(fn) if isinstance(fn, str) else None
    arg = body.get("arg")
    if member is None or set(body) != {"fn", "arg"} or not isinstance(arg, str):
        raise Unrepresentable(f"extension value {fn}(...) has no AttributeValue member")
    if members is not None and member not in members:
        raise Unrepresentable(f"this botocore has no AttributeValue member {member!r}")
    pattern, low, high = _EXTENSION_FORMS[member]
    if not (low <= len(arg) <= high and pattern.fullmatch(arg)):
        raise ShapeError(f"{fn} value is not in the form Verified Permissions accepts for {member}")
    return {member: arg}


def entity_item(entity: Mapping[str, Any], members: frozenset[str] | None = None,
                with_tags: bool = True) -> dict[str, Any]:
    """A Cedar JSON entity as an AVP ``EntityItem`` (identifier, attributes, parents, tags).

    Raises:
        ShapeError: an id or value AVP would refuse.
        Unrepresentable: a value (or tags, when ``with_tags`` is False) has no structured form.
    """
    item: dict[str, Any] = {"identifier": entity_identifier(entity["uid"])}
    attrs = entity.get("attrs") or {}
    if attrs:
        item["attributes"] = {key: attribute_value(value, members, 1) for key, value in attrs.items()}
    parents = entity.get("parents") or []
    if parents:
        item["parents"] = [entity_identifier(parent) for parent in parents]
    tags = entity.get("tags")
    if tags:
        if not with_tags:
            raise Unrepresentable("this botocore has no EntityItem tags")
        item["tags"] = {key: attribute_value(value, members, 1) for key, value in tags.items()}
    return item


def entity_problems(entity: Mapping[str, Any]) -> str | None:
    """Why AVP would refuse a Cedar JSON entity (ids of it, its parents and references), or None."""
    try:
        entity_identifier(entity["uid"])
        for parent in entity.get("parents") or ():
            entity_identifier(parent)
        for uid in _references((entity.get("attrs"), entity.get("tags"))):
            entity_identifier(uid)
    except ShapeError as exc:
        return str(exc)
    return None


def hierarchy_problem(uid: Mapping[str, Any],
                      entities: Mapping[tuple[str, str], Mapping[str, Any]]) -> str | None:
    """Why AVP would refuse ``uid``'s hierarchy among a request's entities, or None.

    ``entities`` holds the request's Cedar JSON entities by ``(type, id)``.

    AVP allows a principal or resource at most :data:`TRANSITIVE_PARENTS_MAX`
    transitive parents per authorization request (``EntityItem`` reference).
    """
    seen: set[tuple[str, str]] = set()
    frontier = [(uid["type"], uid["id"])]
    while frontier:
        entity = entities.get(frontier.pop())
        for parent in (entity or {}).get("parents") or ():
            key = (parent["type"], parent["id"])
            if key not in seen:
                seen.add(key)
                if len(seen) > TRANSITIVE_PARENTS_MAX:
                    name = f"{uid['type']}::{json.dumps(uid['id'])}"
                    return (f"{name[:120]} has more than {TRANSITIVE_PARENTS_MAX} transitive parents "
                            "(AVP's limit per request)")
                frontier.append(key)
    return None


def reference_problem(value: Any) -> str | None:
    """Why AVP would refuse an entity reference inside a Cedar JSON value, or None."""
    for uid in _references(value):
        try:
            entity_identifier(uid)
        except ShapeError as exc:
            return str(exc)
    return None


def _references(value: Any) -> Iterable[Mapping[str, Any]]:
    if isinstance(value, Mapping):
        if len(value) == 1 and "__entity" in value and isinstance(value["__entity"], Mapping):
            yield value["__entity"]
            return
        for item in value.values():
            yield from _references(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _references(item)


# -- AVP -> Cedar JSON (the local endpoint) ---------------------------------------------


def cedar_value(value: Any, depth: int = 0) -> Any:
    """An AVP ``AttributeValue`` union back to Cedar JSON.

    Raises:
        ShapeError: not exactly one known member, or a malformed member.
    """
    if depth > 100:
        raise ShapeError("value nested deeper than 100 levels")
    if not isinstance(value, Mapping) or len(value) != 1:
        raise ShapeError("an AttributeValue must set exactly one member")
    ((member, inner),) = value.items()
    if member == "boolean" and isinstance(inner, bool):
        return inner
    if member == "long" and isinstance(inner, int) and not isinstance(inner, bool):
        return inner
    if member == "string" and isinstance(inner, str):
        return inner
    if member == "set" and isinstance(inner, list):
        return [cedar_value(item, depth + 1) for item in inner]
    if member == "record" and isinstance(inner, Mapping):
        return {key: cedar_value(item, depth + 1) for key, item in inner.items()}
    if member == "entityIdentifier" and isinstance(inner, Mapping):
        return {"__entity": cedar_uid(inner)}
    if member in _MEMBER_FUNCTIONS and isinstance(inner, str):
        pattern, low, high = _EXTENSION_FORMS[member]
        if not (low <= len(inner) <= high and pattern.fullmatch(inner)):
            raise ShapeError(f"invalid {member} value")
        return {"__extn": {"fn": _MEMBER_FUNCTIONS[member], "arg": inner}}
    raise ShapeError(f"unknown or malformed AttributeValue member {member!r}")


def cedar_uid(identifier: Any, *, action: bool = False) -> dict[str, str]:
    """An AVP EntityIdentifier (or ActionIdentifier) back to ``{"type", "id"}``.

    Raises:
        ShapeError: a missing member or a value past AVP's limits.
    """
    keys = ("actionType", "actionId") if action else ("entityType", "entityId")
    if not isinstance(identifier, Mapping) or not all(isinstance(identifier.get(k), str) for k in keys):
        raise ShapeError(f"an identifier needs {keys[0]} and {keys[1]}")
    entity_type, entity_id = identifier[keys[0]], identifier[keys[1]]
    problem = uid_problem(entity_type, entity_id, action=action)
    if problem:
        raise ShapeError(problem)
    return {"type": entity_type, "id": entity_id}


def cedar_entity(item: Any) -> dict[str, Any]:
    """An AVP EntityItem back to a Cedar JSON entity.

    Raises:
        ShapeError: a malformed item.
    """
    if not isinstance(item, Mapping) or "identifier" not in item:
        raise ShapeError("an EntityItem needs an identifier")
    entity: dict[str, Any] = {
        "uid": cedar_uid(item["identifier"]),
        "attrs": {key: cedar_value(value, 1) for key, value in (item.get("attributes") or {}).items()},
        "parents": [cedar_uid(parent) for parent in item.get("parents") or ()],
    }
    if item.get("tags"):
        entity["tags"] = {key: cedar_value(value, 1) for key, value in item["tags"].items()}
    return entity
