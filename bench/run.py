"""Benchmarks: agentauthz against raw cedarpy on pre-parsed handles, in one process.

Every figure is a ratio against a baseline measured in the same process, on the
same workload, in the same rounds (the measured functions take turns, so drift
of a busy machine hits both): raw cedarpy with pre-parsed ``PolicySet``,
``Entities`` and ``Schema`` handles over the whole (unsliced) policy set.
Absolute medians are given for context. Run with ``make bench``; the tables are
written to docs/benchmarks.md. ``--quick`` runs every section on tiny sizes (the
smoke test does).
"""

from __future__ import annotations

import argparse
import functools
import gc
import json
import math
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cedarpy

import agentauthz as az
from agentauthz.engines._cedarcall import private_batch
from agentauthz.guardrails._guardrail import INPUT_FACT_TYPE
from bench import scale
from bench.workloads import (
    SHARE_TEMPLATE,
    Workload,
    build,
    build_tools,
    document_entity,
    documents,
    granted_requests,
    share_links,
)

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Sizes:
    """How big each workload is; ``quick`` shrinks everything for the smoke test."""

    rounds: int = 15
    requests: int = 100
    single: tuple[tuple[int, int], ...] = ((10, 10), (10, 1000), (100, 10), (100, 1000), (1000, 10),
                                           (1000, 1000))
    tools: tuple[int, int, int] = (1000, 20, 1000)  # policies, tool actions, entities
    rag: tuple[int, ...] = (100, 1000)
    rag_policies: int = 100
    links: int = 100_000
    link_statics: int = 100
    avp_filter: int = 1000
    retrieval_docs: int = 2000
    retrieval_queries: int = 20
    session_calls: int = 50
    provenance_values: int = 1000
    guard_policies: tuple[int, ...] = (10, 100)
    avp_grouping: tuple[int, ...] = (1000, 2000, 4000)
    data_files: tuple[int, int] = (100_000, 100_000)  # template links, entities
    rag_scale: tuple[int, ...] = (100, 1000, 10_000)
    scale_rounds: int = 5
    prefilter_policies: tuple[int, ...] = (100, 1000)
    pool_documents: int = 10_000
    scaling_base: int = 100
    entity_load: int = 100_000


QUICK = Sizes(rounds=1, requests=5, single=((10, 10),), tools=(40, 4, 20), rag=(20,), rag_policies=10,
              links=50, link_statics=10, avp_filter=40, retrieval_docs=60, retrieval_queries=2,
              session_calls=3, provenance_values=20,
              guard_policies=(10,), avp_grouping=(10, 20), data_files=(50, 50), rag_scale=(10, 20),
              scale_rounds=1, prefilter_policies=(10,), pool_documents=50, scaling_base=2,
              entity_load=100)


@dataclass
class Report:
    """Markdown sections and the issue's targets, as measured."""

    sections: list[str] = field(default_factory=list)
    targets: list[tuple[str, str, bool]] = field(default_factory=list)
    log: Callable[[str], None] = print

    def section(self, title: str, intro: str, header: Sequence[str], rows: Sequence[Sequence[str]],
                notes: Sequence[str] = ()) -> None:
        lines = [f"## {title}", "", intro, ""]
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|")
        lines.extend("| " + " | ".join(row) + " |" for row in rows)
        if notes:
            lines.append("")
            lines.extend(notes)
        self.sections.append("\n".join(lines))
        self.log(f"{title}: {len(rows)} rows")

    def skipped(self, title: str, reason: str) -> None:
        self.sections.append(f"## {title}\n\nNot measured: {reason}")
        self.log(f"{title}: not measured ({reason})")

    def target(self, description: str, measured: str, met: bool) -> None:
        self.targets.append((description, measured, met))


# -- measuring ------------------------------------------------------------------------------


Timed = tuple[Callable[[], object], int]


def measure(fns: dict[str, Timed], rounds: int) -> dict[str, float]:
    """Median microseconds per call of each function; ``(fn, calls)``: fn makes ``calls`` calls.

    Each function runs once to warm up, then every round runs each function once,
    in turn, so that a slow moment of the machine touches all of them.
    """
    for fn, _ in fns.values():
        fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    gc.collect()
    for _ in range(rounds):
        for name, (fn, calls) in fns.items():
            started = time.perf_counter()
            fn()
            samples[name].append((time.perf_counter() - started) / calls * 1e6)
    return {name: statistics.median(values) for name, values in samples.items()}


def us(value: float) -> str:
    if value >= 10_000:
        return f"{value / 1000:,.1f} ms"
    return f"{value:,.1f}"


def ratio(value: float) -> str:
    return f"{value:.2f}x" if value < 10 else f"{value:.0f}x"


def _same(item: Any) -> Any:
    return item


def _raw(requests: Sequence[az.Request]) -> list[dict[str, Any]]:
    return [{"principal": r.principal.to_cedar(), "action": r.to_cedar()["action"],
             "resource": r.resource.to_cedar(), "context": r.cedar_context} for r in requests]


def _store(workload: Workload, links: Sequence[az.TemplateLink] = (), extra: str = "") -> az.PolicyStore:
    text = workload.policies + ("\n" + extra if extra else "")
    return az.PolicyStore.from_text(text, schema=workload.schema, entities=workload.entities, links=links)


def _authorizer(store: az.PolicyStore, *, slicing: bool = True, **options: Any) -> az.Authorizer:
    return az.Authorizer(az.LocalEngine(store, slicing=slicing), **options)


Calls = list[Callable[[], object]]


def measure_calls(fns: dict[str, Calls], rounds: int) -> dict[str, float]:
    """Mean over the requests of each request's median time (microseconds) over the rounds.

    Every request is timed on its own. In each round every function runs its
    requests in turn (the order rotating from round to round), so that a busy
    moment of the machine touches all of them alike, and each runs them twice,
    timing the second pass only: it is timed with its own data in the CPU
    caches, as a service deciding request after request does. (Rotation alone
    keeps the cyclic order, so one function would always follow the same other
    one and start every round on that one's cache: after a raw call over 1,000
    policies that cost the next function ~12 us per request.) The median over
    the rounds drops a call that was preempted; the mean over requests weighs
    every request alike.
    """
    names = list(fns)
    times: dict[str, list[list[float]]] = {name: [[] for _ in fns[name]] for name in names}
    clock = time.perf_counter
    gc.collect()
    for round_ in range(rounds):
        order = names[round_ % len(names):] + names[: round_ % len(names)]
        for name in order:
            calls = fns[name]
            for call in calls:
                call()
            samples = times[name]
            for index, call in enumerate(calls):
                started = clock()
                call()
                samples[index].append(clock() - started)
    return {name: statistics.fmean(statistics.median(samples) for samples in times[name]) * 1e6
            for name in names}


