"""Plans of decisions: the steps a sync method and its async twin share.

A plan is a generator that makes no engine call itself. It yields an
:class:`Ask` (requests to decide) and receives their decisions, or yields a
pause (seconds to wait before its next step) and receives ``[]``; what it
returns is the method's result. ``Authorizer._run`` drives a plan with
``engine.decide`` and ``time.sleep``, ``Authorizer._arun`` with
``await engine.adecide`` and ``asyncio.sleep``: a method and its async twin
differ only in the driver, as httpx's ``Client`` and ``AsyncClient`` share
``BaseClient``.

Example:
    >>> from agentauthz._model import Decision
    >>> def plan():
    ...     decisions = yield Ask([], [])
    ...     return len(decisions)
    >>> steps = plan()
    >>> next(steps)
    Ask(requests=[], entities=[], held=None)
    >>> try:
    ...     steps.send([Decision(allowed=True)])
    ... except StopIteration as done:
    ...     done.value
    1
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import NamedTuple, TypeAlias, TypeVar

from agentauthz._audit import AuditEvent, AuditSink
from agentauthz._model import Decision, Entity, Request

__all__ = ["Ask", "Held", "Plan", "Refused"]

T = TypeVar("T")

Held: TypeAlias = list[tuple[list[AuditSink], AuditEvent]]
"""Audit events of decisions held back until the session records the outcome (sinks, event)."""


class Ask(NamedTuple):
    """Requests a plan needs decided, in one engine call.

    Attributes:
        requests: the requests, decided in this order.
        entities: the entities given with them (the Authorizer adds the slice it gathers).
        held: where to hold their audit events instead of emitting them, or None.
    """

    requests: Sequence[Request]
    entities: list[Entity]
    held: Held | None = None


Plan: TypeAlias = Generator["Ask | float", list[Decision], T]
"""A plan returning ``T``: it yields an :class:`Ask` or a pause in seconds."""


class Refused(Exception):
    """The bound session refused requests before the engine decided them (each refusal audited).

    Control flow inside the Authorizer and its wings: never raised to a caller.
    """

    def __init__(self, decisions: list[Decision]) -> None:
        super().__init__("refused by the session")
        self.decisions = decisions
