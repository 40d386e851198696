"""Large batches in worker processes (issue 18, row 8): the same decisions as in this process.

``LocalEngine(store, processes=2, process_batch=...)`` sends a batch of at least
``process_batch`` requests to worker processes holding the same store version.
Decisions, determining policies (store ids, templates' links included) and errors
must equal the in-process engine's and plain cedarpy's; a broken pool decides here.
"""

from __future__ import annotations

import itertools
import sys
import threading
import time
import types
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import agentauthz as az
from tests import strategies as S
from tests.security.support import reference_allows

POLICIES = """
@id("dept") permit(principal, action == Action::"read", resource) when { resource.dept == principal.dept };
permit(principal, action == Action::"read", resource) when { resource.level < 1 };
@id("share") permit(principal == ?principal, action == Action::"read", resource == ?resource);
@id("secret") forbid(principal, action, resource) when { resource.level > 3 };
@id("odd") forbid(principal, action == Action::"write", resource) when { resource.missing == 1 };
"""

SCHEMA = None
USERS = [az.Entity(uid=az.EntityUID("User", f"u{i}"), attrs={"dept": ("hr", "eng")[i % 2]}) for i in range(4)]
STORED = [az.Entity(uid=az.EntityUID("Doc", f"s{i}"), attrs={"dept": "hr", "level": i % 6}) for i in range(6)]
LINKS = [az.TemplateLink(id=f"share-{i}", template="share", principal=USERS[i % 4].uid,
                         resource=az.EntityUID("Doc", f"m{i}")) for i in range(8)]


def _store() -> az.PolicyStore:
    """The policies, users, stored documents and links every test decides with."""
    return az.PolicyStore.from_text(POLICIES, entities=[*USERS, *STORED], links=LINKS)


@pytest.fixture(scope="module")
def engines() -> Iterator[tuple[az.LocalEngine, az.LocalEngine]]:
    store = _store()
    pooled = az.LocalEngine(store, processes=2, process_batch=4)
    assert pooled.start_processes(timeout=120)
    yield az.LocalEngine(store), pooled
    pooled.close()


requests = st.lists(st.tuples(st.integers(0, 3), st.sampled_from(["read", "write"]), st.integers(0, 11),
                              st.integers(0, 5), st.sampled_from(["hr", "eng"]), st.booleans()),
                    min_size=4, max_size=30)


def _batch(drawn: list[tuple[int, str, int, int, str, bool]]) -> tuple[list[az.Request], list[az.Entity]]:
    batch, given = [], {}
    for user, action, doc, level, dept, stored in drawn:
        uid = az.EntityUID("Doc", f"s{doc % 6}" if stored else f"m{doc}")
        if not stored:
            given[uid] = az.Entity(uid=uid, attrs={"dept": dept, "level": level})
        batch.append(az.Request(principal=USERS[user].uid, action=az.EntityUID("Action", action),
                                resource=uid))
    return batch, list(given.values())


def _mixed_batch(size: int) -> tuple[list[az.Request], list[az.Entity]]:
    """Reads and writes of stored and given documents by every user, ``size`` of them."""
    return _batch([(i % 4, ("read", "write")[i % 3 == 0], i % 12, i % 6, ("hr", "eng")[i % 5 == 0],
                    i % 2 == 0) for i in range(size)])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(requests)
def test_worker_processes_decide_as_this_process_and_as_plain_cedarpy(
        engines: tuple[az.LocalEngine, az.LocalEngine], drawn: Any) -> None:
    local, pooled = engines
    batch, given = _batch(drawn)
    here = local.decide(batch, given)
    there = pooled.decide(batch, given)
    assert there == here
    for request, decision in zip(batch, there, strict=True):
        assert decision.allowed is reference_allows(_linked_text(POLICIES), request,
                                                    [*USERS, *STORED, *given], SCHEMA)


