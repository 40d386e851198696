"""Every page of docs/ and README.md runs as a reader would, and prints what it shows.

The rules a page follows (what its folder holds, which blocks run, how printed
output is shown with ``# ->``) are in tests/docs/README.md. Each page runs in its
own Python process (tests/docs/page_runner.py), from a temporary folder.
"""

from __future__ import annotations

import difflib
import itertools
import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from tests.docs import requirements
from tests.docs.snippets import (
    OTHER_PYTHON,
    ROOT,
    RUNNABLE,
    Block,
    blocks,
    console_commands,
    matches,
    pages,
    shown_output,
    uses_example_store,
)

RUNNER = Path(__file__).with_name("page_runner.py")
#: The extras a reader installs (README, quickstart): every extra but the developers' and ``all``.
USER_EXTRAS = set(tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
                  ["project"]["optional-dependencies"]) - {"test", "docs", "all"}
#: Modules a page may import that a reader brings for the purpose the page names.
READER_BRINGS = {"pytest": "a page that shows a test module of the reader's own suite"}


def plan(page_blocks: list[Block]) -> list[dict[str, Any]]:
    return [{"page": b.page, "number": b.number, "line": b.line, "language": b.language, "code": b.code,
             "saved_as": b.saved_as}
            for b in page_blocks if b.language in RUNNABLE or b.saved_as]


def run_page(page_blocks: list[Block], folder: Path, *, example_store: bool) -> list[dict[str, Any]]:
    """Run the blocks in a fresh, isolated interpreter from ``folder/work``; their results."""
    work = folder / "work"
    work.mkdir()
    if example_store:
        shutil.copytree(ROOT / "policies", work / "policies")
    (folder / "plan.json").write_text(json.dumps(plan(page_blocks)), encoding="utf-8")
    finished = subprocess.run([sys.executable, "-I", str(RUNNER), str(folder / "plan.json"),
                               str(folder / "results.json")],
                              cwd=work, capture_output=True, text=True, timeout=600, check=False)
    assert finished.returncode == 0, finished.stderr
    results: list[dict[str, Any]] = json.loads((folder / "results.json").read_text(encoding="utf-8"))
    return results


def _diff(expected: list[str], actual: list[str]) -> str:
    return "\n".join(difflib.unified_diff(expected, actual, "shown", "printed", lineterm=""))


def problems_of(page_blocks: list[Block], results: list[dict[str, Any]]) -> tuple[list[str], int]:
    """What differs from the page, and how many outputs were compared."""
    by_number = {block.number: block for block in page_blocks}
    problems: list[str] = []
    compared = 0
    for result in results:
        block = by_number[result["number"]]
        if result["error"]:
            problems.append(f"{block.where} raised:\n{result['error']}")
            continue
        if block.language == "python":
            [step] = result["steps"]
            expected, printed = shown_output(block.code), step["stdout"].splitlines()
            compared += 1
            if not matches(expected, printed):
                problems.append(f"{block.where}: printed output differs from its `# ->` lines\n"
                                + _diff(expected, printed))
            if step["stderr"]:
                problems.append(f"{block.where} wrote to stderr:\n{step['stderr']}")
        elif block.language == "console":
            for (command, shown), step in zip(console_commands(block.code), result["steps"], strict=True):
                expected = "\n".join(shown).strip("\n").splitlines()
                printed = (step["stdout"] + step["stderr"]).strip("\n").splitlines()
                compared += 1
                if not matches(expected, printed, durations=True):
                    problems.append(f"{block.where}: $ {command}\n" + _diff(expected, printed))
        elif block.language in ("toml", "yaml"):
            for step in result["steps"]:
                compared += 1
                if step["exit"] != 0:
                    problems.append(f"{block.where}: `{step['command']}` exited {step['exit']}:\n"
                                    f"{step['stdout']}{step['stderr']}")
    ran = {result["number"] for result in results}
    skipped = [b.where for b in page_blocks if (b.language in RUNNABLE or b.saved_as) and b.number not in ran]
    if skipped and not problems:
        problems.append(f"blocks that never ran: {skipped}")
    return problems, compared


