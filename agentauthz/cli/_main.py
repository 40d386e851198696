"""The ``agentauthz`` command line.

Each command registers itself on the top-level subparsers with a function
listed in :data:`COMMANDS`; a handler takes the parsed arguments and returns the
exit code. To add one (``validate``, ``test``, ``format``, ...)::

    def add_validate_command(commands: Subparsers) -> None:
        parser = commands.add_parser("validate", help="...")
        parser.add_argument(...)
        parser.set_defaults(handler=run_validate_command)

    COMMANDS = (..., add_validate_command)

Exit codes: 0 success, 1 problems found (invalid policies, schema, tools),
2 usage error (bad arguments, unreadable files, nothing to import). A handler
signals them by raising :class:`UsageError` or any
:class:`~agentauthz.AuthzError` (exit 1); the message goes to stderr.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import TextIO

from agentauthz._errors import AuthzError, PolicyError
from agentauthz.cli._common import (
    EXIT_OK,
    EXIT_PROBLEMS,
    EXIT_USAGE,
    Handler,
    Subparsers,
    UsageError,
    help_handler,
)

__all__ = ["COMMANDS", "EXIT_OK", "EXIT_PROBLEMS", "EXIT_USAGE", "UsageError", "build_parser", "main"]



# -- commands (each module is imported when the parser is built) -------------------------


def add_schema_command(commands: Subparsers) -> None:
    """``agentauthz schema generate``: Cedar schema actions for tools."""
    from agentauthz.cli._generate import add_schema_command as add

    add(commands)


def add_validate_command(commands: Subparsers) -> None:
    """``agentauthz validate``: all problems of a store as file:line:col, and warnings."""
    from agentauthz.cli._author import add_validate_command as add

    add(commands)


def add_test_command(commands: Subparsers) -> None:
    """``agentauthz test``: decision cases, coverage, JUnit."""
    from agentauthz.cli._author import add_test_command as add

    add(commands)


def add_check_command(commands: Subparsers) -> None:
    """``agentauthz check``: one decision, explained."""
    from agentauthz.cli._author import add_check_command as add

    add(commands)


def add_format_command(commands: Subparsers) -> None:
    """``agentauthz format``: Cedar's formatter, meaning and comments checked."""
    from agentauthz.cli._author import add_format_command as add

    add(commands)


def add_replay_command(commands: Subparsers) -> None:
    """``agentauthz replay``: recorded decisions against candidate policies."""
    from agentauthz.cli._author import add_replay_command as add

    add(commands)


def add_avp_commands(commands: Subparsers) -> None:
    """``agentauthz push``, ``pull``, ``serve-avp``: Verified Permissions policy stores."""
    from agentauthz.cli._avp import add_avp_commands as add

    add(commands)


def add_agentcore_command(commands: Subparsers) -> None:
    """``agentauthz agentcore export|diff|push|pull``: AgentCore Gateway policy engines."""
    from agentauthz.cli._agentcore import add_agentcore_command as add

    add(commands)


# -- driver -----------------------------------------------------------------------------

COMMANDS: tuple[Callable[[Subparsers], None], ...] = (
    add_schema_command, add_validate_command, add_test_command, add_check_command,
    add_format_command, add_replay_command, add_avp_commands, add_agentcore_command,
)


def build_parser() -> argparse.ArgumentParser:
    """The ``agentauthz`` parser with every command of :data:`COMMANDS`."""
    parser = argparse.ArgumentParser(
        prog="agentauthz",
        description="Cedar-policy authorization for AI agents.",
        epilog="Exit codes: 0 ok, 1 problems found, 2 usage error.",
    )
    from agentauthz import __version__

    parser.add_argument("--version", action="version", version=f"agentauthz {__version__}")
    parser.set_defaults(handler=help_handler(parser))
    commands = parser.add_subparsers(title="commands", metavar="COMMAND")
    for add in COMMANDS:
        add(commands)
    return parser


def main(argv: Sequence[str] | None = None, *, stderr: TextIO | None = None) -> int:
    """Run the command line; returns the exit code.

    Example:
        >>> main(["schema", "generate", "--stub", "missing.cedarschema", "--mcp", "t.json"],
        ...      stderr=sys.stdout)
        agentauthz: error: --stub missing.cedarschema: no such file
        2
    """
    err = stderr or sys.stderr
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse reports usage errors itself
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    handler: Handler = args.handler
    try:
        return handler(args)
    except UsageError as exc:
        _report(exc, err)
        return EXIT_USAGE
    except AuthzError as exc:
        _report(exc, err)
        return EXIT_PROBLEMS


def _report(error: Exception, stream: TextIO) -> None:
    """The error on ``stream``, one problem a line: file names and quoted input are escaped."""
    from agentauthz.cli._console import printable

    problems = error.problems if isinstance(error, PolicyError) else (str(error),)
    lines = [f"{len(problems)} problems:", *problems] if len(problems) > 1 else list(problems)
    stream.write("".join(f"{'agentauthz: error: ' if index == 0 else ''}{printable(line)}\n"
                         for index, line in enumerate(lines)))
