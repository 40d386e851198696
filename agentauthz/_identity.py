"""What the calls in this context act for: the bound end user and the bound session.

Both are contextvars, bound by :meth:`Authorizer.acting_as` and
:meth:`Authorizer.session`. They are kept apart from the Authorizer so that
every wing (sessions, integrations) reads them without importing the
Authorizer, and so that the Authorizer knows whether a session is bound
without importing the session wing.
"""

from __future__ import annotations

import contextvars
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from agentauthz._errors import IdentityError
from agentauthz._model import Decision, Entity, EntityUID, Request

if TYPE_CHECKING:
    from agentauthz.session._session import Session

__all__ = [
    "NO_AGENT",
    "NO_END_USER",
    "OUTSIDE_GRANT",
    "Agent",
    "Identity",
    "bound_identity",
    "bound_session",
    "grant_requests",
    "no_end_user",
    "within_grant",
]

_AGENT_ATTRIBUTES = ("version", "purpose")


@dataclass(frozen=True)
class Agent:
    """The AI agent that acts for the end user: its own identity, beside the user's.

    The end user stays the principal of every request; the agent is
    ``context.agent``, an entity (``Agent::"<id>"``) whose attributes policies
    read (``context.agent.version``, ``context.agent.purpose``), so a rule can
    restrict what one agent may do for any user::

        forbid (principal, action == Action::"issue_refund", resource)
        when { context has agent && context.agent == Agent::"support-bot" &&
               context.input.amount > 100 };

    With ``Authorizer(agent_grant=True)`` every request is also decided with the
    agent as principal: a call runs only when it is allowed for the user AND
    within the agent's own grant.

    Attributes:
        id: the agent's id (its client id, the ``act`` claim's ``sub``).
        version: its version (``"1.4.2"``), ``""`` when unknown.
        purpose: what it is declared for (``"customer support"``), ``""`` when unknown.
        entity_type: the Cedar entity type (``"Agent"``).
        attributes: more attributes of its entity (Cedar values).

    Example:
        >>> bot = Agent("support-bot", version="1.4", purpose="customer support")
        >>> str(bot.uid), bot.entity().attrs["purpose"]
        ('Agent::"support-bot"', 'customer support')
    """

    id: str
    version: str = ""
    purpose: str = ""
    entity_type: str = "Agent"
    attributes: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise IdentityError("an Agent's id is a non-empty string")
        if not isinstance(self.entity_type, str) or not self.entity_type:
            raise IdentityError("an Agent's entity_type is a non-empty string")
        if not isinstance(self.version, str) or not isinstance(self.purpose, str):
            raise IdentityError("an Agent's version and purpose are strings")
        if not isinstance(self.attributes, Mapping) or any(
                name in _AGENT_ATTRIBUTES for name in self.attributes):
            raise IdentityError("an Agent's attributes are a mapping without 'version' or 'purpose'")
        self.entity()  # attribute values Cedar cannot hold fail here, not at the first decision

    @property
    def uid(self) -> EntityUID:
        """The agent's entity uid."""
        return EntityUID(self.entity_type, self.id)

    def entity(self) -> Entity:
        """The agent's entity: ``version``, ``purpose`` and its other attributes."""
        return Entity(uid=self.uid, attrs={"version": self.version, "purpose": self.purpose,
                                           **self.attributes})

    @classmethod
    def from_claims(cls, claims: Mapping[str, Any], *, entity_type: str = "Agent") -> Agent | None:
        """The agent a verified token names in its ``act`` claim (OAuth token exchange, RFC 8693).

        ``act.sub`` is the agent's id; ``act.version`` (or ``ver``) and
        ``act.purpose`` fill its attributes when present. The outermost
        ``act`` is the current actor (a nested one is an earlier delegation).
        Only claims whose signature was verified: the token is what makes the
        agent's identity trustworthy.

        Raises:
            IdentityError: an ``act`` claim without a usable ``sub``.

        Example:
            >>> Agent.from_claims({"sub": "alice", "act": {"sub": "support-bot", "version": "2"}})
            Agent(id='support-bot', version='2', purpose='', entity_type='Agent', attributes={})
            >>> Agent.from_claims({"sub": "alice"}) is None
            True
        """
        act = claims.get("act")
        if act is None:
            return None
        subject = act.get("sub") if isinstance(act, Mapping) else None
        if not isinstance(subject, str) or not subject:
            raise IdentityError("the token's 'act' claim names no actor ('sub')")
        version = act.get("version", act.get("ver", ""))
        purpose = act.get("purpose", "")
        return cls(subject, version=version if isinstance(version, str) else str(version),
                   purpose=purpose if isinstance(purpose, str) else "", entity_type=entity_type)