def _authorize_each(authz: az.Authorizer, requests: Sequence[az.Request]) -> Calls:
    # Tool calls name their action by name, as @guard does.
    calls: Calls = []
    for r in requests:
        action = r.action.id if isinstance(r.action, az.EntityUID) else r.action

        def call(principal: az.EntityUID = r.principal, action: str = action,
                 resource: az.EntityUID = r.resource, context: dict[str, Any] = r.context) -> object:
            return authz.authorize(principal=principal, action=action, resource=resource, context=context)

        calls.append(call)
    return calls


def _one_call(request: dict[str, Any], policies: Any, entities: Any, schema: Any) -> Callable[[], object]:
    def call() -> object:
        return cedarpy.is_authorized(request, policies, entities, schema=schema)

    return call


def _raw_each(store: az.PolicyStore, requests: Sequence[az.Request]) -> Calls:
    snap = store.snapshot
    return [_one_call(request, snap.policy_set, snap.entity_set, snap.schema) for request in _raw(requests)]


def _peer_each(policies: str, schema: str, entities: Sequence[az.Entity],
               requests: Sequence[az.Request]) -> Calls:
    entity_json = json.dumps([e.cedar for e in entities])
    return [_one_call(request, policies, entity_json, schema) for request in _raw(requests)]


def _run_all(calls: Calls) -> None:
    for call in calls:
        call()


class _ListSink:
    enabled = True

    def __init__(self) -> None:
        self.count = 0

    def emit(self, event: az.AuditEvent) -> None:
        self.count += 1


# -- sections -------------------------------------------------------------------------------


