"""Attack class: text from input files printed raw to the terminal (security review, finding 9).

``agentauthz replay`` printed audit-log text as it was: escape sequences that
recolor, clear or retitle the terminal, and line breaks that forge report
lines. Every command now shows strings from input files through one function,
:func:`agentauthz.cli._console.printable`, in the plain and the rich renderer
alike, and never interprets rich markup found in them.

Cases tried: replay of a hostile audit log, plain and color: 2; test, check,
validate and format on a store whose file names, ids, policy text, case names
and case files carry hostile text, plain and color: 8; the error report on
stderr: 1; the JUnit report: 1; a property (Hypothesis, 150 examples each) over
every renderer (line, table, code; plain and rich) and the error report: 7.
"""

from __future__ import annotations

import ast
import io
import json
import re
from pathlib import Path
from xml.etree import ElementTree

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import agentauthz as az
from agentauthz.cli._console import Output, printable
from agentauthz.cli._main import _report
from agentauthz.testing import capture_decisions
from tests.policy_stores import run
from tests.strategies import HOSTILE_TERMINAL_TEXT, terminal_texts

pytest.importorskip("rich", reason="the color renderer needs the cli extra")

# What rich itself writes: Select Graphic Rendition sequences (colors, bold). Nothing else may
# reach the terminal but printable characters and the renderers' own newlines.
_RICH_SGR = re.compile(r"\x1b\[[0-9;]*m")
FORGED = "ALLOW  forged"


def _unprintable(output: str) -> list[str]:
    """Characters of ``output`` that are neither printable nor a newline, rich's own colors aside."""
    return sorted({char for char in _RICH_SGR.sub("", output) if not char.isprintable() and char != "\n"})


def _assert_safe(output: str) -> None:
    assert _unprintable(output) == [], output
    plain = _RICH_SGR.sub("", output)
    assert not any(line.startswith(FORGED) for line in plain.splitlines()), output


# -- replay (the finding) ---------------------------------------------------------------------------


