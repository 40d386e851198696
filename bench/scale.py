"""Benchmarks of issue 18 (performance at scale): each row's ratio next to its target.

Every section measures agentauthz against the baseline the issue names, in one
process, in the same rounds (see :mod:`bench.run`). Sizes shrink with ``--quick``.
"""

from __future__ import annotations

import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import agentauthz as az
from bench.workloads import build, build_tools, document_entity, documents

if TYPE_CHECKING:
    from bench.run import Report, Sizes


def _median_seconds(fn: Callable[[], object], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


# -- row 1: a guarded call against authorize of the same request ----------------------------------


def guarded_calls(report: Report, sizes: Sizes) -> None:
    from bench.run import Calls, measure_calls, ratio, us

    rows = []
    for policies in sizes.guard_policies:
        workload = build_tools(policies, 1, 10, request_count=sizes.requests)
        authz = az.Authorizer.from_text(workload.policies, schema=workload.schema, entities=workload.entities)
        tool = workload.tools[0]
        user = workload.requests[0].principal

        @authz.guard(action=tool, name=tool, on_deny="message")
        def call_tool(amount: int, target: str) -> str:
            return target

        guarded: Calls = []
        direct: Calls = []
        for request in workload.requests:
            arguments = dict(request.context["input"])
            guarded.append(lambda arguments=arguments: call_tool(**arguments))
            direct.append(lambda context=request.context: authz.authorize(
                action=tool, resource=az.EntityUID("Tool", tool), context=context))
        with authz.acting_as(user):
            found = measure_calls({"authorize": direct, "guard": guarded}, sizes.rounds)
        growth = found["guard"] / found["authorize"]
        rows.append([f"P={policies:,}, E=10", us(found["authorize"]), us(found["guard"]), ratio(growth)])
        if policies == sizes.guard_policies[0]:
            report.target(f"`@guard`ed call <= 1.2x `authorize` of the same request (P={policies}, E=10)",
                          f"{ratio(growth)} ({us(found['guard'])} us vs {us(found['authorize'])} us)",
                          growth <= 1.2)
    report.section(
        "Guarded tool calls",
        "A call of an `@authz.guard`ed tool (arguments `amount: int, target: str`, validated and sent as "
        "`context.input`, the resource the tool itself) against `Authorizer.authorize` of the same "
        "request, for the same bound user, outside a session (`bench/workloads.py:build_tools`, one tool).",
        ["workload", "authorize (us)", "guarded call (us)", "ratio"], rows)


# -- row 2: import time ------------------------------------------------------------------------

_IMPORT = "import time; started = time.process_time(); import {module}; print(time.process_time() - started)"


def _import_seconds(module: str) -> float:
    result = subprocess.run([sys.executable, "-c", _IMPORT.format(module=module)], capture_output=True,
                            text=True, check=True)
    return float(result.stdout)


def import_time(report: Report, sizes: Sizes) -> None:
    from bench.run import ratio

    repeat = 7 if sizes.rounds > 1 else 1
    ours = statistics.median(_import_seconds("agentauthz") for _ in range(repeat)) * 1e3
    cedarpy = statistics.median(_import_seconds("cedarpy") for _ in range(repeat)) * 1e3
    report.section(
        "Import time",
        f"CPU time of `import agentauthz` in a fresh interpreter (median of {repeat}); integrations, the "
        "CLI, AVP, the pre-filter and schema generation load on first use (tests/core/test_import_budget.py "
        "lists what the import loads).",
        ["import", "CPU ms", "ratio to cedarpy"],
        [["cedarpy", f"{cedarpy:.0f}", "1.00x"], ["agentauthz", f"{ours:.0f}", ratio(ours / cedarpy)]])
    report.target("`import agentauthz` <= 150 ms (fresh process, CPU time)", f"{ours:.0f} ms", ours <= 150)


# -- row 6: grouping AVP batch requests ------------------------------------------------------------


def avp_grouping(report: Report, sizes: Sizes) -> None:
    from agentauthz.avp._exchange import Prepared, groups

    rows = []
    per_request: list[float] = []
    repeat = 5 if sizes.rounds > 1 else 1
    for count in sizes.avp_grouping:
        prepared = [Prepared(index=i, item={}, key=str(i), principal=f'{{"entityId": "u{i}"}}',
                             resource='{"entityId": "shared"}' if i % 2 else f'{{"entityId": "d{i}"}}',
                             slice=[], slice_key="") for i in range(count)]
        seconds = _median_seconds(lambda prepared=prepared: groups(prepared), repeat)
        per_request.append(seconds / count)
        rows.append([f"{count:,}", f"{seconds * 1e3:.1f}", f"{seconds / count * 1e6:.2f}"])
    largest = sizes.avp_grouping[-1]
    seconds = per_request[-1] * largest
    report.section(
        "Grouping of Verified Permissions batches",
        "`VerifiedPermissionsEngine` groups the requests of a batch into `BatchIsAuthorized` calls of at most "
        "30 sharing a principal or a resource (greedy: the key with the most requests left first). Here n "
        "requests with distinct principals, every other one on a shared resource.",
        ["requests", "grouping (ms)", "per request (us)"], rows,
        [f"Per-request cost from the smallest to the largest size: "
         f"{per_request[-1] / per_request[0]:.2f}x (linear: about 1x)."])
    report.target(f"AVP grouping of {largest:,} requests with distinct principals <= 50 ms (linear)",
                  f"{seconds * 1e3:.1f} ms", seconds <= 0.05)


# -- row 5: filtering documents built from metadata, per candidate ----------------------------------


def filter_per_candidate(report: Report, sizes: Sizes) -> None:
    import cedarpy

    from bench.run import measure, ratio

    largest = max(sizes.rag_scale)
    workload = build(sizes.rag_policies, max(1000, math.ceil(largest * 2.3)), request_count=1)
    store = az.PolicyStore.from_text(workload.policies, schema=workload.schema, entities=workload.entities)
    snap = store.snapshot
    user = next(e for e in workload.entities if e.uid.type == "User").uid
    authz = az.Authorizer(az.LocalEngine(store))
    rows = []
    per_candidate: dict[int, float] = {}
    for size in sizes.rag_scale:
        items = documents(size, workload)
        cedar = [document_entity(doc).cedar for doc in items]  # what a raw caller writes from metadata
        requests = [{"principal": user.to_cedar(), "action": {"type": "Action", "id": "read"},
                     "resource": entity["uid"]} for entity in cedar]

        def raw(cedar: Any = cedar, requests: Any = requests) -> object:
            handle = snap.entity_set.with_added_json_str(json.dumps(cedar), snap.schema)
            return cedarpy.is_authorized_batch(requests, snap.policy_set, handle, schema=snap.schema)

        def ours(items: Any = items) -> object:
            with authz.acting_as(user):
                return authz.filter(items, action="read", resource=document_entity)

        found = measure({"raw": (raw, size), "ours": (ours, size)}, sizes.scale_rounds)
        per_candidate[size] = found["ours"]
        rows.append([f"{size:,}", f"{found['raw']:,.1f}", f"{found['ours']:,.1f}",
                     ratio(found["ours"] / found["raw"])])
        if size == largest:
            report.target(f"`filter` of {size:,} documents from metadata <= 1.2x raw with parsing",
                          f"{ratio(found['ours'] / found['raw'])} ({found['ours']:,.1f} vs "
                          f"{found['raw']:,.1f} us per candidate)", found["ours"] / found["raw"] <= 1.2)
    smallest = min(sizes.rag_scale)
    growth = per_candidate[largest] / per_candidate[smallest]
    report.section(
        "Filtering documents built from metadata, per candidate",
        f"`Authorizer.filter` of N documents whose entities are built from metadata (`document_entity`, "
        f"{len(workload.entities):,} stored entities, P={sizes.rag_policies}) against the raw work with "
        "parsing counted: the documents' Cedar JSON dumped and merged onto the stored entities handle "
        "(`with_added_json_str`), then one `is_authorized_batch`. Microseconds per candidate; the filter's "
        "time includes building each document's `Entity`.",
        ["candidates", "raw with parsing (us)", "agentauthz (us)", "ratio"], rows,
        [f"Per-candidate cost from {smallest:,} to {largest:,} candidates: {growth:.2f}x."])
    report.target(f"`filter` per candidate constant from {smallest:,} to {largest:,} candidates (<= 1.5x)",
                  f"{growth:.2f}x", growth <= 1.5)


# -- row 7: compiling a pre-filter against the partial evaluation it runs ----------------------------


def prefilter_compile(report: Report, sizes: Sizes) -> None:
    import cedarpy

    from bench.run import measure, ratio

    rows = []
    for policies in sizes.prefilter_policies:
        workload = build(policies, 1000, request_count=1)
        store = az.PolicyStore.from_text(workload.policies, schema=workload.schema, entities=workload.entities)
        snap = store.snapshot
        authz = az.Authorizer(az.LocalEngine(store))
        user = next(e for e in workload.entities if e.uid.type == "User").uid
        request = {"principal": str(user), "action": 'Action::"read"', "context": {}}

        def ours(authz: az.Authorizer = authz, user: az.EntityUID = user) -> object:
            with authz.acting_as(user):
                return az.compile_prefilter(authz, action="read", resource_type="Document")

        def raw(request: Any = request, snap: Any = snap) -> object:
            return cedarpy.is_authorized_partial(request, snap.policy_set, snap.entity_set, schema=snap.schema)

        found = measure({"raw": (raw, 1), "ours": (ours, 1)}, sizes.scale_rounds * 3)
        growth = found["ours"] / found["raw"]
        rows.append([f"P={policies:,}, E=1,000", f"{found['raw'] / 1000:,.2f}", f"{found['ours'] / 1000:,.2f}",
                     ratio(growth)])
        report.target(f"`compile_prefilter` <= 1.5x the raw partial evaluation (P={policies:,})",
                      f"{ratio(growth)} ({found['ours'] / 1000:,.2f} ms vs {found['raw'] / 1000:,.2f} ms)",
                      growth <= 1.5)
    report.section(
        "Compiling a pre-filter",
        "`compile_prefilter` for one user and `read` (resource unknown) against the raw "
        "`cedarpy.is_authorized_partial` it runs on the same handles (`bench/workloads.py:build`, a quarter "
        "of the policies are `read` policies). The difference is translating the residual policies into the "
        "filter expression; residuals partial evaluation decided away (`when { false }`) are skipped.",
        ["workload", "raw partial evaluation (ms)", "compile_prefilter (ms)", "ratio"], rows)


# -- row 9: data files load with the default limits ---------------------------------------------


def data_limits(report: Report, sizes: Sizes) -> None:
    links_count, entities_count = sizes.data_files
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        (root / "share.cedar").write_text(
            '@id("share") permit(principal == ?principal, action, resource == ?resource);\n')
        (root / "schema.cedarschema").write_text(
            "entity User = { department: String, clearance: Long }; entity Doc;\n"
            "action read appliesTo { principal: User, resource: Doc };\n")
        links = [{"id": f"share-{i}", "template": "share", "principal": {"type": "User", "id": f"u{i}"},
                  "resource": {"type": "Doc", "id": f"d{i}"}} for i in range(links_count)]
        (root / "template-links.json").write_text(json.dumps(links))
        entities = [{"uid": {"type": "User", "id": f"u{i}"},
                     "attrs": {"department": "eng", "clearance": i % 5}, "parents": []}
                    for i in range(entities_count)]
        (root / "entities.json").write_text(json.dumps(entities))
        started = time.perf_counter()
        outcome = "loaded"
        try:
            store = az.PolicyStore.from_directory(root)
            loaded = (len(store.links), len(store.entities))
        except az.PolicyError as exc:
            outcome, loaded = f"refused: {str(exc)[:80]}", (0, 0)
        seconds = time.perf_counter() - started
        for name in ("template-links.json", "entities.json"):
            rows.append([name, f"{(root / name).stat().st_size / 1024**2:,.1f} MiB", outcome])
    report.section(
        "Data file limits",
        f"A store directory with {links_count:,} template links and {entities_count:,} entities, loaded with "
        "the default limits (policy text: 1 MiB per file; data files: 1 GiB per file). "
        f"Load time: {seconds:.1f} s.",
        ["file", "size", "with the defaults"], rows)
    report.target(f"{links_count:,} template links and {entities_count:,} entities load with the default "
                  "limits", f"{outcome} ({loaded[0]:,} links, {loaded[1]:,} entities)",
                  loaded == (links_count, entities_count))


__all__ = ["avp_grouping", "data_limits", "filter_per_candidate", "guarded_calls", "import_time",
           "prefilter_compile"]
