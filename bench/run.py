"""Benchmarks: agentauthz against raw cedarpy on pre-parsed handles, in one process.

Every figure is a ratio against a baseline measured in the same process on the
same workload, with absolute medians for context. Run with ``make bench``; the
table is written to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import cedarpy

import agentauthz as az
from bench.workloads import Workload, build

ROOT = Path(__file__).resolve().parent.parent


def _median_per_call(fn: Callable[[], object], calls: int, rounds: int) -> float:
    fn()
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) / calls)
    return statistics.median(samples) * 1e6


def _raw_requests(workload: Workload) -> list[dict[str, object]]:
    return [
        {
            "principal": r.principal.to_cedar(),
            "action": r.to_cedar()["action"],
            "resource": r.resource.to_cedar(),
            "context": r.cedar_context,
        }
        for r in workload.requests
    ]


def single_requests(policies: int, entities: int, rounds: int) -> dict[str, object]:
    """One tool-call authorization at a time: Authorizer.authorize vs one raw handle call."""
    workload = build(policies, entities, request_count=100)
    store = az.PolicyStore.from_text(workload.policies, schema=workload.schema,
                                     entities=workload.entities)
    authz = az.Authorizer(az.LocalEngine(store))
    snap = store.snapshot
    raw_requests = _raw_requests(workload)

    def raw() -> None:
        for request in raw_requests:
            cedarpy.is_authorized(request, snap.policy_set, snap.entity_set, schema=snap.schema)

    def ours() -> None:
        for r in workload.requests:
            authz.authorize(principal=r.principal, action=r.action, resource=r.resource,
                            context=r.context)

    entity_json = json.dumps([e.cedar for e in workload.entities])
    peer_requests = raw_requests[: max(3, 2000 // (policies + entities))]

    def peer() -> None:
        for request in peer_requests:
            cedarpy.is_authorized(request, workload.policies, entity_json, schema=workload.schema)

    raw_us = _median_per_call(raw, len(raw_requests), rounds)
    ours_us = _median_per_call(ours, len(raw_requests), rounds)
    peer_us = _median_per_call(peer, len(peer_requests), max(3, rounds // 3))
    return {"workload": f"authorize, P={policies}, E={entities}", "baseline_us": raw_us,
            "ours_us": ours_us, "ratio": ours_us / raw_us, "peer_ratio": peer_us / raw_us}


def batch_requests(policies: int, entities: int, size: int, rounds: int) -> dict[str, object]:
    """A batch (as a RAG filter sends): authorize_many vs one raw is_authorized_batch."""
    workload = build(policies, entities, request_count=size)
    store = az.PolicyStore.from_text(workload.policies, schema=workload.schema,
                                     entities=workload.entities)
    authz = az.Authorizer(az.LocalEngine(store))
    snap = store.snapshot
    raw_requests = _raw_requests(workload)

    def raw() -> None:
        cedarpy.is_authorized_batch(raw_requests, snap.policy_set, snap.entity_set, schema=snap.schema)

    def ours() -> None:
        authz.authorize_many(workload.requests)

    raw_us = _median_per_call(raw, 1, rounds)
    ours_us = _median_per_call(ours, 1, rounds)
    return {"workload": f"authorize_many of {size}, P={policies}, E={entities}",
            "baseline_us": raw_us, "ours_us": ours_us, "ratio": ours_us / raw_us,
            "peer_ratio": None}


def render(rows: list[dict[str, object]]) -> str:
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`python -m bench.run`). Each ratio divides agentauthz's median",
        "time by a baseline measured in the same process on the same workload: one raw cedarpy",
        "call on pre-parsed `PolicySet`/`Entities`/`Schema` handles (`is_authorized` per request,",
        "`is_authorized_batch` for batches). The peer column is a call path that passes policy",
        "text and the entity list on every call, as simple integrations do.",
        "Workload: RBAC, ABAC, owner and forbid policies over four actions (bench/workloads.py).",
        "",
        f"Machine: {platform.machine()}, Python {platform.python_version()}, "
        f"cedarpy {_cedarpy_version()}.",
        "",
        "| workload | baseline (us) | agentauthz (us) | ratio | peer ratio |",
        "|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        peer = row["peer_ratio"]
        lines.append(
            f"| {row['workload']} | {row['baseline_us']:.1f} | {row['ours_us']:.1f} | "
            f"{row['ratio']:.2f}x | {'' if peer is None else f'{peer:.1f}x'} |"
        )
    return "\n".join(lines) + "\n"


def _cedarpy_version() -> str:
    from importlib.metadata import version

    return version("cedarpy")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks.md")
    args = parser.parse_args()
    rows = []
    for policies, entities in ((10, 10), (10, 1000), (100, 10), (100, 1000), (1000, 1000)):
        rows.append(single_requests(policies, entities, args.rounds))
        print(rows[-1])
    for size in (100, 1000):
        rows.append(batch_requests(100, 1000, size, args.rounds))
        print(rows[-1])
    args.output.write_text(render(rows))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
