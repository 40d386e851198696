"""The Strands example (examples/strands_agent.py, part of `make demo`) and the snippets of
docs/integrations/strands.md run against the current API."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "strands_agent.py"
PAGE = ROOT / "docs" / "integrations" / "strands.md"
FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```", re.S | re.M)


def test_the_example_runs_offline_and_shows_each_refusal_with_its_reason() -> None:
    result = subprocess.run([sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=120,
                            check=False, cwd=ROOT / "examples")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    out = result.stdout
    assert "ALLOW  issue_refund(order_id='o-1002', amount=900)" in out
    assert "refused: tool 'issue_refund' got invalid arguments: currency: unknown argument" in out
    assert "refund-over-1000-needs-approval" in out and "tenant-isolation" in out
    assert "model was offered: search_documents, read_document, delete_document, send_email\n" in out
    assert "IdentityError: no end user for this Strands invocation" in out
    assert "Tool bodies that ran: issue_refund(900), search_documents\n" in out
    assert "refund-finance-limit" not in re.sub(r"policies: .*", "", out)  # policy ids only from the audit


def test_make_demo_runs_the_strands_example() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "$(BIN)/python examples/strands_agent.py" in makefile


def test_every_python_snippet_of_the_docs_page_runs(monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(ROOT)
    monkeypatch.setattr(sys, "path", list(sys.path))
    namespace: dict[str, object] = {"__name__": "__docs__"}
    ran = 0
    for number, match in enumerate(FENCE.finditer(PAGE.read_text(encoding="utf-8"))):
        if match.group(1) == "python" and number > 0:  # the first block only shows the shape
            exec(compile(match.group(2), f"{PAGE.name} block {number}", "exec"), namespace)
            ran += 1
    assert ran >= 5
    printed = capsys.readouterr().out
    for comment in re.findall(r"print\(.*\)\s+# (.+)", PAGE.read_text(encoding="utf-8")):
        assert comment.rstrip(". ") in printed, comment
