"""Strands Agents integration: one intervention decides every tool call (extra ``strands``).

``Agent(model=..., tools=[...], interventions=[AuthzIntervention(authz)])`` puts
Cedar decisions between a Strands agent and its tools:

* every tool call is validated against the tool's JSON input schema, decided
  for the end user, and run with exactly the arguments the policy evaluated;
  a refused call does not run and the model reads a generic refusal naming the
  decision id;
* each model call is offered only the tools the user could call;
* calls are counted in an agentauthz session per agent and end user
  (``context.session``), or, with ``profile="strands"``, policies written for
  Strands' own ``CedarAuthorization`` (``Resource::"agent"``,
  ``context.session.call_count``) run unchanged.

The end user comes from ``invocation_state[PRINCIPAL_KEY]`` (an
:class:`~agentauthz.EntityUID` or :class:`~agentauthz.Entity` put there by the
application) or ``authz.acting_as(...)``, read once per invocation. See
:class:`AuthzIntervention` and ``docs/integrations/strands.md``.

Example:
    >>> import agentauthz as az
    >>> from strands import Agent, tool
    >>> authz = az.Authorizer.from_text(
    ...     '@id("search") permit(principal, action == Action::"search", resource);', audit=[])
    >>> @tool
    ... def search(query: str) -> str:
    ...     '''Search the knowledge base.'''
    ...     return f"results for {query}"
    >>> agent = Agent(tools=[search], interventions=[AuthzIntervention(authz)], callback_handler=None)
    >>> with authz.acting_as(az.EntityUID("User", "alice")):
    ...     agent.tool.search(query="refunds")["status"]
    'success'
"""

from __future__ import annotations

from agentauthz.integrations.strands._intervention import (
    PRINCIPAL_KEY,
    SESSION_KEY,
    AuthzIntervention,
    SessionChoice,
)
from agentauthz.integrations.strands._scripted import ScriptedModel, Turn
from agentauthz.integrations.strands._specs import STRANDS_RESOURCE

__all__ = [
    "PRINCIPAL_KEY",
    "SESSION_KEY",
    "STRANDS_RESOURCE",
    "AuthzIntervention",
    "ScriptedModel",
    "SessionChoice",
    "Turn",
]