@pytest.mark.parametrize("page", pages())
def test_every_block_of_the_page_runs_and_prints_what_it_shows(page: str, tmp_path: Path) -> None:
    page_blocks = blocks(page)
    results = run_page(page_blocks, tmp_path, example_store=uses_example_store(page))
    problems, _ = problems_of(page_blocks, results)
    assert not problems, "\n\n".join(problems)


def test_a_wrong_output_a_missing_one_and_an_error_are_all_reported(tmp_path: Path) -> None:
    page = [Block("planted.md", 0, 1, "python", "print(1 + 1)  # -> 3\n"),
            Block("planted.md", 1, 5, "python", "print('shown nowhere')\n"),
            Block("planted.md", 2, 9, "python", "print('<id>'.upper())  # -> <ID>\nraise KeyError('boom')\n"),
            Block("planted.md", 3, 20, "python", "print('never reached')  # -> never reached\n")]
    problems, compared = problems_of(page, run_page(page, tmp_path, example_store=False))
    assert len(problems) == 3 and compared == 2
    assert "-3\n+2" in problems[0] and "+shown nowhere" in problems[1]
    assert "planted.md:9 (python block 2) raised" in problems[2] and "KeyError: 'boom'" in problems[2]
    assert "printed before it failed:\n<ID>" in problems[2]


def test_a_page_runs_isolated_from_the_checkout(tmp_path: Path) -> None:
    page = [Block("planted.md", 0, 1, "python",
                  "import importlib.util, os, sys\n"
                  "print(importlib.util.find_spec('tests') is None, os.listdir('.'))  # -> True []\n")]
    problems, _ = problems_of(page, run_page(page, tmp_path, example_store=False))
    assert problems == []


def test_random_ids_are_the_only_thing_normalized() -> None:
    assert matches(["decision <id>."], ["decision 0123456789abcdef0123456789abcdef."])
    assert not matches(["decision <id>."], ["decision policy-7."])
    assert not matches(["took 1.20 s"], ["took 3.40 s"])
    assert matches(["took 1.20 s"], ["took 3.40 s"], durations=True)
    assert not matches(["a"], ["a", "b"])


def test_a_comment_in_a_string_shows_no_output() -> None:
    assert shown_output('x = "# -> not output"\nprint(x)  # -> # -> not output\n') == ["# -> not output"]


@pytest.mark.parametrize("page", pages())
def test_python_is_written_as_python_so_that_it_runs(page: str) -> None:
    unrun = [block.where for block in blocks(page) if block.language in OTHER_PYTHON]
    assert unrun == [], "write ```python: other spellings would not run"


@pytest.mark.parametrize("page", pages())
def test_output_of_a_python_block_is_shown_in_it_not_after_it(page: str) -> None:
    text = (ROOT / page).read_text(encoding="utf-8")
    page_blocks = blocks(page)
    for before, after in itertools.pairwise(page_blocks):
        between = text.splitlines()[before.line + before.code.count("\n"): after.line - 1]
        if before.language == "python" and after.language == "text" and not "".join(between[1:]).strip():
            pytest.fail(f"{after.where} follows a python block: show its lines with `# ->` instead")


def test_the_snippets_import_only_what_the_user_extras_install() -> None:
    available = requirements.installed_with(USER_EXTRAS)
    for page in pages():
        page_blocks = blocks(page)
        saved = {Path(b.saved_as).stem for b in page_blocks if b.saved_as}
        for block in page_blocks:
            if block.language != "python":
                continue
            imported = requirements.third_party(requirements.imported_modules(block.code))
            for module in imported - saved - set(READER_BRINGS):
                assert requirements.distributions_of(module) & available, (
                    f"{block.where} imports {module}, which no extra of agentauthz installs")


def test_the_extras_check_knows_what_is_not_installed() -> None:
    available = requirements.installed_with(USER_EXTRAS)
    assert {"cedarpy", "langchain-core", "boto3", "numpy", "pyjwt"} <= available
    assert not {"pytest", "hypothesis", "mkdocs"} & available


def test_readme_shows_the_make_commands_an_install_line_and_links_every_page() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "make demo" in readme and "make test" in readme and "make docs" in readme
    assert "pip install" in readme and "git+" in readme
    for page in pages():
        if page.startswith("docs/") and not page.startswith(("docs/reference/", "docs/index.md")):
            assert f"({page})" in readme, f"README.md does not link {page}"
    assert "(docs/reference/index.md)" in readme
