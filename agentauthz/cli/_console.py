"""Terminal output of the policy-author commands: colors and tables on a terminal, plain text otherwise.

``rich`` (the ``cli`` extra) draws colored tables and progress bars when the
output is a terminal (or ``--color always``). Without it, or when the output is
piped or captured, the same content is written as plain aligned text, so CI
logs and scripts see stable output. ``NO_COLOR`` turns colors off.

Every string goes through :func:`printable` first, in both renderers: text
from policy files, decision cases and audit logs can hold escape sequences,
bidirectional overrides or line breaks that would recolor the terminal,
reorder what it shows or forge a report line. Rich markup in such text (``[red]``)
is never interpreted.

Example:
    >>> import io
    >>> out = Output(io.StringIO(), color="never")
    >>> out.table(["case", "result"], [["a", "pass"], ["bb", "FAIL"]])
    >>> print(out.stream.getvalue(), end="")
    case  result
    ----  ------
    a     pass
    bb    FAIL
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal, TextIO

__all__ = ["ColorMode", "Output", "printable"]

ColorMode = Literal["auto", "always", "never"]

# A progress bar is drawn only for runs at least this long: short runs finish
# before a bar would be worth its flicker.
PROGRESS_THRESHOLD = 200


def printable(text: str) -> str:
    """``text`` safe to show on a terminal: every character that is not printable, escaped.

    Control characters (C0 such as ESC, CR and LF, DEL, C1), line and paragraph
    separators, bidirectional controls (U+202A-202E, U+2066-2069, U+200E/F,
    U+061C) and other format characters, unassigned code points and lone
    surrogates are written as Python escapes (``\\x1b``, ``\\n``, ``\\u202e``):
    input can neither drive the terminal, nor reorder what it shows, nor break
    a line. Everything else, non-ASCII letters included, is kept.

    Example:
        >>> print(printable("evil\\x1b[2J\\nALLOW  admin \\u202e"))
        evil\\x1b[2J\\nALLOW  admin \\u202e
    """
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


def _rich_available() -> bool:
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True


class Output:
    """Where a command writes its report, and how.

    Args:
        stream: the output (default: ``sys.stdout``).
        color: ``"auto"`` (rich on a terminal unless ``NO_COLOR`` is set),
            ``"always"`` (rich whenever it is installed) or ``"never"`` (plain text).
        progress_stream: where progress bars go (default: ``sys.stderr``).
    """

    def __init__(self, stream: TextIO | None = None, *, color: ColorMode = "auto",
                 progress_stream: TextIO | None = None) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.progress_stream = progress_stream if progress_stream is not None else sys.stderr
        if color == "auto":
            fancy = _isatty(self.stream) and not os.environ.get("NO_COLOR")
        else:
            fancy = color == "always"
        self._console: Any = None
        if fancy and _rich_available():
            from rich.console import Console

            self._console = Console(file=self.stream, force_terminal=True, highlight=False,
                                    soft_wrap=True)

    @property
    def fancy(self) -> bool:
        """Whether rich draws the output (colors, boxed tables)."""
        return self._console is not None

    def line(self, text: str = "", style: str | None = None) -> None:
        """One line of text, in ``style`` (a rich style such as ``"bold red"``) when fancy.

        The text is shown through :func:`printable`: it never breaks the line.
        """
        text = printable(text)
        if self._console is not None:
            from rich.text import Text

            self._console.print(Text(text, style=style or ""))
        else:
            self.stream.write(text + "\n")

    def table(self, columns: Sequence[str], rows: Sequence[Sequence[str]], *,
              styles: Sequence[str | None] | None = None, title: str | None = None) -> None:
        """A table; ``styles`` gives each row a rich style when fancy. Every cell is one line."""
        columns = [printable(column) for column in columns]
        rows = [[printable(cell) for cell in row] for row in rows]
        title = printable(title) if title else None
        if self._console is not None:
            from rich.table import Table
            from rich.text import Text

            table = Table(title=Text(title) if title else None, title_justify="left", show_lines=False)
            for column in columns:
                table.add_column(Text(column))
            for index, row in enumerate(rows):
                style = styles[index] if styles is not None else None
                table.add_row(*(Text(cell) for cell in row), style=style or "")
            self._console.print(table)
            return
        if title:
            self.stream.write(title + "\n")
        widths = [max([len(column), *(len(row[index]) for row in rows)])
                  for index, column in enumerate(columns)]
        for row in [columns, ["-" * width for width in widths], *rows]:
            self.stream.write("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
                              .rstrip() + "\n")

    def code(self, text: str, *, language: str = "text") -> None:
        """A block of source text (policy text is highlighted when fancy), indented in plain text.

        Each line is shown through :func:`printable` (tabs expanded first), so
        only the text's own newlines break lines.
        """
        lines = [printable(line.expandtabs(4)) for line in text.split("\n")]
        if self._console is not None:
            from rich.syntax import Syntax

            # Pygments has no Cedar lexer; Rust's is close enough for keywords and strings.
            lexer = "rust" if language == "cedar" else language
            self._console.print(Syntax("\n".join(lines), lexer, theme="ansi_dark",
                                       background_color="default"))
        else:
            for line in lines:
                self.stream.write(f"    {line}".rstrip() + "\n")

    @contextmanager
    def progress(self, total: int, description: str) -> Iterator[Callable[[int], None]]:
        """A progress bar on the terminal for long runs; yields ``advance(n)``.

        Drawn (transiently, on ``progress_stream``) only when fancy, the
        progress stream is a terminal and ``total`` is large; a no-op otherwise.
        """
        if self._console is None or total < PROGRESS_THRESHOLD or not _isatty(self.progress_stream):
            yield lambda n: None
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=Console(file=self.progress_stream),
                      transient=True) as bar:
            task = bar.add_task(description, total=total)
            yield lambda n: bar.advance(task, n)


def _isatty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
