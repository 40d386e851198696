"""Soak test: many threads and asyncio tasks deciding while the policies reload underneath.

``make soak`` (not part of ``make test``) runs N threads and M asyncio tasks
until a fixed number of decisions is made, while another thread rewrites the
policy directory every few hundred milliseconds (cycling through two good
versions and broken ones, written atomically) and reloads the store. It checks:

* zero wrong decisions: each decision (allowed and determining policies) equals
  plain cedarpy's answer on the text of one of the good versions;
* no lost audit events: one event per decision, counted by a sink;
* memory stable: resident set size after a warm-up and at the end (after a
  garbage collection) differ by less than ``--max-growth-mb`` (``--tracemalloc``
  also reports the Python heap's growth);

and prints throughput. Everything runs in-process (loopback only, no network);
it stops with a failure if it runs longer than ``--max-seconds``.

Usage: ``python -m bench.soak [--threads 8] [--tasks 64] [--decisions 800000]``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import itertools
import json
import os
import random
import resource
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cedarpy

import agentauthz as az

U = az.EntityUID
USERS = [f"u{i}" for i in range(16)]
ACTIONS = ("read", "write", "share")
DOCS = [f"d{i}" for i in range(40)]

VERSIONS = {
    "v1": """
@id("v1-public") permit(principal, action == Action::"read", resource) when { resource.level <= 1 };
@id("v1-owner") permit(principal, action, resource) when { resource.owner == principal };
@id("v1-team") permit(principal in Team::"even", action == Action::"write", resource)
  when { resource.level < 3 };
@id("v1-no-drafts") forbid(principal, action == Action::"share", resource) when { resource.draft };
""",
    "v2": """
@id("v2-public") permit(principal, action == Action::"read", resource) when { resource.level <= 2 };
@id("v2-team") permit(principal in Team::"odd", action, resource) when { context.mfa };
@id("v2-no-level-0") forbid(principal, action, resource) when { resource.level == 0 };
@id("v2-no-drafts") forbid(principal, action == Action::"write", resource) when { resource.draft };
""",
}
BROKEN = (
    "permit(principal, action resource);",
    '@id("x") permit(principal, action, resource);\n@id("x") forbid(principal, action, resource);',
    "permit(principal, action, resource) when { " + "(" * 300 + "true" + ")" * 300 + " };",
)


def stored_entities() -> list[az.Entity]:
    users = [az.Entity(uid=U("User", name), parents=[U("Team", "even" if i % 2 == 0 else "odd")])
             for i, name in enumerate(USERS)]
    docs = [az.Entity(uid=U("Doc", name), attrs={"level": i % 4, "draft": i % 5 == 0,
                                                 "owner": U("User", USERS[i % len(USERS)])})
            for i, name in enumerate(DOCS)]
    return users + docs


Answer = tuple[bool, tuple[str, ...]]


class Reference:
    """Plain cedarpy's answers (``is_authorized_batch`` on each version's text and the entities JSON)
    for every request the soak can make, computed before it starts."""

    def __init__(self, entities_json: str) -> None:
        keys = list(itertools.product(USERS, ACTIONS, DOCS, (False, True)))
        requests = [{"principal": {"type": "User", "id": user}, "action": {"type": "Action", "id": action},
                     "resource": {"type": "Doc", "id": doc}, "context": {"mfa": mfa}}
                    for user, action, doc, mfa in keys]
        per_version = []
        for text in VERSIONS.values():
            ids = _ids(text)
            results = cedarpy.is_authorized_batch(requests, text, entities_json)
            per_version.append([(r.decision == cedarpy.Decision.Allow,
                                 tuple(sorted(ids[p] for p in r.diagnostics.reasons))) for r in results])
        self._answers = {key: tuple(version[i] for version in per_version) for i, key in enumerate(keys)}

    def answers(self, user: str, action: str, doc: str, mfa: bool) -> tuple[Answer, ...]:
        return self._answers[(user, action, doc, mfa)]


_IDS: dict[str, dict[str, str]] = {}


def _ids(text: str) -> dict[str, str]:
    if text not in _IDS:
        document = json.loads(cedarpy.policies_to_json_str(text))
        _IDS[text] = {pid: body["annotations"]["id"] for pid, body in document["staticPolicies"].items()}
    return _IDS[text]


class CountingSink:
    """Counts audit events (thread-safe) without keeping them."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return True

    def emit(self, event: az.AuditEvent) -> None:
        with self._lock:
            self.count += 1


@dataclass
class Tally:
    decisions: int = 0
    wrong: int = 0
    examples: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, decided: int, wrong: Sequence[str]) -> None:
        with self.lock:
            self.decisions += decided
            self.wrong += len(wrong)
            self.examples.extend(wrong[: max(0, 5 - len(self.examples))])


