"""examples/rag_filtering.py (part of `make demo`) and docs/rag.md run and show per-user context."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

DEMO = Path(__file__).resolve().parents[2] / "examples" / "rag_filtering.py"


def run_demo() -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(DEMO)],
        capture_output=True, text=True, timeout=120, check=False, cwd=DEMO.parent,
    )


def context_of(stdout: str, user: str) -> list[str]:
    lines = stdout.splitlines()
    start = next(n for n, line in enumerate(lines) if line.startswith(f"{user} ("))
    line = next(line for line in lines[start:] if "context for the model:" in line)
    return [chunk.strip() for chunk in line.split(":", 1)[1].split(",")]


def test_rag_demo_gives_two_users_different_correct_context() -> None:
    result = run_demo()
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    bob = {chunk.split("#")[0] for chunk in context_of(result.stdout, "bob")}
    carol = {chunk.split("#")[0] for chunk in context_of(result.stdout, "carol")}
    # bob: public, his own department's internal documents, and the roadmap shared with him
    assert bob <= {"acme-handbook", "acme-support-playbook", "acme-eng-roadmap"}
    # carol: finance (clearance 3) and public documents
    assert carol <= {"acme-handbook", "acme-budget", "acme-q3-results", "acme-vendor-contract"}
    assert not any(doc.startswith("globex") for doc in bob | carol)
    assert bob != carol
    assert "dropped" in result.stdout and "tenant-isolation" in result.stdout
    assert "rounds" in result.stdout


