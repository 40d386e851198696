"""What the calls in this context act for: the bound end user and the bound session.

Both are contextvars, bound by :meth:`Authorizer.acting_as` and
:meth:`Authorizer.session`. They are kept apart from the Authorizer so that
every wing (sessions, integrations) reads them without importing the
Authorizer, and so that the Authorizer knows whether a session is bound
without importing the session wing.
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass
from typing import TYPE_CHECKING

from agentauthz._errors import IdentityError
from agentauthz._model import Decision, Entity, EntityUID

if TYPE_CHECKING:
    from agentauthz.session._session import Session

__all__ = ["NO_END_USER", "Identity", "bound_identity", "bound_session", "no_end_user"]


@dataclass(frozen=True)
class Identity:
    """The end user an agent acts for, as bound by :meth:`Authorizer.acting_as`."""

    uid: EntityUID
    entity: Entity | None
    correlation_id: str | None


bound_identity: contextvars.ContextVar[Identity | None] = contextvars.ContextVar(
    "agentauthz_identity", default=None
)

bound_session: contextvars.ContextVar[Session | None] = contextvars.ContextVar(
    "agentauthz_session", default=None
)

NO_END_USER = (
    "no end user is bound: wrap the call in authz.acting_as(user) or pass the user in the "
    "integration's config (LangChain: RunnableConfig['configurable']['agentauthz_principal']; "
    "Strands: invocation_state['agentauthz_principal']; MCP: the verified access token; "
    "Bedrock Agents: action_group_handler(authz, principal=...) or verify_token=...)"
)
"""The message of every IdentityError raised because no end user is bound, on every path."""


def no_end_user(detail: str | None = None, *, decision: Decision | None = None) -> IdentityError:
    """The IdentityError for a call made with no end user bound (:data:`NO_END_USER`).

    Args:
        detail: what the raising path adds after the common message (an
            integration's own config key), or None.
        decision: the audited refusal, when the call was already recorded.

    Example:
        >>> str(no_end_user("this middleware reads RunnableConfig['configurable']['user']")).startswith(
        ...     "no end user is bound: wrap the call in authz.acting_as(user) or pass the user in")
        True
    """
    message = NO_END_USER if detail is None else f"{NO_END_USER}; {detail}"
    return IdentityError(message, decision=decision)
