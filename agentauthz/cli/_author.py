"""The policy-author commands of ``agentauthz``: validate, test, check, format, replay.

Registered by :mod:`agentauthz.cli._main`. Every command reads a policy store
directory (default: ``policies`` if there is one, else the current directory).
Each handler (``run_<command>_command``) reads its arguments, computes a result
(:mod:`agentauthz.cli._results`) and has it written by a renderer
(:mod:`agentauthz.cli._render`: plain text when piped, colors and tables on a
terminal with the ``cli`` extra, JSON with ``--json``; :mod:`agentauthz.cli._junit`
for ``test --junit``). Exit codes: 0 ok, 1 problems found, 2 usage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from agentauthz._errors import AuthzError, PolicyError
from agentauthz._model import Decision, Entity, EntityUID, Request, from_cedar_value
from agentauthz.cli._common import Subparsers, UsageError
from agentauthz.cli._console import Output
from agentauthz.cli._render import output, render
from agentauthz.cli._results import CasesRun, FormatRun, ReplayRun, RequestCheckResult, StoreCheck
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


def store_directory(args: argparse.Namespace) -> Path:
    """The store directory a command names (``args.directory``), or the default one."""
    given = args.directory
    if given is None:
        given = DEFAULT_STORE if Path(DEFAULT_STORE).is_dir() else "."
    path = Path(given)
    if not path.is_dir():
        raise UsageError(f"{given}: no such directory")
    return path


def _label(path: Path) -> str:
    return path.as_posix().rstrip("/") or "."


def load_store(path: Path, *, validate: bool = True, overrides: dict[str, str] | None = None) -> PolicyStore:
    """The store, or a PolicyError whose problems read ``DIR/file:line:col: message``.

    ``overrides``: what-if texts of policy files, used instead of the files (nothing is written).
    """
    from agentauthz.policy._lint import locate_problems

    try:
        return PolicyStore.from_directory(path, validate=validate, overrides=overrides)
    except PolicyError as exc:
        raise PolicyError([finding.text(_label(path))
                           for finding in locate_problems(exc.problems, path)]) from exc


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
    parser.set_defaults(handler=run_validate_command)


def run_validate_command(args: argparse.Namespace) -> int:
    """``agentauthz validate``: lint the store, render the findings."""
    from agentauthz.policy._lint import lint_directory

    root = store_directory(args)
    report = lint_directory(root, validate=not args.no_validate)
    return render(StoreCheck(_label(root), report, strict=args.strict), args)


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
    parser.set_defaults(handler=run_test_command)


def run_test_command(args: argparse.Namespace) -> int:
    """``agentauthz test``: decide the store's cases, render them (and the JUnit report)."""
    from agentauthz.cli._junit import write_junit

    root = store_directory(args)
    for table in args.cases:
        if not Path(table).is_file():
            raise UsageError(f"--cases {table}: no such file")
    run = decide_cases(root, tables=args.cases, validate=not args.no_validate,
                       coverage_wanted=not args.no_coverage, quiet=args.quiet, out=output(args))
    if args.junit:
        write_junit(args.junit, run)
    if run.load_error is not None and not args.json:
        raise run.load_error
    return render(run, args)


def decide_cases(root: Path, *, tables: list[str], validate: bool, coverage_wanted: bool,
                 quiet: bool = False, out: Output | None = None) -> CasesRun:
    """Load the store and decide its cases; a store that does not load is the run's result.

    ``out`` draws a progress bar of long runs on a terminal.
    """
    from agentauthz.testing._cases import coverage, load_cases, run_cases

    label = _label(root)
    started = time.perf_counter()
    try:
        store = load_store(root, validate=validate)
    except PolicyError as exc:
        return CasesRun(label, load_error=exc)
    cases = load_cases(root, tables)
    if not cases:
        raise UsageError(f"{label}: no decision cases (ALLOW/*.json, DENY/*.json, cases/*.toml)")
    with (out or Output(color="never")).progress(len(cases), "deciding") as advance:
        results = run_cases(store, cases, advance=advance)
    return CasesRun(label, results, elapsed=time.perf_counter() - started,
                    missing=coverage(store, results) if coverage_wanted else None, store=store,
                    quiet=quiet)


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
    parser.set_defaults(handler=run_check_command)


