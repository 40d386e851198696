"""Writing a command's result: as text (plain, or colors and tables on a terminal) or as JSON.

:func:`render` chooses the format from the command line (``--json``,
``--color``) and returns the result's exit code. The text renderers, one per
result type of :mod:`agentauthz.cli._results`, are the only place that decides
how a result reads on a terminal; the JSON form is each result's ``to_json()``.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from functools import singledispatch
from pathlib import Path
from typing import Any

from agentauthz.cli._console import Output
from agentauthz.cli._results import (
    CasesRun,
    CommandResult,
    FormatRun,
    ReplayRun,
    RequestCheckResult,
    StoreCheck,
    plural,
    store_summary,
)
from agentauthz.testing._cases import CaseResult

__all__ = ["output", "render", "render_text", "write_json"]

_DIFF_STYLES = {"+": "green", "-": "red", "@": "cyan"}


def output(args: argparse.Namespace) -> Output:
    """Where a command writes its text, with the colors ``--color`` asks for."""
    return Output(sys.stdout, color=args.color)


def render(result: CommandResult, args: argparse.Namespace) -> int:
    """Write ``result`` as ``--json`` or text asks; returns its exit code."""
    if args.json:
        write_json(result.to_json())
    else:
        render_text(result, output(args))
    return result.exit_code


def write_json(data: Any) -> None:
    """One indented JSON document on stdout."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


@singledispatch
def render_text(result: Any, out: Output) -> None:
    """Write a command result as text on ``out``."""
    raise TypeError(f"no text renderer for {type(result).__name__}")


@render_text.register
def _store_check(result: StoreCheck, out: Output) -> None:
    report, label = result.report, result.label
    for finding in [*report.errors, *report.warnings]:
        style = "red" if finding.severity == "error" else "yellow"
        out.line(f"{finding.location(label)}: {finding.severity}: {finding.message}", style)
    for note in report.notes:
        out.line(f"{label}: note: {note}", "dim")
    summary = f"{plural(len(report.errors), 'error')}, {plural(len(report.warnings), 'warning')}"
    if report.store is not None and not report.errors:
        summary += f" ({store_summary(report.store)})"
    out.line(f"{label}: {summary}", "bold red" if result.failed else "bold green")


@render_text.register
def _cases_run(result: CasesRun, out: Output) -> None:
    label = result.label
    _cases_table(result, out)
    for case_result in result.results:
        for warning in case_result.warnings:
            out.line(f"warning: {case_result.case.id}: {warning}", "yellow")
    for failed_case in result.failed:
        _failed_case(failed_case, label, out)
    if result.missing is not None and result.store is not None:
        total = len(result.store.policies) + len(result.store.links)
        out.line()
        out.line(f"coverage: {total - len(result.missing)} of {total} policies, "
                 "templates and links determined at least one case", "bold")
        for policy_id, where in result.missing:
            out.line(f"  never determining: {policy_id} ({where})", "yellow")
    out.line()
    failed = len(result.failed)
    out.line(f"{label}: {len(result.results) - failed} passed, {failed} failed "
             f"in {result.elapsed:.2f} s", "bold red" if failed else "bold green")


def _cases_table(result: CasesRun, out: Output) -> None:
    shown = result.failed if result.quiet else result.results
    if not shown:
        return
    rows, styles = [], []
    for case_result in shown:
        decision = case_result.decision
        got = decision.outcome if decision else "-"
        detail = "; ".join(case_result.failures) if case_result.failures else (
            ", ".join(decision.reasons) if decision and decision.reasons else "")
        rows.append(["pass" if case_result.passed else "FAIL", case_result.case.id,
                     case_result.case.expected, got, detail])
        styles.append(None if case_result.passed else "red")
    out.table(["result", "case", "expected", "got", "determining policies / failure"], rows,
              styles=styles, title=f"{result.label}: decision cases")


def _failed_case(result: CaseResult, label: str, out: Output) -> None:
    case = result.case
    where = (case.source if Path(case.source).is_absolute() else f"{label}/{case.source}") + (
        f":{case.line}" if case.line else "")
    out.line()
    out.line(f"FAIL {case.id} ({where})", "bold red")
    for failure in result.failures:
        out.line(f"  {failure}")
    if case.request is not None:
        out.line(f"  request: {case.request.principal} {case.request.action} {case.request.resource}")
    if result.decision is not None:
        for error in result.decision.errors:
            out.line(f"  error: {error}", "yellow")