def _linked_text(text: str) -> str:
    """The policies with each share link written out as the static policy it stands for."""
    shares = "\n".join(f'@id("{link.id}") permit(principal == {link.principal}, action == Action::"read", '
                       f"resource == {link.resource});" for link in LINKS)
    return text.replace('@id("share") permit(principal == ?principal, action == Action::"read", '
                        'resource == ?resource);', shares)


def test_a_batch_below_the_threshold_starts_no_worker() -> None:
    store = _store()
    pooled = az.LocalEngine(store, processes=2, process_batch=4)
    batch, given = _batch([(1, "read", 0, 0, "hr", True)])
    assert pooled.decide(batch, given)[0].reasons == ("policy1",)
    assert pooled._processes is not None and pooled._processes._pool is None


def test_decisions_from_the_workers_carry_the_store_ids_and_version(
        engines: tuple[az.LocalEngine, az.LocalEngine]) -> None:
    local, pooled = engines
    batch = [az.Request(principal=USERS[i % 4].uid, action=az.EntityUID("Action", "read"),
                        resource=az.EntityUID("Doc", f"m{i}")) for i in range(8)]
    decided = pooled.decide(batch)
    assert [d.reasons for d in decided] == [(f"share-{i}",) for i in range(8)]
    assert {d.policy_version for d in decided} == {local.store.fingerprint}


def test_with_as_many_workers_as_cores_the_workers_decide_the_whole_batch() -> None:
    store = _store()
    pooled = az.LocalEngine(store, processes=2, process_batch=2)
    assert pooled.start_processes(timeout=120)
    assert pooled._processes is not None
    pooled._processes.parent_helps = False
    batch, given = _batch([(user, "read", doc, doc % 6, "hr", doc % 2 == 0) for user in range(4)
                           for doc in range(12)])
    assert pooled.decide(batch, given) == az.LocalEngine(store).decide(batch, given)
    assert pooled._processes.decided_by_workers == len(batch)
    pooled.close()


def test_a_broken_pool_falls_back_to_deciding_in_this_process() -> None:
    store = _store()
    pooled = az.LocalEngine(store, processes=2, process_batch=2)
    assert pooled.start_processes(timeout=120)
    assert pooled._processes is not None
    pooled._processes.parent_helps = True
    batch, given = _batch([(0, "read", 1, 0, "hr", True), (1, "read", 2, 0, "hr", True)])
    expected = az.LocalEngine(store).decide(batch, given)
    assert pooled.decide(batch, given) == expected
    assert pooled._processes.decided_by_workers >= 1  # the first chunk; the last too if a worker is quicker
    for process in pooled._processes._pool.processes:  # type: ignore[union-attr]
        process.kill()
    assert pooled.decide(batch, given) == expected
    pooled.close()


def test_a_batch_cut_in_chunks_shared_with_this_process_decides_as_this_process(
        engines: tuple[az.LocalEngine, az.LocalEngine]) -> None:
    local, pooled = engines
    batch, given = _mixed_batch(900)
    assert pooled._processes is not None and len(pooled._processes._chunks(len(batch))) > 3
    before = pooled._processes.decided_by_workers
    assert pooled.decide(batch, given) == local.decide(batch, given)
    assert pooled._processes.decided_by_workers > before


def test_batches_before_the_workers_are_ready_are_decided_here_without_waiting() -> None:
    store = _store()
    pooled = az.LocalEngine(store, processes=2, process_batch=2, process_timeout=0.001)
    batch, given = _batch([(0, "read", 1, 0, "hr", True), (1, "read", 5, 4, "hr", False)])
    try:
        # Spawned interpreters take far longer than this batch: it is decided here, and the
        # start-up is no timeout that would stop the workers.
        assert pooled.decide(batch, given) == az.LocalEngine(store).decide(batch, given)
        assert pooled._processes is not None and pooled._processes.decided_by_workers == 0
        assert pooled.start_processes(timeout=120)
    finally:
        pooled.close()


