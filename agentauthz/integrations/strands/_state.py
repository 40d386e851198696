"""What the intervention remembers per agent: invocations, decided calls, the strands profile's counts.

Strands hands every hook of one invocation the same ``invocation_state`` dict,
and hands the tools that dict too: a tool can write into it. So the end user
and the session are read once, when the invocation begins, and kept here
(:class:`Run`), keyed by that dict; later hooks never read them from the dict
again. A decided call (:class:`Decided`) is kept until its after-hook settles
it, so that the tool-execution check can compare what is about to run with
what was decided.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from agentauthz._identity import Identity
from agentauthz.session._session import Session, ToolCall
from agentauthz.tools._spec import ToolSpec

__all__ = ["ABSENT", "AgentState", "Decided", "Run", "canonical"]

ABSENT = object()
"""The value of a key the application did not put in ``invocation_state``."""


def canonical(value: Any) -> str | None:
    """Arguments as canonical JSON text (None: not JSON), to compare them type for type.

    ``True`` and ``1``, or ``1`` and ``1.0``, are equal in Python but not here.

    Example:
        >>> canonical({"b": True, "a": 1}) == canonical({"a": 1, "b": True})
        True
        >>> canonical({"a": 1}) == canonical({"a": True}), canonical({"a": 1}) == canonical({"a": 1.0})
        (False, False)
    """
    try:
        return json.dumps(value, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError):
        return None


@dataclass
class Run:
    """One invocation of an agent: the end user and session frozen when it began.

    Attributes:
        state: the invocation's ``invocation_state`` (kept, so its id stays its key).
        identity: the end user the invocation acts for.
        session: the session given for it (None: the one bound by the application, if any).
        kept: the application's values under the intervention's keys, put back
            when the invocation ends (a tool may have changed them).
    """

    state: dict[str, Any]
    identity: Identity
    session: str | Session | None
    kept: dict[str, Any]

    def restore(self) -> None:
        """Put the application's values back under the intervention's keys."""
        for key, value in self.kept.items():
            if value is ABSENT:
                self.state.pop(key, None)
            elif self.state.get(key, ABSENT) is not value:
                self.state[key] = value


@dataclass
class Decided:
    """An admitted call, until its after-hook settles it.

    Attributes:
        call: the decided call (its session reservation, if any).
        identity: the end user it was decided for.
        run: the invocation it belongs to (None: a direct ``agent.tool.<name>()`` call).
        requested: the ``tool_use`` the hook was given (a cancelled call's after-hook reports it).
        tool: the tool that was decided on.
        name: the tool name.
        arguments: the decided arguments as canonical JSON: what the tool must receive.
        counted: the strands profile's count this call holds, if any.
        spec: the spec the call was decided with (its guardrail screens the result).
    """

    call: ToolCall
    identity: Identity
    run: Run | None
    requested: Mapping[str, Any]
    tool: Any
    name: str
    arguments: str | None
    counted: tuple[str, str] | None = None
    spec: ToolSpec | None = None


@dataclass
class AgentState:
    """Everything the intervention keeps for one agent.

    Attributes:
        key: a random name for the agent (its default sessions are named after it:
            ``agent_id`` is ``"default"`` for every agent that sets none).
        runs: invocations in progress, by ``id(invocation_state)``.
        decided: admitted calls not settled yet, by ``(id(invocation_state), toolUseId)``
            (None while the call is being decided).
        counts: the strands profile's call counts, by (end user, tool).
        sessions: the ids of the sessions named after the agent (deleted with it).
    """

    key: str = field(default_factory=lambda: secrets.token_hex(8))
    runs: dict[int, Run] = field(default_factory=dict)
    decided: dict[tuple[int, str], Decided | None] = field(default_factory=dict)
    counts: dict[tuple[str, str], int] = field(default_factory=dict)
    sessions: set[str] = field(default_factory=set)

    def run_of(self, state: Mapping[str, Any]) -> Run | None:
        """The invocation this ``invocation_state`` belongs to, if one began with it."""
        run = self.runs.get(id(state))
        return run if run is not None and run.state is state else None

    def count(self, principal: str, tool: str) -> tuple[tuple[str, str], int]:
        """Count one more call of ``tool`` for ``principal``; the key to release it and the count."""
        key = (principal, tool)
        self.counts[key] = self.counts.get(key, 0) + 1
        return key, self.counts[key]

    def uncount(self, key: tuple[str, str] | None) -> None:
        """Give back a count taken by :meth:`count` (the call did not run)."""
        if key is not None and self.counts.get(key, 0) > 0:
            self.counts[key] -= 1
