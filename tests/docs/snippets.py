"""Reading the fenced blocks of a docs page, by the rules of tests/docs/README.md."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```", re.S | re.M)
#: A first line naming the file a block is: ``// dir/file.cedar`` or ``# dir/file.py``.
SAVED_AS = re.compile(r"^(?://|#)\s*([\w./-]+\.\w+)\s*$")
#: One line of printed output shown in a python block.
SHOWN = re.compile(r"#\s?-> ?(.*)$")
#: The phrase that gives a page's folder a copy of the example store.
EXAMPLE_STORE = re.compile(r"a\s+copy\s+of\s+the\s+example\s+store")
RUNNABLE = {"python", "console", "toml", "yaml"}
OTHER_PYTHON = {"py", "python3", "pycon", "ipython"}
RANDOM_ID = "<id>"


@dataclass(frozen=True)
class Block:
    """One fenced block of a page."""

    page: str
    number: int
    line: int  # of the opening fence, 1-based
    language: str
    code: str

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line} ({self.language} block {self.number})"

    @property
    def saved_as(self) -> str | None:
        first = self.code.split("\n", 1)[0]
        match = SAVED_AS.match(first)
        if match is None:
            return None
        prefix_ok = first.startswith("//") == (self.language in ("cedar", "cedarschema"))
        return match.group(1) if prefix_ok else None


def pages() -> list[str]:
    """Every page the harness runs: README.md and each Markdown file under docs/."""
    found = sorted(path.relative_to(ROOT).as_posix() for path in (ROOT / "docs").rglob("*.md")
                   if "_tooling" not in path.parts)
    return ["README.md", *found]


def blocks(page: str) -> list[Block]:
    text = (ROOT / page).read_text(encoding="utf-8")
    return [Block(page, number, text.count("\n", 0, match.start()) + 1, match.group(1), match.group(2))
            for number, match in enumerate(FENCE.finditer(text))]


def uses_example_store(page: str) -> bool:
    return EXAMPLE_STORE.search((ROOT / page).read_text(encoding="utf-8")) is not None


def shown_output(code: str) -> list[str]:
    """The ``# ->`` lines of a python block, in source order."""
    shown = []
    for line in code.splitlines():
        match = SHOWN.search(line)
        if match and not _inside_string(line, match.start()):
            shown.append(match.group(1).rstrip())
    return shown


def _inside_string(line: str, position: int) -> bool:
    """Whether ``position`` of a source line is inside a string literal (a ``#`` there is no comment)."""
    quote: str | None = None
    escaped = False
    for char in line[:position]:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif quote is None and char in "'\"":
            quote = char
        elif char == quote:
            quote = None
    return quote is not None


def console_commands(code: str) -> list[tuple[str, list[str]]]:
    """``$ command`` lines of a console block, each with the output lines that follow it."""
    commands: list[tuple[str, list[str]]] = []
    for line in code.splitlines():
        if line.startswith("$ "):
            commands.append((line[2:], []))
        elif commands:
            commands[-1][1].append(line)
    return commands


def matches(expected: list[str], actual: list[str], *, durations: bool = False) -> bool:
    """Line by line equality, where ``<id>`` stands for a random id (and, if asked, durations are equal)."""
    if len(expected) != len(actual):
        return False
    return all(_line_pattern(want, durations).fullmatch(got) is not None
               for want, got in zip(expected, actual, strict=True))


DURATION = re.compile(r"\d+(?:\.\d+)? (?:m?s)\b")


def _line_pattern(expected: str, durations: bool) -> re.Pattern[str]:
    parts = []
    for piece in re.split(r"(<id>)", expected.rstrip()):
        if piece == RANDOM_ID:
            parts.append(r"(?:[0-9a-f]{32}|<id>)")  # a page may replace the id itself
        elif durations:
            parts.append(r"\d+(?:\.\d+)? (?:m?s)\b".join(re.escape(chunk) for chunk in DURATION.split(piece)))
        else:
            parts.append(re.escape(piece))
    return re.compile("".join(parts) + r"\s*")
