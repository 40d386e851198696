"""``agentauthz format``: Cedar's formatter, only when meaning, ids and comments stay the same."""

from __future__ import annotations

import json
from pathlib import Path

import cedarpy
import pytest

import agentauthz as az
from agentauthz.policy import _format as _formatter
from tests.policy_stores import (
    BROKEN,
    BROKEN_IDS,
    Broken,
    broken_store,
    copy_example_store,
    good_store,
    run,
)

UNFORMATTED = """\
// Header comment.

// Owners read.
@id("owner-reads-too") permit(principal, action == Action::"read", resource) when { true }; // trailing
permit(principal,action==Action::"read",resource)   // no id: named by position
when {
  principal.dept == resource.dept // same department
};
"""


def _texts(root: Path) -> dict[str, str]:
    return {path.relative_to(root).as_posix(): path.read_text(encoding="utf-8")
            for path in sorted(root.rglob("*.cedar"))}


def test_check_lists_files_that_would_change_and_writes_nothing(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    root = copy_example_store(tmp_path / "policies")
    before = _texts(root)

    code, out, _ = run(capsys, "format", "--check", str(root))

    assert code == 1
    assert f"would reformat {root.as_posix()}/tools.cedar" in out
    assert f"would reformat {root.as_posix()}/sharing.cedar" not in out
    assert out.splitlines()[-1].endswith("6 files would be reformatted, 1 unchanged")
    assert _texts(root) == before


def test_formatting_keeps_ids_decisions_and_comments(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    root = copy_example_store(tmp_path / "policies")
    before = az.PolicyStore.from_directory(root)

    code, out, _ = run(capsys, "format", str(root))
    again, _, _ = run(capsys, "format", "--check", str(root))
    tested, test_out, _ = run(capsys, "test", "-q", str(root))

    assert code == 0, out
    assert again == 0
    assert tested == 0, test_out
    after = az.PolicyStore.from_directory(root)
    assert [p.id for p in after.policies] == [p.id for p in before.policies]
    for old, new in zip(before.policies, after.policies, strict=True):
        assert json.loads(cedarpy.policies_to_json_str(old.text)) == json.loads(
            cedarpy.policies_to_json_str(new.text))
    assert "// Guardrail: a refund is a positive amount" in (root / "tools.cedar").read_text(
        encoding="utf-8")


def test_positional_ids_and_trailing_comments_survive(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    root = good_store(tmp_path / "store")
    (root / "more.cedar").write_text(UNFORMATTED, encoding="utf-8")
    ids = [p.id for p in az.PolicyStore.from_directory(root).policies]

    code, out, _ = run(capsys, "format", "--diff", str(root))

    assert code == 0
    assert f"+++ {root.as_posix()}/more.cedar (formatted)" in out
    text = (root / "more.cedar").read_text(encoding="utf-8")
    for comment in ("// Header comment.", "// Owners read.", "// trailing",
                    "// no id: named by position", "// same department"):
        assert comment in text
    assert [p.id for p in az.PolicyStore.from_directory(root).policies] == ids
    assert "more.cedar:1" in ids


def test_a_file_whose_comments_the_formatter_would_drop_is_left_alone(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = good_store(tmp_path / "store")
    (root / "more.cedar").write_text(UNFORMATTED, encoding="utf-8")
    real = cedarpy.format_policies
    monkeypatch.setattr(_formatter.cedarpy, "format_policies",
                        lambda text, *a: real(text, *a).replace(" // same department", ""))

    code, out, _ = run(capsys, "format", str(root))

    assert code == 1
    assert f"error: {root.as_posix()}/more.cedar: formatting would drop or move comments; " \
           "left unchanged" in out
    assert (root / "more.cedar").read_text(encoding="utf-8") == UNFORMATTED


def test_a_file_whose_meaning_would_change_is_left_alone(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = good_store(tmp_path / "store")
    (root / "more.cedar").write_text(UNFORMATTED, encoding="utf-8")
    real = cedarpy.format_policies
    monkeypatch.setattr(_formatter.cedarpy, "format_policies",
                        lambda text, *a: real(text, *a).replace('@id("owner-reads-too")', '@id("x")'))

    code, out, _ = run(capsys, "format", "--check", str(root))

    assert code == 1
    assert "more.cedar: formatting would change what the policies mean; left unchanged" in out


@pytest.mark.parametrize("broken", BROKEN, ids=BROKEN_IDS)
def test_broken_stores(capsys: pytest.CaptureFixture[str], tmp_path: Path, broken: Broken) -> None:
    root = broken_store(tmp_path / "store", broken)
    before = (root / "broken.cedar").read_text(encoding="utf-8")

    code, out, _ = run(capsys, "format", "--check", str(root))

    # Formatting parses but does not validate: only unparseable text is refused.
    assert code == 1
    assert (root / "broken.cedar").read_text(encoding="utf-8") == before
    if broken.kind == "syntax-error":
        assert f"error: {root.as_posix()}/broken.cedar: does not parse" in out
    elif broken.kind == "over-deep-nesting":
        assert f"error: {root.as_posix()}/broken.cedar:{broken.line}: brackets nested deeper" in out
    else:
        assert f"would reformat {root.as_posix()}/broken.cedar" in out
    assert f"{root.as_posix()}/base.cedar" not in out


def test_json_output(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    root = good_store(tmp_path / "store")
    (root / "more.cedar").write_text(UNFORMATTED, encoding="utf-8")

    code, out, _ = run(capsys, "format", "--check", "--json", str(root))

    assert code == 1
    assert json.loads(out) == {"directory": root.as_posix(), "ok": False, "check": True,
                               "changed": ["more.cedar"], "written": [], "refused": [],
                               "unchanged": ["base.cedar"]}


def test_store_without_policy_files_is_a_usage_error(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "format", str(tmp_path))

    assert code == 2
    assert "no *.cedar files" in err
