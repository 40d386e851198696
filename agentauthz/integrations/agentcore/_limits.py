"""AgentCore Policy's limits, checked before anything is sent.

botocore checks required members and minimum lengths, but not maximum lengths,
patterns or enums (measured with botocore 1.44): a policy the service would
refuse, or cut, must be caught here, each violation with its own message.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import cedarpy

from agentauthz.avp._wire import DESCRIPTION_PREFIX

__all__ = [
    "MAX_ENGINE_BYTES",
    "MAX_POLICY_BYTES",
    "limit_problems",
    "policy_description",
    "policy_names",
]

#: One statement: the service model's 10,000 characters, counted as UTF-8 bytes (10 KB).
MAX_POLICY_BYTES = 10_000
MIN_POLICY_CHARS = 35
#: All statements of one policy engine (the resource): 200 KB.
MAX_ENGINE_BYTES = 200_000
MAX_NAME = 48
MAX_DESCRIPTION = 4096
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_DECIMAL = re.compile(r"-?[0-9]+\.[0-9]{1,4}")


def policy_names(ids: Iterable[str]) -> dict[str, str]:
    """Our id -> its AgentCore policy name (``[A-Za-z][A-Za-z0-9_]*``, at most 48 characters).

    An id that is already a valid name keeps it; others have every other
    character replaced by ``_``, and a name that would be too long or would
    collide with another's ends in a hash of the id, so the same id always
    gets the same name.

    Example:
        >>> policy_names(["refund-support-limit", "ok_name"])
        {'refund-support-limit': 'refund_support_limit', 'ok_name': 'ok_name'}
    """
    wanted = {our_id: _plain(our_id) for our_id in ids}
    counts: dict[str, int] = {}
    for name in wanted.values():
        counts[name] = counts.get(name, 0) + 1
    names: dict[str, str] = {}
    for our_id, name in wanted.items():
        if len(name) > MAX_NAME or counts[name] > 1 or (name != our_id and name in wanted):
            digest = hashlib.sha256(our_id.encode("utf-8")).hexdigest()[:10]
            name = f"{name[:MAX_NAME - 11]}_{digest}"
        names[our_id] = name
    return names


def _plain(our_id: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_]", "_", our_id)
    return name if name[:1].isalpha() else f"p_{name}"


def policy_description(our_id: str) -> str:
    """``agentauthz:<our id>``: how a pushed policy is found again (as on Verified Permissions)."""
    return DESCRIPTION_PREFIX + our_id


def limit_problems(policies: Sequence[Any]) -> list[str]:
    """One message per limit a set of translated policies breaks (empty when it can be pushed).

    Checks, per policy: statement size (35 characters to 10 KB), name and
    description, decimal literals (at most four fractional digits, no float
    forms), the resource rule (named actions need ``resource ==`` the gateway,
    an open action needs ``resource is AgentCore::Gateway``, an open resource
    is refused); and the 200 KB of all statements in one policy engine.
    """
    problems: list[str] = []
    names = policy_names(p.id for p in policies)
    total = 0
    for policy in policies:
        where = f"{policy.location}: policy {policy.id!r}"
        size = len(policy.statement.encode("utf-8"))
        total += size
        if size > MAX_POLICY_BYTES:
            problems.append(f"{where}: the AgentCore statement is {size} bytes; at most {MAX_POLICY_BYTES}")
        if len(policy.statement) < MIN_POLICY_CHARS:
            problems.append(f"{where}: the AgentCore statement is shorter than {MIN_POLICY_CHARS} characters")
        if not _NAME.fullmatch(names[policy.id]) or len(names[policy.id]) > MAX_NAME:
            problems.append(f"{where}: no valid AgentCore policy name")
        if len(policy_description(policy.id)) > MAX_DESCRIPTION:
            problems.append(f"{where}: id too long to keep in a policy description "
                            f"(at most {MAX_DESCRIPTION - len(DESCRIPTION_PREFIX)} characters)")
        problems += [f"{where}: {problem}" for problem in statement_problems(policy.statement)]
    if total > MAX_ENGINE_BYTES:
        problems.append(f"the policies take {total} bytes; a policy engine holds at most {MAX_ENGINE_BYTES}")
    return problems


def statement_problems(statement: str) -> list[str]:
    """Decimal literals and the resource rule of one AgentCore statement."""
    document = json.loads(cedarpy.policies_to_json_str(statement))
    [policy] = document["staticPolicies"].values()
    problems = [f"decimal({literal!r}): AgentCore numbers are decimals with 1 to 4 fractional digits"
                for literal in _decimal_literals(policy) if not _DECIMAL.fullmatch(literal)]
    action, resource = policy["action"], policy["resource"]
    if resource["op"] == "All":
        problems.append("AgentCore refuses a policy whose resource is unconstrained")
    elif action["op"] != "All" and resource["op"] != "==":
        problems.append("a policy that names actions must name the gateway "
                        "(resource == AgentCore::Gateway::...)")
    elif action["op"] == "All" and resource["op"] != "is":
        problems.append("a policy for every action must test the type (resource is AgentCore::Gateway)")
    return problems


def _decimal_literals(node: Any) -> Iterable[str]:
    if isinstance(node, Mapping):
        call = node.get("decimal")
        if isinstance(call, list) and call and isinstance(call[0], Mapping) and isinstance(
                call[0].get("Value"), str):
            yield call[0]["Value"]
        for value in node.values():
            yield from _decimal_literals(value)
    elif isinstance(node, list):
        for item in node:
            yield from _decimal_literals(item)
