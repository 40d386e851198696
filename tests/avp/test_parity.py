"""Parity: the Cedar corpus decided through Verified Permissions and by the embedded engine.

Every request of a sample of corpus files that fits AVP's constraints goes
through ``VerifiedPermissionsEngine`` -> a real boto3 client ->
``LocalVerifiedPermissions`` and through ``LocalEngine``; decisions, determining
policies and erring policies must be the same.

AVP refuses entity ids shorter than 1 or longer than 612 characters, and most
generated corpus requests use the empty id (``User::""``), so a file counts only
when at least one of its requests fits. Entities with such ids can reach AVP in
no request, so the embedded engine decides without them too. The sample is
:data:`DEFAULT_FILES` such files (enough for :data:`MIN_COMPARED_FILES` to be
compared), evenly spaced over their sorted names; ``AGENTAUTHZ_AVP_PARITY_SAMPLE``
sets a number or ``all``. The report (``pytest -s`` or ``-rP``) counts what was
compared and what was excluded, and why.

One endpoint serves every file: each gets its own policy store (seeded
in-process), its own engine, and is deleted after.
"""

from __future__ import annotations

import json
import os
import re
import tarfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

import agentauthz as az
from agentauthz.avp._wire import entity_problems, uid_problem
from agentauthz.testing import LocalVerifiedPermissions
from tests.corpus import (
    GENERATED_DIR,
    TARBALL,
    CorpusCase,
    corpus_root,
    erring_policies,
    missing_reason,
    sample,
)

pytest.importorskip("boto3")
from agentauthz.avp._engine import NOT_SENT, VerifiedPermissionsEngine
from agentauthz.avp._synced import SyncedEngine

PARITY_ENV = "AGENTAUTHZ_AVP_PARITY_SAMPLE"
# Some selected files turn out to need an entity AVP cannot hold for every request: select
# a few more than the 1,000 files the comparison must cover.
DEFAULT_FILES = 1030
MIN_COMPARED_FILES = 1000
CEDAR_JSON_FILES = 150
SYNCED_DECISION_CALLS = "made by the synced copy's decisions"
# A third of the files is read back by SyncedEngine (about 5 s); AGENTAUTHZ_SYNCED_PARITY_EVERY=1 reads all.
SYNCED_EVERY = int(os.environ.get("AGENTAUTHZ_SYNCED_PARITY_EVERY", "3"))
_SHOWN = 10


def request_exclusion(request: dict[str, Any]) -> str | None:
    """Why AVP cannot take this corpus request as it stands (read independently of the engine)."""
    for role in ("principal", "resource", "action"):
        uid = request[role]
        problem = uid_problem(uid["type"], uid["id"], action=role == "action")
        if problem:
            return f"{role} id breaks AVP's identifier limits ({'empty' if not uid['id'] else 'length'})"
    if any(not uid.get("id") for uid in _references(request.get("context") or {})):
        return "context names an entity with an empty id"
    return None


def _references(value: Any) -> Iterator[dict[str, Any]]:
    if isinstance(value, dict):
        if set(value) == {"__entity"}:
            yield value["__entity"]
            return
        for item in value.values():
            yield from _references(item)
    elif isinstance(value, list):
        for item in value:
            yield from _references(item)


@dataclass
class ParityCorpus:
    """The selected corpus files, read into memory, and the files left out before running."""

    cases: list[CorpusCase]
    scanned: int
    eligible: int
    excluded_files: Counter[str] = field(default_factory=Counter)


@dataclass
class Report:
    files: int = 0
    requests: int = 0
    excluded_files: Counter[str] = field(default_factory=Counter)
    excluded_requests: Counter[str] = field(default_factory=Counter)
    mismatches: list[str] = field(default_factory=list)
    calls: Counter[str] = field(default_factory=Counter)
    unholdable: int = 0
    unholdable_files: int = 0

    def text(self, corpus: ParityCorpus, seconds: float) -> str:
        lines = [
            f"AVP parity: {self.files} corpus files and {self.requests} requests compared in "
            f"{seconds:.1f} s ({corpus.scanned} files scanned, {corpus.eligible} with a request AVP "
            f"can take, {len(corpus.cases)} selected)",
            "files excluded before running: " + _counts(corpus.excluded_files),
            "files excluded while running: " + _counts(self.excluded_files),
            "requests excluded in the compared files: " + _counts(self.excluded_requests),
            f"entities AVP cannot hold (empty ids), left out on both sides: {self.unholdable} in "
            f"{self.unholdable_files} files",
            "AVP calls: " + _counts(self.calls),
        ]
        return "\n".join(lines)


