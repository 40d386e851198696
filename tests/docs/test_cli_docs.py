"""The command-line examples of docs/cli.md and docs/policies.md run, with the output shown.

In page order, in a folder holding a copy of the example store ``policies/``:
``python`` blocks run (one namespace per page; one whose first line is a
``# module.py`` comment is also saved there, for ``--tools module:attribute``),
``cedar`` and ``cedarschema`` blocks whose first line is a ``// path`` comment
are saved there, and each ``$ agentauthz ...`` line of a
``console`` block runs and must print what follows it (timings aside). ``toml``
blocks are decision tables that must pass on the example store; ``yaml`` blocks
are CI steps whose ``agentauthz`` commands must succeed.
"""

from __future__ import annotations

import re
import shlex
import shutil
import sys
from pathlib import Path

import pytest

from agentauthz.policy._store import PolicyStore
from agentauthz.testing._cases import load_cases, run_cases
from tests.policy_stores import EXAMPLE_STORE, ROOT, run

PAGES = ["docs/cli.md", "docs/policies.md"]
FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```", re.S | re.M)
FILE_COMMENT = re.compile(r"//\s*(\S+\.(?:cedar|cedarschema))\s*$")
MODULE_COMMENT = re.compile(r"#\s*(\w+)\.py\s*$")
TIMING = re.compile(r"\d+\.\d+ (m?s)\b")


def _normalized(text: str) -> list[str]:
    return [TIMING.sub(r"N \1", line.rstrip()) for line in text.strip("\n").splitlines()]


def _console(block: str) -> list[tuple[str, str]]:
    commands: list[tuple[str, str]] = []
    for line in block.splitlines():
        if line.startswith("$ "):
            commands.append((line[2:], ""))
        elif commands:
            command, output = commands[-1]
            commands[-1] = (command, output + line + "\n")
    return commands


@pytest.mark.parametrize("page", PAGES)
def test_every_example_of_the_page_runs_as_shown(
        page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copytree(EXAMPLE_STORE, tmp_path / "policies")
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "__docs__"}
    checked = 0
    text = (ROOT / page).read_text(encoding="utf-8")
    for number, match in enumerate(FENCE.finditer(text)):
        language, code = match.group(1), match.group(2)
        first = code.splitlines()[0] if code.strip() else ""
        where = f"{page} block {number}"
        if language in ("cedar", "cedarschema") and FILE_COMMENT.match(first):
            target = tmp_path / FILE_COMMENT.match(first).group(1)  # type: ignore[union-attr]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(code, encoding="utf-8")
        elif language == "python":
            module = MODULE_COMMENT.match(first)
            if module:
                (tmp_path / f"{module.group(1)}.py").write_text(code, encoding="utf-8")
                sys.modules.pop(module.group(1), None)
            exec(compile(code, where, "exec"), namespace)
            checked += 1
        elif language == "console":
            for command, expected in _console(code):
                argv = shlex.split(command)
                assert argv[0] == "agentauthz", where
                _, out, err = run(capsys, *argv[1:])
                assert _normalized(out + err) == _normalized(expected), f"{where}: $ {command}"
                checked += 1
        elif language == "toml":
            table = tmp_path / "table.toml"
            table.write_text(code, encoding="utf-8")
            store = PolicyStore.from_directory(tmp_path / "policies")
            cases = [case for case in load_cases(tmp_path / "policies", [table])
                     if case.source == table.as_posix()]
            results = run_cases(store, cases)
            assert cases and all(result.passed for result in results), (
                where, [result.failures for result in results if not result.passed])
            checked += 1
        elif language == "yaml":
            for line in code.splitlines():
                step = line.strip().removeprefix("- run: ")
                if step.startswith("agentauthz "):
                    code_, out, err = run(capsys, *shlex.split(step)[1:])
                    assert code_ == 0, f"{where}: {step}\n{out}{err}"
                    checked += 1
    assert checked, f"{page} has no checked example"


def test_pages_are_linked_from_the_readme() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for page in PAGES:
        assert page in readme
