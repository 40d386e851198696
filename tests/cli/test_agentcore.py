"""agentauthz agentcore export|diff|push|pull: the example store's tools on a gateway target.

``export`` writes what ``agentauthz test`` runs cases against; ``diff`` / ``push`` / ``pull`` take an
injected boto3 client here, stubbed with botocore's Stubber (no local AgentCore endpoint exists).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from agentauthz.cli import _agentcore
from agentauthz.cli._main import EXIT_OK, EXIT_PROBLEMS, build_parser, main
from tests.conftest import EXAMPLE_STORE

ARN = "arn:aws:bedrock-agentcore:us-east-1:123456789012:gateway/assistant-gw-a1b2c3d4e5"
ENGINE = "assistant_engine-a1b2c3d4e5"
#: The example assistant's tools whose resource is the tool itself, as an MCP tools/list answer.
TOOLS = {"tools": [
    {"name": "search_documents", "inputSchema": {"type": "object", "required": ["query"],
                                                 "properties": {"query": {"type": "string"}}}},
    {"name": "send_email", "inputSchema": {"type": "object", "required": ["to", "subject"], "properties": {
        "to": {"type": "string"}, "subject": {"type": "string"}}}},
    {"name": "issue_refund", "inputSchema": {"type": "object", "required": ["order_id", "amount"],
                                             "properties": {"order_id": {"type": "string"},
                                                            "amount": {"type": "integer"}}}},
]}
REFUSED = ("tool-enabled-for-tenant", "refund-over-1000-needs-approval", "refund-session-cap",
           "acme-no-external-email-after-confidential", "globex-no-external-email-after-confidential")
CASES = """
[[case]]
name = "carol in finance refunds within the finance limit"
principal = 'AgentCore::OAuthUser::"carol"'
action = 'AgentCore::Action::"Assistant___issue_refund"'
resource = 'AgentCore::Gateway::"<ARN>"'
context = { input = { order_id = "o-1", amount = 4200 } }
decision = "allow"
reasons = ["refund-finance-limit"]
[[case.entities]]                 # the token's claims as AgentCore's string tags
uid = { type = "AgentCore::OAuthUser", id = "carol" }
tags = { roles = '["employee","finance"]', tenant = "acme" }

[[case]]
name = "a token without the roles claim refunds nothing"
principal = 'AgentCore::OAuthUser::"mallory"'
action = 'AgentCore::Action::"Assistant___issue_refund"'
resource = 'AgentCore::Gateway::"<ARN>"'
context = { input = { order_id = "o-1", amount = 10 } }
decision = "deny"
[[case.entities]]
uid = { type = "AgentCore::OAuthUser", id = "mallory" }
""".replace("<ARN>", ARN)


@pytest.fixture
def tools_file(tmp_path: Path) -> Path:
    path = tmp_path / "tools.json"
    path.write_text(json.dumps(TOOLS), encoding="utf-8")
    return path


def translation_args(tools: Path, *, exclude: tuple[str, ...] = REFUSED) -> list[str]:
    return [str(EXAMPLE_STORE), "--gateway-arn", ARN, "--target", "Assistant", "--mcp", str(tools),
            "--group-claim", "Role=roles", "--attribute-claim", "tenant=tenant",
            *(f"--exclude={policy_id}" for policy_id in exclude)]


@pytest.fixture
def client() -> Any:
    return boto3.client("bedrock-agentcore-control", region_name="us-east-1", aws_access_key_id="x",
                        aws_secret_access_key="x")


@pytest.fixture
def stub(client: Any) -> Iterator[Stubber]:
    with Stubber(client) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


def test_export_refuses_the_whole_example_store_naming_each_policy_it_cannot_translate(
    tools_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["agentcore", "export", *translation_args(tools_file, exclude=()), "--out", str(tmp_path / "out")]
    assert main(args) == EXIT_PROBLEMS
    err = capsys.readouterr().err
    assert all(f"policy '{policy_id}'" in err for policy_id in REFUSED)
    assert not (tmp_path / "out").exists()


def test_exported_gateway_policies_run_decision_cases_with_agentauthz_test(
    tools_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "gateway"
    assert main(["agentcore", "export", *translation_args(tools_file), "--out", str(out)]) == EXIT_OK
    notes = capsys.readouterr().err   # each policy left out is named, with why
    assert "policy tool-enabled-for-tenant left out: excluded: kept off the gateway" in notes
    assert "policy tenant-isolation left out: its action and resource match no tool" in notes
    (out / "cases").mkdir()
    (out / "cases" / "refunds.toml").write_text(CASES, encoding="utf-8")
    assert main(["test", str(out)]) == EXIT_OK, capsys.readouterr()


def test_push_then_diff_through_an_injected_client(
    tools_file: Path, client: Any, stub: Stubber, capsys: pytest.CaptureFixture[str]
) -> None:
    parser = build_parser()
    push = parser.parse_args(["agentcore", "push", *translation_args(tools_file),
                              "--policy-engine", ENGINE, "--json", "--no-wait"])
    stub.add_response("list_policies", {"policies": []}, {"policyEngineId": ENGINE, "maxResults": 50})
    for _ in range(8):
        stub.add_response("create_policy", created(), None)
    assert _agentcore.push(push, client) == EXIT_OK
    report = json.loads(capsys.readouterr().out)
    assert report["counts"]["create"] == 8 and report["applied"] is True
    diff = parser.parse_args(["agentcore", "diff", *translation_args(tools_file),
                              "--policy-engine", ENGINE])
    stub.add_response("list_policies", {"policies": []}, {"policyEngineId": ENGINE, "maxResults": 50})
    assert _agentcore.diff(diff, client) == EXIT_OK
    assert "would create" in capsys.readouterr().out


def test_pull_writes_the_engine_policies(client: Any, stub: Stubber, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    args = build_parser().parse_args(["agentcore", "pull", str(tmp_path / "out"), "--policy-engine", ENGINE])
    item = created()
    stub.add_response("list_policies", {"policies": [item]}, {"policyEngineId": ENGINE, "maxResults": 50})
    assert _agentcore.pull_engine(args, client) == EXIT_OK
    assert '@id("p")' in (tmp_path / "out" / "policies.cedar").read_text(encoding="utf-8")
    assert "1 policies (0 LOG_ONLY" in capsys.readouterr().out


STATEMENT = "permit(principal, action, resource is AgentCore::Gateway);"


def created() -> dict[str, Any]:
    policy_id = "p-0123456789"
    return {"policyId": policy_id, "name": "p", "policyEngineId": ENGINE, "createdAt": "2026-12-01T00:00:00Z",
            "updatedAt": "2026-12-01T00:00:00Z", "status": "CREATING", "statusReasons": [],
            "policyArn": "arn:aws:bedrock-agentcore:us-east-1:123456789012:policy-engine/"
                         f"{ENGINE}/policy/{policy_id}".ljust(95, "0"),
            "definition": {"cedar": {"statement": STATEMENT}},
            "description": "agentauthz:p"}