def single_calls(report: Report, sizes: Sizes) -> None:
    rows = []
    for policies, entities in sizes.single:
        workload = build(policies, entities, request_count=sizes.requests)
        store = _store(workload)
        peer_requests = workload.requests[: max(2, min(len(workload.requests),
                                                       2000 // (policies + entities)))]
        fns: dict[str, Calls] = {
            "raw": _raw_each(store, workload.requests),
            "ours": _authorize_each(_authorizer(store), workload.requests),
            "unsliced": _authorize_each(_authorizer(store, slicing=False), workload.requests),
            "peer": _peer_each(workload.policies, workload.schema, workload.entities, peer_requests),
        }
        audited = policies == 100 and entities == 1000
        if audited:
            fns["audited"] = _authorize_each(_authorizer(store, audit=[_ListSink()]), workload.requests)
        found = measure_calls(fns, sizes.rounds)
        base = found["raw"]
        label = f"P={policies:,}, E={entities:,}"
        rows.append([label, us(base), us(found["ours"]), ratio(found["ours"] / base),
                     ratio(found["unsliced"] / base), ratio(found["peer"] / base)])
        if audited:
            rows.append([f"P={policies:,}, E={entities:,}, audit event per decision", us(base),
                         us(found["audited"]), ratio(found["audited"] / base), "", ""])
            report.target("`authorize` <= 1.0x one raw unsliced handle call at P=100/E=1,000",
                          f"{ratio(found['ours'] / base)} ({us(found['ours'])} us vs {us(base)} us)",
                          found["ours"] / base <= 1.0)
    report.section(
        "Single tool-call authorization",
        "One request at a time: `Authorizer.authorize` (action by name, as `@guard` sends it) against one "
        "raw `cedarpy.is_authorized` call on pre-parsed handles of the whole policy set. Workload: RBAC, "
        "ABAC, owner and forbid policies over four actions (`bench/workloads.py:build`), P policies, "
        "E entities, a schema. *unsliced*: the Authorizer on `LocalEngine(store, slicing=False)`. "
        "*peer*: policy text, schema text and the entity list passed on every call.",
        ["workload", "raw cedarpy (us)", "agentauthz (us)", "ratio", "unsliced ratio", "peer ratio"], rows)


def tool_actions(report: Report, sizes: Sizes) -> None:
    policies, tools, entities = sizes.tools
    workload = build_tools(policies, tools, entities, request_count=sizes.requests)
    store = az.PolicyStore.from_text(workload.policies, schema=workload.schema, entities=workload.entities)
    snap = store.snapshot
    # What slicing leaves to cedarpy: the tool's own policies, and the cost of a call as such.
    own: dict[str, Any] = {}
    for line in workload.policies.splitlines():
        own.setdefault(line.split('action == Action::"', 1)[1].split('"', 1)[0], []).append(line)
    own_sets = {tool: cedarpy.PolicySet.from_str("\n".join(lines)) for tool, lines in own.items()}
    empty = cedarpy.PolicySet.from_str("")
    raw_requests = _raw(workload.requests)
    user = workload.requests[0].principal
    found = measure_calls({
        "raw": _raw_each(store, workload.requests),
        "ours": _authorize_each(_authorizer(store), workload.requests),
        "unsliced": _authorize_each(_authorizer(store, slicing=False), workload.requests),
        "raw_own": [_one_call(request, own_sets[request["action"]["id"]], snap.entity_set, snap.schema)
                    for request in raw_requests],
        "raw_empty": [_one_call(request, empty, snap.entity_set, snap.schema) for request in raw_requests],
    }, sizes.rounds)
    tool_list = measure_calls({
        "sliced": [_tool_list(az.LocalEngine(store), user, workload.tools)],
        "unsliced": [_tool_list(az.LocalEngine(store, slicing=False), user, workload.tools)],
    }, sizes.rounds)
    base = found["raw"]
    engine = az.LocalEngine(store)
    index = engine.slice_index()
    evaluated = statistics.fmean(
        index.select(request.replace(action=engine.resolve_action(request.action))).size
        if index is not None else policies for request in workload.requests)
    rows = [
        [f"P={policies:,} over {tools} tools, E={entities:,}", us(base), us(found["ours"]),
         ratio(found["ours"] / base), ratio(found["unsliced"] / base)],
        ["raw cedarpy on the tool's own policies only", "", us(found["raw_own"]),
         ratio(found["raw_own"] / base), ""],
        ["raw cedarpy on no policies (the cost of a call)", "", us(found["raw_empty"]),
         ratio(found["raw_empty"] / base), ""],
    ]
    report.section(
        "Many tools",
        "Policies spread evenly over tool actions (one action per tool, arguments in `context.input`; "
        "`bench/workloads.py:build_tools`: group permits, attribute permits, amount limits and "
        "destination patterns): each call evaluates only its tool's policies. The last two rows bound "
        "what slicing can reach: a raw call on exactly the tool's policies, and a raw call on none "
        "(building and checking the request against the schema, JSON in and out).",
        ["workload", "raw cedarpy (us)", "agentauthz (us)", "ratio", "unsliced ratio"], rows,
        [f"Policies a call evaluates: {evaluated:,.1f} on average of the tool's {policies // tools:,} "
         "(slices also leave out policies naming a group the user is not in, and those whose conditions "
         "start by comparing `principal.department` with another department).",
         "",
         f"The tool list the model may see (`permitted_tools`: one partial evaluation per tool, the "
         f"arguments unknown) for {tools} tools: {tool_list['sliced'] / 1000:,.1f} ms, "
         f"{tool_list['unsliced'] / 1000:,.1f} ms evaluating every policy."])
    report.target(f"{policies:,} policies over {tools} tool actions: `authorize` <= 0.2x one raw "
                  "unsliced call",
                  f"{ratio(found['ours'] / base)} ({us(found['ours'])} us vs {us(base)} us; a raw call on "
                  f"the tool's own policies: {ratio(found['raw_own'] / base)})",
                  found["ours"] / base <= 0.2)


def _tool_list(engine: az.LocalEngine, user: az.EntityUID, tools: Sequence[str]) -> Callable[[], object]:
    actions = [engine.resolve_action(tool) for tool in tools]

    def call() -> object:
        return [engine.may_allow(user, action, az.EntityUID("Tool", action.id)) for action in actions]

    return call


def rag_filter(report: Report, sizes: Sizes) -> None:
    rows = []
    largest = max(sizes.rag)
    # Enough stored documents for the largest filter: about 44% of the entities are documents.
    workload = build(sizes.rag_policies, max(1000, math.ceil(largest * 2.3)), request_count=1)
    store = _store(workload)
    snap = store.snapshot
    user = next(e for e in workload.entities if e.uid.type == "User")
    stored_docs = [e.uid for e in workload.entities if e.uid.type == "Document"]
    schema_text = workload.schema
    for size in sizes.rag:
        for kind in ("stored", "metadata"):
            if kind == "stored":
                items: list[Any] = stored_docs[:size]

                resource: Callable[[Any], Any] = _same
                handle = snap.entity_set
                entity_list = list(workload.entities)
                uids = items
            else:
                items = documents(size, workload)
                resource = document_entity
                built = [document_entity(doc) for doc in items]
                handle = snap.entity_set.with_added_json_str(json.dumps([e.cedar for e in built]),
                                                             snap.schema)
                entity_list = list(workload.entities) + built
                uids = [e.uid for e in built]
            requests = [{"principal": user.uid.to_cedar(), "action": {"type": "Action", "id": "read"},
                         "resource": uid.to_cedar()} for uid in uids]
            entity_json = json.dumps([e.cedar for e in entity_list])
            ours = _authorizer(store)
            unsliced = _authorizer(store, slicing=False)

            def run_ours(authz: az.Authorizer = ours, items: Any = items, resource: Any = resource) -> None:
                with authz.acting_as(user.uid):
                    authz.filter(items, action="read", resource=resource)

            def run_unsliced(authz: az.Authorizer = unsliced, items: Any = items,
                             resource: Any = resource) -> None:
                with authz.acting_as(user.uid):
                    authz.filter(items, action="read", resource=resource)

            found = measure({
                "raw": (lambda r=requests, h=handle: cedarpy.is_authorized_batch(  # type: ignore[misc]
                    r, snap.policy_set, h, schema=snap.schema), 1),
                "ours": (run_ours, 1),
                "unsliced": (run_unsliced, 1),
                "peer": (lambda r=requests, j=entity_json: cedarpy.is_authorized_batch(  # type: ignore[misc]
                    r, workload.policies, j, schema=schema_text), 1),
            }, sizes.rounds)
            base = found["raw"]
            label = ("stored documents (EntityUID)" if kind == "stored"
                     else "documents from metadata (Entity per item)")
            rows.append([f"{size:,} candidates, {label}", us(base), us(found["ours"]),
                         ratio(found["ours"] / base), ratio(found["unsliced"] / base),
                         ratio(found["peer"] / base)])
            if size == largest and kind == "stored":
                report.target(f"RAG filter of {size:,} candidates <= 1.0x one raw `is_authorized_batch` "
                              "on the unsliced set",
                              f"{ratio(found['ours'] / base)} ({us(found['ours'])} vs {us(base)})",
                              found["ours"] / base <= 1.0)
    report.section(
        "RAG filtering",
        f"`Authorizer.filter` of N candidates for one user (action `read`, P={sizes.rag_policies} policies, "
        f"{len(workload.entities):,} stored entities) against one raw `is_authorized_batch` call with the "
        "same requests on the whole policy set. With documents built from metadata, the baseline's "
        "entity handle already holds them (parsed outside the timing): the ratio includes building and "
        "parsing the documents' entities. *peer*: one batch call with policy text and the entity list.",
        ["workload", "raw batch (us)", "agentauthz (us)", "ratio", "unsliced ratio", "peer ratio"], rows)


def template_links(report: Report, sizes: Sizes) -> None:
    workload = build(sizes.link_statics, 1000, request_count=sizes.requests)
    links = share_links(workload, sizes.links)
    requests = workload.requests[: sizes.requests // 2] + granted_requests(links, sizes.requests // 2)
    statics = _store(workload)
    raw_links = [{"template_id": f"policy{sizes.link_statics}", "new_id": link.id,
                  "values": {"?principal": link.principal.to_cedar(), "?resource": link.resource.to_cedar()}}
                 for link in links if link.principal is not None and link.resource is not None]
    loads: dict[str, list[float]] = {"raw": [], "ours": []}
    for _ in range(3 if sizes.rounds > 1 else 1):  # taking turns, CPU time of each load
        started = time.process_time()
        cedarpy.PolicySet.from_str(workload.policies + "\n" + SHARE_TEMPLATE).with_linked_batch(raw_links)
        loads["raw"].append(time.process_time() - started)
        started = time.process_time()
        linked = _store(workload, links, SHARE_TEMPLATE)
        loads["ours"].append(time.process_time() - started)
    load_s, raw_load_s = statistics.median(loads["ours"]), statistics.median(loads["raw"])
    raw_requests = requests[: max(2, sizes.requests // 10)]
    cold = _authorizer(linked)
    started = time.perf_counter()
    engine = cold.engine
    assert isinstance(engine, az.LocalEngine)
    engine.slice_index()
    index_ms = (time.perf_counter() - started) * 1e3
    started = time.perf_counter()
    _run_all(_authorize_each(cold, requests))
    cold_us = (time.perf_counter() - started) / len(requests) * 1e6
    found = measure_calls({
        "raw_static": _raw_each(statics, requests),
        "raw_linked": _raw_each(linked, raw_requests),
        "ours_static": _authorize_each(_authorizer(statics), requests),
        "ours_linked": _authorize_each(_authorizer(linked), requests),
    }, sizes.rounds)
    base = found["raw_static"]
    allowed = sum(d.allowed for d in cold.authorize_many(list(requests)))
    rows = [
        [f"{sizes.link_statics} static policies", us(base), us(found["ours_static"]),
         ratio(found["ours_static"] / base), "1.00x"],
        [f"{sizes.link_statics} static + {sizes.links:,} template links", us(found["raw_linked"]),
         us(found["ours_linked"]), ratio(found["ours_linked"] / base),
         ratio(found["ours_linked"] / found["ours_static"])],
        ["same, first pass on a new engine (slices built, index excluded)", "", us(cold_us),
         ratio(cold_us / base), ratio(cold_us / found["ours_static"])],
    ]
    report.section(
        "Template-linked grants",
        f"Per-document shares as links of `{SHARE_TEMPLATE}` ({sizes.links:,} links over the users and "
        f"documents of the P={sizes.link_statics}, E=1,000 workload); half the requests read a shared "
        f"document ({allowed} of {len(requests)} allowed). Ratios against one raw call on the static "
        "policies alone; the last column compares agentauthz with links to agentauthz without. "
        f"The raw call on the whole set with links costs {ratio(found['raw_linked'] / base)} the static one. "
        f"The scope index of the store (once per store version, on first use) took {index_ms:.0f} ms; the "
        "first request of a principal with links builds (and caches) its slice, as the last row shows.",
        ["workload", "raw cedarpy (us)", "agentauthz (us)", "ratio to raw static", "vs agentauthz static"],
        rows)
    report.target(f"{sizes.links:,} template links: store load <= 1.5x raw (parse and link in cedarpy)",
                  f"{ratio(load_s / raw_load_s)} ({load_s:.2f} s vs {raw_load_s:.2f} s CPU, median of "
                  f"{len(loads['ours'])}; the store also builds the link requests from `TemplateLink`s, "
                  "checks their slots, fingerprints them and loads 1,000 entities)",
                  load_s / raw_load_s <= 1.5)
    growth = found["ours_linked"] / found["ours_static"]
    report.target(f"{sizes.links:,} template links + {sizes.link_statics} static policies: per request "
                  "<= 2x the static policies alone",
                  f"{ratio(growth)} ({us(found['ours_linked'])} us vs {us(found['ours_static'])} us)",
                  growth <= 2.0)


def avp(report: Report, sizes: Sizes) -> None:
    try:
        from agentauthz.avp._engine import VerifiedPermissionsEngine
        from agentauthz.testing import LocalVerifiedPermissions
    except ImportError as exc:  # pragma: no cover - the aws extra is a test dependency
        report.skipped("Amazon Verified Permissions (local endpoint)", f"{exc}")
        return
    workload = build(100, 1000, request_count=sizes.requests)
    store = _store(workload)
    snap = store.snapshot
    user = next(e for e in workload.entities if e.uid.type == "User")
    docs = [e.uid for e in workload.entities if e.uid.type == "Document"][: sizes.avp_filter]
    docs += [az.EntityUID("Document", f"x{i}") for i in range(sizes.avp_filter - len(docs))]
    with LocalVerifiedPermissions(store) as server:
        engine = VerifiedPermissionsEngine(server.policy_store_id, client=server.client())
        authz = az.Authorizer(engine, entities=list(workload.entities))
        single = workload.requests[: max(2, sizes.requests // 5)]
        _run_all(_authorize_each(authz, single))  # the schema, the policy ids of the decisions: once
        server.reset_calls()
        _run_all(_authorize_each(authz, single))
        per_decision = server.call_count() / len(single)

        def run_filter() -> None:
            with authz.acting_as(user.uid):
                authz.filter(docs, action="read", resource=lambda uid: uid)

        server.reset_calls()
        run_filter()
        filter_calls = server.call_count()
        batch_calls = server.call_count("BatchIsAuthorized")
        raw_filter = [{"principal": user.uid.to_cedar(), "action": {"type": "Action", "id": "read"},
                       "resource": uid.to_cedar()} for uid in docs]
        rounds = 3 if sizes.rounds > 1 else 1
        found = measure_calls({"raw": _raw_each(store, single), "avp": _authorize_each(authz, single)},
                              rounds)
        found |= measure({
            "raw_filter": (lambda: cedarpy.is_authorized_batch(raw_filter, snap.policy_set, snap.entity_set,
                                                               schema=snap.schema), 1),
            "avp_filter": (run_filter, 1),
        }, rounds)
    rows = [
        ["single decision", f"{per_decision:g}", us(found["raw"]), us(found["avp"]),
         ratio(found["avp"] / found["raw"])],
        [f"filter of {sizes.avp_filter:,} documents", f"{filter_calls} ({batch_calls} BatchIsAuthorized)",
         us(found["raw_filter"]), us(found["avp_filter"]), ratio(found["avp_filter"] / found["raw_filter"])],
    ]
    report.section(
        "Amazon Verified Permissions (local endpoint)",
        "`VerifiedPermissionsEngine` against `agentauthz.testing.LocalVerifiedPermissions` on 127.0.0.1 "
        "(boto3 over HTTP, the endpoint evaluates with cedarpy), P=100, E=1,000; the Authorizer sends each "
        f"request the entities it needs. A batch holds at most 30 requests (ceil({sizes.avp_filter}/30) = "
        f"{math.ceil(sizes.avp_filter / 30)}). Times include HTTP on the loopback: the ratio says what "
        "the round trips cost, not what AVP costs.",
        ["workload", "AVP calls", "raw cedarpy (us)", "agentauthz + AVP (us)", "ratio"], rows)


def avp_synced(report: Report, sizes: Sizes) -> None:
    """Verified Permissions decided remotely against the same store copied by SyncedEngine."""
    try:
        from agentauthz.avp._engine import VerifiedPermissionsEngine
        from agentauthz.avp._synced import SyncedEngine
        from agentauthz.testing import LocalVerifiedPermissions
    except ImportError as exc:  # pragma: no cover - the aws extra is a test dependency
        report.skipped("Verified Permissions at the edge (SyncedEngine)", f"{exc}")
        return
    workload = build(100, 1000, request_count=sizes.requests)
    store = _store(workload)
    user = next(e for e in workload.entities if e.uid.type == "User")
    docs = [e.uid for e in workload.entities if e.uid.type == "Document"][: sizes.avp_filter]
    single = workload.requests[: max(2, sizes.requests // 5)]
    rounds = 3 if sizes.rounds > 1 else 1
    rows = []
    with LocalVerifiedPermissions(store) as server:
        remote = VerifiedPermissionsEngine(server.policy_store_id, client=server.client())
        synced = SyncedEngine(server.policy_store_id, client=server.client(), refresh_interval=None)
        engines: dict[str, az.Engine] = {"remote (VerifiedPermissionsEngine)": remote,
                                         "edge (SyncedEngine)": synced}
        compared = [r.replace(action=remote.resolve_action(r.action)) for r in workload.requests]
        compared += [az.Request(principal=user.uid, action=remote.resolve_action("read"), resource=uid)
                     for uid in docs]
        outcomes = [[(d.allowed, d.reasons) for d in az.Authorizer(engine, entities=list(
            workload.entities)).authorize_many(compared)] for engine in engines.values()]
        same = sum(a == b for a, b in zip(*outcomes, strict=True))
        report.target("SyncedEngine decides as Verified Permissions (decision and determining policies)",
                      f"{same:,} of {len(compared):,}", same == len(compared))
        for label, engine in engines.items():
            authz = az.Authorizer(engine, entities=list(workload.entities))

            def run_filter(authz: az.Authorizer = authz) -> None:
                with authz.acting_as(user.uid):
                    authz.filter(docs, action="read", resource=lambda uid: uid)

            _run_all(_authorize_each(authz, single))  # the schema, the policy ids: once
            server.reset_calls()
            _run_all(_authorize_each(authz, single))
            run_filter()
            calls_per_1000 = server.call_count() * 1000 / (len(single) + len(docs))
            found = measure_calls({"single": _authorize_each(authz, single)}, rounds)
            found |= measure({"filter": (run_filter, 1)}, rounds)
            per_filtered = found["filter"] / len(docs)
            rows.append([label, f"{calls_per_1000:,.0f}", us(found["single"]),
                         f"{1e6 / found['single']:,.0f}", us(per_filtered), f"{1e6 / per_filtered:,.0f}"])
            if engine is synced:
                report.target("SyncedEngine: service calls per 1,000 decisions", f"{calls_per_1000:g}",
                              calls_per_1000 == 0)
        synced.close()
    report.section(
        "Verified Permissions at the edge (SyncedEngine)",
        "The same policy store (P=100, E=1,000) decided by `VerifiedPermissionsEngine` through "
        "`agentauthz.testing.LocalVerifiedPermissions` on 127.0.0.1, and by `SyncedEngine`, which copies "
        "it from the same endpoint and decides embedded. Service calls are counted at the endpoint over "
        f"{len(single)} single decisions and a filter of {len(docs):,} documents, per 1,000 decisions; "
        "the background refresh (ListPolicies and GetSchema every `refresh_interval`) is no decision's "
        "call. Loopback HTTP is far cheaper than a call to an AWS region (about 2 ms): remote latency "
        f"here is a floor. Both engines decided the same {len(compared):,} requests: {same:,} identical "
        "(decision and determining policies); the corpus parity suite compares them too.",
        ["engine", "service calls / 1,000 decisions", "single decision (us)", "single decisions/s",
         "filtered document (us)", "filtered documents/s"], rows)


def retrieval(report: Report, sizes: Sizes) -> None:
    title = "Pre-filtered retrieval"
    try:
        from langchain_core.embeddings import DeterministicFakeEmbedding
        from langchain_core.vectorstores import InMemoryVectorStore

        from agentauthz.integrations.langchain import AuthorizedRetriever
    except ImportError as exc:  # pragma: no cover - the langchain extra is a test dependency
        report.skipped(title, f"{exc}")
        return
    policies = (
        '@id("dept") permit(principal, action == Action::"read", resource) '
        "when { resource.department == principal.department };\n"
        '@id("cleared") forbid(principal, action == Action::"read", resource) '
        "when { resource.classification > principal.clearance };")
    schema = """
    entity User = { department: String, clearance: Long };
    entity Document = { department: String, classification: Long };
    action read appliesTo { principal: User, resource: Document };
    """
    authz = az.Authorizer.from_text(policies, schema=schema)
    store = InMemoryVectorStore(DeterministicFakeEmbedding(size=32))
    departments = ("hr", "finance", "eng", "sales", "legal")
    texts = [f"document {i} about topic {i % 40}" for i in range(sizes.retrieval_docs)]
    metadatas = [{"department": departments[i % 5], "classification": (i // 5) % 5}
                 for i in range(len(texts))]
    store.add_texts(texts, metadatas=metadatas, ids=[f"d{i}" for i in range(len(texts))])
    user = az.Entity(uid=az.EntityUID("User", "alice"), attrs={"department": "eng", "clearance": 1})
    queries = [f"topic {q}" for q in range(sizes.retrieval_queries)]

    def resource(doc: Any) -> az.Entity:
        return az.Entity(uid=az.EntityUID("Document", doc.id), attrs=dict(doc.metadata))

    results: dict[str, list[Any]] = {}
    fns: dict[str, Timed] = {
        "search": (lambda: [store.similarity_search(q, k=10) for q in queries], len(queries)),
    }
    for prefilter in (False, True):
        retriever = AuthorizedRetriever(retriever=store, authz=authz, action="read", resource=resource, k=10,
                                        max_candidates=500, prefilter=prefilter, resource_type="Document")
        name = "prefilter" if prefilter else "postfilter"

        def run(retriever: Any = retriever, name: str = name) -> None:
            with authz.acting_as(user):
                results[name] = [retriever.retrieve_with_stats(q).stats for q in queries]

        fns[name] = (run, len(queries))
    try:
        found = measure(fns, 3 if sizes.rounds > 1 else 1)
    except Exception as exc:  # the pre-filter is built by another issue: report, do not fail
        report.skipped(title, f"{type(exc).__name__}: {exc}")
        return
    rows = []
    for name in ("postfilter", "prefilter"):
        stats = results[name]
        rows.append([
            f"AuthorizedRetriever, prefilter={name == 'prefilter'}",
            f"{statistics.mean(s.rounds for s in stats):.1f}",
            f"{statistics.mean(s.fetched for s in stats):.0f}",
            f"{statistics.mean(s.returned for s in stats):.1f}",
            stats[0].prefilter,
            us(found["search"]), us(found[name]), ratio(found[name] / found["search"]),
        ])
    report.section(
        title,
        f"k=10 from an `InMemoryVectorStore` of {sizes.retrieval_docs:,} chunks (32-dim fake embeddings); "
        "the user may read about 8% of them (own department, clearance 1). Without the pre-filter the "
        "retriever over-fetches and authorizes in rounds; with it, the policies are compiled (partial "
        "evaluation) into a metadata filter for the search and every result is still authorized. "
        "Baseline: one plain `similarity_search(k=10)`, unauthorized. Mean over the queries.",
        ["retrieval", "rounds", "fetched", "returned", "pre-filter", "plain search (us)", "agentauthz (us)",
         "ratio"], rows)


SESSION_RULES = """
@id("all") permit(principal, action, resource);
@id("refund-cap") forbid(principal, action == Action::"refund", resource)
when { context has session && context.session.totals has refund &&
       context.session.totals.refund.amount + context.input.amount > 1000000000 };
"""


def session_stores(report: Report, sizes: Sizes) -> None:
    """A guarded call in a session (decided, reserved, run, counted) on each session store."""
    import tempfile

    from agentauthz.session import DynamoDBSessionStore, SessionConfig, SQLiteSessionStore, create_table
    from agentauthz.testing import LocalDynamoDB

    title = "Session stores: a guarded call"
    stores: dict[str, Callable[[], Any]] = {"memory": lambda: None}
    folder = tempfile.mkdtemp()
    stores["SQLite (WAL file)"] = lambda: SQLiteSessionStore(Path(folder) / "sessions.db")
    try:
        dynamodb = LocalDynamoDB().start()
    except ImportError as exc:
        report.skipped(title, f"{exc}")
        return
    client = dynamodb.client()
    create_table(client, "bench-sessions")
    sent: list[str] = []
    client.meta.events.register("before-call.dynamodb", lambda model, **_: sent.append(model.name))
    stores["DynamoDB (local moto server)"] = lambda: DynamoDBSessionStore("bench-sessions", client=client)
    alice = az.EntityUID("User", "alice")
    rounds = max(1, min(sizes.rounds, 5))
    rows = []
    try:
        for name, make in stores.items():
            authz = az.Authorizer.from_text(SESSION_RULES, sessions=SessionConfig(store=make()))

            @authz.guard(sum_arguments=["amount"])
            def refund(order: str, amount: int) -> str:
                return "ok"

            def run(authz: az.Authorizer = authz, refund: Any = refund) -> None:
                with authz.acting_as(alice), authz.session(f"s-{time.perf_counter_ns()}"):
                    for index in range(sizes.session_calls):
                        refund(f"o-{index}", 1)

            sent.clear()
            found = measure({name: (run, sizes.session_calls)}, rounds)[name]
            runs = rounds + 1  # measure warms up with one untimed run
            rows.append([name, us(found), f"{len(sent) / (runs * sizes.session_calls):g}" if sent else "-"])
    finally:
        dynamodb.stop()
    report.section(
        title,
        "`@authz.guard` with a bound session: load the session, decide, reserve the call (a compare-and-swap "
        "on the session's version), run the tool, count it. One process, one thread; a new session per "
        "round. The DynamoDB row talks to moto on 127.0.0.1: its time is moto's, not DynamoDB's (a "
        "request to DynamoDB in the same region takes a few milliseconds); the requests per call are "
        "what the table is billed for.",
        ["store", "per call (us)", "DynamoDB requests per call"], rows)


# -- approvals ----------------------------------------------------------------------------------------

_APPROVAL_POLICIES = """
@id("refunds") permit (principal, action == Action::"refund", resource);
@id("big-refunds") @approval("required")
forbid (principal, action == Action::"refund", resource)
when { context.input.amount > 100 && !context.session.approved };
@id("closed-accounts")
forbid (principal, action == Action::"refund", resource) when { context.input.to == "closed" };
"""
_APPROVAL_SCHEMA = """
entity User;
entity Tool;
action refund appliesTo { principal: User, resource: Tool,
  context: { input: { to: String, amount: Long }, session: { approved: Bool } } };
"""


def approvals(report: Report, sizes: Sizes) -> None:
    """A guarded call in a session: allowed, held for approval (its probe), plainly denied, approved."""
    authz = az.Authorizer.from_text(_APPROVAL_POLICIES, schema=_APPROVAL_SCHEMA, audit=[])
    user = az.EntityUID("User", "alice")

    @authz.guard(action="refund", on_deny="message")
    def refund(to: str, amount: int) -> str:
        return "refunded"

    def in_session(to: str, amount: int, grant: bool = False) -> Callable[[], object]:
        def call() -> object:
            with authz.acting_as(user), authz.session("bench") as session:
                if grant:
                    session.approve("refund", az.EntityUID("Tool", "refund"),
                                    arguments={"to": to, "amount": amount}, once=True)
                return refund(to, amount)
        return call

    found = measure_calls({
        "allowed": [in_session("bob", 5)] * sizes.requests,
        "held": [in_session("bob", 500)] * sizes.requests,
        "denied": [in_session("closed", 500)] * sizes.requests,
        "approved": [in_session("bob", 500, grant=True)] * sizes.requests,
    }, sizes.rounds)
    rows = [[name, us(value), ratio(value / found["allowed"])] for name, value in found.items()]
    report.section(
        "Approvals",
        "One guarded call in a session (memory store): allowed; held for approval (the denial, then "
        "one probe with `context.session.approved` true); denied by a forbid no approval lifts (no "
        "probe); and a call a single-use approval covers (the grant written first, then used up as "
        "the call is admitted: both timed).",
        ["call", "agentauthz (us)", "vs allowed"], rows)
#: The example store's calls to its gateway tools (examples/agentcore_gateway.py): user, tool, arguments.
_GATEWAY_CALLS = [
    ("bob", "issue_refund", {"order_id": "o-1", "amount": 500}),
    ("carol", "issue_refund", {"order_id": "o-2", "amount": -200}),
    ("carol", "send_email", {"to": "dave@acme.example", "subject": "Budget"}),
    ("erin", "search_documents", {"query": "vacation policy"}),
]
_GATEWAY_REFUSED = ["tool-enabled-for-tenant", "refund-over-1000-needs-approval", "refund-session-cap",
                    "acme-no-external-email-after-confidential",
                    "globex-no-external-email-after-confidential"]


def agentcore(report: Report, sizes: Sizes) -> None:
    from agentauthz.integrations.agentcore import AgentCoreProfile, LocalGateway, TagMapping, translate

    sys.path.insert(0, str(ROOT / "examples"))
    from assistant_tools import POLICIES, build_tools

    store = az.PolicyStore.from_directory(POLICIES)
    guarded = build_tools(az.Authorizer.from_text("", audit=[]))
    profile = AgentCoreProfile("arn:aws:bedrock-agentcore:us-east-1:123456789012:gateway/gw-a1b2c3d4e5", "A",
                               [guarded[name] for name in ("search_documents", "send_email", "issue_refund")],
                               tags=TagMapping(attributes={"tenant": "tenant"}, groups={"Role": "roles"}))
    translated = measure({"translate": (lambda: translate(store, profile, exclude=_GATEWAY_REFUSED), 1)},
                         sizes.rounds)["translate"]
    gateway = LocalGateway(translate(store, profile, exclude=_GATEWAY_REFUSED), audit=[])
    authz = az.Authorizer(az.LocalEngine(store), audit=[])
    users = {e.uid.id: e for e in store.entities if e.uid.type == "User"}

    def claims(who: str) -> dict[str, Any]:
        roles = {p.id for p in users[who].parents}
        return {"sub": who, "tenant": users[who].attrs["tenant"].id, "roles": sorted(roles | {"employee"})}

    found = measure_calls({
        "guard": [functools.partial(authz.authorize, principal=users[who].uid, action=tool,
                                    resource=az.EntityUID("Tool", tool), context={"input": arguments})
                  for who, tool, arguments in _GATEWAY_CALLS],
        "gateway": [functools.partial(gateway.decide, claims(who), tool, arguments)
                    for who, tool, arguments in _GATEWAY_CALLS],
    }, sizes.rounds)
    report.section(
        "AgentCore Gateway policies, evaluated locally",
        "The example store translated for an AgentCore Gateway target of its three tool-resource tools "
        "(`examples/agentcore_gateway.py`: 8 policies; the 5 that read session facts or tool "
        "attributes excluded), then the same calls decided in process by the guard's Authorizer on "
        "the whole store and by `LocalGateway` on AgentCore-shaped requests (the user as "
        "`AgentCore::OAuthUser` with claim tags, the arguments validated and typed as AgentCore's schema).",
        ["measure", "median"],
        [["translate the store (parse, rewrite, validate against the generated schema, limits)",
          f"{translated / 1000:,.1f} ms"],
         ["Authorizer.authorize, our shape (us per call)", us(found["guard"])],
         ["LocalGateway.decide, AgentCore's shape (us per call)", us(found["gateway"])]])
def provenance(report: Report, sizes: Sizes) -> None:
    """The cost provenance matching adds to a tool call, in a session holding many registered values."""
    from contextlib import ExitStack

    from agentauthz.session import MemorySessionStore, Provenance, SessionConfig
    from agentauthz.session._provenance import argument_provenance

    values = sizes.provenance_values
    store = MemorySessionStore()
    policies = ('@id("payee-only") forbid (principal, action == Action::"pay", resource) when { '
                'context has provenance && !context.provenance.to.contains("payee") };'
                '@id("all") permit (principal, action, resource);')
    tracked = az.Authorizer.from_text(policies, audit=[], sessions=SessionConfig(
        store=store, provenance=Provenance(tools={"pay"})))
    untracked = az.Authorizer.from_text(policies, audit=[], sessions=SessionConfig(
        store=store, provenance=Provenance(tools=())))
    user = az.EntityUID("User", "u")
    arguments = [{"to": f"DE{n:02d} acct-{n}@bank.example", "cc": [f"acct-{n}@bank.example", "x@y.example"],
                  "amount": n} for n in range(sizes.requests)]
    for n, given in enumerate(arguments):  # every other call names a registered payee
        if n % 2:
            given["to"] = f"acct-{n}@bank.example"

    def calls(authz: az.Authorizer) -> Calls:
        tool = az.EntityUID("Tool", "pay")
        return [lambda authz=authz, given=given: authz.authorize(action="pay", resource=tool,
                                                                context={"input": given})
                for given in arguments]

    def matching(session_id: str) -> Calls:
        def lookup(keys: Any, session_id: str = session_id) -> Any:
            return store.provenance(session_id, keys)

        return [lambda given=given: argument_provenance(given, lookup) for given in arguments]

    with ExitStack() as bound:
        bound.enter_context(tracked.acting_as(user))
        few = bound.enter_context(tracked.session("few"))
        few.register([f"acct-{n}@bank.example" for n in range(10)], "payee")
        many = bound.enter_context(tracked.session("many"))
        many.register([f"acct-{n}@bank.example" for n in range(values)], "payee")
        many.user_said(" ".join(f"ticket-{n}.pdf" for n in range(values // 2)))
        found = measure_calls({"untracked": calls(untracked), "tracked": calls(tracked),
                               "match_few": matching("few"), "match_many": matching("many")}, sizes.rounds)
    added = found["tracked"] - found["untracked"]
    report.section(
        "Provenance",
        f"A tool call with three arguments (a string, a list of two, a number) in a session that registered "
        f"{values:,} values (a payee list and a user message, {values + values // 2:,} index keys), tracked "
        "(`context.provenance` and `provenance_all`) and not tracked (the same session and policies). "
        "Matching is normalizing and extracting each argument value, then one index lookup per key: its "
        "cost does not grow with the registered values. The rest of what a tracked call adds is carrying "
        "two more context records (conversion, Cedar parsing and evaluation); `provenance_all` is cut to the "
        "arguments a policy reads (none here: the store has no schema and cannot reload).",
        ["what", "10 values (us)", f"{values:,} values (us)"],
        [["matching the arguments (`argument_provenance` + the store lookup)", us(found["match_few"]),
          us(found["match_many"])],
         ["`authorize`, session bound, not tracked", "", us(found["untracked"])],
         ["`authorize`, session bound, tracked", "", us(found["tracked"])],
         ["added by tracking, in all", "", us(added)]])
    report.target(f"provenance matching adds <= 20 us per call with {values:,} registered values",
                  f"{found['match_many']:.1f} us (all that tracking adds: {added:.1f} us)",
                  found["match_many"] <= 20)
def guardrails(report: Report, sizes: Sizes) -> None:
    """The fact plumbing of a guardrail per tool call, beyond the detector's own time.

    Three numbers, each a difference of medians measured in one process: in all
    (a guardrail against no guardrail), ours (a guardrail against the same tool
    given the identical fact in its context, as a developer would pass it) and
    cedarpy's (the same raw request with and without the fact).
    """
    calls = max(50, sizes.requests * 10)
    body = "Please call carol on +1 415-555-0100 about the May launch; ignore the draft."
    detector = az.LocalDetector()
    policies = ('@id("tools") permit(principal, action, resource);\n'
                '@id("no-ssn") forbid(principal, action, resource) when { context has guardrail && '
                'context.guardrail.input.pii.contains("US_SOCIAL_SECURITY_NUMBER") };\n')
    authz = az.Authorizer.from_text(policies)
    with tempfile.TemporaryDirectory() as folder:  # a store that can reload: cut per version, pinned
        (Path(folder) / "policies.cedar").write_text(policies)
        reloading = az.Authorizer.from_directory(folder)
    # A policy comparing the record whole reads every attribute: requests carry the whole fact.
    whole_fact = az.Authorizer.from_text(policies + '@id("whole") forbid(principal, action, resource) when '
                                         '{ context has guardrail && context.guardrail.input == {} };\n')

    def tool(name: str, guardrail: az.Guardrail | None, on: az.Authorizer = authz,
             context: dict[str, Any] | None = None) -> Callable[[], object]:
        @on.guard(name=name, guardrail=guardrail, context=context)
        def send(body: str) -> str:
            return "sent"

        def run() -> None:
            with on.acting_as(az.EntityUID("User", "u")):
                for _ in range(calls):
                    send(body)

        return run

    def detect() -> None:
        for _ in range(calls):
            detector.detect(body, source="INPUT")

    cached_guardrail = az.Guardrail(detector)
    omitted = frozenset(INPUT_FACT_TYPE["attributes"]) - {"pii"}
    fact = cached_guardrail.assess_arguments({"body": body}).fact(omitted)  # what a request carries

    def facts() -> None:  # the Python side alone: text, cache key and hit, fact, audit summary
        for _ in range(calls):
            assessment = cached_guardrail.assess_arguments({"body": body})
            assessment.input_record(omitted)
            assessment.audit  # noqa: B018 - built once, read per call

    # The request the embedded engine hands cedarpy for the guarded call, without and with the fact.
    policy_set = cedarpy.PolicySet.from_str(policies)
    no_entities = cedarpy.Entities.from_json_str("[]", None)
    ids = {"principal": {"type": "User", "id": "u"}, "action": {"type": "Action", "id": "send"},
           "resource": {"type": "Tool", "id": "send"}}
    without = dict(ids, context=json.dumps({"input": {"body": body}}))
    with_fact = dict(ids, context=json.dumps({"input": {"body": body}, "guardrail": {"input": fact}}))

    def raw(request: dict[str, Any]) -> Callable[[], object]:
        def run() -> None:
            for _ in range(calls):
                private_batch([request], policy_set, no_entities, None)

        return run

    def by_hand(arguments: dict[str, Any]) -> dict[str, Any]:  # a developer's wiring: detect, pass the fact
        detector.detect(arguments["body"], source="INPUT")
        return {"guardrail": {"input": fact}}

    found = measure({
        "plain": (tool("plain", None), calls),
        "given": (tool("given", None, context={"guardrail": {"input": fact}}), calls),
        "by hand": (tool("by hand", None, context=by_hand), calls),
        "guarded": (tool("guarded", az.Guardrail(detector, cache_size=0)), calls),
        "cached": (tool("cached", az.Guardrail(detector)), calls),
        "reloading": (tool("reloading", az.Guardrail(detector), reloading), calls),
        "whole": (tool("whole", az.Guardrail(detector), whole_fact), calls),
        "detector": (detect, calls),
        "facts": (facts, calls),
        "raw": (raw(without), calls),
        "raw+fact": (raw(with_fact), calls),
    }, sizes.rounds * 2)  # differences of medians of a few microseconds: twice the rounds
    in_all = found["guarded"] - found["plain"] - found["detector"]
    ours = found["guarded"] - found["by hand"]
    ours_cached = found["cached"] - found["given"]
    cedar = found["raw+fact"] - found["raw"]
    rows = [
        ["guarded tool call, no guardrail", us(found["plain"]), ""],
        ["the same given the fact in its context (`context={'guardrail': {'input': fact}}`)",
         us(found["given"]), us(found["given"] - found["plain"])],
        ["LocalDetector.detect alone", us(found["detector"]), ""],
        ["the same running `LocalDetector.detect` on the argument in its `context=` callable",
         us(found["by hand"]), us(found["by hand"] - found["plain"])],
        ["guarded tool call, guardrail assessing every call", us(found["guarded"]),
         us(found["guarded"] - found["plain"])],
        ["guarded tool call, guardrail answering from its cache", us(found["cached"]),
         us(found["cached"] - found["plain"])],
        ["the same from a store that can reload (cut for, and decided by, the version current)",
         us(found["reloading"]), us(found["reloading"] - found["plain"])],
        ["the same with a policy comparing the record whole (the whole 12-attribute fact)",
         us(found["whole"]), us(found["whole"] - found["plain"])],
        ["raw cedarpy, the guarded call's request without the fact", us(found["raw"]), ""],
        ["raw cedarpy, the same request with the fact", us(found["raw+fact"]), us(cedar)],
        ["the fact plumbing alone (cached text: key, fact, audit summary)", us(found["facts"]), ""],
    ]
    report.section(
        "Guardrail plumbing",
        "A guarded tool with `az.Guardrail(az.LocalDetector())` on its one argument (embedded engine, a "
        "permit and a forbid reading `context.guardrail.input.pii`), against the same tool without one "
        "and against the same tool without one given the identical fact as its `context=`: the second "
        "sends cedarpy the very request the guardrail's call sends, so the difference is what agentauthz "
        "adds (reading the arguments' text, assessing, the fact converted to Cedar JSON once per "
        "assessment, the audit summary). The guardrail assessing every call has no cache "
        "(`cache_size=0`), so it computes no cache key: with the default cache a text seen for the first "
        "time also costs its key (a digest of the text) and its entry. What cedarpy pays to read the "
        "larger context is measured on its own: raw cedarpy (the private batch entry point the engine "
        "calls) on the guarded call's request with and without the fact, in the same process. A request "
        "carries only the attributes a policy reads (`agentauthz/guardrails/_reads.py`), also from a "
        "store that can reload (the version a request was cut for decides it); a policy comparing the "
        "record whole gets the whole fact.",
        ["call", "median (us)", "added (us)"], rows,
        [f"Beyond the detector, per call assessed: {us(in_all)} us in all, of which {us(ours)} us "
         f"agentauthz ({us(ours_cached)} us when the text is cached) and {us(cedar)} us cedarpy reading "
         "the larger context (raw); the rest is the same request's cost inside a call that does more "
         "(a raw loop keeps cedarpy's code and data in the CPU caches)."])
    report.target("guardrail fact plumbing per call with a local detector <= 10 us beyond the detector",
                  f"{us(ours)} us ours ({us(ours_cached)} us cached); cedarpy reading the fact "
                  f"{us(cedar)} us; {us(in_all)} us in all", ours <= 10)


SECTIONS: dict[str, Callable[[Report, Sizes], None]] = {
    "single": single_calls,
    "guard": scale.guarded_calls,
    "import": scale.import_time,
    "tools": tool_actions,
    "rag": rag_filter,
    "rag-scale": scale.filter_per_candidate,
    "links": template_links,
    "avp": avp,
    "avp_synced": avp_synced,
    "retrieval": retrieval,
    "approvals": approvals,
    "agentcore": agentcore,
    "sessions": session_stores,
    "provenance": provenance,
    "prefilter": scale.prefilter_compile,
    "avp-grouping": scale.avp_grouping,
    "entities": scale.entity_load,
    "data-limits": scale.data_limits,
    "pool": scale.process_pool,
    "scaling": scale.scaling,
    "guardrails": guardrails,
}


def render(report: Report, elapsed: float) -> str:
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`python -m bench.run`, about "
        f"{max(1, round(elapsed / 60))} min). Each ratio divides agentauthz's median time by a baseline",
        "measured in the same process, on the same workload, in the same rounds: raw cedarpy on",
        "pre-parsed `PolicySet`/`Entities`/`Schema` handles of the whole (unsliced) policy set. Below",
        "1.0x agentauthz is faster than the raw engine: policy slicing evaluates only the policies whose",
        "scope can match a request. Absolute medians (microseconds per request or per call) give context.",
        "In each round every measured function runs its requests once untimed, then once timed, so each",
        "is timed with its own data in the CPU caches. Run to run on this machine a ratio moves by about",
        "0.01-0.02x. The audit logger is not configured (no events written) unless a row says otherwise.",
        "",
        f"Machine: {platform.machine()}, {_cpus()} CPUs, Python {platform.python_version()}, "
        f"cedarpy {_version('cedarpy')}.",
        "",
        "## Targets",
        "",
        "| target | measured | met |",
        "|---|---|---|",
    ]
    lines.extend(f"| {d} | {m} | {'yes' if ok else '**no**'} |" for d, m, ok in report.targets)
    lines.append("")
    lines.append("\n\n".join(report.sections))
    return "\n".join(lines) + "\n"


def _cpus() -> str:
    import os

    return str(os.cpu_count() or "?")


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the sections and write the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=Sizes.rounds)
    parser.add_argument("--quick", action="store_true", help="tiny sizes, one round (smoke test)")
    parser.add_argument("--only", action="append", choices=sorted(SECTIONS), help="run only these sections")
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else Sizes(rounds=args.rounds)
    report = Report(log=(lambda _: None) if args.quiet else lambda text: print(text, file=sys.stderr))
    started = time.perf_counter()
    for name, run in SECTIONS.items():
        if args.only and name not in args.only:
            continue
        run(report, sizes)
    args.output.write_text(render(report, time.perf_counter() - started))
    report.log(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
