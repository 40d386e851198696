"""The MCP example (examples/mcp, part of `make demo`) and the snippets of docs/integrations/mcp.md run."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "examples" / "mcp" / "client.py"
PAGE = ROOT / "docs" / "integrations" / "mcp.md"
FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```", re.S | re.M)


def test_the_example_client_gets_every_expected_outcome_from_the_server_over_loopback(
    tmp_path: Path
) -> None:
    result = subprocess.run([sys.executable, str(CLIENT)], capture_output=True, text=True, timeout=120,
                            check=False, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == ""
    outcomes = [line.split()[0] for line in result.stdout.splitlines() if line.startswith(("ALLOW", "DENY"))]
    assert outcomes.count("ALLOW") == 3 and outcomes.count("DENY") == 7
    assert "UNEXPECTED" not in result.stdout
    assert "no token: HTTP 401" in result.stdout
    assert "sent to the server: False" in result.stdout
    assert "tool bodies that ran: issue_refund, issue_refund, read_document" in result.stdout


def test_every_python_snippet_of_the_page_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "policies").symlink_to(ROOT / "policies", target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "__docs__"}
    page = PAGE.read_text(encoding="utf-8")
    snippets = [code for language, code in FENCE.findall(page) if language == "python"]
    assert len(snippets) >= 5
    for number, code in enumerate(snippets):
        exec(compile(code, f"{PAGE.name} block {number}", "exec"), namespace)