@render_text.register
def _request_check(result: RequestCheckResult, out: Output) -> None:
    decision, request = result.decision, result.request
    word = "ALLOW" if decision.allowed else "DENY"
    out.line(f"{word}  {request.principal} {request.action} {request.resource}",
             "bold green" if decision.allowed else "bold red")
    if result.invalid:
        out.line(f"invalid request: {result.invalid}", "bold red")
    elif result.policies:
        out.line("determined by:")
        for policy_id, where, text in result.policies:
            out.line(f"  {policy_id} ({where})", "bold")
            out.code(text, language="cedar")
    elif not decision.allowed:
        out.line("no policy applies: denied by default" if not decision.errors
                 else "no policy applies (some failed to evaluate): denied")
    if decision.errors:
        out.line("errors:", "yellow")
        for error in decision.errors:
            out.line(f"  {error}", "yellow")
    for warning in result.warnings:
        out.line(f"warning: {warning}", "yellow")
    out.line(f"decided in {result.milliseconds:.2f} ms", "dim")
    if result.unexpected:
        out.line(f"expected {result.expect}", "bold red")
    elif result.invalid and result.expect:
        out.line(f"expected {result.expect} of a valid request", "bold red")


@render_text.register
def _format_run(result: FormatRun, out: Output) -> None:
    label = result.label
    for changed in result.changed:
        verb = "would reformat" if result.check else "reformatted"
        out.line(f"{verb} {label}/{changed.file}", "yellow" if result.check else "green")
        if result.diff:
            diff = difflib.unified_diff(
                changed.original.splitlines(keepends=True),
                (changed.formatted or "").splitlines(keepends=True),
                f"{label}/{changed.file}", f"{label}/{changed.file} (formatted)", lineterm="")
            for line in diff:
                out.line(line.removesuffix("\n"), _DIFF_STYLES.get(line[:1]))
    for refused in result.refused:
        out.line(f"error: {label}/{refused.problem}", "red")
    unchanged = len(result.results) - len(result.changed) - len(result.refused)
    summary = (f"{plural(len(result.changed), 'file')} {'would be ' if result.check else ''}reformatted, "
               f"{unchanged} unchanged" + (f", {len(result.refused)} refused" if result.refused else ""))
    out.line(f"{label}: {summary}", "bold red" if result.exit_code else "bold green")


_CHANGE_TITLES = {"allow->deny": "would now be denied", "deny->allow": "would now be allowed",
                  "reasons": "decided by other policies"}


@render_text.register
def _replay_run(result: ReplayRun, out: Output) -> None:
    report = result.report
    out.table(["", "events"], [
        ["read", str(report.events)],
        ["replayed", str(report.replayed)],
        ["skipped (no recorded request)", str(report.skipped)],
        ["unreadable", str(report.unreadable_count)],
        ["unchanged", str(report.unchanged)],
        ["allow -> deny", str(report.counts["allow->deny"])],
        ["deny -> allow", str(report.counts["deny->allow"])],
        ["same decision, other policies", str(report.counts["reasons"])],
    ], title=f"replay of {result.audit} against {result.label}")
    for kind, changes in report.examples.items():
        if not changes:
            continue
        out.line()
        out.line(f"{_CHANGE_TITLES[kind]} ({report.counts[kind]}):",
                 "bold red" if kind == "deny->allow" else "bold")
        for change in changes:
            after = change.after
            out.line(f"  line {change.line}: {change.principal} {change.action} {change.resource}")
            out.line(f"    before: {change.before} by {', '.join(change.before_reasons) or '-'}")
            out.line(f"    after:  {after.outcome} by {', '.join(after.reasons) or '-'}"
                     + (f" ({len(after.errors)} errors)" if after.errors else ""))
    for line, why in report.unreadable:
        out.line(f"{result.audit}:{line}: unreadable: {why}", "yellow")
    if report.events and not report.replayed and report.skipped:
        out.line("no event carries its request: create the Authorizer with record_requests=True "
                 "to record them", "yellow")
    out.line()
    out.line(f"{report.flips} of {report.replayed} replayed decisions would flip "
             f"({report.skipped} skipped) in {result.elapsed:.2f} s",
             "bold red" if report.flips else "bold green")
