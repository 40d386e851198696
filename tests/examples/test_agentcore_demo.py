"""`make demo`'s AgentCore example (examples/agentcore_gateway.py): refusals named, calls decided."""

from __future__ import annotations

from tests.examples.demos import run


def test_the_example_names_each_refusal_and_decides_the_calls_offline() -> None:
    result = run("examples/agentcore_gateway.py")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    out = result.stdout
    assert out.count("  refused  ") == 5 and "tenancy.cedar:12: policy 'tool-enabled-for-tenant'" in out
    assert "8 policies for the gateway" in out
    assert "ALLOW  bob   issue_refund(order_id='o-1001', amount=500)  [refund-support-limit]" in out
    assert "DENY   carol issue_refund(order_id='o-1005', amount=-200)  [refund-must-be-positive]" in out
    assert "[email-single-recipient]" in out
    assert 'AgentCore::OAuthUser::"bob" AgentCore::Action::"Assistant___issue_refund"' in out