@pytest.mark.parametrize("color", ["never", "always"])
def test_replay_shows_audit_log_text_escaped(color: str, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    hostile = az.EntityUID("User", f"mallory\x1b[2J\x1b]0;pwned\x07\n{FORGED}\u202e[red]")
    authz = az.Authorizer.from_text('@id("all") permit(principal, action, resource);',
                                    audit=[], record_requests=True)
    with capture_decisions() as events, authz.acting_as(hostile):
        authz.authorize(action=f"read\r\n{FORGED}", resource=az.EntityUID("Doc", "d\x9b31m"))
    event = json.loads(events[0].to_json())
    event["reasons"] = [f"all\n{FORGED}\x1b[31m"]
    audit = tmp_path / "audit\x1b[31m.jsonl"
    audit.write_text(json.dumps(event) + "\n", encoding="utf-8")
    candidate = tmp_path / "candidate"
    candidate.mkdir()
    (candidate / "deny.cedar").write_text("forbid(principal, action, resource);")

    code, out, err = run(capsys, "replay", str(audit), "--policies", str(candidate), "--color", color)

    assert code == 0
    _assert_safe(out + err)
    shown = _RICH_SGR.sub("", out)
    # Entity ids are Cedar-escaped text (\u{1b}); what Cedar leaves, the terminal escape catches.
    assert 'User::"mallory\\u{1b}[2J\\u{1b}]0;pwned\\u{7}\\nALLOW  forged\\u202e[red]"' in shown
    assert "all\\nALLOW  forged\\x1b[31m" in shown
    assert "would now be denied (1)" in shown


# -- the other commands that print input text ------------------------------------------------------


def _hostile_store(root: Path) -> Path:
    """A store whose ids, policy text, file names, case names and case files carry hostile text."""
    root.mkdir()
    # A // comment ends at a line break (CR too); UTF-8 files hold no lone surrogate.
    text = HOSTILE_TERMINAL_TEXT.translate({ord("\n"): " ", ord("\r"): " ", 0xDCFF: None})
    (root / "policies.cedar").write_text(
        '@id("p\\u{1b}[2J\\n' + FORGED + '\\u{202e}") // ' + text + "\n"
        'permit(principal, action, resource) when { context.note == "\\u{1b}]0;t\\u{7}\\n' + FORGED + '" };\n'
        "forbid(principal, action, resource) when { context has x && context.x };\n",
        encoding="utf-8")
    (root / f"odd\x1b[31m{FORGED}.cedar").write_text("permit(principal,action,resource)\t;\n")
    (root / "ALLOW").mkdir()
    (root / "ALLOW" / "c\x1b[2J\u202e.json").write_text(json.dumps(
        {"principal": 'User::"a"', "action": 'Action::"read"', "resource": 'Doc::"d"',
         "context": {"note": f"\x1b]0;t\x07\n{FORGED}"}}))
    (root / "cases").mkdir()
    (root / "cases" / "t.toml").write_text(
        '[[case]]\nname = "n\\u001b[31m\\n' + FORGED + '[red]"\nprincipal = \'User::"a\\u{1b}"\'\n'
        'action = \'Action::"read\\n' + FORGED + '"\'\nresource = \'Doc::"d"\'\ncontext = {}\n'
        'decision = "deny"\nreasons = ["x\\u001b[2J\\n' + FORGED + '"]\n', encoding="utf-8")
    return root


COMMANDS = {
    "test": ["test", "{root}", "--junit", "{junit}"],
    "check": ["check", "{root}", "--principal", 'User::"a\x1b[2J"', "--action",
              'Action::"read"', "--resource", 'Doc::"d"', "--context",
              json.dumps({"note": f"\x1b]0;t\x07\n{FORGED}"})],
    "validate": ["validate", "{root}"],
    "format": ["format", "{root}", "--check", "--diff"],
}


@pytest.mark.parametrize("color", ["never", "always"])
@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_command_shows_input_text_escaped(command: str, color: str, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    root = _hostile_store(tmp_path / "store")
    junit = tmp_path / "report.xml"
    argv = [arg.replace("{root}", str(root)).replace("{junit}", str(junit)) for arg in COMMANDS[command]]

    _, out, err = run(capsys, *argv, "--color", color)

    assert out.strip()
    _assert_safe(out + err)
    if command == "test":
        ElementTree.parse(junit)  # well-formed: XML 1.0 holds no control characters


def test_errors_on_stderr_are_escaped_one_problem_a_line(tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "store"
    root.mkdir()
    (root / f"bad\x1b[2J\n{FORGED}.cedar").write_text("permit(principal, action resource);")
    (root / "worse\u202e.cedar").write_text("permit(")

    code, out, err = run(capsys, "test", str(root))

    assert code == 1
    _assert_safe(out + err)
    lines = err.splitlines()
    assert lines[0] == "agentauthz: error: 2 problems:"
    assert len(lines) == 3


def test_a_store_that_does_not_load_gives_a_well_formed_junit_report(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "store"
    root.mkdir()
    (root / f"bad\x1b[2J\x01{FORGED}.cedar").write_text("permit(")
    junit = tmp_path / "report.xml"

    code, _, _ = run(capsys, "test", str(root), "--junit", str(junit))

    assert code == 1
    assert "bad\\x1b[2J\\x01" in ElementTree.parse(junit).getroot()[0][0][0].attrib["message"]


# -- property: every renderer, any text ---------------------------------------------------------------


def _renderers(color: str) -> Output:
    return Output(io.StringIO(), color="always" if color == "rich" else "never")


def _written(out: Output) -> str:
    stream = out.stream
    assert isinstance(stream, io.StringIO)
    return stream.getvalue()


@pytest.mark.parametrize("color", ["plain", "rich"])
@settings(max_examples=150, deadline=None)
@given(text=terminal_texts)
def test_a_line_of_any_text_is_one_line_of_printable_characters(color: str, text: str) -> None:
    out = _renderers(color)
    out.line(text, "bold red")

    written = _written(out)

    assert _unprintable(written) == []
    assert _RICH_SGR.sub("", written).count("\n") == 1 and written.endswith("\n")


@pytest.mark.parametrize("color", ["plain", "rich"])
@settings(max_examples=150, deadline=None)
@given(cells=st.lists(st.tuples(terminal_texts, terminal_texts), min_size=1, max_size=4),
       title=terminal_texts, column=terminal_texts)
def test_a_table_of_any_text_keeps_every_cell_inside_its_row(
        color: str, cells: list[tuple[str, str]], title: str, column: str) -> None:
    out = _renderers(color)
    out.table([column, "b"], [list(row) for row in cells], title=title or None)

    written = _RICH_SGR.sub("", _written(out))

    assert _unprintable(written) == []
    body = written.splitlines()[1:] if title else written.splitlines()
    if color == "plain":
        assert len(body) == 2 + len(cells)  # header, rule, one line per row
    else:
        # Rich wraps long cells inside the box: every line of the table is a line of the box.
        table = body[next(i for i, line in enumerate(body) if line[:1] in "┏╭"):]
        assert all(line[:1] in "┏┃┡│└╭╰├" for line in table), written


@pytest.mark.parametrize("color", ["plain", "rich"])
@settings(max_examples=150, deadline=None)
@given(text=terminal_texts)
def test_source_text_breaks_lines_only_at_its_own_newlines(color: str, text: str) -> None:
    out = _renderers(color)
    out.code(text, language="cedar")

    written = _RICH_SGR.sub("", _written(out))

    assert _unprintable(written) == []
    assert written.count("\n") == text.count("\n") + 1


@settings(max_examples=150, deadline=None)
@given(problems=st.lists(terminal_texts, min_size=1, max_size=4))
def test_an_error_report_is_one_line_per_problem(problems: list[str]) -> None:
    stream = io.StringIO()
    _report(az.PolicyError(problems), stream)

    written = stream.getvalue()

    assert _unprintable(written) == []
    assert written.count("\n") == (len(problems) + 1 if len(problems) > 1 else 1)


@settings(max_examples=150, deadline=None)
@given(text=terminal_texts)
def test_printable_keeps_printable_text_and_escapes_the_rest_faithfully(text: str) -> None:
    shown = printable(text)

    assert shown.isprintable()
    if text.isprintable():
        assert shown == text
    if "\\" not in text and "'" not in text:
        assert ast.literal_eval(f"'{shown}'") == text  # the escapes say exactly what was there


def test_push_and_pull_show_policy_ids_escaped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from agentauthz.testing import LocalVerifiedPermissions

    root = tmp_path / "store"
    root.mkdir()
    (root / "policies.cedar").write_text(
        '@id("p\\u{1b}[2J\\n' + FORGED + '\\u{202e}")\npermit(principal, action, resource);\n',
        encoding="utf-8")
    with LocalVerifiedPermissions() as server:
        store_id = server.add_store()
        _, pushed, push_err = run(capsys, "push", str(root), "--policy-store-id", store_id,
                                  "--endpoint-url", server.endpoint_url)
        _, pulled, pull_err = run(capsys, "pull", str(tmp_path / f"out\x1b[31m{FORGED}"),
                                  "--policy-store-id", store_id, "--endpoint-url", server.endpoint_url)
    assert "created" in pushed and "wrote" in pulled
    _assert_safe(pushed + push_err + pulled + pull_err)
