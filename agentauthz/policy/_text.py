"""Lexical scan of Cedar policy text, done before cedarpy ever sees it.

cedarpy reports parse errors without a location and crashes the interpreter on
bracket nesting past 650-700 levels, so the loader splits a file into
statements itself (minding strings and comments), measures nesting, and reads
the annotations that name policies.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field

from agentauthz._errors import InvalidValueError
from agentauthz._model import unescape

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_DATA_BYTES",
    "DEFAULT_MAX_DEPTH",
    "Statement",
    "TextProblem",
    "scan",
    "schema_nesting_problem",
]

DEFAULT_MAX_BYTES = 1024 * 1024
#: Data files (entities.json, template-links.json, linked) are data, not code: a million entities
#: or 100,000 links are far over a policy file's limit, yet a store must load them with the defaults.
DEFAULT_MAX_DATA_BYTES = 1024 * 1024 * 1024
DEFAULT_MAX_DEPTH = 200

_TOKEN = re.compile(
    r"""
    (?P<space>\s+)
    |(?P<comment>//[^\n\r]*)
    |(?P<string>"(?:[^"\\]|\\.)*"?)
    |(?P<ident>[A-Za-z_][A-Za-z0-9_]*)
    |(?P<slot>\?[A-Za-z_]+)
    |(?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)
_SLOTS = ("?principal", "?resource")
_OPEN = "([{"
_CLOSE = ")]}"


@dataclass(frozen=True)
class Statement:
    """One policy or template statement of a file.

    Attributes:
        index: position in the file, counting templates (Cedar's ``policyN``).
        text: the statement, annotations included, up to and with its ``;``.
        line: 1-based line of its first token.
        annotations: ``@name("value")`` pairs; a bare ``@name`` maps to ``""``.
        is_template: it has a ``?principal`` or ``?resource`` slot.
        column: 1-based column of its first token.
    """

    index: int
    text: str
    line: int
    annotations: dict[str, str] = field(default_factory=dict)
    is_template: bool = False
    column: int = 1


@dataclass(frozen=True)
class TextProblem:
    """A problem found by the scan, with its 1-based line."""

    line: int
    message: str


def _line_of(newlines: list[int], offset: int) -> int:
    return bisect.bisect_right(newlines, offset - 1) + 1


def _unquote(token: str) -> str:
    try:
        return unescape(token[1:-1], token)
    except InvalidValueError:
        # Cedar rejects the escape itself and reports it when it parses the file.
        return token[1:-1]


def scan(text: str, *, max_depth: int = DEFAULT_MAX_DEPTH) -> tuple[list[Statement], list[TextProblem]]:
    """Split policy text into statements and find problems cedarpy must not see.

    Returns the statements and a list of problems: nesting deeper than
    ``max_depth``, an unterminated string. Any problem means the text must not
    be handed to cedarpy. A trailing fragment without ``;`` is returned as a
    statement so that the parser reports it.
    """
    newlines = [m.start() for m in re.finditer("\n", text)]
    statements: list[Statement] = []
    problems: list[TextProblem] = []
    tokens: list[tuple[str, str]] = []
    # Open brackets and open `if`s: Cedar's parser recurses on both, and cedarpy
    # crashes (stack overflow) far below any limit it enforces itself.
    nesting: list[str] = []
    # Components of a `has a.b.c` path: Cedar expands one test per prefix, a cost that grows
    # with the square of the path's length (None: not in such a path; `name_next`: awaits a name).
    has_path: int | None = None
    name_next = False
    start = 0

    def close(end: int) -> None:
        statements.append(Statement(
            index=len(statements),
            text=text[start:end],
            line=_line_of(newlines, start),
            annotations=_annotations(tokens),
            is_template=any(k == "slot" and t in _SLOTS for k, t in tokens),
            column=start - text.rfind("\n", 0, start),
        ))

    for match in _TOKEN.finditer(text):
        kind = match.lastgroup
        token = match.group()
        if kind == "space" or kind == "comment":
            continue
        if not tokens:
            start = match.start()
        if kind == "string" and not _terminated(token):
            problems.append(TextProblem(_line_of(newlines, match.start()), "unterminated string"))
            return statements, problems
        tokens.append((kind or "", token))
        if kind == "ident" and token == "has":
            has_path, name_next = 0, True
        elif has_path is not None and name_next and kind in ("ident", "string"):
            name_next = False
        elif has_path is not None and not name_next and token == ".":
            has_path, name_next = has_path + 1, True
            if has_path >= max_depth:
                problems.append(TextProblem(
                    _line_of(newlines, match.start()),
                    f"`has` attribute path longer than {max_depth} attributes",
                ))
                return statements, problems
        else:
            has_path = None
        if token in _OPEN or (kind == "ident" and token == "if"):
            nesting.append(token)
            if len(nesting) > max_depth:
                what = "if-then-else expressions" if token == "if" else "brackets"
                problems.append(TextProblem(
                    _line_of(newlines, match.start()),
                    f"{what} nested deeper than {max_depth} levels",
                ))
                return statements, problems
        elif token in _CLOSE:
            while nesting and nesting[-1] == "if":
                nesting.pop()
            if nesting:
                nesting.pop()
        elif token == ";":
            close(match.end())
            tokens, nesting = [], []
    if tokens:
        close(len(text))
    return statements, problems


def _annotations(tokens: list[tuple[str, str]]) -> dict[str, str]:
    found: dict[str, str] = {}
    i = 0
    while i + 1 < len(tokens) and tokens[i][1] == "@" and tokens[i + 1][0] == "ident":
        name = tokens[i + 1][1]
        if (i + 4 < len(tokens) and tokens[i + 2][1] == "(" and tokens[i + 3][0] == "string"
                and tokens[i + 4][1] == ")"):
            found[name] = _unquote(tokens[i + 3][1])
            i += 5
        else:
            found[name] = ""
            i += 2
    return found


def _terminated(token: str) -> bool:
    # A string ending in \" is closed only if that backslash is itself escaped.
    if len(token) < 2 or not token.endswith('"'):
        return False
    backslashes = len(token) - 1 - len(token[:-1].rstrip("\\"))
    return backslashes % 2 == 0


_SCHEMA_TOKEN = re.compile(r'//[^\n\r]*|"(?:[^"\\]|\\.)*"|[{}\[\]<>()]|[^{}\[\]<>()"/]+|/', re.DOTALL)


def schema_nesting_problem(text: str, *, max_depth: int = DEFAULT_MAX_DEPTH) -> TextProblem | None:
    """Nesting of ``{``, ``[``, ``<``, ``(`` in Cedar schema text past ``max_depth``, if any.

    cedarpy crashes on schema text nested a few thousand levels deep.
    """
    depth = 0
    line = 1
    for match in _SCHEMA_TOKEN.finditer(text):
        token = match.group()
        if token in "{[<(":
            depth += 1
            if depth > max_depth:
                return TextProblem(line, f"types nested deeper than {max_depth} levels")
        elif token in "}]>)":
            depth = max(depth - 1, 0)
        line += token.count("\n")
    return None
