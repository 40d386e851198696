"""The policy-author commands of ``agentauthz``: validate, test, check, format, replay.

Registered by :mod:`agentauthz.cli._main`. Every command reads a policy store
directory (default: ``policies`` if there is one, else the current directory),
writes plain text when piped, colors and tables on a terminal (with the ``cli``
extra), and JSON with ``--json``. Exit codes: 0 ok, 1 problems found, 2 usage.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from agentauthz._errors import AuthzError, PolicyError
from agentauthz._model import Decision, Entity, EntityUID, Request, from_cedar_value
from agentauthz.cli._common import EXIT_OK, EXIT_PROBLEMS, Subparsers, UsageError
from agentauthz.cli._console import Output
from agentauthz.policy._store import PolicyStore

__all__ = [
    "add_check_command",
    "add_format_command",
    "add_replay_command",
    "add_test_command",
    "add_validate_command",
]

DEFAULT_STORE = "policies"


def _store_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", nargs="?", metavar="DIR",
                        help=f"policy store directory (default: ./{DEFAULT_STORE} if it exists, "
                             "else the current directory)")


def _output_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="write one JSON document for machines")
    parser.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                        help="colors and tables: auto (on a terminal), always, never")


def _no_validate_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--no-validate", action="store_true",
                        help="only parse the policies; do not check them against the schema")


def _directory(args: argparse.Namespace) -> Path:
    given = args.directory
    if given is None:
        given = DEFAULT_STORE if Path(DEFAULT_STORE).is_dir() else "."
    path = Path(given)
    if not path.is_dir():
        raise UsageError(f"{given}: no such directory")
    return path


def _label(path: Path) -> str:
    return path.as_posix().rstrip("/") or "."


def _output(args: argparse.Namespace) -> Output:
    return Output(sys.stdout, color=args.color)


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def _load(path: Path, *, validate: bool = True) -> PolicyStore:
    """The store, or a PolicyError whose problems read ``DIR/file:line:col: message``."""
    from agentauthz.policy._lint import locate_problems

    try:
        return PolicyStore.from_directory(path, validate=validate)
    except PolicyError as exc:
        label = _label(path)
        raise PolicyError([f"{finding.location(label)}: {finding.message}"
                           for finding in locate_problems(exc.problems, path)]) from exc


def _store_summary(store: PolicyStore) -> str:
    templates = sum(1 for policy in store.policies if policy.is_template)
    parts = [_plural(len(store.policies) - templates, "policy").replace("policys", "policies"),
             _plural(templates, "template"), _plural(len(store.links), "link"),
             _plural(len(store.entities), "entity").replace("entitys", "entities"),
             "schema" if store.schema_text is not None else "no schema"]
    return ", ".join(parts)


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


# -- validate ---------------------------------------------------------------------------


def add_validate_command(commands: Subparsers) -> None:
    """``agentauthz validate``: parse and schema-check a store; warnings for dead policies."""
    parser = commands.add_parser(
        "validate", help="check a policy store: syntax, schema, ids, links, entities",
        description=(
            "Parse and validate every file of a policy store and report all problems at once "
            "as file:line:col: error: message (exit 1 if there is any). Warnings, which do "
            "not fail the run unless --strict: policies that can never apply (actions the "
            "schema does not declare, a condition that is never true), templates without "
            "links, and permits shadowed by an unconditional forbid of the same or a wider "
            "scope."))
    _store_argument(parser)
    _no_validate_option(parser)
    parser.add_argument("--strict", action="store_true", help="warnings fail the run too")
    _output_options(parser)
    parser.set_defaults(handler=_validate)


def _validate(args: argparse.Namespace) -> int:
    from agentauthz.policy._lint import lint_directory

    root = _directory(args)
    label = _label(root)
    report = lint_directory(root, validate=not args.no_validate)
    failed = bool(report.errors) or (args.strict and bool(report.warnings))
    if args.json:
        _print_json({
            "directory": label, "ok": not failed,
            "errors": [finding.to_json() for finding in report.errors],
            "warnings": [finding.to_json() for finding in report.warnings],
            "notes": report.notes,
        })
        return EXIT_PROBLEMS if failed else EXIT_OK
    out = _output(args)
    for finding in [*report.errors, *report.warnings]:
        style = "red" if finding.severity == "error" else "yellow"
        out.line(f"{finding.location(label)}: {finding.severity}: {finding.message}", style)
    for note in report.notes:
        out.line(f"{label}: note: {note}", "dim")
    summary = f"{_plural(len(report.errors), 'error')}, {_plural(len(report.warnings), 'warning')}"
    if report.store is not None and not report.errors:
        summary += f" ({_store_summary(report.store)})"
    out.line(f"{label}: {summary}", "bold red" if failed else "bold green")
    return EXIT_PROBLEMS if failed else EXIT_OK


# -- test -------------------------------------------------------------------------------


def add_test_command(commands: Subparsers) -> None:
    """``agentauthz test``: decision cases of a store, with coverage and JUnit output."""
    parser = commands.add_parser(
        "test", help="run the decision cases of a policy store",
        description=(
            "Decide every case of a store and compare: ALLOW/*.json and DENY/*.json (Cedar "
            "requests, the Cedar examples layout) and decision tables in cases/*.toml "
            "(cases/*.yaml with the cli extra). Prints a pass/fail table and the policies "
            "that determined no case; exit 1 if a case fails or the store does not load."))
    _store_argument(parser)
    parser.add_argument("--cases", action="append", default=[], metavar="FILE",
                        help="another decision table (TOML or YAML); repeatable")
    parser.add_argument("--junit", metavar="FILE", help="write a JUnit XML report here")
    parser.add_argument("--quiet", "-q", action="store_true",
                        help="list only failing cases")
    parser.add_argument("--no-coverage", action="store_true", help="skip the coverage report")
    _no_validate_option(parser)
    _output_options(parser)
    parser.set_defaults(handler=_test)


def _test(args: argparse.Namespace) -> int:
    from agentauthz.cli._junit import write_junit
    from agentauthz.testing._cases import coverage, load_cases, run_cases

    root = _directory(args)
    label = _label(root)
    for table in args.cases:
        if not Path(table).is_file():
            raise UsageError(f"--cases {table}: no such file")
    started = time.perf_counter()
    try:
        store = _load(root, validate=not args.no_validate)
    except PolicyError as exc:
        if args.junit:
            write_junit(args.junit, label, [], load_error=str(exc))
        if args.json:
            _print_json({"directory": label, "ok": False, "error": str(exc),
                         "problems": list(exc.problems)})
            return EXIT_PROBLEMS
        raise
    cases = load_cases(root, args.cases)
    if not cases:
        raise UsageError(f"{label}: no decision cases (ALLOW/*.json, DENY/*.json, cases/*.toml)")
    out = _output(args)
    with out.progress(len(cases), "deciding") as advance:
        results = run_cases(store, cases, advance=advance)
    elapsed = time.perf_counter() - started
    failed = [result for result in results if not result.passed]
    missing = [] if args.no_coverage else coverage(store, results)
    if args.junit:
        write_junit(args.junit, label, results, elapsed=elapsed)
    if args.json:
        _print_json({
            "directory": label, "ok": not failed, "passed": len(results) - len(failed),
            "failed": len(failed), "seconds": round(elapsed, 4),
            "cases": [result.to_json() for result in results],
            "never_determining": [{"id": pid, "location": where} for pid, where in missing],
        })
        return EXIT_PROBLEMS if failed else EXIT_OK

    shown = failed if args.quiet else results
    if shown:
        rows, styles = [], []
        for result in shown:
            decision = result.decision
            got = decision.outcome if decision else "-"
            detail = "; ".join(result.failures) if result.failures else (
                ", ".join(decision.reasons) if decision and decision.reasons else "")
            rows.append(["pass" if result.passed else "FAIL", result.case.id, result.case.expected,
                         got, detail])
            styles.append(None if result.passed else "red")
        out.table(["result", "case", "expected", "got", "determining policies / failure"], rows,
                  styles=styles, title=f"{label}: decision cases")
    for result in results:
        for warning in result.warnings:
            out.line(f"warning: {result.case.id}: {warning}", "yellow")
    for result in failed:
        case = result.case
        where = (case.source if Path(case.source).is_absolute() else f"{label}/{case.source}") + (
            f":{case.line}" if case.line else "")
        out.line()
        out.line(f"FAIL {case.id} ({where})", "bold red")
        for failure in result.failures:
            out.line(f"  {failure}")
        if case.request is not None:
            out.line(f"  request: {case.request.principal} {case.request.action} "
                     f"{case.request.resource}")
        if result.decision is not None:
            for error in result.decision.errors:
                out.line(f"  error: {error}", "yellow")
    if not args.no_coverage:
        determined = len(store.policies) + len(store.links) - len(missing)
        out.line()
        out.line(f"coverage: {determined} of {len(store.policies) + len(store.links)} policies, "
                 "templates and links determined at least one case", "bold")
        for policy_id, where in missing:
            out.line(f"  never determining: {policy_id} ({where})", "yellow")
    out.line()
    out.line(f"{label}: {len(results) - len(failed)} passed, {len(failed)} failed "
             f"in {elapsed:.2f} s", "bold red" if failed else "bold green")
    return EXIT_PROBLEMS if failed else EXIT_OK


# -- check ------------------------------------------------------------------------------


def add_check_command(commands: Subparsers) -> None:
    """``agentauthz check``: one decision, explained."""
    parser = commands.add_parser(
        "check", help="decide one request and explain it",
        description=(
            "Decide one request with the store's policies and entities and print the "
            "decision, the full text of the determining policies, evaluation errors and the "
            "time taken. Exit 0 whatever the decision (1 with --expect if it differs); exit 1 "
            "for a request Cedar cannot build (undeclared action, a principal or resource type "
            "the action does not apply to, a context that does not match the schema), which is "
            "denied, with what is wrong and the nearest declared names."))
    _store_argument(parser)
    parser.add_argument("--principal", required=True, metavar="UID",
                        help='Cedar text such as User::"alice", or {"type": ..., "id": ...}')
    parser.add_argument("--action", required=True, metavar="ACTION",
                        help='an action name the schema declares (read), or Action::"read"')
    parser.add_argument("--resource", required=True, metavar="UID",
                        help='Cedar text such as Document::"d1", or {"type": ..., "id": ...}')
    parser.add_argument("--context", metavar="JSON",
                        help="the context, a JSON object (Cedar JSON), or @FILE to read it")
    parser.add_argument("--entities", metavar="FILE",
                        help="Cedar JSON entities laid over the store's for this request")
    parser.add_argument("--expect", choices=("allow", "deny"),
                        help="exit 1 unless the decision is this one")
    _no_validate_option(parser)
    _output_options(parser)
    parser.set_defaults(handler=_check)


def _uid_option(text: str, option: str) -> EntityUID:
    try:
        if text.lstrip().startswith("{"):
            return EntityUID.from_cedar(json.loads(text))
        return EntityUID.parse(text.strip())
    except (json.JSONDecodeError, AuthzError) as exc:
        raise UsageError(f'{option} {text!r}: expected Cedar text such as User::"alice" '
                         f'or {{"type": ..., "id": ...}} ({exc})') from exc


def _json_option(text: str, option: str) -> Any:
    source = text
    if text.startswith("@"):
        path = Path(text[1:])
        try:
            source = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"{option} {text}: cannot read ({exc})") from exc
    try:
        return json.loads(source)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{option}: invalid JSON at line {exc.lineno} column {exc.colno}: "
                         f"{exc.msg}") from exc


def _check(args: argparse.Namespace) -> int:
    from agentauthz.engines.local import LocalEngine
    from agentauthz.testing._cases import RequestCheck

    root = _directory(args)
    principal = _uid_option(args.principal, "--principal")
    resource = _uid_option(args.resource, "--resource")
    context: Any = {}
    if args.context:
        context = _json_option(args.context, "--context")
        if not isinstance(context, dict):
            raise UsageError("--context: expected a JSON object")
    entities: list[Entity] = []
    if args.entities:
        data = _json_option("@" + args.entities, "--entities")
        if not isinstance(data, list):
            raise UsageError(f"--entities {args.entities}: expected a JSON array of entities")
        try:
            entities = [Entity.from_cedar(item) for item in data]
        except AuthzError as exc:
            raise UsageError(f"--entities {args.entities}: {exc}") from exc
    store = _load(root, validate=not args.no_validate)
    engine = LocalEngine(store)
    try:
        action = (EntityUID.parse(args.action) if '::"' in args.action
                  else engine.resolve_action(args.action))
        request = Request(principal, action, resource,
                          {key: from_cedar_value(value) for key, value in context.items()})
    except AuthzError as exc:
        raise UsageError(f"cannot build the request: {exc}") from exc
    started = time.perf_counter()
    decision = engine.decide([request], entities)[0]
    elapsed_ms = (time.perf_counter() - started) * 1000
    check = RequestCheck(store)
    invalid = check.problems([request])[0] or check.entities_problem(engine, entities)
    warnings = check.warnings(request, entities)
    # A request Cedar cannot build is denied, but that is no answer to "is this allowed?".
    status = EXIT_PROBLEMS if invalid or (args.expect and decision.outcome != args.expect) else EXIT_OK
    policies = _determining(store, decision)
    if args.json:
        _print_json({
            "request": request.to_cedar(), "decision": decision.outcome,
            "invalid_request": invalid, "warnings": warnings,
            "reasons": list(decision.reasons), "errors": list(decision.errors),
            "milliseconds": round(elapsed_ms, 3),
            "policies": [{"id": pid, "location": where, "text": text}
                         for pid, where, text in policies],
        })
        return status
    out = _output(args)
    word = "ALLOW" if decision.allowed else "DENY"
    out.line(f"{word}  {request.principal} {request.action} {request.resource}",
             "bold green" if decision.allowed else "bold red")
    if invalid:
        out.line(f"invalid request: {invalid}", "bold red")
    elif policies:
        out.line("determined by:")
        for policy_id, where, text in policies:
            out.line(f"  {policy_id} ({where})", "bold")
            out.code(text, language="cedar")
    elif not decision.allowed:
        out.line("no policy applies: denied by default" if not decision.errors
                 else "no policy applies (some failed to evaluate): denied")
    if decision.errors:
        out.line("errors:", "yellow")
        for error in decision.errors:
            out.line(f"  {error}", "yellow")
    for warning in warnings:
        out.line(f"warning: {warning}", "yellow")
    out.line(f"decided in {elapsed_ms:.2f} ms", "dim")
    if args.expect and decision.outcome != args.expect:
        out.line(f"expected {args.expect}", "bold red")
    elif invalid and args.expect:
        out.line(f"expected {args.expect} of a valid request", "bold red")
    return status


def _determining(store: PolicyStore, decision: Decision) -> list[tuple[str, str, str]]:
    found = []
    links = {link.id: link for link in store.links}
    for reason in decision.reasons:
        link = links.get(reason)
        try:
            policy = store.policy(link.template if link else reason)
        except KeyError:
            found.append((reason, "?", ""))
            continue
        if link is None:
            found.append((reason, policy.location, policy.text))
            continue
        slots = ", ".join(f"{slot} = {uid}" for slot, uid in (
            ("?principal", link.principal), ("?resource", link.resource)) if uid is not None)
        found.append((reason, f"{link.source}: link of {policy.id!r} at {policy.location}, {slots}",
                      policy.text))
    return found


# -- format -----------------------------------------------------------------------------


def add_format_command(commands: Subparsers) -> None:
    """``agentauthz format``: Cedar's formatter on every policy file, checked for safety."""
    parser = commands.add_parser(
        "format", help="format the policy files (--check for CI)",
        description=(
            "Format every *.cedar file of the store with Cedar's formatter. A file is "
            "rewritten only if its policies mean exactly the same afterwards (same Cedar "
            "JSON, same @id and order) and every // comment is kept between the same "
            "policies; otherwise it is left as it is and reported (exit 1). With --check "
            "nothing is written: exit 1 and list the files that would change."))
    _store_argument(parser)
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if a file would change")
    parser.add_argument("--diff", action="store_true", help="show the changes as a unified diff")
    parser.add_argument("--line-width", type=int, default=80, metavar="N",
                        help="maximum line length (default: 80)")
    parser.add_argument("--indent-width", type=int, default=2, metavar="N",
                        help="indentation (default: 2)")
    _output_options(parser)
    parser.set_defaults(handler=_format)


