"""LangChain integration: authorized tools and agent middleware (extra ``langchain``).

Three ways to put Cedar decisions between a LangChain agent and its tools
(and :class:`AuthorizedRetriever`, re-exported here, for what it retrieves):

* :class:`AuthorizedTool` wraps any ``BaseTool``; every call is decided for the
  end user before the wrapped tool runs.
* :func:`authorize_tools` wraps a list of tools at once.
* :class:`AuthzMiddleware` plugs into ``langchain.agents.create_agent``
  (langchain v1): it decides every tool call in ``wrap_tool_call`` and shows the
  model, in ``wrap_model_call``, only the tools the user could use.

How each tool's calls become Cedar requests is one :class:`~agentauthz.ToolSettings`
per tool (``settings=``), the same object for all three.

The end user comes from ``RunnableConfig["configurable"][principal_key]`` (an
:class:`~agentauthz.EntityUID` or :class:`~agentauthz.Entity` put there by the
application) or from ``authz.acting_as(...)``; with neither, every path raises
the same :class:`~agentauthz.IdentityError`, naming both. Tool arguments never
name the principal.
The session (:mod:`agentauthz.session._session`) comes from
``RunnableConfig["configurable"][session_key]`` (default ``"agentauthz_session"``:
the conversation id, e.g. the thread id, or a Session) or ``authz.session(...)``;
tool calls are then decided with ``context.session`` and counted once they complete.
A tool argument marked ``Annotated[T, az.Injected]`` is the application's: models
are shown the tool without it, a model that sends it is refused, and its value
comes from ``RunnableConfig["configurable"][INJECTED_KEY]`` (a mapping by argument name).

On every path the tool runs with exactly the arguments the policy evaluated:
the model's arguments validated by the tool's :class:`~agentauthz.ToolSpec`
(:meth:`~agentauthz.ToolSpec.arguments`: an argument the schema does not
declare is refused, values are coerced), never the raw ones. A refused call
answers the model with :meth:`Authorizer.refusal <agentauthz.Authorizer.refusal>`:
an error ``ToolMessage`` naming the decision's id, not its policies, the same
whether the middleware or an :class:`AuthorizedTool` refused.

Authorization is never done in a callback handler: LangChain logs and swallows
exceptions raised by callback handlers (unless ``raise_error`` is set), so a
denial there would let the call go ahead.

Example:
    >>> import agentauthz as az
    >>> from langchain_core.tools import tool
    >>> authz = az.Authorizer.from_text(
    ...     '@id("search") permit(principal, action == Action::"search", resource);')
    >>> @tool
    ... def search(query: str) -> str:
    ...     '''Search the knowledge base.'''
    ...     return f"results for {query}"
    >>> [safe_search] = authorize_tools([search], authz)
    >>> config = {"configurable": {PRINCIPAL_KEY: az.EntityUID("User", "alice")}}
    >>> safe_search.invoke({"query": "refunds"}, config=config)
    'results for refunds'
"""

from __future__ import annotations

# _tools first: without langchain-core, its ImportError names the extra to install.
from agentauthz.integrations.langchain._tools import AuthorizedTool, authorize_tools  # isort: skip
from agentauthz.integrations.langchain._approvals import APPROVAL_INTERRUPT, interrupt_approver
from agentauthz.integrations.langchain._config import INJECTED_KEY, PRINCIPAL_KEY, SESSION_KEY
from agentauthz.integrations.langchain._middleware import AuthzMiddleware
from agentauthz.integrations.langchain._retrieval import AuthorizedRetriever, RetrievalResult, RetrievalStats

__all__ = [
    "APPROVAL_INTERRUPT",
    "INJECTED_KEY",
    "PRINCIPAL_KEY",
    "SESSION_KEY",
    "AuthorizedRetriever",
    "AuthorizedTool",
    "AuthzMiddleware",
    "RetrievalResult",
    "RetrievalStats",
    "authorize_tools",
    "interrupt_approver",
]
