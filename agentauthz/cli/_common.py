"""What every command module shares: exit codes, the usage error, the subparsers type."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["EXIT_OK", "EXIT_PROBLEMS", "EXIT_USAGE", "Handler", "Subparsers", "UsageError", "help_handler"]

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_USAGE = 2

Subparsers = Any  # argparse._SubParsersAction[argparse.ArgumentParser], private in typeshed
Handler = Callable[[argparse.Namespace], int]


class UsageError(Exception):
    """The command was called wrongly: exit code 2 with the message on stderr."""


def help_handler(parser: argparse.ArgumentParser) -> Handler:
    """The handler of a command given no subcommand: its help on stderr, exit code 2."""
    def show(args: argparse.Namespace) -> int:
        parser.print_help(sys.stderr)
        return EXIT_USAGE

    return show