def _format(args: argparse.Namespace) -> int:
    from agentauthz.policy._format import format_directory

    root = _directory(args)
    label = _label(root)
    if args.line_width < 10 or args.indent_width < 0:
        raise UsageError("--line-width must be at least 10 and --indent-width not negative")
    results = format_directory(root, line_width=args.line_width, indent_width=args.indent_width)
    if not results:
        raise UsageError(f"{label}: no *.cedar files")
    changed = [result for result in results if result.changed]
    refused = [result for result in results if result.problem is not None]
    written: list[str] = []
    if not args.check:
        for result in changed:
            _write_atomically(root / result.file, result.formatted or "")
            written.append(result.file)
    failed = bool(refused) or (args.check and bool(changed))
    if args.json:
        _print_json({
            "directory": label, "ok": not failed, "check": args.check,
            "changed": [result.file for result in changed], "written": written,
            "refused": [{"file": result.file, "problem": result.problem} for result in refused],
            "unchanged": [r.file for r in results if not r.changed and r.problem is None],
        })
        return EXIT_PROBLEMS if failed else EXIT_OK
    out = _output(args)
    for result in changed:
        verb = "would reformat" if args.check else "reformatted"
        out.line(f"{verb} {label}/{result.file}", "yellow" if args.check else "green")
        if args.diff:
            diff = difflib.unified_diff(
                result.original.splitlines(keepends=True),
                (result.formatted or "").splitlines(keepends=True),
                f"{label}/{result.file}", f"{label}/{result.file} (formatted)", lineterm="")
            for line in diff:
                out.line(line.removesuffix("\n"), _DIFF_STYLES.get(line[:1]))
    for result in refused:
        out.line(f"error: {label}/{result.problem}", "red")
    unchanged = len(results) - len(changed) - len(refused)
    summary = (f"{_plural(len(changed), 'file')} {'would be ' if args.check else ''}reformatted, "
               f"{unchanged} unchanged" + (f", {len(refused)} refused" if refused else ""))
    out.line(f"{label}: {summary}", "bold red" if failed else "bold green")
    return EXIT_PROBLEMS if failed else EXIT_OK


