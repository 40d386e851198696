"""Human approval as an outcome: a call held until a person grants it, then run exactly once.

A forbid annotated ``@approval("required")`` (checked as it loads, see
:mod:`agentauthz.policy._approvals`), or one whose id
``ApprovalConfig.approvable`` lists, may be lifted by a person for one exact
call. When a guarded call in a bound session is denied, it is **held** for
approval (instead of plainly denied) only if all of these hold:

* the denial has determining policies, no evaluation error, and every one of
  them is approvable: a denial by any other forbid stays a plain denial (a hard
  rule is never put to a person), and so does a denial because no permit
  matched (nothing a person grants would make one match);
* the action's ``context.session`` declares ``approved``, and the same request
  with ``context.session.approved`` true is allowed: the probe proves that
  granting would let the call run (it is no decision of the call, and has no
  audit event of its own).

The held call's denial carries an :class:`ApprovalRequest` (principal, action,
resource, the exact ``context.input`` the policies evaluated, the determining
policy ids, an expiry): a guarded tool raises
:class:`~agentauthz.ApprovalRequired`. Granting it
(:meth:`agentauthz.Authorizer.approve`) records a single-use approval in the
session, bound to the principal, action, resource and arguments, until the
expiry. The call made again with the same arguments is decided with
``context.session.approved`` true (plain context: Verified Permissions decides
it the same way) and admitting it uses the approval up, in the store
transaction that admits it, so two racing calls (threads or processes sharing a
SQLite store) never both run. The held call, the grant and the run each have
their audit event (``extra["approval"]``: ``"required"``, ``"granted"``,
``"used"``).
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from agentauthz._errors import ConfigurationError
from agentauthz._model import Decision, EntityUID, Request, to_cedar_value

__all__ = ["APPROVAL_INTERRUPT", "ApprovalConfig", "ApprovalRequest", "Approver", "approval_probe"]

APPROVAL_INTERRUPT = "agentauthz.approval"
"""Name (and ``type``) of the interrupt that puts a held call to a person (LangGraph, Strands)."""


@dataclass(frozen=True)
class ApprovalRequest:
    """A call held until a person approves it (``ApprovalRequired.approval``).

    Show it to the person who may approve (:meth:`describe`, :meth:`to_json`);
    grant it with :meth:`agentauthz.Authorizer.approve`, then make the call
    again with the same arguments: it runs once.

    Attributes:
        id: opaque id of the request.
        session_id: the session the call was held in (approvals live there).
        principal: the end user the call was made for.
        action: the call's action.
        resource: the resource it acts on.
        arguments: exactly what the policies evaluated (``context.input``, as
            Cedar JSON values); the approval covers these arguments only.
        why: ids of the ``@approval("required")`` policies that held it.
        expires_at: seconds since the epoch after which it cannot be granted,
            and after which a granted approval covers nothing.
        decision_id: the held call's decision id (its audit event).
    """

    id: str
    session_id: str
    principal: EntityUID
    action: EntityUID
    resource: EntityUID
    arguments: Mapping[str, Any]
    why: tuple[str, ...]
    expires_at: float
    decision_id: str = ""

    @property
    def expiry(self) -> _dt.datetime:
        """:attr:`expires_at` as an aware UTC datetime."""
        return _dt.datetime.fromtimestamp(self.expires_at, tz=_dt.UTC)

    def describe(self) -> str:
        """One line for the person asked: who, what, on what, with which arguments, why, until when.

        Example:
            >>> request = ApprovalRequest("r1", "s1", EntityUID("User", "alice"),
            ...     EntityUID("Action", "send_money"), EntityUID("Tool", "send_money"),
            ...     {"amount": 4200, "to": "DE89"}, ("large-transfers",), 0.0)
            >>> print(request.describe())
            User::"alice" asks to send_money on Tool::"send_money" with {"amount": 4200, "to": "DE89"} \
(held by large-transfers; approve before 1970-01-01T00:00:00+00:00)
        """
        arguments = json.dumps(dict(self.arguments), sort_keys=True, default=str)
        return (f"{self.principal} asks to {self.action.id} on {self.resource} with {arguments} "
                f"(held by {', '.join(self.why)}; approve before {self.expiry.isoformat()})")

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (for a review queue, an MCP elicitation, a Bedrock confirmation)."""
        return {
            "id": self.id, "session": self.session_id, "principal": str(self.principal),
            "action": str(self.action), "resource": str(self.resource),
            "arguments": to_cedar_value(dict(self.arguments), decimal_floats=True),
            "why": list(self.why), "expires_at": self.expires_at, "decision_id": self.decision_id,
        }


Approver = Callable[[ApprovalRequest], "Awaitable[bool | None] | bool | None"]
"""Asked whether a person approves a held call: True grants it, None leaves it held (queued for a
person), anything else refuses it (sync, or async for async calls)."""


@dataclass(frozen=True)
class ApprovalConfig:
    """How held calls are approved (``SessionConfig(approvals=ApprovalConfig(...))``).

    Attributes:
        approvable: ids of forbids a person may lift, besides the ones the
            engine's store annotates ``@approval("required")``. Verified
            Permissions keeps no annotations: pass ``store.approvable`` here.
        expires_in: how long a held call's request can be granted, and its
            approval used.
        approver: asked for each held call of a guarded tool (``@authz.guard``,
            ``begin_tool_call`` and every integration built on it): True
            grants it and the call runs at once; None leaves it held (the
            approver queued it for a person); anything else refuses it (a
            plain denial, audited). An exception propagates and the call does
            not run. A coroutine function serves async calls only. Without
            one, the call raises :class:`~agentauthz.ApprovalRequired` (or the
            integration asks the person its own way).

    Example:
        >>> ApprovalConfig(approvable={"big-refunds"}, expires_in=timedelta(minutes=5)).expires_in
        datetime.timedelta(seconds=300)
    """

    approvable: Collection[str] = frozenset()
    expires_in: timedelta = timedelta(minutes=15)
    approver: Approver | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.approvable, str):
            raise ConfigurationError(
                "ApprovalConfig.approvable takes a collection of policy ids, not one string")
        if self.expires_in <= timedelta(0):
            raise ConfigurationError("ApprovalConfig.expires_in must be positive")
        if self.approver is not None and not callable(self.approver):
            raise ConfigurationError("ApprovalConfig.approver must be callable")


def approval_probe(request: Request, decision: Decision, approvable: Collection[str]) -> Request | None:
    """The request to try with ``context.session.approved`` true, if an approval could lift the denial.

    None (a plain denial) unless the denial was decided, without errors, by
    approvable policies only, and the request carries ``context.session.approved``
    as false.

    Example:
        >>> alice, tool = EntityUID("User", "alice"), EntityUID("Tool", "pay")
        >>> asked = Request(alice, EntityUID("Action", "pay"), tool, {"session": {"approved": False}})
        >>> approval_probe(asked, Decision(False, ("big",)), {"big"}).context["session"]
        {'approved': True}
        >>> [approval_probe(asked, Decision(False, reasons), {"big"}) for reasons in [(), ("big", "hard")]]
        [None, None]
    """
    session = request.context.get("session")
    if decision.allowed or decision.errors or not decision.reasons:
        return None
    if not isinstance(session, Mapping) or session.get("approved") is not False:
        return None
    if not set(decision.reasons) <= set(approvable):
        return None
    return request.replace(context={**request.context, "session": {**session, "approved": True}})
