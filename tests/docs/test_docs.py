"""Every snippet in the user docs runs against the current API.

Convention of the pages checked here: ``cedar`` and ``cedarschema`` blocks whose
first line is a ``// path`` comment are files to save; ``python`` blocks run in
page order in one namespace, from a folder holding those files and a link to the
example store (``policies/``), as a reader at the repository root would.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = ["docs/quickstart.md", "docs/concepts.md", "docs/exceptions.md", "docs/tools.md",
         "docs/policies.md", "docs/cli.md", "docs/session.md"]
FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```", re.S | re.M)
FILE_COMMENT = re.compile(r"//\s*(\S+\.(?:cedar|cedarschema))\s*$")


def blocks(page: str) -> list[tuple[str, str]]:
    text = (ROOT / page).read_text(encoding="utf-8")
    return [(match.group(1), match.group(2)) for match in FENCE.finditer(text)]


@pytest.mark.parametrize("page", PAGES)
def test_every_python_snippet_of_the_page_runs(
    page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "policies").symlink_to(ROOT / "policies", target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "__docs__"}
    ran = 0
    for number, (language, code) in enumerate(blocks(page)):
        first = code.splitlines()[0] if code.strip() else ""
        saved = FILE_COMMENT.match(first)
        if language in ("cedar", "cedarschema") and saved:
            target = tmp_path / saved.group(1)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(code, encoding="utf-8")
        elif language == "python":
            exec(compile(code, f"{page} block {number}", "exec"), namespace)
            ran += 1
    assert ran, f"{page} has no python snippet"


def test_readme_keeps_both_make_commands_and_links_the_docs() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "make demo" in readme
    assert "make test" in readme
    for page in PAGES:
        assert page in readme
