"""Where in the author's files a load problem is: ``file:line:col`` for every problem.

cedarpy reports no positions, so the loader attributes each problem to a file and
the line of its statement (``file:line: message``), and this module adds the
column, as ``agentauthz validate`` prints it and as :class:`~agentauthz.PolicyError`
carries it for a store loaded from a directory:

* a problem found by the lexical scan (nesting too deep, an unterminated
  string) is at the token that caused it;
* ``unexpected token `X``` (a syntax error) is at the first occurrence of ``X``
  such that the statement cut right after it fails with the same error: Cedar's
  parser is LR, so every valid prefix of a statement still parses up to its end;
* an error that quotes a name (an attribute, an action, a function, an entity
  type, an expression) is at the first occurrence of that name in the
  statement, outside strings and comments;
* an entity or a template link is at its element of the JSON array;
* anything else is at the start of the statement (its first annotation).

A problem that already carries its column is read as it is.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

import cedarpy

from agentauthz._errors import PolicyError
from agentauthz.policy._files import read_text
from agentauthz.policy._messages import truncate
from agentauthz.policy._text import _TOKEN, DEFAULT_MAX_BYTES, DEFAULT_MAX_DEPTH, scan

__all__ = ["Finding", "Severity", "StoreTexts", "element_position", "locate", "locate_problems"]

Severity = Literal["error", "warning"]

_LOCATED = re.compile(r"^(?P<file>[^\n]+?):(?P<line>\d+)(?::(?P<col>\d+))?: (?P<message>.*)$", re.S)
_UNLOCATED = re.compile(r"^(?P<file>[^\s:][^:\n]*?): (?P<message>.*)$", re.S)
_LABEL = re.compile(r"^\[[^\]]*\] ")
_FOR_POLICY = re.compile(r"^(\[[^\]]*\] )?for policy, ")
_BACKTICKED = re.compile(r"`([^`]+)`")
_AFTER_COLON = re.compile(r": ([A-Za-z_][A-Za-z0-9_]*)$")
_UNEXPECTED = re.compile(r"^unexpected token `(.+)`$")
_JSON_POSITION = re.compile(r"at line (\d+) column (\d+)")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

@dataclass(frozen=True)
class Finding:
    """One error or warning, located as precisely as it can be.

    Attributes:
        severity: ``"error"`` (the store does not load) or ``"warning"``.
        message: what is wrong.
        file: file relative to the store, when known.
        line: 1-based line, when known.
        col: 1-based column, when known.
        code: short name of a warning kind (``never-applies``, ``unlinked-template``,
            ``shadowed``); None for errors.
        policy: id of the policy concerned, when there is one.
    """

    severity: Severity
    message: str
    file: str | None = None
    line: int | None = None
    col: int | None = None
    code: str | None = None
    policy: str | None = None

    def location(self, root: str | None = None) -> str:
        """``file:line:col`` (as much as known), the file joined to ``root`` if given.

        Example:
            >>> Finding("error", "bad", "a.cedar", 3, 7).location("policies")
            'policies/a.cedar:3:7'
        """
        if self.file is None:
            return root or ""
        path = f"{root.rstrip('/')}/{self.file}" if root else self.file
        parts = [path] + [str(n) for n in (self.line, self.col) if n is not None]
        return ":".join(parts)

    def text(self, root: str | None = None) -> str:
        """``file:line:col: message``, as :attr:`PolicyError.problems` holds it.

        Example:
            >>> Finding("error", "bad", "a.cedar", 3, 7).text()
            'a.cedar:3:7: bad'
        """
        where = self.location(root)
        return f"{where}: {self.message}" if where else self.message

    def to_json(self) -> dict[str, Any]:
        """The finding as a JSON object."""
        return {"severity": self.severity, "file": self.file, "line": self.line, "col": self.col,
                "code": self.code, "policy": self.policy, "message": self.message}


def locate_problems(problems: Iterable[str], root: str | Path,
                    max_depth: int = DEFAULT_MAX_DEPTH) -> list[Finding]:
    """:attr:`PolicyError.problems` of a store directory, with columns (see the module doc).

    Example:
        >>> [f.location() for f in locate_problems(["nowhere.cedar:3: bad"], ".")]
        ['nowhere.cedar:3']
    """
    texts = StoreTexts(Path(root))
    return [locate(problem, texts, max_depth) for problem in problems]


class StoreTexts:
    """Texts of a store's files, with the positions of their statements.

    Args:
        root: the store directory, whose files are read (once) when asked for.
        loaded: texts already in hand by file name (the loader's); a name not
            among them is read from ``root``, if given.
    """

    def __init__(self, root: Path | None = None, loaded: Mapping[str, str] | None = None) -> None:
        self.root = root
        self._cache: dict[str, str | None] = dict(loaded or {})

    def text(self, name: str) -> str | None:
        """The text of file ``name`` (relative to the store), or None if it cannot be read."""
        if name not in self._cache:
            self._cache[name] = None
            # A problem naming a file that is gone or unreadable gets no column.
            if self.root is not None:
                with contextlib.suppress(PolicyError):
                    self._cache[name] = read_text(self.root / name, name, DEFAULT_MAX_BYTES)
        return self._cache[name]

    def statement_spans(self, name: str, max_depth: int = DEFAULT_MAX_DEPTH) -> list[tuple[int, int]]:
        """(start, end) offsets of the statements of a policy file, in order."""
        text = self.text(name)
        if text is None:
            return []
        return _statement_spans(text, max_depth)


@cache
def _statement_spans(text: str, max_depth: int) -> list[tuple[int, int]]:
    statements, _ = scan(text, max_depth=max_depth)
    spans, position = [], 0
    for statement in statements:
        position = text.find(statement.text, position)
        spans.append((position, position + len(statement.text)))
        position += len(statement.text)
    return spans


def _line_col(text: str, offset: int) -> tuple[int, int]:
    line = text.count("\n", 0, offset) + 1
    return line, offset - (text.rfind("\n", 0, offset) + 1) + 1


def _offset(text: str, line: int) -> int:
    position = 0
    for _ in range(line - 1):
        found = text.find("\n", position)
        if found < 0:
            return len(text)
        position = found + 1
    return position


def locate(problem: str, texts: StoreTexts, max_depth: int = DEFAULT_MAX_DEPTH) -> Finding:
    """The problem as a :class:`Finding`, with its line and column where the text says them.

    Example:
        >>> texts = StoreTexts(loaded={"p.cedar": 'permit(principal, action, resource)\\n'
        ...                                       'when { principal.nmae == "x" };'})
        >>> locate("p.cedar:1: attribute `nmae` not found", texts).location()
        'p.cedar:2:18'
    """
    located = _LOCATED.match(problem)
    if located and located.group("col"):
        return Finding("error", located.group("message"), located.group("file"),
                       int(located.group("line")), int(located.group("col")))
    if located and texts.text(located.group("file")) is not None:
        name, line = located.group("file"), int(located.group("line"))
        message = _FOR_POLICY.sub(r"\1", located.group("message"))
        where = _policy_position(name, line, message, texts, max_depth)
        if where is None:
            return Finding("error", message, name, line)
        return Finding("error", message, name, where[0], where[1])
    unlocated = _UNLOCATED.match(problem)
    if unlocated and texts.text(unlocated.group("file")) is not None:
        name, message = unlocated.group("file"), unlocated.group("message")
        position = (_schema_position(name, message, texts) if ".cedarschema" in name
                    else element_position(name, message, texts))
        if position is not None:
            return Finding("error", message, name, position[0], position[1])
        return Finding("error", message, name)
    if located:
        return Finding("error", located.group("message"), located.group("file"),
                       int(located.group("line")))
    return Finding("error", problem)


def _policy_position(name: str, line: int, message: str, texts: StoreTexts,
                     max_depth: int) -> tuple[int, int] | None:
    text = texts.text(name)
    if text is None:
        return None
    if name.endswith((".cedarschema", ".cedarschema.json")):
        offset = _deep_schema_offset(text, max_depth) if "nested deeper" in message else None
        return _line_col(text, offset) if offset is not None else _first_column(text, line)
    if not name.endswith(".cedar"):
        return _first_column(text, line)
    message = _LABEL.sub("", message)
    if "nested deeper than" in message or message == "unterminated string":
        offset = _scan_problem_offset(text, max_depth)
        if offset is not None:
            return _line_col(text, offset)
    for start, end in texts.statement_spans(name, max_depth):
        if _line_col(text, start)[0] == line:
            found = _find(text[start:end], message, cedarpy.PolicySet.from_str)
            return _line_col(text, start + (found or 0))
    return _first_column(text, line)


def _first_column(text: str, line: int) -> tuple[int, int]:
    start = _offset(text, line)
    rest = text[start:text.find("\n", start) if "\n" in text[start:] else len(text)]
    return line, len(rest) - len(rest.lstrip()) + 1


def _find(source: str, message: str, parse: Callable[[str], Any]) -> int | None:
    """Offset in ``source`` of what ``message`` complains about, or None."""
    unexpected = _UNEXPECTED.search(message)
    if unexpected:
        token = unexpected.group(1)
        occurrences = _occurrences(source, token)
        for offset in occurrences:
            # An LR parser accepts every prefix up to its first error: the prefix
            # ending at the bad token is the shortest that fails the same way.
            # (With and without a closing `;`: Cedar recovers from some errors and may
            # then report the end of input first.)
            for ending in ("", ";"):
                try:
                    parse(source[: offset + len(token)] + ending)
                except ValueError as exc:
                    if truncate(str(exc)) == message or str(exc) == message:
                        return offset
        return occurrences[0] if occurrences else None
    for candidate in [*_BACKTICKED.findall(message), *_AFTER_COLON.findall(message)]:
        occurrences = _occurrences(source, candidate)
        if occurrences:
            return occurrences[0]
    return None


def _occurrences(source: str, needle: str) -> list[int]:
    """Offsets of ``needle`` in Cedar text, outside comments (and strings, unless it is one)."""
    found: list[int] = []
    if not needle.strip():
        return found
    blocked: list[tuple[int, int]] = []
    for match in _TOKEN.finditer(source):
        if match.lastgroup == "comment" or (match.lastgroup == "string" and not needle.startswith('"')):
            blocked.append(match.span())
    word = _IDENT.fullmatch(needle) is not None
    pattern = re.compile((r"(?<![A-Za-z0-9_])" + re.escape(needle) + r"(?![A-Za-z0-9_])")
                         if word else re.escape(needle))
    for match in pattern.finditer(source):
        if not any(start <= match.start() < end for start, end in blocked):
            found.append(match.start())
    return found


def _scan_problem_offset(text: str, max_depth: int) -> int | None:
    # The same walk as _policytext.scan, keeping offsets instead of lines.
    nesting: list[str] = []
    for match in _TOKEN.finditer(text):
        kind, token = match.lastgroup, match.group()
        if kind in ("space", "comment"):
            continue
        if kind == "string" and (len(token) < 2 or not token.endswith('"')
                                 or (len(token) - 1 - len(token[:-1].rstrip("\\"))) % 2):
            return match.start()
        if token in "([{" or (kind == "ident" and token == "if"):
            nesting.append(token)
            if len(nesting) > max_depth:
                return match.start()
        elif token in ")]}":
            while nesting and nesting[-1] == "if":
                nesting.pop()
            if nesting:
                nesting.pop()
        elif token == ";":
            nesting = []
    return None


def _deep_schema_offset(text: str, max_depth: int) -> int | None:
    depth = 0
    for match in re.finditer(r'//[^\n\r]*|"(?:[^"\\]|\\.)*"|[{}\[\]<>()]', text):
        token = match.group()
        if token in "{[<(":
            depth += 1
            if depth > max_depth:
                return match.start()
        elif token in "}]>)":
            depth = max(depth - 1, 0)
    return None


def _schema_position(name: str, message: str, texts: StoreTexts) -> tuple[int, int] | None:
    text = texts.text(name)
    if text is None:
        return None
    if name.endswith(".json"):
        position = _JSON_POSITION.search(message)
        return (int(position.group(1)), int(position.group(2))) if position else None
    found = _find(text, message, cedarpy.Schema.from_str)
    return _line_col(text, found) if found is not None else None


def _element_offset(text: str, index: int) -> int | None:
    """Offset of the ``index``-th element of the top-level JSON array in ``text``."""
    depth, count, in_string, escaped = 0, -1, False, False
    for offset, char in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
            continue
        if char == '"':
            in_string = True
            if depth == 1:
                count += 1
                if count == index:
                    return offset
        elif char in "[{":
            depth += 1
            if depth == 2:
                count += 1
                if count == index:
                    return offset
        elif char in "]}":
            depth -= 1
    return None


_ELEMENT = re.compile(r"(?:entity|link):? #(\d+)")
_LINK_ID = re.compile(r"link '((?:[^'\\]|\\.)*)'")


def element_position(name: str, message: str, texts: StoreTexts) -> tuple[int, int] | None:
    """(line, col) of the entity or link a problem names (``entity #3``, ``link 'x'``) in its JSON file."""
    text = texts.text(name)
    if text is None:
        return None
    element = _ELEMENT.search(message)
    if element:
        offset = _element_offset(text, int(element.group(1)))
        return _line_col(text, offset) if offset is not None else None
    link = _LINK_ID.search(message)
    if link:
        offset = text.find(json.dumps(link.group(1)))
        return _line_col(text, offset) if offset >= 0 else None
    return None

