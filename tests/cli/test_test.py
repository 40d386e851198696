"""``agentauthz test`` and ``agentauthz.testing.policy_cases``: decision cases of a store."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from xml.etree import ElementTree

import pytest

import agentauthz as az
from agentauthz.testing import PolicyCase, policy_cases
from tests.policy_stores import (
    BROKEN,
    BROKEN_IDS,
    EXAMPLE_STORE,
    Broken,
    broken_store,
    good_store,
    run,
)

EXAMPLE_CASES = len(list((EXAMPLE_STORE / "ALLOW").glob("*.json"))) + len(
    list((EXAMPLE_STORE / "DENY").glob("*.json")))

TABLE = textwrap.dedent('''\
    # Decision table of the small test store.
    [defaults]
    resource = 'Document::"d1"'

    [[case]]
    name = "owner reads"
    principal = 'User::"alice"'
    action = "read"
    decision = "allow"
    reasons = ["owner-reads"]
    errors = []

    [[case]]
    name = "stranger reads"
    principal = { type = "User", id = "bob" }
    action = 'Action::"read"'
    decision = "deny"
    reasons = []

    [[case]]
    name = "new owner given as an entity overlay"
    principal = 'User::"carol"'
    action = "read"
    resource = 'Document::"d2"'
    decision = "allow"

    [[case.entities]]
    uid = { type = "User", id = "carol" }
    attrs = { dept = "it" }

    [[case.entities]]
    uid = { type = "Document", id = "d2" }
    attrs = { owner = { __entity = { type = "User", id = "carol" } }, dept = "it" }
''')


def _store_with_table(root: Path, table: str = TABLE) -> Path:
    good_store(root)
    (root / "cases").mkdir()
    (root / "cases" / "reads.toml").write_text(table, encoding="utf-8")
    return root


def test_example_store_passes_every_case_and_reports_coverage(
        capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "test", str(EXAMPLE_STORE))

    assert code == 0, out + err
    assert f"{EXAMPLE_CASES} passed, 0 failed" in out.splitlines()[-1]
    assert "pass    ALLOW/finance_refund_within_limit" in out
    assert "refund-finance-limit" in out
    # Two of the three share links are never exercised by a case.
    assert "never determining: share-salaries-with-bob (template-links.json (link of 'share'))" in out
    assert "never determining: share-handbook-with-frank" in out


def test_quiet_lists_only_failures(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "test", "-q", "--no-coverage", str(EXAMPLE_STORE))

    assert code == 0
    assert "ALLOW/" not in out
    assert "coverage" not in out


def test_toml_table_cases_pass(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    root = _store_with_table(tmp_path / "store")

    code, out, _ = run(capsys, "test", str(root))

    assert code == 0, out
    assert "cases/reads.toml::owner reads" in out
    assert "cases/reads.toml::new owner given as an entity overlay" in out
    assert "5 passed, 0 failed" in out


def test_failing_cases_say_what_differs_where(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    table = TABLE.replace('decision = "deny"\nreasons = []', 'decision = "allow"\nreasons = []') \
                 .replace('reasons = ["owner-reads"]', 'reasons = ["owner-read"]')
    root = _store_with_table(tmp_path / "store", table)

    code, out, _ = run(capsys, "test", str(root))

    assert code == 1
    assert "3 passed, 2 failed" in out
    assert f"FAIL cases/reads.toml::stranger reads ({root.as_posix()}/cases/reads.toml:13)" in out
    assert "  expected allow, got deny" in out
    assert "  expected reasons ['owner-read'], got ['owner-reads']" in out
    assert "  not policies of the store: ['owner-read']" in out


def test_broken_table_entries_fail_as_cases(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    root = _store_with_table(tmp_path / "store", TABLE + textwrap.dedent('''
        [[case]]
        name = "typo"
        principal = 'User::"alice"'
        action = "read"
        decison = "allow"
    '''))
    (root / "cases" / "bad.toml").write_text("[[case]\n", encoding="utf-8")

    code, out, _ = run(capsys, "test", str(root))

    assert code == 1
    assert "cases/reads.toml:35: unknown keys ['decison']" in out
    assert "cases/bad.toml: invalid TOML" in out


def test_extra_table_and_yaml(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    pytest.importorskip("yaml")
    root = good_store(tmp_path / "store")
    extra = tmp_path / "more.yaml"
    extra.write_text(textwrap.dedent('''\
        case:
          - name: owner reads
            principal: User::"alice"
            action: read
            resource: {type: Document, id: d1}
            decision: allow
          - name: wrong expectation
            principal: User::"bob"
            action: read
            resource: Document::"d1"
            decision: allow
    '''), encoding="utf-8")

    code, out, _ = run(capsys, "test", str(root), "--cases", str(extra))

    assert code == 1
    assert "3 passed, 1 failed" in out
    assert f"({extra.as_posix()}:7)" in out


def test_junit_report(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    root = _store_with_table(tmp_path / "store", TABLE.replace('decision = "deny"', 'decision = "allow"'))
    report = tmp_path / "report.xml"

    code, _, _ = run(capsys, "test", str(root), "--junit", str(report))

    assert code == 1
    suite = ElementTree.parse(report).getroot().find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("5", "1", "0")
    failed = [case for case in suite.iter("testcase") if case.find("failure") is not None]
    assert [case.get("name") for case in failed] == ["cases/reads.toml::stranger reads"]
    failure = failed[0].find("failure")
    assert failure is not None and failure.get("message") == "expected allow, got deny"


def test_json_output(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    root = _store_with_table(tmp_path / "store")

    code, out, _ = run(capsys, "test", "--json", str(root))

    assert code == 0
    report = json.loads(out)
    assert (report["ok"], report["passed"], report["failed"]) == (True, 5, 0)
    owner = next(case for case in report["cases"] if case["id"] == "cases/reads.toml::owner reads")
    assert owner["decision"] == "allow" and owner["reasons"] == ["owner-reads"]
    assert owner["line"] == 5
    assert report["never_determining"] == []


@pytest.mark.parametrize("broken", BROKEN, ids=BROKEN_IDS)
def test_broken_store_fails_with_file_and_line(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, broken: Broken) -> None:
    root = broken_store(tmp_path / "store", broken)
    report = tmp_path / "report.xml"

    code, out, err = run(capsys, "test", str(root), "--junit", str(report))

    assert code == 1
    assert out == ""
    assert f"{root.as_posix()}/broken.cedar:{broken.line}:{broken.col}: " in err
    assert broken.message in err
    error = ElementTree.parse(report).getroot().find("testsuite/testcase/error")
    assert error is not None and broken.message in (error.text or "")


def test_store_without_cases_is_a_usage_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    root = good_store(tmp_path / "store")
    for folder in ("ALLOW", "DENY"):
        for file in (root / folder).iterdir():
            file.unlink()

    code, _, err = run(capsys, "test", str(root))

    assert code == 2
    assert "no decision cases" in err


def test_progress_bar_is_drawn_for_long_runs_on_a_terminal(tmp_path: Path) -> None:
    pytest.importorskip("rich")
    import io

    from agentauthz.cli._console import Output

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    bar = Terminal()
    out = Output(io.StringIO(), color="always", progress_stream=bar)
    with out.progress(500, "deciding") as advance:
        advance(500)
    assert "deciding" in bar.getvalue()
    quiet = Terminal()
    with Output(io.StringIO(), color="never", progress_stream=quiet).progress(500, "x") as advance:
        advance(500)
    assert quiet.getvalue() == ""


# -- the same runner in pytest ------------------------------------------------------------


@pytest.mark.parametrize("case", policy_cases(EXAMPLE_STORE), ids=str)
def test_example_store_case(case: PolicyCase) -> None:
    decision = case.check()
    assert decision.allowed == case.id.startswith("ALLOW/")


def test_policy_cases_fail_with_the_case_file_and_what_differs(tmp_path: Path) -> None:
    root = _store_with_table(tmp_path / "store", TABLE.replace('decision = "deny"', 'decision = "allow"'))

    cases = {case.id: case for case in policy_cases(root)}

    assert cases["cases/reads.toml::owner reads"].check().reasons == ("owner-reads",)
    with pytest.raises(AssertionError, match=r"stranger reads \(cases/reads.toml:13\)\n"
                                             r"expected allow, got deny"):
        cases["cases/reads.toml::stranger reads"].check()
    assert not cases["cases/reads.toml::stranger reads"].run().passed


def test_policy_cases_of_a_broken_store_raise_its_policy_error(tmp_path: Path) -> None:
    root = broken_store(tmp_path / "store", BROKEN[0])

    cases = policy_cases(root)

    assert [case.id for case in cases] == ["ALLOW/alice_reads_d1", "DENY/bob_reads_d1"]
    for case in cases:
        with pytest.raises(az.PolicyError, match=r"broken\.cedar:3:27: unexpected token"):
            case.check()
