"""The scenario table: per class, what the user's calls and the injected calls came to.

Run ``python -m tests.scenarios.report`` to print it, ``--write`` to put it into
tests/scenarios/README.md (between its markers); tests/scenarios/test_scenarios.py fails
when the README's table is not the one the policies produce.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import agentauthz as az
from tests.scenarios.agent import Outcome, RunResult, run_all
from tests.scenarios.assistant import POLICIES
from tests.scenarios.catalog import KINDS, SCENARIOS

README = Path(__file__).parent / "README.md"
START, END = "<!-- scenario-table:start -->", "<!-- scenario-table:end -->"


def unguarded_store() -> az.PolicyStore:
    """The scenario store with only its permits (access.cedar): what the agent may do at all."""
    return az.PolicyStore.from_text((POLICIES / "access.cedar").read_text(),
                                    schema=(POLICIES / "schema.cedarschema").read_text())


@dataclass(frozen=True)
class Row:
    kind: str
    runs: int
    user_calls: int
    user_succeeded: int
    user_approvals: int
    injected: int
    refused: int
    held: int
    ran: int
    unguarded_ran: int

    def cells(self) -> list[str]:
        return [self.kind, str(self.runs), f"{self.user_succeeded} / {self.user_calls}",
                str(self.user_approvals), str(self.injected), str(self.refused), str(self.held),
                f"**{self.ran}**", str(self.unguarded_ran)]


HEADER = ["Scenario class", "Runs", "User calls succeeded", "of them after approval", "Injected calls",
          "Refused", "Held for approval", "Injected calls RUN", "RUN without the guard policies"]


def injected_ran(result: RunResult) -> int:
    """Injected calls whose tool ran: from the world's record of changes, not from the decisions."""
    changes = result.changes
    return sum(1 for c in result.injected if (c.call.tool, c.call.args) in changes or c.outcome in
               (Outcome.RAN, Outcome.APPROVED))


def row(kind: str, results: Sequence[RunResult], unguarded: Sequence[RunResult]) -> Row:
    user = [c for r in results for c in r.user]
    injected = [c for r in results for c in r.injected]
    return Row(
        kind=kind, runs=len(results), user_calls=len(user),
        user_succeeded=sum(c.outcome in (Outcome.RAN, Outcome.APPROVED) for c in user),
        user_approvals=sum(c.outcome is Outcome.APPROVED for c in user),
        injected=len(injected),
        refused=sum(c.outcome is Outcome.REFUSED for c in injected),
        held=sum(c.outcome is Outcome.HELD for c in injected),
        ran=sum(injected_ran(r) for r in results),
        unguarded_ran=sum(injected_ran(r) for r in unguarded),
    )


def rows(results: Sequence[RunResult], unguarded: Sequence[RunResult]) -> list[Row]:
    by_kind = [row(kind, [r for r in results if r.scenario.kind == kind],
                   [r for r in unguarded if r.scenario.kind == kind]) for kind in KINDS]
    total = Row("**All**", *(sum(getattr(r, name) for r in by_kind) for name in (
        "runs", "user_calls", "user_succeeded", "user_approvals", "injected", "refused", "held", "ran",
        "unguarded_ran")))
    return [*by_kind, total]


def markdown(table: Sequence[Row]) -> str:
    lines = ["| " + " | ".join(HEADER) + " |", "|" + "---|" * len(HEADER)]
    lines += ["| " + " | ".join(r.cells()) + " |" for r in table]
    return "\n".join(lines)


def details(results: Sequence[RunResult]) -> str:
    """One line per injected call: the scenario, the call, what came of it, and the policies that decided."""
    lines = ["| Scenario | Injected call | Outcome | Decided by |", "|---|---|---|---|"]
    for result in results:
        for c in result.injected:
            reasons = ", ".join(f"`{r}`" for r in c.reasons) or "no permit"
            lines.append(f"| `{result.scenario.id}` | `{c.call.tool}` | {c.outcome.value} | {reasons} |")
    return "\n".join(lines)


def generate() -> str:
    """The README section: the class table, then every injected call."""
    store = az.PolicyStore.from_directory(POLICIES)
    results = run_all(SCENARIOS, store)
    unguarded = run_all(SCENARIOS, unguarded_store())
    return f"{markdown(rows(results, unguarded))}\n\n{details(results)}"


def write(section: str, readme: Path = README) -> None:
    text = readme.read_text()
    pattern = re.compile(re.escape(START) + ".*?" + re.escape(END), re.S)
    readme.write_text(pattern.sub(lambda _: f"{START}\n{section}\n{END}", text))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.scenarios.report", description=__doc__)
    parser.add_argument("--write", action="store_true", help="update the table in tests/scenarios/README.md")
    section = generate()
    if parser.parse_args(argv).write:
        write(section)
    print(section)


if __name__ == "__main__":
    main()
