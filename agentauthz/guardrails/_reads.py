"""Which attributes of ``context.guardrail.input`` a request must carry: those a policy can read.

Cedar reads every attribute of a request's context, whether a policy looks at
it or not: the 12 attributes of the input fact cost the embedded engine about
as much as the rest of a small request. An attribute no policy of the store
names cannot change a decision, so the request leaves it out, on three
conditions, each of which keeps the decision exactly what the whole fact gives:

* every policy's reads are known: the fact is reached only as
  ``context.guardrail.input.<attribute>`` or ``... has <attribute>`` (an ``if``
  choosing between context records counts too). A record used whole
  (``context.guardrail.input == {...}``, ``context == ...``, inside a record or
  set literal) compares every attribute: then the request carries them all;
* the schema lets the attribute be absent (declared optional,
  ``pii?: Set<String>``); with a required attribute the request would fail the
  schema check. The generated schema declares them all required, so a store with it
  gets the whole fact; a store without a schema needs nothing declared;
* the store cannot change between building the request and deciding it (no
  ``reload``): a new version could read an attribute the request lacks, and
  Cedar skips a ``forbid`` that errs on a missing attribute, a fail-open.

A read attribute is always sent, empty set or zero level included: leaving out
an empty one would turn ``context.guardrail.input.pii.isEmpty()`` into an error.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import cedarpy

from agentauthz._model import EntityUID
from agentauthz.policy._store import Policy, PolicySnapshot
from agentauthz.session._session import SchemaShapes

__all__ = ["FACT_PATH", "InputFactReads", "attributes_read"]

#: Where the fact of a call's own arguments sits in the context.
FACT_PATH: tuple[str, ...] = ("guardrail", "input")

Path = tuple[str, ...]


def attributes_read(policies: Iterable[Policy], path: Path = FACT_PATH) -> frozenset[str] | None:
    """The attributes of the record ``context.<path>`` the policies read (``.`` or ``has``).

    None when a policy may use the record, or a record holding it, whole (an
    equality, a literal holding it), or cannot be read: every attribute counts then.

    Example:
        >>> from agentauthz.policy._store import PolicyStore
        >>> store = PolicyStore.from_text('forbid(principal, action, resource) when {'
        ...     ' context.guardrail.input.pii.contains("EMAIL") || context.guardrail.input has topics };')
        >>> sorted(attributes_read(store.policies))
        ['pii', 'topics']
        >>> print(attributes_read(PolicyStore.from_text(
        ...     'forbid(principal, action, resource) when { context.guardrail == {} };').policies))
        None
    """
    found: set[str] = set()
    for policy in policies:
        if "context" not in policy.text:  # a variable's name has no escapes: no context, no reads
            continue
        try:
            document = json.loads(cedarpy.policies_to_json_str(policy.text))
        except Exception:  # unreadable here: assume it reads everything
            return None
        if not _reads(document, path, found):
            return None
    return frozenset(found)


def _reads(document: Any, path: Path, found: set[str]) -> bool:
    """Add the attributes of ``context.<path>`` an EST reads to ``found``; False if it may use it whole."""
    stack: list[Any] = [document]
    while stack:
        node = stack.pop()
        if isinstance(node, list):
            stack.extend(node)
            continue
        if not isinstance(node, Mapping):
            continue
        if node.get("Var") == "context" and len(node) == 1:
            return False  # the context itself as a value (``context == ...``): it holds the fact
        access = _access(node)
        if access is None:
            stack.extend(node.values())
            continue
        operator, body = access
        names = [body["attr"]]
        bottom = body.get("left")
        while (inner := _access(bottom)) is not None and inner[0] == ".":
            names.append(inner[1]["attr"])
            bottom = inner[1].get("left")
        names.reverse()
        for root in _context_paths(bottom):
            read = (*root, *names)
            if read[:len(path)] == path and len(read) > len(path):
                found.add(read[len(path)])
            elif operator == "." and path[:len(read)] == read:
                return False  # ``context.guardrail.input`` (or above) as a value: compared whole
        stack.extend(_below(bottom))
    return True


def _below(bottom: Any) -> list[Any]:
    """What is left to walk of an access's operand once the context paths it may be are counted.

    A path to ``context`` is done; an ``if`` choosing between records leaves its
    condition and whatever its branches hold besides such paths.
    """
    left: list[Any] = []
    pending = [bottom]
    while pending:
        node = pending.pop()
        if node == {"Var": "context"}:
            continue
        access = _access(node)
        if access is not None and access[0] == "." and _context_paths(node):
            continue  # context.a.b: a chain of attribute reads down to the context
        branch = node.get("if-then-else") if isinstance(node, Mapping) and len(node) == 1 else None
        if isinstance(branch, Mapping):
            left.append(branch.get("if"))
            pending.extend((branch.get("then"), branch.get("else")))
            continue
        left.append(node)
    return left


def _access(node: Any) -> tuple[str, Mapping[str, Any]] | None:
    if not isinstance(node, Mapping) or len(node) != 1:
        return None
    for operator in (".", "has"):
        body = node.get(operator)
        if isinstance(body, Mapping) and isinstance(body.get("attr"), str):
            return operator, body
    return None


def _context_paths(expression: Any) -> list[Path]:
    """The ``context`` paths an expression may be: ``context``, ``context.a``, either branch of an ``if``."""
    paths: list[Path] = []
    stack: list[tuple[Any, Path]] = [(expression, ())]
    while stack:
        node, below = stack.pop()
        if not isinstance(node, Mapping) or len(node) != 1:
            continue
        if node.get("Var") == "context":
            paths.append(below)
            continue
        access = _access(node)
        if access is not None and access[0] == ".":
            stack.append((access[1].get("left"), (access[1]["attr"], *below)))
            continue
        branch = node.get("if-then-else")
        if isinstance(branch, Mapping):
            stack.append((branch.get("then"), below))
            stack.append((branch.get("else"), below))
    return paths


class InputFactReads:
    """For one store version: the attributes of ``context.guardrail.input`` each action's requests omit.

    Args:
        snapshot: the store version the requests are decided with.
        attributes: every attribute of the fact.

    Example:
        >>> from agentauthz.policy._store import PolicyStore
        >>> store = PolicyStore.from_text('forbid(principal, action, resource) when {'
        ...     ' context.guardrail.input.pii.contains("EMAIL") };')
        >>> reads = InputFactReads(store.snapshot, ("available", "pii", "topics"))
        >>> sorted(reads.omitted("send", lambda name: EntityUID("Action", str(name))))
        ['available', 'topics']
    """

    def __init__(self, snapshot: PolicySnapshot, attributes: Iterable[str]) -> None:
        self.snapshot = snapshot
        read = attributes_read(snapshot.policies)
        self._unread = frozenset() if read is None else frozenset(attributes) - read
        self._shapes: SchemaShapes | None = None
        if snapshot.schema_text is not None and self._unread:
            try:
                self._shapes = SchemaShapes(snapshot.schema_text)
            except Exception:  # a schema this cannot read: the requests carry everything
                self._unread = frozenset()
        self._omitted: dict[str | EntityUID, frozenset[str]] = {}

    def omitted(self, action: str | EntityUID,
                resolve: Callable[[str | EntityUID], EntityUID]) -> frozenset[str]:
        """The attributes no policy reads that ``action``'s schema lets a request leave out.

        Args:
            action: the action, as a request names it.
            resolve: the action's uid as the engine resolves it (the schema's namespace).
        """
        found = self._omitted.get(action)
        if found is None:
            found = self._unread
            if self._shapes is not None and found:
                try:
                    optional = self._shapes.optional_attributes(resolve(action), *FACT_PATH)
                except Exception:  # a schema or action this cannot read: the request carries everything
                    optional = None
                found = found & optional if optional is not None else frozenset()
            self._omitted[action] = found
        return found
