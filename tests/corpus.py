"""The Cedar project's conformance corpus: where it is, which files a run covers, how to read them.

Shared by the conformance suite (``tests/conformance``) and the Verified
Permissions parity test (``tests/avp/test_parity.py``). The corpus
lives outside the repository: ``$AGENTAUTHZ_CEDAR_CORPUS`` or
``../shared/cedar-corpus`` next to the repository root.
"""

from __future__ import annotations

import json
import os
import re
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest

import agentauthz as az

CORPUS_ENV = "AGENTAUTHZ_CEDAR_CORPUS"
SAMPLE_ENV = "AGENTAUTHZ_CORPUS_SAMPLE"
DEFAULT_SAMPLE_SIZE = 1200
TARBALL = "corpus-tests.tar.gz"
GENERATED_DIR = "corpus-tests"
HANDWRITTEN_DIR = "tests"

_REPO_ROOT = Path(__file__).resolve().parents[1]
# cedarpy names the policy an evaluation error comes from in backticks; the
# engine rewrites the positional name to the store id in place.
_ERRING_POLICY = re.compile(r"^error while evaluating policy `([^`]*)`")
_SHOWN_MISMATCHES = 10


def corpus_root() -> Path:
    """The corpus folder: ``$AGENTAUTHZ_CEDAR_CORPUS`` or ``../shared/cedar-corpus``."""
    configured = os.environ.get(CORPUS_ENV)
    if configured:
        return Path(configured).expanduser()
    return _REPO_ROOT.parent / "shared" / "cedar-corpus"


def missing_reason(required: str) -> str | None:
    """Why the corpus part ``required`` cannot be used, or None when it is there."""
    root = corpus_root()
    if not (root / required).exists():
        source = f"${CORPUS_ENV}" if os.environ.get(CORPUS_ENV) else "the default location"
        return (f"Cedar conformance corpus not available: {root / required} does not exist "
                f"({source}); set {CORPUS_ENV} to the cedar-corpus folder to run these tests")
    return None


@cache
def generated_names() -> tuple[str, ...]:
    """Sorted names (hashes) of every generated corpus test in the tarball."""
    names = []
    with tarfile.open(corpus_root() / TARBALL) as archive:
        for member in archive.getnames():
            folder, _, file = member.partition("/")
            if folder == GENERATED_DIR and file.endswith(".json") and not file.endswith(
                    ".entities.json"):
                names.append(file.removesuffix(".json"))
    return tuple(sorted(names))


def sample(names: Sequence[str], setting: str | None) -> list[str]:
    """The files a run covers, from the ``AGENTAUTHZ_CORPUS_SAMPLE`` setting.

    Evenly spaced over sorted names rather than random, so every run and every
    machine checks the same files and a failure reproduces by name.
    """
    if setting is None or not setting.strip():
        size = DEFAULT_SAMPLE_SIZE
    elif setting.strip().lower() == "all":
        return list(names)
    else:
        try:
            size = int(setting)
        except ValueError:
            raise pytest.UsageError(
                f"{SAMPLE_ENV} must be 'all' or a number of corpus files, not {setting!r}"
            ) from None
        if size < 1:
            raise pytest.UsageError(f"{SAMPLE_ENV} must be at least 1, not {size}")
    if size >= len(names):
        return list(names)
    return [names[index * len(names) // size] for index in range(size)]


def selected_generated_names() -> list[str]:
    """The generated corpus tests this run covers."""
    return sample(generated_names(), os.environ.get(SAMPLE_ENV))


def handwritten_names() -> list[str]:
    """Hand-written corpus tests, as ``<folder>/<name>`` relative to ``tests/``."""
    folder = corpus_root() / HANDWRITTEN_DIR
    return sorted(path.relative_to(folder).with_suffix("").as_posix()
                  for path in folder.glob("*/*.json"))


@dataclass(frozen=True)
class CorpusCase:
    """One corpus test file, read as raw Cedar JSON and text.

    Attributes:
        name: the test's file name, for messages.
        policies: the Cedar policy text.
        schema: the Cedar schema text, if the test has one.
        entities: the entities, Cedar JSON.
        requests: the requests with their expected ``decision``, ``reason``
            (determining policies) and ``errors`` (policies whose evaluation failed).
        should_validate: whether the policies validate against the schema.
    """

    name: str
    policies: str
    schema: str | None
    entities: list[dict[str, Any]]
    requests: list[dict[str, Any]]
    should_validate: bool

    @classmethod
    def load(cls, test_file: Path, root: Path) -> CorpusCase:
        """Read a test file; the paths it names are relative to ``root``."""
        spec = json.loads(test_file.read_text(encoding="utf-8"))
        schema = spec.get("schema")
        return cls(
            name=test_file.name,
            policies=(root / spec["policies"]).read_text(encoding="utf-8"),
            schema=(root / schema).read_text(encoding="utf-8") if schema else None,
            entities=json.loads((root / spec["entities"]).read_text(encoding="utf-8")),
            requests=spec["requests"],
            should_validate=spec["shouldValidate"],
        )

    def store(self, *, validate: bool, with_entities: bool = True) -> az.PolicyStore:
        """The case as a policy store, entities read through ``az.Entity.from_cedar``."""
        entities = [az.Entity.from_cedar(data) for data in self.entities] if with_entities else []
        return az.PolicyStore.from_text(self.policies, schema=self.schema, entities=entities,
                                        validate=validate)

    def decide(self) -> list[az.Decision]:
        """Every request of the case, decided in one batch by the embedded engine."""
        requests = [az.Request.from_cedar(data) for data in self.requests]
        return az.LocalEngine(self.store(validate=False)).decide(requests)

    def mismatches(self, decisions: Sequence[az.Decision], *, check_errors: bool) -> list[str]:
        """One line per request whose decision, reasons (or erring policies) differ."""
        if len(decisions) != len(self.requests):
            return [f"{len(self.requests)} requests but {len(decisions)} decisions"]
        found = []
        for index, (expected, decision) in enumerate(zip(self.requests, decisions, strict=True)):
            want_reasons = set(expected["reason"])
            problems = []
            if decision.outcome != expected["decision"]:
                problems.append(f"decision {decision.outcome}, expected {expected['decision']}")
            if set(decision.reasons) != want_reasons:
                problems.append(f"reasons {sorted(decision.reasons)}, "
                                f"expected {sorted(want_reasons)}")
            erring = erring_policies(decision)
            if check_errors and erring != set(expected["errors"]):
                problems.append(f"erring policies {sorted(erring)}, "
                                f"expected {sorted(expected['errors'])}")
            if problems:
                shown_errors = f"; errors {list(decision.errors[:2])}" if decision.errors else ""
                found.append(f"request {index} ({expected.get('description', '')}): "
                             + "; ".join(problems) + shown_errors)
        return found

    def report(self, mismatches: Sequence[str]) -> str:
        """A failure message naming the file and the first few bad requests."""
        shown = "\n  ".join(mismatches[:_SHOWN_MISMATCHES])
        more = len(mismatches) - _SHOWN_MISMATCHES
        tail = f"\n  ... and {more} more" if more > 0 else ""
        return (f"{self.name}: {len(mismatches)} of {len(self.requests)} requests differ "
                f"from Cedar:\n  {shown}{tail}")


def erring_policies(decision: az.Decision) -> set[str]:
    """Ids of the policies whose evaluation failed, read from the decision's errors.

    An error that names no policy (a request or entity the engine refused) is
    kept whole, so that it can never match an expected policy id.
    """
    found = set()
    for error in decision.errors:
        match = _ERRING_POLICY.match(error)
        found.add(match.group(1) if match else error)
    return found
