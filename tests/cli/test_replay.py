"""``agentauthz replay``: recorded decisions decided again by a candidate policy store."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

import agentauthz as az
from agentauthz.testing import capture_decisions
from tests.policy_stores import (
    BROKEN,
    BROKEN_IDS,
    EXAMPLE_STORE,
    Broken,
    broken_store,
    copy_example_store,
    run,
)

U = az.EntityUID

# (user, action, resource, context): what the recording Authorizer decides, in order.
CALLS: list[tuple[str, str, az.EntityUID, dict[str, Any]]] = [
    ("carol", "issue_refund", U("Tool", "issue_refund"), {"input": {"order_id": "o", "amount": 4200}}),
    ("carol", "issue_refund", U("Tool", "issue_refund"), {"input": {"order_id": "o", "amount": -5}}),
    ("alice", "search_documents", U("Tool", "search_documents"), {"input": {"query": "q"}}),
    ("bob", "read", U("Document", "acme-handbook"), {}),
]


def _record(record_requests: bool) -> list[str]:
    authz = az.Authorizer.from_directory(EXAMPLE_STORE, audit=[], record_requests=record_requests)
    with capture_decisions() as events:
        for user, action, resource, context in CALLS:
            with authz.acting_as(U("User", user)):
                authz.authorize(action=action, resource=resource, context=context)
    return [event.to_json() for event in events]


@pytest.fixture
def audit_log(tmp_path: Path) -> Path:
    """Recorded events, one not recorded, a logging-prefixed one and three unreadable lines."""
    recorded = _record(True)
    lines = [
        *recorded[:3],
        *_record(False)[:1],
        "",
        "INFO agentauthz.audit " + recorded[3],
        "this is not JSON",
        json.dumps({"decision": "allow", "request": {"request": {"principal": "nobody"}}}),
        json.dumps({"something": "else"}),
    ]
    path = tmp_path / "audit.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def candidate(tmp_path: Path) -> Path:
    """The example store with a lower finance limit, no positive-amount guard, a renamed policy."""
    root = copy_example_store(tmp_path / "candidate")
    tools = (root / "tools.cedar").read_text(encoding="utf-8")
    tools = tools.replace("context.input.amount <= 5000", "context.input.amount <= 1000")
    tools = tools.replace('@id("employee-search")', '@id("everyone-search")')
    start = tools.index('@id("refund-must-be-positive")')
    end = tools.index(";", start) + 1
    (root / "tools.cedar").write_text(tools[:start] + tools[end:], encoding="utf-8")
    return root


def test_recorded_events_carry_their_request() -> None:
    event = json.loads(_record(True)[0])
    assert event["request"]["request"]["principal"] == {"type": "User", "id": "carol"}
    assert "request" not in json.loads(_record(False)[0])


def test_replay_counts_flips_reason_changes_skips_and_unreadable_lines(
        capsys: pytest.CaptureFixture[str], audit_log: Path, candidate: Path) -> None:
    code, out, err = run(capsys, "replay", str(audit_log), "--policies", str(candidate))

    assert code == 0, err
    rows = dict(line.rsplit(None, 1) for line in out.splitlines()[3:11])
    assert {key.strip(): int(value) for key, value in rows.items()} == {
        "read": 8, "replayed": 4, "skipped (no recorded request)": 1, "unreadable": 3,
        "unchanged": 1, "allow -> deny": 1, "deny -> allow": 1, "same decision, other policies": 1}
    assert "would now be denied (1):" in out
    assert ('  line 1: User::"carol" Action::"issue_refund" Tool::"issue_refund"\n'
            "    before: allow by refund-finance-limit\n"
            "    after:  deny by -\n") in out
    assert "would now be allowed (1):" in out
    assert "    before: deny by refund-must-be-positive\n" in out
    assert "decided by other policies (1):" in out
    assert "    after:  allow by everyone-search\n" in out
    assert f"{audit_log}:7: unreadable: not JSON" in out
    assert f"{audit_log}:8: unreadable: recorded request:" in out
    assert f"{audit_log}:9: unreadable: not an audit event" in out
    assert out.splitlines()[-1].startswith("2 of 4 replayed decisions would flip (1 skipped)")


def test_same_policies_change_nothing(capsys: pytest.CaptureFixture[str], audit_log: Path) -> None:
    code, out, _ = run(capsys, "replay", str(audit_log), "--policies", str(EXAMPLE_STORE),
                       "--fail-on-flip")

    assert code == 0
    assert out.splitlines()[-1].startswith("0 of 4 replayed decisions would flip")


def test_fail_on_flip_and_json(capsys: pytest.CaptureFixture[str], audit_log: Path,
                               candidate: Path) -> None:
    code, out, _ = run(capsys, "replay", str(audit_log), "--policies", str(candidate),
                       "--fail-on-flip", "--json", "--examples", "1")

    assert code == 1
    report = json.loads(out)
    assert (report["events"], report["replayed"], report["skipped"], report["unreadable"],
            report["flips"]) == (8, 4, 1, 3, 2)
    assert report["changes"] == {"allow->deny": 1, "deny->allow": 1, "reasons": 1}
    flip = report["examples"]["deny->allow"][0]
    assert flip["line"] == 2
    assert flip["before"] == {"decision": "deny", "reasons": ["refund-must-be-positive"]}
    assert flip["after"]["reasons"] == ["refund-finance-limit"]
    assert len(report["unreadable_lines"]) == 1


def test_audit_log_from_stdin(capsys: pytest.CaptureFixture[str], audit_log: Path, candidate: Path,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(audit_log.read_text(encoding="utf-8")))

    code, out, _ = run(capsys, "replay", "-", "--policies", str(candidate), "--json")

    assert code == 0
    assert json.loads(out)["flips"] == 2


def test_log_without_recorded_requests_says_how_to_record_them(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    log.write_text("\n".join(_record(False)) + "\n", encoding="utf-8")

    code, out, _ = run(capsys, "replay", str(log), "--policies", str(EXAMPLE_STORE))

    assert code == 0
    assert "record_requests=True" in out
    assert "0 of 0 replayed decisions would flip (4 skipped)" in out


def test_missing_log_and_store_are_usage_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    missing_log, _, log_err = run(capsys, "replay", str(tmp_path / "none.jsonl"),
                                  "--policies", str(EXAMPLE_STORE))
    missing_store, _, store_err = run(capsys, "replay", str(tmp_path / "none.jsonl"),
                                      "--policies", str(tmp_path / "nowhere"))

    assert (missing_log, missing_store) == (2, 2)
    assert "cannot read" in log_err
    assert "no such directory" in store_err


@pytest.mark.parametrize("broken", BROKEN, ids=BROKEN_IDS)
def test_broken_candidate_store_fails_with_file_and_line(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, broken: Broken, audit_log: Path) -> None:
    root = broken_store(tmp_path / "store", broken)

    code, out, err = run(capsys, "replay", str(audit_log), "--policies", str(root))

    assert code == 1
    assert out == ""
    assert f"{root.as_posix()}/broken.cedar:{broken.line}:{broken.col}: " in err
