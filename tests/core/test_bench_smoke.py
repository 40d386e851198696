"""The benchmark harness (``make bench``) runs end to end on tiny sizes, so it does not rot."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("langchain_core")
pytest.importorskip("boto3")

from bench import run


def test_every_section_of_the_benchmark_runs_on_tiny_sizes(tmp_path: Path) -> None:
    output = tmp_path / "benchmarks.md"

    assert run.main(["--quick", "--quiet", "--output", str(output)]) == 0

    text = output.read_text()
    for title in ("## Targets", "## Single tool-call authorization", "## Many tools", "## RAG filtering",
                  "## Template-linked grants", "## Amazon Verified Permissions", "## Pre-filtered retrieval"):
        assert title in text
    assert "Not measured" not in text
    assert text.count("| yes |") + text.count("| **no** |") == 4  # tools, RAG, links and guardrail targets