_DIFF_STYLES = {"+": "green", "-": "red", "@": "cyan"}


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.agentauthz-format")
    try:
        with open(temporary, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        os.replace(temporary, path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise UsageError(f"{path}: cannot write ({exc.strerror})") from exc


# -- replay -----------------------------------------------------------------------------


def add_replay_command(commands: Subparsers) -> None:
    """``agentauthz replay``: what-if analysis of recorded decisions against candidate policies."""
    parser = commands.add_parser(
        "replay", help="decide recorded requests again with candidate policies",
        description=(
            "Read an audit log (JSON lines; '-' for stdin) and decide every recorded request "
            "again with the candidate policy store: counts and examples of decisions that "
            "would flip, and of decisions made by other policies. Only events of an "
            "Authorizer with record_requests=True carry their request; the others are "
            "counted as skipped."))
    parser.add_argument("audit", metavar="AUDIT.jsonl", help="the audit log ('-' for stdin)")
    parser.add_argument("--policies", required=True, metavar="DIR",
                        help="the candidate policy store")
    parser.add_argument("--examples", type=int, default=5, metavar="N",
                        help="examples of each kind of change to show (default: 5)")
    parser.add_argument("--fail-on-flip", action="store_true",
                        help="exit 1 if any decision would flip")
    _no_validate_option(parser)
    _output_options(parser)
    parser.set_defaults(handler=_replay)


def _replay(args: argparse.Namespace) -> int:
    from agentauthz.cli._replay import count_lines, replay

    policies = Path(args.policies)
    if not policies.is_dir():
        raise UsageError(f"--policies {args.policies}: no such directory")
    if args.examples < 0:
        raise UsageError("--examples must not be negative")
    store = _load(policies, validate=not args.no_validate)
    out = _output(args)
    started = time.perf_counter()
    if args.audit == "-":
        report = replay(sys.stdin, store, examples=args.examples)
    else:
        try:
            with open(args.audit, encoding="utf-8", errors="replace") as stream:
                total = count_lines(stream)
                with out.progress(total, "replaying") as advance:
                    report = replay(stream, store, examples=args.examples, advance=advance)
        except OSError as exc:
            raise UsageError(f"{args.audit}: cannot read ({exc.strerror})") from exc
    elapsed = time.perf_counter() - started
    status = EXIT_PROBLEMS if args.fail_on_flip and report.flips else EXIT_OK
    if args.json:
        _print_json({"audit": args.audit, "policies": _label(policies),
                     "seconds": round(elapsed, 4), **report.to_json()})
        return status
    out.table(["", "events"], [
        ["read", str(report.events)],
        ["replayed", str(report.replayed)],
        ["skipped (no recorded request)", str(report.skipped)],
        ["unreadable", str(report.unreadable_count)],
        ["unchanged", str(report.unchanged)],
        ["allow -> deny", str(report.counts["allow->deny"])],
        ["deny -> allow", str(report.counts["deny->allow"])],
        ["same decision, other policies", str(report.counts["reasons"])],
    ], title=f"replay of {args.audit} against {_label(policies)}")
    titles = {"allow->deny": "would now be denied", "deny->allow": "would now be allowed",
              "reasons": "decided by other policies"}
    for kind, changes in report.examples.items():
        if not changes:
            continue
        out.line()
        out.line(f"{titles[kind]} ({report.counts[kind]}):",
                 "bold red" if kind == "deny->allow" else "bold")
        for change in changes:
            out.line(f"  line {change.line}: {change.principal} {change.action} {change.resource}")
            after = change.after
            out.line(f"    before: {change.before} by {', '.join(change.before_reasons) or '-'}")
            out.line(f"    after:  {after.outcome} by {', '.join(after.reasons) or '-'}"
                     + (f" ({len(after.errors)} errors)" if after.errors else ""))
    for line, why in report.unreadable:
        out.line(f"{args.audit}:{line}: unreadable: {why}", "yellow")
    if report.events and not report.replayed and report.skipped:
        out.line("no event carries its request: create the Authorizer with record_requests=True "
                 "to record them", "yellow")
    out.line()
    out.line(f"{report.flips} of {report.replayed} replayed decisions would flip "
             f"({report.skipped} skipped) in {elapsed:.2f} s",
             "bold red" if report.flips else "bold green")
    return status



