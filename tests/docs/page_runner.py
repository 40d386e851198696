"""Runs the blocks of one docs page as a reader would, in this process's working folder.

Started by tests/docs/test_docs.py as ``python -I page_runner.py PLAN RESULTS``:
isolated (``-I``), so only the installed package is importable, plus the working
folder itself, as for a script saved there. PLAN is a JSON list of blocks
(``number``, ``line``, ``language``, ``code``, ``saved_as``, ``page``); RESULTS
receives, per block run, what each step printed and the first error. The rules
are those of tests/docs/README.md; the comparison is the test's.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shlex
import sys
import traceback
from pathlib import Path
from typing import Any


class BlockFailed(Exception):
    """A python block raised; the message holds what it printed until then."""


def run_command(argv: list[str]) -> dict[str, Any]:
    """One ``agentauthz`` command, in-process, as the console script runs it."""
    from agentauthz.__main__ import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
    return {"command": shlex.join(["agentauthz", *argv]), "stdout": out.getvalue(),
            "stderr": err.getvalue(), "exit": code}


def run_block(block: dict[str, Any], namespace: dict[str, Any]) -> list[dict[str, Any]]:
    language, code, saved_as = block["language"], block["code"], block["saved_as"]
    if saved_as:
        target = Path(saved_as)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(code, encoding="utf-8")
        sys.modules.pop(target.stem, None)  # a module saved again is imported anew
    if language == "python":
        out, err = io.StringIO(), io.StringIO()
        # Line numbers of a traceback are those of the page.
        compiled = compile("\n" * block["line"] + code, block["page"], "exec")
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                exec(compiled, namespace)
        except BaseException as exc:
            raise BlockFailed(f"printed before it failed:\n{out.getvalue()}{err.getvalue()}") from exc
        return [{"command": None, "stdout": out.getvalue(), "stderr": err.getvalue(), "exit": None}]
    if language == "console":
        steps = []
        for line in code.splitlines():
            if line.startswith("$ "):
                argv = shlex.split(line[2:])
                if argv[0] != "agentauthz":
                    raise ValueError(f"a console block runs only agentauthz commands, not {argv[0]!r}")
                steps.append(run_command(argv[1:]))
        return steps
    if language == "toml":
        if not saved_as:
            raise ValueError("a decision table names its file on its first line (# policies/cases/x.toml)")
        table = Path(saved_as)
        if table.parent.name != "cases":
            raise ValueError(f"{saved_as}: a decision table lives in the cases/ folder of its store")
        return [run_command(["test", str(table.parent.parent), "--quiet", "--no-coverage"])]
    if language == "yaml":
        steps = []
        for line in code.splitlines():
            step = line.strip().removeprefix("- run: ")
            if step.startswith("agentauthz "):
                steps.append(run_command(shlex.split(step)[1:]))
        return steps
    return []


def main() -> int:
    plan = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
    sys.path.insert(0, os.getcwd())
    namespace: dict[str, Any] = {"__name__": "__main__"}
    results: list[dict[str, Any]] = []
    for block in plan:
        try:
            steps = run_block(block, namespace)
        except BaseException:
            results.append({"number": block["number"], "steps": [], "error": traceback.format_exc()})
            break
        results.append({"number": block["number"], "steps": steps, "error": None})
    Path(sys.argv[2]).write_text(json.dumps(results), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
