"""The Bedrock Agents example (examples/bedrock_agents, part of `make demo`) and the snippets of
docs/integrations/bedrock-agents.md run against the current API."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "bedrock_agents"
RUNNER = EXAMPLE / "run.py"
EVENTS = sorted((EXAMPLE / "events").glob("*.json"))
PAGE = ROOT / "docs" / "integrations" / "bedrock-agents.md"
FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```", re.S | re.M)


def run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(RUNNER), *args], capture_output=True, text=True,
                          timeout=120, check=False, cwd=cwd)


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def test_runner_exits_zero_and_every_outcome_matches_its_event_name() -> None:
    result = run()
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == ""
    lines = [line for line in result.stdout.splitlines() if line.strip().startswith(("ALLOW", "DENY"))]
    assert len(lines) == len(EVENTS) >= 10
    for line in lines:
        outcome, name = line.split()[:2]
        expected = "DENY" if name.rstrip(":").endswith("_denied") else "ALLOW"
        assert outcome == expected, line
    assert "UNEXPECTED" not in result.stdout


def test_runner_runs_from_any_directory_and_on_chosen_events(tmp_path: Path) -> None:
    chosen = EXAMPLE / "events" / "function_refund_allowed.json"
    result = run(str(chosen), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "ALLOW  function_refund_allowed" in result.stdout
    assert '"refunded": 300' in result.stdout


def test_runner_reports_an_unexpected_outcome(tmp_path: Path) -> None:
    wrong = tmp_path / "renamed_allowed.json"
    wrong.write_text((EXAMPLE / "events" / "function_refund_over_limit_denied.json").read_text())
    result = run(str(wrong))
    assert result.returncode == 1
    assert "UNEXPECTED" in result.stdout


def test_the_demo_shows_generic_refusals_and_their_reasons_from_the_audit_trail() -> None:
    out = run().stdout
    agent_reads = [line for line in out.splitlines() if "agent reads:" in line]
    audit_says = [line for line in out.splitlines() if "audit says:" in line]
    assert any("identity is missing or could not be verified" in line for line in agent_reads)
    assert any("its arguments do not match the tool's schema" in line for line in agent_reads)
    assert any("is not available to this agent" in line for line in agent_reads)
    assert any("parameter 'amount' must be an integer" in line for line in audit_says)
    assert not any("must be an integer" in line or "refund-" in line for line in agent_reads)
    assert "HTTP 403" in out and "HTTP 200" in out


@pytest.mark.parametrize("path", EVENTS, ids=[p.stem for p in EVENTS])
def test_sample_events_are_bedrock_action_group_events(path: Path) -> None:
    event = load(path)
    assert event["messageVersion"] == "1.0"
    assert {"agent", "inputText", "sessionId", "actionGroup", "sessionAttributes",
            "promptSessionAttributes"} <= set(event)
    assert ("function" in event) != ("apiPath" in event)
    if "apiPath" in event:
        assert event["httpMethod"] in ("GET", "POST", "PUT", "PATCH", "DELETE")
    entries = list(event.get("parameters", []))
    if "requestBody" in event:
        entries += event["requestBody"]["content"]["application/json"]["properties"]
    for entry in entries:
        assert set(entry) == {"name", "type", "value"} and isinstance(entry["value"], str)
    assert all(isinstance(v, str) for v in event["sessionAttributes"].values())


def test_sample_events_cover_the_cases_of_the_issue() -> None:
    names = {p.stem for p in EVENTS}
    for kind in ("function", "api"):
        assert any(n.startswith(kind) and n.endswith("_allowed") for n in names)
        assert any(n.startswith(kind) and n.endswith("_denied") for n in names)
        assert f"{kind}_missing_identity_denied" in names
    for where in ("input_text", "prompt_session_attributes", "parameters"):
        assert f"function_principal_in_{where}_denied" in names
    injected = load(EXAMPLE / "events" / "function_principal_in_prompt_session_attributes_denied.json")
    assert injected["promptSessionAttributes"] == {"userId": "carol"}
    assert "userId" not in injected["sessionAttributes"]


def test_make_demo_runs_the_bedrock_example() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    demo = makefile.split("\ndemo:", 1)[1].split("\n\n", 1)[0]
    assert "examples/bedrock_agents/run.py" in demo


def test_docs_page_explains_the_security_model() -> None:
    text = PAGE.read_text(encoding="utf-8")
    for phrase in ("Who sets the session attributes", "Why the model cannot set them",
                   "promptSessionAttributes", "inputText", "verify_token", "InvokeAgent", "RETURN_CONTROL"):
        assert phrase in text
