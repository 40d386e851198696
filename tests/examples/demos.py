"""Running the scripts `make demo` runs, once per test session, as the Makefile runs them."""

from __future__ import annotations

import functools
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MAKEFILE = (ROOT / "Makefile").read_text(encoding="utf-8")


@functools.cache
def run(script: str) -> subprocess.CompletedProcess[str]:
    """Run ``examples/...`` from the repository root, as ``make demo`` does."""
    return subprocess.run([sys.executable, str(ROOT / script)], capture_output=True, text=True,
                          timeout=180, check=False, cwd=ROOT)


def demo_scripts() -> list[str]:
    """The scripts of the Makefile's ``demo`` target, in order."""
    recipe = MAKEFILE.split("\ndemo:", 1)[1].split("\n\n", 1)[0]
    return re.findall(r"\$\(BIN\)/python (\S+\.py)", recipe)


def demo_extras() -> set[str]:
    """The extras the demo's install step installs (``DEMO_EXTRAS``)."""
    match = re.search(r"^DEMO_EXTRAS := (\S+)$", MAKEFILE, re.M)
    assert match, "Makefile: DEMO_EXTRAS is gone"
    return set(match.group(1).split(","))