def test_workers_that_hang_past_the_timeout_are_stopped_and_the_batch_decided_here() -> None:
    import os
    import signal

    store = _store()
    pooled = az.LocalEngine(store, processes=2, process_batch=2, process_timeout=0.5)
    assert pooled.start_processes(timeout=120)
    batch, given = _batch([(0, "read", 1, 0, "hr", True), (1, "read", 2, 0, "hr", True),
                           (2, "write", 4, 0, "hr", False)] * 40)
    expected = az.LocalEngine(store).decide(batch, given)
    assert pooled._processes is not None and pooled._processes._pool is not None
    workers = pooled._processes._pool.processes
    for process in workers:
        os.kill(process.pid, signal.SIGSTOP)  # a worker that never answers
    try:
        assert pooled.decide(batch, given) == expected
        assert pooled._processes._pool is None  # the hung workers were stopped
        # Killed, not waited for: poll until their exit is seen.
        deadline = time.monotonic() + 15
        while any(process.is_alive() for process in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(process.is_alive() for process in workers)
    finally:
        for process in workers:
            if process.is_alive():
                process.kill()
    pooled.close()


shared_parts = st.lists(st.tuples(st.integers(0, 2), st.sampled_from(["read", "write"]), st.integers(0, 5),
                                  st.sampled_from([None, {}, {"n": 1}, {"n": 2}])), min_size=1, max_size=40)


@given(shared_parts)
@settings(max_examples=100)
def test_the_request_encoding_for_workers_gives_back_every_request_as_it_was(
        drawn: list[tuple[int, str, int, dict[str, int] | None]]) -> None:
    from agentauthz.engines._pool import _decode, encode

    # Runs of requests sharing principal, action and context objects (as Request.replace makes them)
    # and runs that change any one of them: each decodes to its own parts, in order.
    base = {context_key: az.Request(USERS[0].uid, "read", STORED[0].uid, context)
            for context_key, context in enumerate([None, {"n": 1}, {"n": 2}])}
    batch = []
    for user, action, doc, context in drawn:
        template = base[0 if not context else context["n"]]
        batch.append(template.replace(principal=USERS[user].uid, resource=STORED[doc].uid)
                     if action == "read" else
                     az.Request(USERS[user].uid, az.EntityUID("Action", action), STORED[doc].uid, context))
    decoded = _decode(encode(batch))
    as_uid = {"read": az.EntityUID("Action", "read")}
    assert [(r.principal, as_uid.get(r.action, r.action), r.resource, r.cedar_context) for r in batch] == [
        (r.principal, r.action, r.resource, r.cedar_context) for r in decoded]


@given(st.lists(st.sampled_from([s.uid for s in STORED] + [az.EntityUID("Doc", f"m{i}") for i in range(3)]),
                min_size=1, max_size=30),
       st.sampled_from([None, {"n": 1}]))
@settings(max_examples=100)
def test_shared_requests_travel_to_the_workers_as_their_base_and_resources_and_read_alike(
        resources: list[az.EntityUID], context: dict[str, int] | None) -> None:
    from agentauthz._model import SharedRequests
    from agentauthz.engines._pool import _decode, encode

    batch = SharedRequests(az.Request(USERS[1].uid, az.EntityUID("Action", "read"), USERS[1].uid, context),
                           resources)
    share = encode(batch)
    kinds, names = share[2]  # the resources only: no request built
    assert list(zip(kinds, names, strict=True)) == [(uid.type, uid.id) for uid in resources]
    decoded = _decode(share)
    assert isinstance(decoded, SharedRequests)
    assert [(r.principal, r.action, r.resource, r.cedar_context) for r in decoded] == [
        (r.principal, r.action, r.resource, r.cedar_context) for r in batch]


@given(st.integers(1, 30_000), st.integers(2, 8), st.booleans(), st.booleans())
def test_chunks_cover_the_batch_once_in_order_and_guided_ones_shrink_toward_the_end(
        count: int, processes: int, parent_helps: bool, guided: bool) -> None:
    from agentauthz.engines._pool import DecisionPool

    pool = DecisionPool(processes, min_batch=2)
    pool.parent_helps = parent_helps
    chunks = pool._chunks(count, guided=guided)
    assert chunks[0][0] == 0 and chunks[-1][1] == count
    assert all(stop == next_start for (_, stop), (next_start, _) in itertools.pairwise(chunks))
    assert all(start < stop for start, stop in chunks)
    assert count < 2 or len(chunks) >= 2  # one for a worker, the last maybe for this process
    sizes = [stop - start for start, stop in chunks]
    if guided:
        assert sizes == sorted(sizes, reverse=True)
    else:
        assert len(chunks) <= max(2, processes + parent_helps)


def _stored_or_metadata(item: tuple[int, str | None]) -> az.EntityUID | az.Entity | None:
    number, dept = item
    if number < 0:
        return None  # an item whose resource cannot be built
    if dept is None:
        return STORED[number % len(STORED)].uid
    return az.Entity(uid=az.EntityUID("Doc", f"m{number}"), attrs={"dept": dept, "level": number % 6})


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(S.pool_filter_items, st.integers(0, 3))
def test_a_filter_through_the_workers_keeps_and_decides_every_item_as_this_process(
        engines: tuple[az.LocalEngine, az.LocalEngine], items: list[tuple[int, str | None]],
        user: int) -> None:
    local, pooled = engines
    assert pooled._processes is not None
    before = pooled._processes.decided_by_workers
    results = []
    for engine in (local, pooled):
        authz = az.Authorizer(engine)
        with authz.acting_as(USERS[user]):
            results.append(authz.filter(items, action="read", resource=_stored_or_metadata))
    here, there = results
    resources = {uid for uid in here.resources if uid is not None}
    # The first chunk of a batch is always a worker's.
    assert (pooled._processes.decided_by_workers > before) is (len(resources) >= 4)
    assert there.allowed == here.allowed
    assert [(d.allowed, d.reasons, d.errors) for d in there.decisions] == [
        (d.allowed, d.reasons, d.errors) for d in here.decisions]


class _CannotBuildInWorkers(az.LocalEngine):
    """An engine whose worker processes fail to build it (its class is what they build)."""

    def __init__(self, store: az.PolicyStore, **options: Any) -> None:
        import multiprocessing

        if multiprocessing.parent_process() is not None:
            raise RuntimeError("no store in this worker")
        super().__init__(store, **options)


class _FailsInWorkers(az.LocalEngine):
    """An engine whose worker processes build it, then fail on every chunk."""

    def decide(self, requests: Any, entities: Any = ()) -> list[az.Decision]:
        import multiprocessing

        if multiprocessing.parent_process() is not None:
            raise RuntimeError("this worker cannot decide")
        return super().decide(requests, entities)


def test_workers_that_cannot_build_the_store_report_it_and_batches_are_decided_here() -> None:
    pooled = _CannotBuildInWorkers(_store(), processes=2, process_batch=2)
    batch, given = _mixed_batch(40)
    try:
        assert pooled.start_processes(timeout=120) is False
        assert pooled._processes is not None and pooled._processes._pool is None  # stopped
        assert pooled.decide(batch, given) == az.LocalEngine(_store()).decide(batch, given)
        assert pooled._processes.decided_by_workers == 0
    finally:
        pooled.close()


def test_a_chunk_that_fails_in_a_worker_sends_the_whole_batch_back_to_this_process() -> None:
    pooled = _FailsInWorkers(_store(), processes=2, process_batch=2)
    batch, given = _mixed_batch(300)
    try:
        assert pooled.start_processes(timeout=120)
        assert pooled._processes is not None
        assert pooled.decide(batch, given) == az.LocalEngine(_store()).decide(batch, given)
        assert pooled._processes.decided_by_workers == 0 and pooled._processes._pool is None
    finally:
        pooled.close()


def test_batches_from_several_threads_at_once_each_get_their_own_decisions(
        engines: tuple[az.LocalEngine, az.LocalEngine]) -> None:
    from concurrent.futures import ThreadPoolExecutor

    local, pooled = engines
    batches = [_mixed_batch(size) for size in (200, 301, 450, 97, 333, 250)]
    before = pooled._processes.decided_by_workers if pooled._processes else 0
    with ThreadPoolExecutor(4) as threads:
        decided = list(threads.map(lambda batch: pooled.decide(*batch), batches))
    assert decided == [local.decide(*batch) for batch in batches]
    assert pooled._processes is not None and pooled._processes.decided_by_workers > before


def test_closing_the_pool_ends_its_workers_and_a_new_store_version_starts_new_ones(tmp_path: Any) -> None:
    (tmp_path / "policies.cedar").write_text(POLICIES)
    store = az.PolicyStore.from_directory(tmp_path)
    pooled = az.LocalEngine(store, processes=2, process_batch=2)
    batch, given = _mixed_batch(60)
    try:
        assert pooled.start_processes(timeout=120)
        assert pooled._processes is not None and pooled._processes._pool is not None
        first = pooled._processes._pool.processes
        forbid_all = '@id("none") forbid(principal, action, resource);'
        (tmp_path / "policies.cedar").write_text(f"{POLICIES}\n{forbid_all}")
        assert store.reload()
        assert pooled.start_processes(timeout=120)
        assert pooled._processes._pool.processes != first
        expected = az.LocalEngine(store).decide(batch, given)
        assert not any(d.allowed for d in expected)
        assert pooled.decide(batch, given) == expected
        second = pooled._processes._pool.processes
        pooled.close()
        deadline = time.monotonic() + 15
        while any(process.is_alive() for process in (*first, *second)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(process.is_alive() for process in (*first, *second))
    finally:
        pooled.close()


def test_workers_that_cannot_be_started_leave_every_batch_to_this_process(caplog: Any) -> None:
    class Unpicklable(az.LocalEngine):  # a local class: a spawned worker could never import it
        pass

    pooled = Unpicklable(_store(), processes=2, process_batch=2)
    batch, given = _mixed_batch(40)
    try:
        assert pooled.decide(batch, given) == az.LocalEngine(_store()).decide(batch, given)
        assert pooled._processes is not None and pooled._processes.decided_by_workers == 0
        assert "could not be started" in caplog.text
    finally:
        pooled.close()


def test_workers_that_die_before_reading_the_store_leave_every_batch_here_without_hanging(
        tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    # A spawned worker runs the application's main module first: here one that ends the process,
    # as a script without a __main__ guard can. The store (more than a pipe holds) is never read.
    script = tmp_path / "application.py"
    script.write_text("import os\nos._exit(3)\n")
    main = types.ModuleType("__main__")
    main.__file__ = str(script)
    main.__spec__ = None
    monkeypatch.setitem(sys.modules, "__main__", main)
    big = [az.Entity(uid=az.EntityUID("Doc", f"big{i}"), attrs={"dept": "hr" * 40, "level": 1})
           for i in range(20_000)]
    store = az.PolicyStore.from_text(POLICIES, entities=[*USERS, *STORED, *big], links=LINKS)
    pooled = az.LocalEngine(store, processes=2, process_batch=2)
    batch, given = _mixed_batch(40)
    started: list[bool] = []
    starting = threading.Thread(target=lambda: started.append(pooled.start_processes(timeout=60)),
                                daemon=True)
    try:
        starting.start()
        starting.join(90)
        assert not starting.is_alive(), "starting the workers hung"
        assert started == [False]
        assert pooled.decide(batch, given) == az.LocalEngine(store).decide(batch, given)
        assert pooled._processes is not None and pooled._processes.decided_by_workers == 0
        deadline = time.monotonic() + 30
        while _store_senders() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _store_senders()  # each ended when its worker's pipe closed
    finally:
        pooled.close()


def _store_senders() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate()
            if thread.name == "agentauthz-decisions-store" and thread.is_alive()]