@dataclass(frozen=True)
class Identity:
    """The end user an agent acts for, as bound by :meth:`Authorizer.acting_as`, and the agent, if named."""

    uid: EntityUID
    entity: Entity | None
    correlation_id: str | None
    agent: Agent | None = None


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


# -- agent grant: the user AND the agent --------------------------------------------------------

NO_AGENT = ("agent grant: no agent is named for this call "
            "(Authorizer(agent=...), acting_as(agent=...) or a token's act claim)")
"""Why agent-grant mode denies a request when no agent is named."""
OUTSIDE_GRANT = "the call is outside the agent's own grant"
"""Why agent-grant mode denies a request the user may make and the agent may not."""


def grant_requests(requests: Sequence[Request], entities: list[Entity],
                   agent: Agent | None) -> tuple[Sequence[Request], list[Entity]]:
    """What the engine decides: the requests, and (for an agent) their twins with the agent as principal.

    Example:
        >>> user = Request(EntityUID("User", "u"), EntityUID("Action", "read"), EntityUID("Doc", "d"))
        >>> asked, entities = grant_requests([user], [], Agent("bot"))
        >>> [str(request.principal) for request in asked], [str(e.uid) for e in entities]
        (['User::"u"', 'Agent::"bot"'], ['Agent::"bot"'])
    """
    if agent is None:
        return requests, entities
    twins = [request.replace(principal=agent.uid) for request in requests]
    known = any(entity.uid == agent.uid for entity in entities)
    return [*requests, *twins], entities if known else [*entities, agent.entity()]


def within_grant(requests: Sequence[Request], decisions: list[Decision], agent: Agent | None,
                 ) -> tuple[list[Decision], list[dict[str, Any]] | None]:
    """Each request's decision in agent-grant mode: the user's AND the agent's, and what the agent got.

    No agent named denies; an engine answering other than one Decision per
    asked request (the user's and the agent's) denies too.

    Example:
        >>> user = Request(EntityUID("User", "u"), EntityUID("Action", "read"), EntityUID("Doc", "d"))
        >>> decided, grants = within_grant([user], [Decision(True), Decision(False)], Agent("bot"))
        >>> decided[0].allowed, decided[0].errors[-1], grants[0]["decision"]
        (False, "the call is outside the agent's own grant", 'deny')
    """
    n = len(requests)
    if agent is None:
        return ([Decision.deny(NO_AGENT) for _ in requests],
                [{"agent": None, "decision": "deny", "reasons": [], "errors": [NO_AGENT]}] * n)
    if len(decisions) != 2 * n:  # a broken engine: half an answer must not pass for the user's whole one
        return [Decision.deny("engine returned a wrong number of decisions")] * n, None
    if not all(type(d) is Decision for d in decisions):
        return decisions[:n], None  # the Authorizer denies what is no Decision
    combined, grants = [], []
    for user, granted in zip(decisions[:n], decisions[n:], strict=True):
        grants.append({"agent": str(agent.uid), "decision": granted.outcome,
                       "reasons": list(granted.reasons), "errors": list(granted.errors)})
        if user.allowed and not granted.allowed:
            user = Decision(False, granted.reasons, (*granted.errors, OUTSIDE_GRANT), user.enforced,
                            user.policy_version)
        combined.append(user)
    return combined, grants
