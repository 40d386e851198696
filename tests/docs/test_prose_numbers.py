"""Counts written in prose are true: each is checked here against what it counts.

A number in a sentence of the docs ("seven users", "200 cases") drifts silently when
the thing it counts changes. Printed output is compared by test_docs.py; every
other count of the pages (outside fenced blocks) must be one of the CLAIMS below,
checked against its source, or be listed in NOT_COUNTS with the reason it is no
count. docs/benchmarks.md is written by `make bench`, measured, not typed.
"""

from __future__ import annotations

import ast
import json
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from agentauthz.cli._console import PROGRESS_THRESHOLD

ROOT = Path(__file__).resolve().parents[2]
STORE = ROOT / "policies"
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
         "nine": 9, "ten": 10, "eleven": 11, "twelve": 12}
#: "one" is left out: "one action per tool" is a rule, not a count that can drift.
NUMBER = r"\b(\d[\d,]*|" + "|".join(word for word in WORDS if word != "one") + ")"
COUNTED = (r"cases?|polic(?:y|ies)|tools?|tests?|documents?|users?|tenants?|rules?|templates?|links?|"
           r"entities|actions?|examples?|modules?|files?|chunks?")
COUNT = re.compile(NUMBER + r"\s+(?:[\w-]+\s+){0,2}?(" + COUNTED + r")\b", re.I)
PAGES = ["README.md", "policies/README.md",
         *sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").rglob("*.md")
                 if p.name != "benchmarks.md" and "_tooling" not in p.parts)]


def entities_of_type(kind: str) -> int:
    return Counter(e["uid"]["type"] for e in json.loads((STORE / "entities.json").read_text()))[kind]


def tool_actions() -> int:
    """Actions of the example schema other than retrieval's ``read``: one per tool."""
    schema = (STORE / "schema.cedarschema").read_text(encoding="utf-8")
    return len([name for name in re.findall(r"^action (\w+)", schema, re.M) if name != "read"])


def assistant_tools() -> int:
    """The tools examples/assistant_tools.py guards (the functions its build_tools returns)."""
    tree = ast.parse((ROOT / "examples" / "assistant_tools.py").read_text(encoding="utf-8"))
    build = next(node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)
                 and node.name == "build_tools")
    return len([node for node in build.body if isinstance(node, ast.FunctionDef) and node.decorator_list])


def policies_in(file: str) -> int:
    return len(re.findall(r"^@id\(", (STORE / file).read_text(encoding="utf-8"), re.M))


#: (page, the counting phrase as written, what it counts).
CLAIMS: list[tuple[str, str, Callable[[], int]]] = [
    ("policies/README.md", "Two tenants", lambda: entities_of_type("Tenant")),
    ("policies/README.md", "seven users", lambda: entities_of_type("User")),
    ("policies/README.md", "twelve documents", lambda: entities_of_type("Document")),
    ("policies/README.md", "five tools", tool_actions),
    ("policies/README.md", "five tools", assistant_tools),
    ("docs/session.md", "three more rules", lambda: policies_in("session.cedar")),
    ("docs/cli.md", "200 cases", lambda: PROGRESS_THRESHOLD),
]

#: Matches of the count pattern that count nothing.
NOT_COUNTS = {
    ("docs/cli.md", "6 Document"): "an entity's position inside a quoted Cedar error message",
    ("docs/cli.md", "0 User"): "an entity's position (#0) inside a quoted Cedar error message",
    ("docs/cli.md", "two policies"): "'between the same two policies': where a comment sits",
    ("docs/concepts.md", "Two policies"): "'two policies with the same id are a load error'",
    ("docs/rag.md", "Two chunks"): "'two chunks that claim the same resource uid'",
    ("docs/security.md", "3,000 chained parent entities"): "the size of an attack the page describes",
}


def value(word: str) -> int:
    return WORDS[word.lower()] if word.lower() in WORDS else int(word.replace(",", ""))


def prose_counts(page: str) -> list[str]:
    text = FENCE.sub("", (ROOT / page).read_text(encoding="utf-8"))
    return [" ".join(match.group(0).split()) for match in COUNT.finditer(text)]


@pytest.mark.parametrize(("page", "phrase", "counted"), CLAIMS, ids=[f"{p}: {w}" for p, w, _ in CLAIMS])
def test_a_count_in_the_prose_is_true(page: str, phrase: str, counted: Callable[[], int]) -> None:
    assert phrase in " ".join((ROOT / page).read_text(encoding="utf-8").split()), f"{page} no longer says it"
    assert value(phrase.split()[0]) == counted()


@pytest.mark.parametrize("page", PAGES)
def test_every_count_in_the_prose_is_checked(page: str) -> None:
    checked = {phrase for claim_page, phrase, _ in CLAIMS if claim_page == page}
    unchecked = [phrase for phrase in prose_counts(page)
                 if phrase not in checked and (page, phrase) not in NOT_COUNTS]
    assert unchecked == [], f"{page}: add a claim to CLAIMS (or drop the number) for {unchecked}"


def test_an_unchecked_count_is_found() -> None:
    assert [m.group(0) for m in COUNT.finditer("The store has 37 such cases and three tools.")] == [
        "37 such cases", "three tools"]
