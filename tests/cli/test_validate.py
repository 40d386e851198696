"""``agentauthz validate``: every problem as file:line:col, warnings for policies that cannot matter."""

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
    good_store,
    run,
)


def test_example_store_validates_without_errors_or_warnings(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "validate", str(EXAMPLE_STORE))

    assert code == 0, out + err
    assert out.strip().endswith("0 errors, 0 warnings (23 policies, 1 template, 3 links, "
                                "36 entities, schema)")
    assert err == ""


def test_default_directory_is_policies_of_the_working_directory(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(EXAMPLE_STORE.parent)

    code, out, _ = run(capsys, "validate")

    assert code == 0
    assert out.startswith("policies: 0 errors")


@pytest.mark.parametrize("broken", BROKEN, ids=BROKEN_IDS)
def test_broken_store_fails_with_file_line_and_column(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, broken: Broken) -> None:
    root = broken_store(tmp_path / "store", broken)

    code, out, _ = run(capsys, "validate", str(root))

    assert code == 1
    first = out.splitlines()[0]
    if broken.kind == "duplicate-id":
        # The second of the two is the duplicate, in load (file name) order.
        assert first.startswith(f"{root.as_posix()}/broken.cedar:{broken.line}:{broken.col}: error: ")
        assert "first at base.cedar:2" in first
    else:
        assert first.startswith(f"{root.as_posix()}/broken.cedar:{broken.line}:{broken.col}: error: "), out
    assert broken.message in first
    assert "for policy," not in out


def test_every_problem_of_every_file_is_reported_at_once(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    root = good_store(tmp_path / "store")
    for index, broken in enumerate(BROKEN):
        if broken.kind != "duplicate-id":
            (root / f"broken{index}.cedar").write_text(broken.text, encoding="utf-8")

    code, out, _ = run(capsys, "validate", str(root))

    assert code == 1
    located = {line.split(": error: ")[0].removeprefix(root.as_posix() + "/")
               for line in out.splitlines() if ": error: " in line}
    assert {"broken0.cedar:3:27", "broken1.cedar:3:8", "broken3.cedar:2:30",
            "broken4.cedar:3:207"} <= located


def test_syntax_error_column_is_the_offending_token_not_its_first_occurrence(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    root = good_store(tmp_path / "store")
    (root / "braces.cedar").write_text(
        "permit (principal, action, resource)\n"
        "when { principal.dept == \"a\" }\n"
        "when { resource.dept == };\n", encoding="utf-8")

    code, out, _ = run(capsys, "validate", str(root))

    assert code == 1
    assert f"{root.as_posix()}/braces.cedar:3:25: error: unexpected token `}}`" in out


def test_schema_syntax_error_is_located_in_the_schema(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    root = good_store(tmp_path / "store")
    (root / "schema.cedarschema").write_text("entity User;\nentity Document\naction read;\n",
                                             encoding="utf-8")

    code, out, _ = run(capsys, "validate", str(root))

    assert code == 1
    assert f"{root.as_posix()}/schema.cedarschema:3:1: error: error parsing schema: " \
           "unexpected token `action`" in out


def test_nonconforming_entities_are_reported_even_when_policies_fail(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    root = broken_store(tmp_path / "store", BROKEN[0])
    entities = json.loads((root / "entities.json").read_text(encoding="utf-8"))
    entities[1]["attrs"]["dept"] = 7
    (root / "entities.json").write_text(json.dumps(entities, indent=1), encoding="utf-8")

    code, out, _ = run(capsys, "validate", str(root))

    assert code == 1
    assert "broken.cedar:3:27" in out
    entity_lines = [line for line in out.splitlines() if "entities.json" in line]
    assert len(entity_lines) == 1
    assert 'first nonconforming entity: #1 User::"bob"' in entity_lines[0]
    assert "attribute `dept`" in entity_lines[0]


WARNINGS = """\
@id("reads") permit (principal is User, action == Action::"read", resource is Document);
@id("no-reading") forbid (principal, action in [Action::"read"], resource is Document);
@id("never") permit (principal, action == Action::"read", resource) when { false };
@id("share") permit (principal == ?principal, action == Action::"read", resource == ?resource);
@id("unused-template") permit (principal == ?principal, action, resource);
"""


def _warning_store(root: Path) -> Path:
    good_store(root)
    (root / "warnings.cedar").write_text(WARNINGS, encoding="utf-8")
    (root / "template-links.json").write_text(json.dumps([
        {"id": "share-1", "template": "share", "principal": {"type": "User", "id": "bob"},
         "resource": {"type": "Document", "id": "d1"}}]), encoding="utf-8")
    return root


def test_warnings_for_dead_shadowed_and_unlinked_policies_do_not_fail(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    root = _warning_store(tmp_path / "store")

    code, out, _ = run(capsys, "validate", str(root))

    assert code == 0, out
    prefix = root.as_posix() + "/"
    lines = [line.removeprefix(prefix) for line in out.splitlines()]
    assert "warnings.cedar:3:1: warning: permit 'never' can never apply: its condition " \
           "`when { false }` is never satisfied" in lines
    assert "warnings.cedar:5:1: warning: template 'unused-template' has no link: it never applies" in lines
    assert ("warnings.cedar:1:1: warning: permit 'reads' can never allow: forbid 'no-reading' "
            "(warnings.cedar:2) has the same or a wider scope and no condition") in lines
    # The template's ?resource may be anything, but its one link names a Document.
    assert any(line.startswith("template-links.json:1:9: warning: template link 'share-1' can "
                               "never allow: forbid 'no-reading'") for line in lines)
    # Scopes wider than the forbid's (any resource) are not shadowed.
    assert not any("owner-reads" in line or "'never' can never allow" in line for line in lines)
    assert ": 0 errors, 4 warnings (" in lines[-1]


def test_strict_makes_warnings_fail(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    root = _warning_store(tmp_path / "store")

    code, _, _ = run(capsys, "validate", "--strict", str(root))

    assert code == 1


def test_link_shadowed_by_a_forbid_on_its_principal_points_into_the_links_file(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    root = good_store(tmp_path / "store")
    (root / "share.cedar").write_text(
        '@id("share") permit (principal == ?principal, action == Action::"read", '
        'resource == ?resource);\n@id("ban-bob") forbid (principal == User::"bob", action, resource);\n',
        encoding="utf-8")
    (root / "template-links.json").write_text(json.dumps([
        {"id": "share-alice", "template": "share", "principal": {"type": "User", "id": "alice"},
         "resource": {"type": "Document", "id": "d1"}},
        {"id": "share-bob", "template": "share", "principal": {"type": "User", "id": "bob"},
         "resource": {"type": "Document", "id": "d1"}}], indent=1), encoding="utf-8")

    code, out, _ = run(capsys, "validate", str(root))

    assert code == 0
    warnings = [line for line in out.splitlines() if ": warning: " in line]
    assert len(warnings) == 1
    assert warnings[0].startswith(f"{root.as_posix()}/template-links.json:")
    assert "template link 'share-bob' can never allow: forbid 'ban-bob'" in warnings[0]


def test_without_validation_an_undeclared_action_is_a_warning_with_a_suggestion(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    root = good_store(tmp_path / "store")
    (root / "schema.cedarschema").write_text(
        "namespace App { entity User; entity Document; "
        "action read appliesTo { principal: User, resource: Document }; }\n", encoding="utf-8")
    (root / "entities.json").unlink()
    (root / "base.cedar").write_text(
        '@id("reads") permit (principal, action == Action::"read", resource);\n', encoding="utf-8")

    strict_code, strict_out, _ = run(capsys, "validate", str(root))
    code, out, _ = run(capsys, "validate", "--no-validate", str(root))

    assert strict_code == 1
    assert 'unrecognized action `Action::"read"`' in strict_out
    assert code == 0
    assert (f"{root.as_posix()}/base.cedar:1:1: warning: permit 'reads' can never apply: the schema "
            'declares no action Action::"read" (did you mean App::Action::"read"?)') in out


def test_store_without_schema_gets_a_note(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    root = tmp_path / "store"
    root.mkdir()
    (root / "p.cedar").write_text("permit (principal, action, resource);\n", encoding="utf-8")

    code, out, _ = run(capsys, "validate", str(root))

    assert code == 0
    assert "note: no schema" in out


def test_json_output_lists_errors_and_warnings(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # Warnings need the policies to parse; a store that only fails validation still gets them.
    root = broken_store(tmp_path / "store", BROKEN[1])
    (root / "never.cedar").write_text(
        '@id("never") permit (principal, action == Action::"read", resource) when { false };\n',
        encoding="utf-8")

    code, out, _ = run(capsys, "validate", "--json", str(root))

    assert code == 1
    report = json.loads(out)
    assert report["ok"] is False
    assert report["errors"] == [{"severity": "error", "file": "broken.cedar", "line": 3, "col": 8,
                                 "code": None, "policy": None,
                                 "message": "[adds-strings] unexpected type: expected Long but "
                                            "saw String: `principal.dept + 1`: `principal.dept` is "
                                            "String, expected Long"}]
    assert [(w["file"], w["line"], w["code"], w["policy"]) for w in report["warnings"]] == [
        ("never.cedar", 1, "never-applies", "never")]


def test_color_always_draws_with_ansi_codes(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    pytest.importorskip("rich")
    root = broken_store(tmp_path / "store", BROKEN[0])

    code, out, _ = run(capsys, "validate", "--color", "always", str(root))

    assert code == 1
    assert "\x1b[" in out
    assert "unexpected token" in out


def test_missing_directory_is_a_usage_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = run(capsys, "validate", str(tmp_path / "nowhere"))

    assert code == 2
    assert out == ""
    assert "no such directory" in err


def test_console_script_and_python_m_run_the_commands() -> None:
    import subprocess
    import sys

    script = Path(sys.executable).with_name("agentauthz")
    commands = [[sys.executable, "-m", "agentauthz", "validate", str(EXAMPLE_STORE)]]
    if script.exists():
        commands.append([str(script), "test", "-q", str(EXAMPLE_STORE)])
    for command in commands:
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "0 errors" in done.stdout or " passed, 0 failed" in done.stdout
    usage = subprocess.run([sys.executable, "-m", "agentauthz", "--help"], capture_output=True,
                           text=True, timeout=60, check=False)
    for name in ("validate", "test", "check", "format", "replay"):
        assert name in usage.stdout
