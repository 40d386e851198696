"""``agentauthz check``: one decision with its determining policies in full, errors and time."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.policy_stores import (
    BROKEN,
    BROKEN_IDS,
    EXAMPLE_STORE,
    Broken,
    broken_store,
    run,
)

STORE = str(EXAMPLE_STORE)
CAROL_REFUND = ("--principal", 'User::"carol"', "--action", "issue_refund",
                "--resource", 'Tool::"issue_refund"')


def test_allow_prints_the_determining_policy_in_full(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "check", STORE, *CAROL_REFUND,
                         "--context", '{"input": {"order_id": "o-1", "amount": 4200}}')

    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == 'ALLOW  User::"carol" Action::"issue_refund" Tool::"issue_refund"'
    assert "  refund-finance-limit (tools.cedar:31)" in lines
    assert '    @id("refund-finance-limit")' in lines
    assert "    when { context.input.amount <= 5000 };" in lines
    assert lines[-1].startswith("decided in ") and lines[-1].endswith(" ms")


def test_deny_by_a_forbid_names_it(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "check", STORE, *CAROL_REFUND,
                       "--context", '{"input": {"order_id": "o-1", "amount": -5}}')

    assert code == 0
    assert out.startswith("DENY ")
    assert "  refund-must-be-positive (tools.cedar:41)" in out


def test_deny_by_default_says_no_policy_applies(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "check", STORE, *CAROL_REFUND,
                       "--context", '{"input": {"order_id": "o-1", "amount": 9000}}')

    assert code == 0
    assert "no policy applies: denied by default" in out


def test_a_template_link_is_explained_with_its_template_and_slots(
        capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "check", STORE, "--principal", 'User::"bob"', "--action", "read",
                       "--resource", '{"type": "Document", "id": "acme-eng-roadmap"}')

    assert code == 0
    assert out.startswith("ALLOW ")
    assert ("  share-roadmap-with-bob (template-links.json: link of 'share' at sharing.cedar:4, "
            '?principal = User::"bob", ?resource = Document::"acme-eng-roadmap")') in out
    assert "    principal == ?principal," in out


def test_a_request_that_does_not_fit_the_schema_is_invalid_and_says_why(
        capsys: pytest.CaptureFixture[str]) -> None:
    # The context lacks `input`: the request does not fit the schema, so it fails closed.
    code, out, _ = run(capsys, "check", STORE, *CAROL_REFUND)

    assert code == 1
    assert out.startswith("DENY ")
    assert "invalid request: context.input is missing (expected a record)" in out
    assert "no policy applies" not in out
    assert "errors:" in out


def test_context_and_entities_from_files(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    context = tmp_path / "context.json"
    context.write_text(json.dumps({"input": {"order_id": "o-1", "amount": 100}}), encoding="utf-8")
    # carol moves to support: the support limit (500) applies, via the entity overlay.
    entities = json.loads((EXAMPLE_STORE / "entities.json").read_text(encoding="utf-8"))
    carol = next(e for e in entities if e["uid"] == {"type": "User", "id": "carol"})
    carol["parents"] = [{"type": "Role", "id": "support-agent"}]
    overlay = tmp_path / "entities.json"
    overlay.write_text(json.dumps([carol]), encoding="utf-8")

    code, out, _ = run(capsys, "check", STORE, *CAROL_REFUND, "--context", f"@{context}",
                       "--entities", str(overlay))

    assert code == 0
    assert "refund-support-limit" in out


def test_json_output_and_expect(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "check", STORE, *CAROL_REFUND, "--json", "--expect", "allow",
                       "--context", '{"input": {"order_id": "o-1", "amount": 9000}}')

    assert code == 1
    report = json.loads(out)
    assert report["decision"] == "deny"
    assert report["reasons"] == [] and report["policies"] == []
    assert report["request"]["action"] == {"type": "Action", "id": "issue_refund"}
    assert report["milliseconds"] >= 0


@pytest.mark.parametrize(("option", "value"), [
    ("--principal", "alice"), ("--resource", '{"type": "Tool"}'), ("--context", "[1, 2]"),
    ("--context", "{not json"), ("--context", "@/nonexistent/context.json"),
])
def test_bad_arguments_are_usage_errors(capsys: pytest.CaptureFixture[str], option: str,
                                        value: str) -> None:
    argv = dict(zip(CAROL_REFUND[::2], CAROL_REFUND[1::2], strict=True))
    argv[option] = value

    code, out, err = run(capsys, "check", STORE, *[item for pair in argv.items() for item in pair])

    assert code == 2
    assert out == ""
    assert err.startswith(f"agentauthz: error: {option}")


@pytest.mark.parametrize("broken", BROKEN, ids=BROKEN_IDS)
def test_broken_store_fails_with_file_and_line(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, broken: Broken) -> None:
    root = broken_store(tmp_path / "store", broken)

    code, out, err = run(capsys, "check", str(root), "--principal", 'User::"alice"',
                         "--action", "read", "--resource", 'Document::"d1"')

    assert code == 1
    assert out == ""
    assert f"{root.as_posix()}/broken.cedar:{broken.line}:{broken.col}: " in err
    assert broken.message in err