def _counts(counter: Counter[str]) -> str:
    return "; ".join(f"{count} {reason}" for reason, count in counter.most_common()) or "none"


def _setting() -> str | None:
    return os.environ.get(PARITY_ENV) or str(DEFAULT_FILES)


@pytest.fixture(scope="module")
def parity_corpus() -> ParityCorpus:
    reason = missing_reason(TARBALL)
    if reason:
        pytest.skip(reason)
    specs: dict[str, dict[str, Any]] = {}
    with tarfile.open(corpus_root() / TARBALL) as archive:
        for member in archive:
            folder, _, file = member.name.partition("/")
            if folder == GENERATED_DIR and member.isfile() and file.endswith(".json") and not (
                    file.endswith(".entities.json")):
                handle = archive.extractfile(member)
                assert handle is not None
                specs[file.removesuffix(".json")] = json.loads(handle.read())
    excluded: Counter[str] = Counter()
    eligible = []
    for name in sorted(specs):
        reasons = [request_exclusion(request) for request in specs[name]["requests"]]
        if any(reason is None for reason in reasons):
            eligible.append(name)
        else:
            commonest = Counter(reason or "" for reason in reasons).most_common(1)[0][0]
            excluded[f"with no request AVP can take ({commonest})"] += 1
    chosen = sample(eligible, _setting())
    wanted = set(chosen)
    texts: dict[str, str] = {}
    with tarfile.open(corpus_root() / TARBALL) as archive:
        for member in archive:
            folder, _, file = member.name.partition("/")
            if folder == GENERATED_DIR and member.isfile() and file.partition(".")[0] in wanted:
                handle = archive.extractfile(member)
                assert handle is not None
                texts[member.name] = handle.read().decode("utf-8")
    cases = []
    for name in chosen:
        spec = specs[name]
        cases.append(CorpusCase(
            name=f"{name}.json",
            policies=texts[spec["policies"]],
            schema=texts[spec["schema"]] if spec.get("schema") else None,
            entities=json.loads(texts[spec["entities"]]),
            requests=spec["requests"],
            should_validate=spec["shouldValidate"],
        ))
    return ParityCorpus(cases=cases, scanned=len(specs), eligible=len(eligible), excluded_files=excluded)


@pytest.fixture(scope="module")
def server() -> Iterator[LocalVerifiedPermissions]:
    with LocalVerifiedPermissions() as endpoint:
        yield endpoint


def _not_sent_reason(error: str) -> str:
    detail = error.removeprefix(NOT_SENT)
    if re.search(r"must be 1 to \d+ characters, not 0$", detail):
        return "an entity the request needs (parent, attribute or its own uid) has an empty id"
    return "refused by AVP's limits: " + re.sub(r'"[^"]*"', '"..."', detail)[:80]


