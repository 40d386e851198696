"""Strands tools described by a JSON schema, as MCP tools arrive (the model: ``ScriptedModel``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from strands.tools.tools import PythonAgentTool


def json_tool(name: str, schema: dict[str, Any], run: Callable[[dict[str, Any]], Any],
              description: str = "A tool.") -> PythonAgentTool:
    """A Strands tool described by a JSON schema (as MCP tools are) that hands ``run`` its raw input."""
    def call(tool_use: Any, **kwargs: Any) -> dict[str, Any]:
        return {"toolUseId": tool_use["toolUseId"], "status": "success",
                "content": [{"text": str(run(tool_use["input"]))}]}

    spec = {"name": name, "description": description, "inputSchema": {"json": schema}}
    return PythonAgentTool(name, spec, call)  # type: ignore[arg-type]
