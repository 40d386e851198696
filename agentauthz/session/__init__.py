"""Sessions: what the agent already did and saw, as facts for Cedar policies.

A session is one conversation of an agent. While one is bound
(``with authz.session("conversation-42") as s:``, or an integration's config
key), agentauthz records

* the labels of every resource the agent was allowed to read (the retrieval
  filter records what it lets through; ``SessionConfig(reads=...)`` adds the
  resources of read tools),
* every tool call that was allowed and completed: counts per action, counts in
  a sliding time window, running sums of declared numeric arguments (the total
  refunded), and the last actions,
* approvals granted by the application or a human (:meth:`Session.approve`),
  each for one exact call: the session owner's, of one action, on one resource,
  with exactly the given arguments,
* with ``SessionConfig(provenance=Provenance(...))``, the values of labelled
  sources (what the user said, tool results, retrieved documents, approvals),
  so each argument of a tracked tool carries the labels of the sources it
  appears in (``context.provenance``; see docs/provenance.md),

and every request decided in the session carries them as ``context.session``,
so rules that span a conversation are plain Cedar::

    forbid (principal, action == Action::"send_email", resource)
    when { context has session && context.session.seen.contains("confidential") &&
           !(context.input.to like "*@acme.example") };

The record (``agentauthz schema generate`` declares it as the stub's
``Session`` type, with one attribute per tool action)::

    type Session = {
      seen: Set<String>,          // labels of the resources read in the session
      actions: Set<String>,       // actions called (completed or in flight)
      last_action: String,        // the latest of them ("" before the first call)
      last_actions: Set<String>,  // actions among the last N calls (SessionConfig.history)
      approved: Bool,             // an approval of this session covers this request
      calls: { <action>: Long, ... },         // calls per tool action
      window_calls: { <action>: Long, ... },  // ... within SessionConfig.window (1 hour)
      totals: { <action>: { <argument>: Long | decimal } },  // running sums
    };

A session belongs to the end user whose decision or write created it (its
*owner*, recorded by the store). Every load and every write checks it: a
session id named for another end user (an id is only a name, and may come from
a client) is refused with :class:`~agentauthz.IdentityError` and an audit event.

A request made with no session bound has no ``context.session``: policies test
``context has session``. A schema may declare any subset of these attributes
(and of the actions in ``calls``); the record sent is cut to what the
request's action declares, so the request always conforms.

Counting is exact and never lets a call past a limit: a call is *in flight*
from the moment it is allowed until its tool returns, and *completed* then.
Decisions see completed and in-flight calls (parallel calls cannot overrun a
limit); a call that is denied, raises, or reports failure is released and never
counts. A call whose outcome is unknown (its process crashed, the store failed
while completing it) stays in flight and keeps counting. Every admitted call
gets its own key; the id its caller gave it (the model's tool call id) is a
label, and a repeated one is refused while its call is in flight or once it
completed. Each admission is a compare-and-swap on the session's version: if
the session changed while a call was being decided (a confidential document was
read in a parallel branch, another refund went out), the call is decided again.
A store that fails before the tool runs denies the call; every decision has
exactly one audit event whatever fails after it.

Example:
    >>> import agentauthz as az
    >>> authz = az.Authorizer.from_text(
    ...     '@id("at-most-2") forbid(principal, action == Action::"delete", resource)'
    ...     ' when { context has session && context.session.calls has delete &&'
    ...     ' context.session.calls.delete >= 2 };'
    ...     '@id("all") permit(principal, action, resource);', audit=[])
    >>> @authz.guard
    ... def delete(name: str) -> str:
    ...     return f"deleted {name}"
    >>> with authz.acting_as(az.EntityUID("User", "alice")), authz.session("c-1") as s:
    ...     print(delete("a"), delete("b"))
    ...     try:
    ...         delete("c")
    ...     except az.AccessDenied as exc:
    ...         print(exc.decision.reasons)
    ...     print(s.state().calls)
    deleted a deleted b
    ('at-most-2',)
    {'delete': 2}
"""

from __future__ import annotations

from agentauthz.session._approvals import APPROVAL_INTERRUPT, ApprovalConfig, ApprovalRequest
from agentauthz.session._dynamodb import DynamoDBSessionStore, create_table
from agentauthz.session._provenance import (
    DEFAULT_EXTRACTORS,
    Extractor,
    Provenance,
    ProvenanceStore,
    normalize,
)
from agentauthz.session._session import (
    SESSION_KEY,
    Approval,
    CallRecord,
    MemorySessionStore,
    Session,
    SessionConfig,
    SessionFacts,
    SessionSnapshot,
    SessionStore,
    SQLiteSessionStore,
    ToolCall,
    current_session,
    session_record_type,
)

__all__ = [
    "APPROVAL_INTERRUPT",
    "DEFAULT_EXTRACTORS",
    "SESSION_KEY",
    "Approval",
    "ApprovalConfig",
    "ApprovalRequest",
    "CallRecord",
    "DynamoDBSessionStore",
    "Extractor",
    "MemorySessionStore",
    "Provenance",
    "ProvenanceStore",
    "SQLiteSessionStore",
    "Session",
    "SessionConfig",
    "SessionFacts",
    "SessionSnapshot",
    "SessionStore",
    "ToolCall",
    "create_table",
    "current_session",
    "normalize",
    "session_record_type",
]
