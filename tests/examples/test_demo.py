"""`make demo` runs examples/demo.py: it must succeed and show both outcomes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo.py"


def run_demo() -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(DEMO)],
        capture_output=True, text=True, timeout=120, check=False, cwd=DEMO.parent,
    )


def test_demo_exits_zero_and_shows_allowed_and_denied_requests() -> None:
    result = run_demo()
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.strip().startswith("ALLOW") for line in lines)
    assert any(line.strip().startswith("DENY") for line in lines)


def test_demo_prints_determining_policy_ids_without_log_noise() -> None:
    result = run_demo()
    assert "tenant-isolation" in result.stdout
    assert "refund-finance-limit" in result.stdout
    assert "acme-no-external-email-after-confidential" in result.stdout  # the session section
    assert result.stderr == ""
