"""The exceptions agentauthz raises.

Every error the library raises derives from :class:`AuthzError`, so an
application can catch one type at its boundary::

    AuthzError
    ├── AccessDenied          a policy (or the lack of one) denied the call; carries .decision
    │   └── ApprovalRequired  held until a person approves it; carries .approval (the request)
    ├── PolicyError           policies, schema, entities or links failed to load or validate
    ├── EngineError           the authorization backend failed (cedarpy, Verified Permissions)
    │   └── GuardrailUnavailable  a guardrail detector could not assess a text (error, throttling)
    ├── ConfigurationError    the library was set up or called inconsistently
    ├── IdentityError         a call needs an end user and none is bound
    └── InvalidValueError     a Python value has no Cedar equivalent (float, huge int, ...)
        └── InvalidArguments  a tool call's arguments do not fit the tool; carries the refusal .decision

Backend exceptions are translated at the boundary with ``raise ... from`` so the
original stays available as ``__cause__``. Messages name the problem, never
attribute values, tokens or whole entity dumps.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agentauthz._model import Decision
    from agentauthz.session._approvals import ApprovalRequest

__all__ = [
    "AccessDenied",
    "ApprovalRequired",
    "AuthzError",
    "ConfigurationError",
    "EngineError",
    "GuardrailUnavailable",
    "IdentityError",
    "InvalidArguments",
    "InvalidValueError",
    "PolicyError",
]


class AuthzError(Exception):
    """Root of every error agentauthz raises."""


class AccessDenied(AuthzError):
    """A request was denied.

    Attributes:
        decision: the :class:`~agentauthz.Decision` that denied it, with the
            determining policy ids and any evaluation errors.
    """

    def __init__(self, decision: Decision, message: str | None = None, *, subject: str = "") -> None:
        self.decision = decision
        if message is None:
            message = f"{subject}: access denied" if subject else "access denied"
            if decision.reasons:
                message += " by " + ", ".join(decision.reasons)
            elif decision.errors:
                message += " (evaluation errors)"
            else:
                message += " (no policy permits it)"
        super().__init__(message)


class ApprovalRequired(AccessDenied):
    """A call was held: only ``@approval("required")`` forbids denied it, and a person may lift them.

    Granting ``approval`` (:meth:`agentauthz.Authorizer.approve`) lets exactly
    this call (same end user, session, action, resource and arguments) run
    once, before the request's expiry. Until then it is a denial like any
    other: catching ``AccessDenied`` catches it too.

    Attributes:
        decision: the held call's denial.
        approval: the :class:`~agentauthz.session._approvals.ApprovalRequest`
            (principal, action, resource, arguments, why, expiry).
    """

    def __init__(self, decision: Decision, approval: ApprovalRequest, *, subject: str = "") -> None:
        self.approval = approval
        message = f"{subject}: approval required" if subject else "approval required"
        super().__init__(decision, f"{message} (request {approval.id})")


class PolicyError(AuthzError):
    """Policies, schema, entities or template links could not be loaded or validated.

    Attributes:
        problems: one ``"file:line: message"`` string per problem found; the
            exception message lists them all.
    """

    def __init__(self, problems: list[str] | str) -> None:
        self.problems: tuple[str, ...] = (
            (problems,) if isinstance(problems, str) else tuple(problems)
        )
        count = len(self.problems)
        message = self.problems[0] if count == 1 else f"{count} problems:\n" + "\n".join(self.problems)
        super().__init__(message)


class EngineError(AuthzError):
    """The authorization backend failed to produce a decision."""


class GuardrailUnavailable(EngineError):
    """A guardrail detector could not assess a text (service error, throttling, bad answer).

    The tool and retrieval paths turn it into the fact ``available == false``
    (policies decide) unless the guardrail was set up with ``on_error="raise"``.
    """


class ConfigurationError(AuthzError):
    """agentauthz was configured or called in an inconsistent way."""


class IdentityError(AuthzError):
    """A call needs the end user's identity and none is bound (see ``Authorizer.acting_as``).

    Also raised when the bound end user may not use what the call names (a
    session another end user owns).

    Attributes:
        decision: the audited refusal when the Authorizer already recorded the
            refused call (its ``id`` is the audit event's ``decision_id``), so an
            integration refusing the call does not record it twice; else None.
    """

    def __init__(self, message: str, *, decision: Decision | None = None) -> None:
        super().__init__(message)
        self.decision = decision


class InvalidValueError(AuthzError):
    """A Python value cannot be represented as a Cedar value."""


class InvalidArguments(InvalidValueError):
    """A tool call was refused because its arguments do not fit the tool.

    An argument the tool does not declare, a missing one, or one of the wrong
    type: the call never reaches a policy or the tool. The refusal is audited.

    Attributes:
        decision: the audited refusal (a denial whose ``errors`` name the
            problems and whose ``id`` is the audit event's ``decision_id``).
    """

    def __init__(self, message: str, decision: Decision) -> None:
        super().__init__(message)
        self.decision = decision
