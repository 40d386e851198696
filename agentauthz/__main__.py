"""``python -m agentauthz`` and the ``agentauthz`` console script (see :mod:`agentauthz.cli._main`)."""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``agentauthz`` command line; returns the exit code (0 ok, 1 problems, 2 usage)."""
    from agentauthz.cli._main import main as run

    return run(argv)


if __name__ == "__main__":
    sys.exit(main())