def run_parity(corpus: ParityCorpus, server: LocalVerifiedPermissions, *, encoding: str,
               limit: int | None = None, synced_every: int = 0) -> Report:
    """Compare the embedded engine with Verified Permissions.

    With ``synced_every`` = n, every n-th file is also read back by SyncedEngine and decided on
    that copy, compared with Verified Permissions' decisions.
    """
    report = Report()
    client = server.client(max_pool_connections=8)
    for position, case in enumerate(corpus.cases[:limit]):
        store = case.store(validate=False)
        try:
            store_id = server.add_store(store, validation_mode="OFF")
        except az.PolicyError as exc:
            report.excluded_files[f"refused by AVP: {str(exc)[:80]}"] += 1
            continue
        server.reset_calls()
        fitting = [(index, request) for index, request in enumerate(case.requests)
                   if request_exclusion(request) is None]
        for request in case.requests:
            reason = request_exclusion(request)
            if reason:
                report.excluded_requests[reason] += 1
        requests = [az.Request.from_cedar(request) for _, request in fitting]
        # An entity AVP cannot hold (an empty id) can reach AVP in no request: the embedded
        # engine decides without it too (a policy may name it literally, e.g. `A::"" has r`).
        holdable = [e for e in store.entities if entity_problems(e.cedar) is None]
        if len(holdable) < len(store.entities):
            report.unholdable += len(store.entities) - len(holdable)
            report.unholdable_files += 1
            embedded = az.PolicyStore.from_text(case.policies, schema=case.schema, entities=holdable,
                                                validate=False)
        else:
            embedded = store
        expected = az.LocalEngine(embedded).decide(requests)
        with VerifiedPermissionsEngine(store_id, client=client, encoding=encoding) as engine:  # type: ignore[arg-type]
            actual = engine.decide(requests, store.entities)
        if synced_every and position % synced_every == 0:
            with SyncedEngine(store_id, client=client, refresh_interval=None) as copy:
                report.calls.update(call.operation for call in server.calls)
                server.reset_calls()
                from_copy = copy.decide(requests, store.entities)
                report.calls[SYNCED_DECISION_CALLS] += server.call_count()
            report.mismatches.extend(_synced_mismatches(case.name, fitting, actual, from_copy))
        compared = 0
        for (index, _), want, got in zip(fitting, expected, actual, strict=True):
            if got.errors and got.errors[0].startswith(NOT_SENT) and not got.allowed:
                report.excluded_requests[_not_sent_reason(got.errors[0])] += 1
                continue
            compared += 1
            if (want.allowed, want.reasons, erring_policies(want)) != (
                    got.allowed, got.reasons, erring_policies(got)):
                report.mismatches.append(
                    f"{case.name} request {index}: embedded {want.outcome} {list(want.reasons)} "
                    f"errors {list(want.errors)[:2]}; AVP {got.outcome} {list(got.reasons)} "
                    f"errors {list(got.errors)[:2]}")
        for call in server.calls:
            report.calls[call.operation] += 1
        server.delete_store(store_id)
        if compared:
            report.files += 1
            report.requests += compared
        else:
            report.excluded_files["every fitting request needs an entity with an empty id"] += 1
    return report


def _synced_mismatches(name: str, fitting: list[tuple[int, Any]], remote: list[az.Decision],
                       copy: list[az.Decision]) -> list[str]:
    """Requests the synced copy decides otherwise than Verified Permissions (those AVP was sent)."""
    return [f"{name} request {index}: AVP {got.outcome} {list(got.reasons)} errors {list(got.errors)[:2]}; "
            f"synced copy {mine.outcome} {list(mine.reasons)} errors {list(mine.errors)[:2]}"
            for (index, _), got, mine in zip(fitting, remote, copy, strict=True)
            if not (got.errors and got.errors[0].startswith(NOT_SENT)) and _compared(got) != _compared(mine)]


def _compared(decision: az.Decision) -> tuple[bool, tuple[str, ...], Any]:
    return decision.allowed, decision.reasons, erring_policies(decision)


@pytest.mark.corpus
def test_corpus_decisions_are_the_same_through_verified_permissions(
    parity_corpus: ParityCorpus, server: LocalVerifiedPermissions
) -> None:
    # Every SYNCED_EVERY-th file's store is also read back from the endpoint by SyncedEngine (as pull
    # reads it) and decided on that copy: the same decisions as Verified Permissions, no call to decide.
    started = time.perf_counter()
    report = run_parity(parity_corpus, server, encoding="structured", synced_every=SYNCED_EVERY)
    print("\n" + report.text(parity_corpus, time.perf_counter() - started))
    shown = "\n  ".join(report.mismatches[:_SHOWN])
    assert not report.mismatches, f"{len(report.mismatches)} requests differ:\n  {shown}"
    assert report.calls[SYNCED_DECISION_CALLS] == 0
    if os.environ.get(PARITY_ENV) is None:
        assert report.files >= MIN_COMPARED_FILES
        assert report.requests >= 5 * report.files


@pytest.mark.corpus
def test_corpus_decisions_are_the_same_with_cedar_json_payloads(
    parity_corpus: ParityCorpus, server: LocalVerifiedPermissions
) -> None:
    started = time.perf_counter()
    report = run_parity(parity_corpus, server, encoding="cedar_json", limit=CEDAR_JSON_FILES)
    print("\n" + report.text(parity_corpus, time.perf_counter() - started))
    shown = "\n  ".join(report.mismatches[:_SHOWN])
    assert not report.mismatches, f"{len(report.mismatches)} requests differ:\n  {shown}"
    assert report.files > 0
