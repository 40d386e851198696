"""A Strands model that plays scripted turns: run an agent and its authorization offline (tests, demos).

Strands ships no test model. :class:`ScriptedModel` implements ``strands.models.model.Model``:
each model call plays the next turn (tool calls or text) and records the tools it was
offered and the last message it was given (after a tool call, the ``toolResult`` the model
read), so a test can check what the model saw of a refusal.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Sequence
from typing import Any

from strands.models.model import Model

__all__ = ["ScriptedModel", "Turn"]

#: One model turn: ("tool", name, input), ("tools", [(name, input), ...]) for parallel calls, ("text", text).
#: A call may name its toolUseId: ("tool", name, input, "id") or (name, input, "id").
Turn = tuple[Any, ...]


class ScriptedModel(Model):
    """Replays ``turns``; past the last one it answers "done".

    Args:
        turns: ``("tool", name, input)``, ``("tools", [(name, input), ...])`` for parallel
            calls, or ``("text", text)``; a call may name its toolUseId as a last item.

    Attributes:
        offered: the tool names offered at each model call.
        seen: the last message given at each model call.

    Example:
        >>> from strands import Agent, tool
        >>> @tool
        ... def ping(host: str) -> str:
        ...     "Ping a host."
        ...     return f"pong from {host}"
        >>> model = ScriptedModel([("tool", "ping", {"host": "db"}), ("text", "all good")])
        >>> _ = Agent(model=model, tools=[ping], callback_handler=None)("check the database")
        >>> model.texts(), model.offered
        (['pong from db'], [['ping'], ['ping']])
    """

    def __init__(self, turns: Sequence[Turn]) -> None:
        self.turns = list(turns)
        self.offered: list[list[str]] = []
        self.seen: list[Any] = []
        self.config: dict[str, Any] = {"model_id": "scripted"}
        self._ids = 0

    def update_config(self, **model_config: Any) -> None:
        self.config.update(model_config)

    def get_config(self) -> Any:
        return self.config

    async def structured_output(self, output_model: Any, prompt: Any, system_prompt: str | None = None,
                                **kwargs: Any) -> AsyncGenerator[Any, None]:
        raise NotImplementedError
        yield  # pragma: no cover

    async def stream(self, messages: Any, tool_specs: Any = None, system_prompt: str | None = None,
                     **kwargs: Any) -> AsyncGenerator[Any, None]:
        self.offered.append([spec["name"] for spec in tool_specs or []])
        self.seen.append(messages[-1] if messages else None)
        turn = self.turns.pop(0) if self.turns else ("text", "done")
        yield {"messageStart": {"role": "assistant"}}
        if turn[0] in ("tool", "tools"):
            calls = [turn[1:]] if turn[0] == "tool" else turn[1]
            for name, arguments, *named in calls:
                self._ids += 1
                use_id = named[0] if named else f"t{self._ids}"
                yield {"contentBlockStart": {"start": {"toolUse": {"toolUseId": use_id, "name": name}}}}
                yield {"contentBlockDelta": {"delta": {"toolUse": {"input": json.dumps(arguments)}}}}
                yield {"contentBlockStop": {}}
            yield {"messageStop": {"stopReason": "tool_use"}}
        else:
            yield {"contentBlockStart": {"start": {}}}
            yield {"contentBlockDelta": {"delta": {"text": turn[1]}}}
            yield {"contentBlockStop": {}}
            yield {"messageStop": {"stopReason": "end_turn"}}
        yield {"metadata": {"usage": {"inputTokens": 1, "outputTokens": 1, "totalTokens": 2},
                            "metrics": {"latencyMs": 0}}}

    def tool_results(self) -> list[dict[str, Any]]:
        """Every ``toolResult`` the model was given, in order."""
        return [block["toolResult"] for message in self.seen if message
                for block in message.get("content", []) if "toolResult" in block]

    def texts(self) -> list[str]:
        """The text of each tool result the model was given."""
        return [result["content"][0]["text"] for result in self.tool_results()]
