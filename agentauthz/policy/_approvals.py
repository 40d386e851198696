"""Policies a human may lift: ``@approval("required")`` forbids, checked as they load.

A forbid annotated ``@approval("required")`` turns a denial into "approval
required" (see :mod:`agentauthz.session._approvals`). An approval reaches Cedar
as plain context, ``context.session.approved``, so the same policies decide the
same on Verified Permissions. That only works for a forbid that an approval
actually lifts: one whose conditions are false whenever
``context.session.approved`` is true. Loading refuses, at ``file:line``, an
annotated policy that is no forbid, an annotation value other than
``"required"``, a forbid no approval could lift (asking a human for it
would change nothing), and one whose ``when`` condition tests ``context has
session`` (it would not apply to a call made without a session). A call made
without a session cannot evaluate ``context.session.approved``: Cedar skips
the policy, and the Authorizer denies the call all the same
(``Authorizer._approvals_evaluated``).

What counts as lifting, read on the policy's Cedar JSON (its EST), is
deliberately narrow: some ``when`` condition has ``!context.session.approved``
(or ``context.session.approved == false``) as one of its ``&&`` terms, or some
``unless`` condition is ``context.session.approved`` (or ``== true``), alone or
as one of its ``||`` terms, or with only ``has`` tests of ``context.session``
beside it under ``&&``. Anything cleverer is refused, never guessed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from agentauthz.policy._cedar_checks import policy_json

if TYPE_CHECKING:
    from agentauthz.policy._store import Policy, TemplateLink

__all__ = [
    "APPROVAL_ANNOTATION",
    "approvable_ids",
    "approval_problems",
    "is_approvable",
    "lifted_by_approval",
]

APPROVAL_ANNOTATION = "approval"
"""``@approval("required")``: a human may lift this forbid for one exact call."""

_REQUIRED = "required"
_APPROVED = {".": {"left": {".": {"left": {"Var": "context"}, "attr": "session"}}, "attr": "approved"}}


def is_approvable(policy: Policy) -> bool:
    """Whether ``policy`` is annotated ``@approval("required")``."""
    return policy.annotations.get(APPROVAL_ANNOTATION) == _REQUIRED


def approvable_ids(policies: Iterable[Policy], links: Iterable[TemplateLink]) -> frozenset[str]:
    """The ids of the approvable policies, and of the links of approvable templates."""
    chosen = {policy.id for policy in policies if is_approvable(policy)}
    return frozenset(chosen | {link.id for link in links if link.template in chosen})


def approval_problems(policies: Sequence[Policy]) -> list[str]:
    """One ``file:line: message`` per misused ``@approval`` annotation.

    Example:
        >>> from agentauthz.policy._store import PolicyStore
        >>> from agentauthz import PolicyError
        >>> try:
        ...     PolicyStore.from_text('@approval("required") forbid(principal, action, resource)'
        ...                           ' when { context.input.amount > 100 };')
        ... except PolicyError as exc:
        ...     print(exc.problems[0][:75])
        <text>:1: policy0 is @approval("required") but no approval can lift it: add
    """
    problems = []
    for policy in policies:
        if APPROVAL_ANNOTATION not in policy.annotations:
            continue
        value = policy.annotations[APPROVAL_ANNOTATION]
        if value != _REQUIRED:
            problems.append(f'{policy.location}: @approval({value!r}) must be "required"')
            continue
        body = policy_json(policy.text)
        if body is None or body.get("effect") != "forbid":
            problems.append(f'{policy.location}: {policy.id} is @approval("required") but is no '
                            "forbid: only a forbid can be lifted by an approval")
        elif not lifted_by_approval(body):
            problems.append(
                f'{policy.location}: {policy.id} is @approval("required") but no approval can lift '
                "it: add `&& !context.session.approved` to its when condition (or `unless { "
                "context.session.approved }`), so that a granted approval stops it from applying")
        elif _vanishes_without_session(body):
            problems.append(
                f'{policy.location}: {policy.id} is @approval("required") but does not apply without a '
                "session (`context has session` in its when condition): drop that test, so that a call "
                "made without a session is denied instead of let through")
    return problems


def lifted_by_approval(policy: Mapping[str, Any]) -> bool:
    """Whether a policy (Cedar JSON) does not apply whenever ``context.session.approved`` is true.

    Example:
        >>> head = "forbid(principal, action, resource) when { context.input.amount > 9 "
        >>> lifted_by_approval(policy_json(head + "&& !context.session.approved };"))
        True
        >>> lifted_by_approval(policy_json(head + "|| !context.session.approved };"))
        False
    """
    for condition in policy.get("conditions") or ():
        body = condition.get("body")
        if condition.get("kind") == "when" and _false_when_approved(body):
            return True
        if condition.get("kind") == "unless" and _true_when_approved(body):
            return True
    return False


def _false_when_approved(node: Any) -> bool:
    """``node`` is false whenever ``context.session.approved`` is true."""
    if not isinstance(node, Mapping) or len(node) != 1:
        return False
    (op, arg), = node.items()
    if op == "!":
        return _is_approved(arg.get("arg")) or _true_when_approved(arg.get("arg"))
    if op == "&&":
        return _false_when_approved(arg.get("left")) or _false_when_approved(arg.get("right"))
    if op == "==":
        return _compares(arg, False)
    return False


def _true_when_approved(node: Any) -> bool:
    """``node`` is true whenever ``context.session.approved`` is true (the record is then sent)."""
    if _is_approved(node):
        return True
    if not isinstance(node, Mapping) or len(node) != 1:
        return False
    (op, arg), = node.items()
    if op == "||":
        return _true_when_approved(arg.get("left")) or _true_when_approved(arg.get("right"))
    if op == "&&":
        return all(_true_when_approved(arg.get(side)) or _session_present(arg.get(side))
                   for side in ("left", "right"))
    if op == "==":
        return _compares(arg, True)
    return False


def _vanishes_without_session(policy: Mapping[str, Any]) -> bool:
    """Whether a ``when`` condition has ``context has session`` as one of its ``&&`` terms."""
    return any(condition.get("kind") == "when" and _has_session_term(condition.get("body"))
               for condition in policy.get("conditions") or ())


def _has_session_term(node: Any) -> bool:
    if not isinstance(node, Mapping) or len(node) != 1:
        return False
    (op, arg), = node.items()
    if op == "&&":
        return _has_session_term(arg.get("left")) or _has_session_term(arg.get("right"))
    return bool(op == "has" and arg.get("left") == {"Var": "context"} and arg.get("attr") == "session")


def _is_approved(node: Any) -> bool:
    return bool(node == _APPROVED)


def _compares(arg: Any, value: bool) -> bool:
    if not isinstance(arg, Mapping):
        return False
    left, right = arg.get("left"), arg.get("right")
    return (_is_approved(left) and right == {"Value": value}) or (
        _is_approved(right) and left == {"Value": value})


def _session_present(node: Any) -> bool:
    """``context has session`` or ``context.session has approved``: true whenever an approval is sent."""
    if not isinstance(node, Mapping) or set(node) != {"has"}:
        return False
    test = node["has"]
    return bool((test.get("left") == {"Var": "context"} and test.get("attr") == "session") or (
        test.get("left") == _APPROVED["."]["left"] and test.get("attr") == "approved"))
