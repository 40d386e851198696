"""The JUnit renderer of ``agentauthz test --junit``: one ``testcase`` per decision case."""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from xml.etree import ElementTree

from agentauthz.cli._console import printable
from agentauthz.cli._results import CasesRun
from agentauthz.testing._cases import CaseResult

__all__ = ["write_junit"]


def write_junit(path: str | Path, run: CasesRun) -> None:
    """Write a JUnit XML report (one ``testcase`` per case; a load error is one ``error``).

    Text from the store's files goes through :func:`~agentauthz.cli._console.printable`
    line by line: XML 1.0 cannot hold control characters, and CI pages show the report.
    """
    suite, results = run.label, run.results
    load_error = str(run.load_error) if run.load_error is not None else None
    tests = len(results) if load_error is None else 1
    root = ElementTree.Element("testsuites")
    element = ElementTree.SubElement(root, "testsuite", {
        "name": printable(suite), "tests": str(tests), "failures": str(len(run.failed)),
        "errors": "0" if load_error is None else "1", "skipped": "0", "time": f"{run.elapsed:.3f}",
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S"),
    })
    if load_error is not None:
        case = ElementTree.SubElement(element, "testcase", {"classname": printable(suite), "name": "load"})
        lines = load_error.split("\n")
        error = ElementTree.SubElement(case, "error", {"message": printable(lines[0]), "type": "PolicyError"})
        error.text = _printable_lines(lines)
    for result in results:
        attributes = {"classname": printable(f"{suite}.{result.case.source}"),
                      "name": printable(result.case.id)}
        case = ElementTree.SubElement(element, "testcase", attributes)
        if not result.passed:
            failure = ElementTree.SubElement(case, "failure", {"message": printable(result.failures[0]),
                                                              "type": "DecisionMismatch"})
            failure.text = _printable_lines([*result.failures, *_details(result)])
    ElementTree.indent(root)
    ElementTree.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


def _printable_lines(lines: Iterable[str]) -> str:
    return "\n".join(printable(line) for line in lines)


def _details(result: CaseResult) -> list[str]:
    lines = []
    request = result.case.request
    if request is not None:
        lines.append(f"request: {request.principal} {request.action} {request.resource}")
    if result.decision is not None:
        lines.append(f"reasons: {', '.join(result.decision.reasons) or '-'}")
        lines.extend(f"error: {error}" for error in result.decision.errors)
    return lines
