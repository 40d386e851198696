"""``agentauthz format``: Cedar's formatter, applied only when it provably changes nothing but layout.

``cedarpy.format_policies`` reflows policies and keeps ``//`` comments. Before a
file is rewritten the result is checked:

* the policies mean the same: Cedar's JSON form of every policy (scope,
  conditions, annotations such as ``@id``) is identical, in the same order, so
  ids and positional names (``policyN``, ``<file>:<n>``) are unchanged;
* every comment is kept, word for word, between the same two policies.

A file that fails a check is left as it is and reported; so is a file that
does not parse (run ``agentauthz validate``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cedarpy

from agentauthz._errors import PolicyError
from agentauthz.policy._files import read_store_bytes, store_files
from agentauthz.policy._messages import truncate
from agentauthz.policy._text import _TOKEN, DEFAULT_MAX_BYTES, DEFAULT_MAX_DEPTH, scan

__all__ = ["FormatResult", "format_directory", "format_text"]


@dataclass(frozen=True)
class FormatResult:
    """The formatting of one file.

    Attributes:
        file: the file, relative to the store.
        original: its text.
        formatted: the formatted text; None when it was refused (see ``problem``).
        problem: why the file cannot be formatted.
    """

    file: str
    original: str
    formatted: str | None
    problem: str | None = None

    @property
    def changed(self) -> bool:
        """Whether formatting changes the file."""
        return self.formatted is not None and self.formatted != self.original


def format_text(text: str, *, line_width: int = 80, indent_width: int = 2,
                max_depth: int = DEFAULT_MAX_DEPTH, name: str = "<text>") -> str:
    """Cedar policy text, formatted; identical in meaning and comments or an error.

    Raises:
        PolicyError: the text does not parse, or formatting would change its
            meaning or lose a comment.

    Example:
        >>> print(format_text('@id("a") permit(principal,action,resource) // all\\n;'), end="")
        @id("a")
        permit (principal, action, resource) // all
        ;
    """
    _, problems = scan(text, max_depth=max_depth)
    if problems:
        raise PolicyError([f"{name}:{p.line}: {p.message}" for p in problems])
    if not text.strip():
        return text
    try:
        formatted: str = cedarpy.format_policies(text, line_width, indent_width)
        before = json.loads(cedarpy.policies_to_json_str(text))
    except ValueError as exc:
        raise PolicyError(f"{name}: does not parse ({truncate(str(exc))}); "
                          "run agentauthz validate for details") from exc
    if formatted.strip() and not formatted.endswith("\n"):
        formatted += "\n"
    try:
        after = json.loads(cedarpy.policies_to_json_str(formatted))
    except ValueError as exc:  # the formatter broke the text: never write that
        raise PolicyError(f"{name}: the formatted text does not parse ({truncate(str(exc))}); "
                          "left unchanged") from exc
    if before != after:
        raise PolicyError(f"{name}: formatting would change what the policies mean; left unchanged")
    if _comments(text) != _comments(formatted):
        raise PolicyError(f"{name}: formatting would drop or move comments; left unchanged")
    return formatted


def _comments(text: str) -> list[tuple[int, str]]:
    """Each comment with the number of statements before it (``;`` outside strings)."""
    found, statements = [], 0
    for match in _TOKEN.finditer(text):
        if match.lastgroup == "comment":
            found.append((statements, match.group().rstrip()))
        elif match.group() == ";":
            statements += 1
    return found


def format_directory(path: str | Path, *, line_width: int = 80, indent_width: int = 2,
                     max_depth: int = DEFAULT_MAX_DEPTH,
                     max_bytes: int = DEFAULT_MAX_BYTES) -> list[FormatResult]:
    """Format every ``*.cedar`` file of a store (as the loader finds them); writes nothing.

    A file that cannot be read as a regular file (a dangling symlink, a named
    pipe, a directory, ...) or a directory that cannot be listed is reported as
    a refused file.
    """
    root = Path(path)
    results = []
    problems: list[str] = []
    for file in store_files(root, (".cedar",), problems):
        name = file.relative_to(root).as_posix()
        try:
            original = read_store_bytes(file, name, max_bytes).decode("utf-8")
        except UnicodeDecodeError as exc:
            results.append(FormatResult(name, "", None, f"{name}: not valid UTF-8 (byte {exc.start})"))
            continue
        except PolicyError as exc:
            results.append(FormatResult(name, "", None, str(exc)))
            continue
        try:
            formatted = format_text(original, line_width=line_width, indent_width=indent_width,
                                    max_depth=max_depth, name=name)
        except PolicyError as exc:
            results.append(FormatResult(name, original, None, "; ".join(exc.problems)))
            continue
        results.append(FormatResult(name, original, formatted))
    results.extend(FormatResult(problem.partition(":")[0], "", None, problem) for problem in problems)
    return results