def rss_mb() -> float:
    """Resident set size now (Linux /proc), else the peak from getrusage."""
    try:
        with open("/proc/self/statm", encoding="ascii") as handle:
            pages = int(handle.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Soak:
    def __init__(self, args: argparse.Namespace, root: Path) -> None:
        self.args = args
        self.root = root
        self.policy = root / "policies.cedar"
        self.entities = stored_entities()
        entities_json = json.dumps([e.to_cedar() for e in self.entities])
        (root / "entities.json").write_text(entities_json, encoding="utf-8")
        self._write(VERSIONS["v1"])
        self.store = az.PolicyStore.from_directory(root)
        self.sink = CountingSink()
        self.authz = az.Authorizer(az.LocalEngine(self.store), audit=[self.sink])
        self.reference = Reference(entities_json)
        self.tally = Tally()
        self.stop = threading.Event()
        self.reloads = {"applied": 0, "refused": 0}
        self._remaining: int = int(args.decisions)
        self._remaining_lock = threading.Lock()

    def _write(self, text: str) -> None:
        temporary = self.policy.with_name(".policies.cedar.tmp")
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, self.policy)

    def take(self, count: int) -> int:
        """Claim up to ``count`` decisions of the budget; 0 when it is spent."""
        with self._remaining_lock:
            granted = min(count, self._remaining)
            self._remaining -= granted
            return granted

    # -- work ------------------------------------------------------------------------------------

    def check(self, user: str, action: str, doc: str, mfa: bool, decision: az.Decision) -> str | None:
        answers = self.reference.answers(user, action, doc, mfa)
        if (decision.allowed, decision.reasons) in answers:
            return None
        return (f"{user} {action} {doc} mfa={mfa}: got {decision.allowed} {decision.reasons}, "
                f"expected one of {answers}")

    def one_round(self, rng: random.Random, user: str) -> tuple[int, list[str]]:
        """A few decisions the way an agent makes them: single, batch, filter."""
        wrong: list[str] = []
        kind = rng.random()
        if kind < 0.6:
            if not self.take(1):
                return 0, []
            action, doc, mfa = rng.choice(ACTIONS), rng.choice(DOCS), rng.random() < 0.5
            decision = self.authz.authorize(action=action, resource=U("Doc", doc), context={"mfa": mfa})
            problem = self.check(user, action, doc, mfa, decision)
            return 1, [problem] if problem else []
        if kind < 0.85:
            size = self.take(rng.randint(2, 20))
            if not size:
                return 0, []
            picks = [(rng.choice(USERS), rng.choice(ACTIONS), rng.choice(DOCS), rng.random() < 0.5)
                     for _ in range(size)]
            decisions = self.authz.authorize_many(
                [az.Request(U("User", u), a, U("Doc", d), {"mfa": m}) for u, a, d, m in picks])
            for (u, a, d, m), decision in zip(picks, decisions, strict=True):
                problem = self.check(u, a, d, m, decision)
                if problem:
                    wrong.append(problem)
            return size, wrong
        size = self.take(rng.randint(5, 30))
        if not size:
            return 0, []
        docs = [rng.choice(DOCS) for _ in range(size)]
        mfa = rng.random() < 0.5
        result = self.authz.filter([U("Doc", d) for d in docs], action="read", resource=lambda uid: uid,
                                   context={"mfa": mfa})
        # Distinct uids are decided once each; every one must be right.
        for doc, decision in zip(docs, result.decisions, strict=True):
            problem = self.check(user, "read", doc, mfa, decision)
            if problem:
                wrong.append(problem)
        return len(set(docs)), wrong

    def thread_worker(self, index: int) -> None:
        rng = random.Random(index)
        while not self.stop.is_set():
            user = rng.choice(USERS)
            with self.authz.acting_as(U("User", user)):
                decided, wrong = self.one_round(rng, user)
            if not decided:
                return
            self.tally.add(decided, wrong)

    async def task_worker(self, index: int) -> None:
        rng = random.Random(10_000 + index)
        while not self.stop.is_set():
            user = rng.choice(USERS)
            with self.authz.acting_as(U("User", user)):
                if not self.take(1):
                    return
                action, doc, mfa = rng.choice(ACTIONS), rng.choice(DOCS), rng.random() < 0.5
                decision = await self.authz.aauthorize(action=action, resource=U("Doc", doc),
                                                       context={"mfa": mfa})
                await asyncio.sleep(0)
                if self.authz.current_principal() != U("User", user):
                    self.tally.add(1, [f"task {index}: identity changed under it"])
                    continue
            problem = self.check(user, action, doc, mfa, decision)
            self.tally.add(1, [problem] if problem else [])

    def tasks_thread(self) -> None:
        async def main() -> None:
            await asyncio.gather(*(self.task_worker(i) for i in range(self.args.tasks)))

        asyncio.run(main())

    def reloader(self) -> None:
        cycle = itertools.cycle([VERSIONS["v2"], BROKEN[0], VERSIONS["v1"], BROKEN[1], VERSIONS["v2"],
                                 BROKEN[2], VERSIONS["v1"]])
        while not self.stop.wait(self.args.reload_ms / 1000):
            self._write(next(cycle))
            try:
                self.store.reload()
                self.reloads["applied"] += 1
            except az.PolicyError:
                self.reloads["refused"] += 1

    # -- run -------------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        # Warm-up: fill caches (reference answers, slices, handles) before the first measurement.
        warm = max(1, self.args.decisions // 20)
        rng = random.Random(0)
        with self.authz.acting_as(U("User", USERS[0])):
            while self.tally.decisions < warm:
                decided, wrong = self.one_round(rng, USERS[0])
                self.tally.add(decided, wrong)
        gc.collect()
        if self.args.tracemalloc:
            tracemalloc.start()
        traced_before = tracemalloc.get_traced_memory()[0]
        rss_before = rss_mb()
        events_before = self.sink.count
        decided_before = self.tally.decisions

        started = time.perf_counter()
        workers = [threading.Thread(target=self.thread_worker, args=(i,), name=f"soak-{i}")
                   for i in range(self.args.threads)]
        workers.append(threading.Thread(target=self.tasks_thread, name="soak-tasks"))
        reload_thread = threading.Thread(target=self.reloader, name="soak-reload")
        reload_thread.start()
        for worker in workers:
            worker.start()
        deadline = started + self.args.max_seconds
        samples: list[tuple[int, float]] = []  # (decisions so far, RSS MB), twice a second
        while any(worker.is_alive() for worker in workers) and time.perf_counter() < deadline:
            time.sleep(0.5)
            samples.append((self.tally.decisions, rss_mb()))
        timed_out = any(worker.is_alive() for worker in workers)
        self.stop.set()
        for worker in workers:
            worker.join()
        reload_thread.join()
        elapsed = time.perf_counter() - started

        gc.collect()
        rss_after = rss_mb()
        # A leak grows with the work done: compare the middle of the run with its end.
        halfway = next((rss for done, rss in samples if done - decided_before >= self.args.decisions // 2),
                       rss_before)
        traced_after = tracemalloc.get_traced_memory()[0]
        if self.args.tracemalloc:
            tracemalloc.stop()
        decided = self.tally.decisions - decided_before
        events = self.sink.count - events_before
        return {
            "threads": self.args.threads,
            "tasks": self.args.tasks,
            "decisions": decided,
            "seconds": round(elapsed, 2),
            "throughput_per_s": round(decided / elapsed) if elapsed else 0,
            "wrong_decisions": self.tally.wrong,
            "wrong_examples": self.tally.examples,
            "audit_events": events,
            "lost_audit_events": decided - events,
            "reloads_applied": self.reloads["applied"],
            "reloads_refused": self.reloads["refused"],
            "rss_mb_before": round(rss_before, 1),
            "rss_mb_after": round(rss_after, 1),
            "rss_growth_mb": round(rss_after - rss_before, 1),
            "rss_mb_halfway": round(halfway, 1),
            "rss_growth_second_half_mb": round(rss_after - halfway, 1),
            "python_heap_growth_mb": (round((traced_after - traced_before) / 2**20, 2)
                                      if self.args.tracemalloc else None),
            "timed_out": timed_out,
        }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--tasks", type=int, default=64)
    parser.add_argument("--decisions", type=int, default=800_000)
    parser.add_argument("--reload-ms", type=int, default=250)
    parser.add_argument("--max-seconds", type=float, default=100.0)
    parser.add_argument("--max-growth-mb", type=float, default=40.0)
    parser.add_argument("--tracemalloc", action="store_true",
                        help="also trace Python allocations (slows every thread down)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON only")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="agentauthz-soak-") as directory:
        summary = Soak(args, Path(directory)).run()
    failures = []
    if summary["wrong_decisions"]:
        failures.append(f"{summary['wrong_decisions']} wrong decisions")
    if summary["lost_audit_events"]:
        failures.append(f"{summary['lost_audit_events']} audit events lost")
    if summary["rss_growth_mb"] > args.max_growth_mb:
        failures.append(f"resident memory grew {summary['rss_growth_mb']} MB")
    if summary["timed_out"]:
        failures.append(f"not done within {args.max_seconds} s")
    if summary["reloads_applied"] < 2 or summary["reloads_refused"] < 1:
        failures.append("the policies were not reloaded under load")
    if args.json:
        print(json.dumps({**summary, "failures": failures}, indent=2))
    else:
        print(f"soak: {summary['threads']} threads + {summary['tasks']} asyncio tasks, "
              f"{summary['decisions']:,} decisions in {summary['seconds']} s "
              f"= {summary['throughput_per_s']:,} decisions/s")
        print(f"  policy reloads: {summary['reloads_applied']} applied, {summary['reloads_refused']} refused "
              "(broken content kept the previous version)")
        print(f"  wrong decisions: {summary['wrong_decisions']}; audit events: {summary['audit_events']:,} "
              f"(lost: {summary['lost_audit_events']})")
        heap = summary["python_heap_growth_mb"]
        print(f"  memory: RSS {summary['rss_mb_before']} -> {summary['rss_mb_halfway']} (halfway) -> "
              f"{summary['rss_mb_after']} MB ({summary['rss_growth_mb']:+} MB; second half "
              f"{summary['rss_growth_second_half_mb']:+} MB)"
              + (f", Python heap {heap:+} MB" if heap is not None else ""))
        for example in summary["wrong_examples"]:
            print(f"  wrong: {example}")
        print("  result: " + ("FAILED: " + "; ".join(failures) if failures else "ok"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
