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
                  "## Template-linked grants", "## Amazon Verified Permissions", "## Pre-filtered retrieval",
                  "## Approvals", "## AgentCore Gateway policies, evaluated locally",
                  "## Verified Permissions at the edge", "## Session stores: a guarded call",
                  "## Provenance",
                  "## Guarded tool calls", "## Import time", "## Filtering documents built from metadata",
                  "## Compiling a pre-filter", "## Grouping of Verified Permissions batches",
                  "## Loading stored entities", "## Data file limits", "## Worker processes",
                  "## Scaling", "## Guardrail plumbing"):
        assert title in text
    assert "Not measured" not in text
    # tools, RAG, links (2); issue 18: guard, import, filter (2), pre-filter, grouping, entities, data
    # files, worker processes, scaling; provenance; guardrails; SyncedEngine: no service call to decide,
    # AVP's decisions
    assert text.count("| yes |") + text.count("| **no** |") == 20
