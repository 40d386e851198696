"""examples/approvals.py (part of `make demo`): a held refund is approved once, then declined."""

from __future__ import annotations

from tests.examples.demos import demo_scripts, run

DEMO = "examples/approvals.py"


def test_the_approvals_demo_runs_the_approved_refund_once_and_nothing_else() -> None:
    assert DEMO in demo_scripts()
    result = run(DEMO)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    out = result.stdout
    assert out.count("supervisor asked:") == 2 and "held by: big-refunds" in out
    read = out.split("what the model read:")[1].split("audit trail:")[0].split("\n")
    told = [line.strip() for line in read if line.strip()]
    assert told[0] == "refunded 400 to bob" and len(told) == 3
    assert all("not permitted" in line for line in told[1:])
    trail = [line.split() for line in out.split("audit trail:")[1].strip().splitlines()]
    assert [words[2] if len(words) > 2 else "" for words in trail].count("used") == 1
    assert ["Action::\"session.approve\"", "allow", "granted"] in trail
