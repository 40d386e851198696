"""docs/architecture.md says what tests/core/test_architecture.py enforces, and names every module."""

from __future__ import annotations

import re

from tests.core.test_architecture import EXCEPTIONS, LAYERS, MODULES, PACKAGE, SEPARATE
from tests.docs.snippets import ROOT, blocks

PAGE = "docs/architecture.md"
APART = "\u2573"  # the picture's mark between wings that must not import each other
TEXT = (ROOT / PAGE).read_text(encoding="utf-8")


def short(entry: str) -> str:
    """How the picture names a layer entry: ``agentauthz.policy`` -> ``policy/``, core modules bare."""
    name = entry.removeprefix("agentauthz").lstrip(".") or "agentauthz"
    return name if name.startswith("_") or name == "agentauthz" else f"{name}/"


def picture() -> list[str]:
    [drawing] = [block.code for block in blocks(PAGE) if block.language == "text"]
    return [line for line in drawing.splitlines() if line.strip() and line.strip() != "▼"]


def test_the_picture_shows_the_layers_top_down_one_line_each() -> None:
    rows = picture()
    assert len(rows) == len(LAYERS)
    for row, layer in zip(rows, reversed(LAYERS), strict=True):
        names = re.split(r"\s{3,}", row.strip())[0].split()  # the names, before the description
        assert {name for name in names if name != APART} == {short(entry) for entry in layer}, row


def test_the_picture_marks_the_wings_that_must_stay_apart() -> None:
    for importer, imported in SEPARATE:
        row = next(line for line in picture() if short(importer) in line.split())
        assert short(imported) in row.split() and APART in row


def test_every_exception_is_written_down() -> None:
    for importer, imported in EXCEPTIONS:
        assert f"`{importer}` imports `{imported}`" in " ".join(TEXT.split())


def test_every_module_has_its_line() -> None:
    table = {match.group(1) for match in re.finditer(r"^\| `([\w/.]+\.py)` \|", TEXT, re.M)}
    files = {path.relative_to(PACKAGE).as_posix() for path in MODULES.values()}
    wing_docstrings = {name for name in files if name.endswith("/__init__.py") and name.count("/") >= 1}
    public_surfaces = {"testing/__init__.py"}
    missing = sorted(files - table - (wing_docstrings - public_surfaces))
    assert missing == [], f"add a line for each to the table of {PAGE}"
    assert table <= files, f"{PAGE} names modules that do not exist: {sorted(table - files)}"
