"""`make demo`'s Strands example (examples/strands_agent.py): the agent's refusals and their reasons."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.examples.demos import ROOT

EXAMPLE = ROOT / "examples" / "strands_agent.py"


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
    assert "IdentityError: no end user is bound" in out
    assert "Tool bodies that ran: issue_refund(900), search_documents\n" in out
    assert "refund-finance-limit" not in re.sub(r"policies: .*", "", out)  # policy ids only from the audit
