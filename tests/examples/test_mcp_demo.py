"""`make demo`'s MCP example (examples/mcp): a server behind the middleware and the clients that call it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.examples.demos import ROOT

CLIENT = ROOT / "examples" / "mcp" / "client.py"


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
