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
* the embedded engine decides it, with the store version the request was cut
  for: a new version could read an attribute the request lacks, and Cedar skips a
  ``forbid`` that errs on a missing attribute, a fail-open. So a request for a
  store that can reload is cut for the version current when it is built, and that
  version decides it (:func:`~agentauthz.engines.local.deciding_with`); if a reload
  came in between (an approval waited for), it is cut again for the version now
  current, which decides it. Verified Permissions holds its policies remotely: it
  gets the whole fact.

A read attribute is always sent, empty set or zero level included: leaving out
an empty one would turn ``context.guardrail.input.pii.isEmpty()`` into an error.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from agentauthz._model import EntityUID
from agentauthz.policy._store import PolicySnapshot
from agentauthz.session._facts import attributes_read
from agentauthz.session._session import SchemaShapes

__all__ = ["FACT_PATH", "InputFactReads"]

#: Where the fact of a call's own arguments sits in the context.
FACT_PATH: tuple[str, ...] = ("guardrail", "input")


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
        read = attributes_read(snapshot.policies, FACT_PATH)
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