def parse_uid_option(text: str, option: str) -> EntityUID:
    """A uid given as Cedar text or Cedar JSON; a UsageError naming ``option`` otherwise."""
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


def run_check_command(args: argparse.Namespace) -> int:
    """``agentauthz check``: decide one request, render the decision and why."""
    root = store_directory(args)
    principal = parse_uid_option(args.principal, "--principal")
    resource = parse_uid_option(args.resource, "--resource")
    context: Any = {}
    if args.context:
        context = _json_option(args.context, "--context")
        if not isinstance(context, dict):
            raise UsageError("--context: expected a JSON object")
    entities = _entities_option(args.entities) if args.entities else []
    store = load_store(root, validate=not args.no_validate)
    return render(check_request(store, principal, args.action, resource, context, entities,
                                expect=args.expect), args)


def _entities_option(path: str) -> list[Entity]:
    data = _json_option("@" + path, "--entities")
    if not isinstance(data, list):
        raise UsageError(f"--entities {path}: expected a JSON array of entities")
    try:
        return [Entity.from_cedar(item) for item in data]
    except AuthzError as exc:
        raise UsageError(f"--entities {path}: {exc}") from exc


def check_request(store: PolicyStore, principal: EntityUID, action_name: str, resource: EntityUID,
                  context: dict[str, Any], entities: list[Entity], *,
                  expect: str | None = None) -> RequestCheckResult:
    """Decide one request with the store's embedded engine, and say why (or why Cedar cannot)."""
    from agentauthz.engines.local import LocalEngine
    from agentauthz.testing._cases import RequestCheck

    engine = LocalEngine(store)
    try:
        action = (EntityUID.parse(action_name) if '::"' in action_name
                  else engine.resolve_action(action_name))
        request = Request(principal, action, resource,
                          {key: from_cedar_value(value) for key, value in context.items()})
    except AuthzError as exc:
        raise UsageError(f"cannot build the request: {exc}") from exc
    started = time.perf_counter()
    decision = engine.decide([request], entities)[0]
    elapsed_ms = (time.perf_counter() - started) * 1000
    check = RequestCheck(store)
    invalid = check.problems([request])[0] or check.entities_problem(engine, entities)
    return RequestCheckResult(request, decision, invalid, check.warnings(request, entities), elapsed_ms,
                              _determining(store, decision), expect)


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
    parser.set_defaults(handler=run_format_command)


def run_format_command(args: argparse.Namespace) -> int:
    """``agentauthz format``: format the policy files (or check them), render what changed."""
    from agentauthz.policy._format import format_directory

    root = store_directory(args)
    label = _label(root)
    if args.line_width < 10 or args.indent_width < 0:
        raise UsageError("--line-width must be at least 10 and --indent-width not negative")
    results = format_directory(root, line_width=args.line_width, indent_width=args.indent_width)
    if not results:
        raise UsageError(f"{label}: no *.cedar files")
    written: list[str] = []
    if not args.check:
        for result in results:
            if result.changed:
                _write_atomically(root / result.file, result.formatted or "")
                written.append(result.file)
    return render(FormatRun(label, results, args.check, written, diff=args.diff), args)


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
    parser.set_defaults(handler=run_replay_command)


def run_replay_command(args: argparse.Namespace) -> int:
    """``agentauthz replay``: decide the recorded requests again, render what would change."""
    from agentauthz.cli._replay import count_lines, replay

    policies = Path(args.policies)
    if not policies.is_dir():
        raise UsageError(f"--policies {args.policies}: no such directory")
    if args.examples < 0:
        raise UsageError("--examples must not be negative")
    store = load_store(policies, validate=not args.no_validate)
    started = time.perf_counter()
    if args.audit == "-":
        report = replay(sys.stdin, store, examples=args.examples)
    else:
        try:
            with open(args.audit, encoding="utf-8", errors="replace") as stream:
                total = count_lines(stream)
                with output(args).progress(total, "replaying") as advance:
                    report = replay(stream, store, examples=args.examples, advance=advance)
        except OSError as exc:
            raise UsageError(f"{args.audit}: cannot read ({exc.strerror})") from exc
    return render(ReplayRun(args.audit, _label(policies), report, time.perf_counter() - started,
                            fail_on_flip=args.fail_on_flip), args)
