"""Large batches decided in worker processes (opt-in: ``LocalEngine(store, processes=N)``).

cedarpy holds the GIL while it evaluates, so threads add no throughput; processes
do. Each worker builds the same store once (the policies with their store ids,
the schema, the stored entities and the template links of one store version) and
decides a share of a batch with its own :class:`~agentauthz.LocalEngine`, slicing
as the parent does: the decisions, determining policies and errors are the ones
the parent would compute. A new store version starts new workers.

A batch is sent to the workers only from ``min_batch`` requests: below that,
shipping the requests and entities costs more than it saves. It travels
compactly: a chunk of :class:`~agentauthz._model.SharedRequests` (a ``filter``'s)
as the request they share and their resources, no request built here; any other
chunk as a table of its distinct uids and rows of positions in it (contexts as
JSON text); the batch's entities as one JSON text that each worker reads once
per batch; answers come back as plain tuples. The batch is cut in guided chunks
(each a share of what is left: the last are small, so the workers finish
together) queued for the workers in order; with more cores than workers, this
process, which would otherwise wait, decides chunks from the end of the queue
that no worker has taken yet (never the first one). With as many workers as
cores it only waits: a third busy process on two cores slowed the batch. A
worker freezes the garbage collector's view of its store once built
(``gc.freeze``): a third of a batch's time went to collections walking the
store's objects, and pauses it while it decides a chunk.

The workers of a store version start in the background; until every one has
built the store, batches are decided in this process (``start`` waits for
them). If the workers fail (a worker died, the pool broke) or a batch takes more
than ``timeout`` seconds, they are stopped and the parent decides the batch
itself: the pool only ever changes where Cedar runs, never what it decides.
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor, wait
from typing import Any

from agentauthz._collector import collector_paused
from agentauthz._model import Decision, Entity, EntityUID, Request, SharedRequests, from_cedar_value
from agentauthz.policy._schema_text import cedar_string
from agentauthz.policy._store import PolicySnapshot, PolicyStore, TemplateLink

__all__ = ["DecisionPool"]

_log = logging.getLogger("agentauthz")

#: The worker's engine (a LocalEngine): built once per worker by :func:`_start_worker`.
_worker_engine: Any = None
#: The entities of the batch the worker decides chunks of: the digest of their JSON, and them.
_worker_given: tuple[bytes, list[Entity]] | None = None

StoreSpec = tuple[str, str | None, list[dict[str, Any]], list[dict[str, Any]], bool]
Answer = tuple[bool, tuple[str, ...], tuple[str, ...]]
#: A request as positions of its principal, action and resource in a share's uid table, and its
#: context as Cedar JSON text (None when empty).
Row = tuple[int, int, int, str | None]
Key = tuple[str, str]
#: Requests as a table of distinct uids and rows of positions in it; or, for
#: :class:`~agentauthz._model.SharedRequests`, the shared request (its resource the principal's
#: position) and the resources.
Share = tuple[list[Key], list[Row]] | tuple[list[Key], Row, list[Key]]

# A guided chunk is what is left divided by this many times the processes deciding; the least size.
_GUIDED_SHARE = 2
_MIN_CHUNK = 64


def store_spec(snapshot: PolicySnapshot, slicing: bool) -> StoreSpec:
    """What a worker needs to build the same store: plain text and Cedar JSON, picklable.

    A policy without an ``@id`` annotation gets its store id as one, so the
    worker's store names every policy as the parent's does.
    """
    texts = []
    for policy in snapshot.policies:
        named = "id" in policy.annotations
        texts.append(policy.text if named else f"@id({cedar_string(policy.id)})\n{policy.text}")
    links = [{"id": link.id, "template": link.template,
              "principal": link.principal.to_cedar() if link.principal else None,
              "resource": link.resource.to_cedar() if link.resource else None} for link in snapshot.links]
    return ("\n".join(texts), snapshot.schema_text, list(snapshot.entities.cedar), links,
            slicing)


def _start_worker(spec: StoreSpec, engine_class: Any, started: Any) -> None:
    global _worker_engine
    policies, schema, entities, links, slicing = spec
    store = PolicyStore.from_text(
        policies, schema=schema, entities=[Entity.from_cedar(entity) for entity in entities],
        links=[TemplateLink(id=link["id"], template=link["template"],
                            principal=EntityUID.from_cedar(link["principal"]) if link["principal"] else None,
                            resource=EntityUID.from_cedar(link["resource"]) if link["resource"] else None)
               for link in links], validate=False)
    _worker_engine = engine_class(store, slicing=slicing)
    # The store lives as long as the worker: collections that walk its objects on every batch
    # (a third of a batch's time, measured) need not.
    gc.freeze()
    with started.get_lock():
        started.value += 1


def _started() -> None:
    """Nothing: submitted once per worker, so that every worker starts with the pool."""


def encode(requests: Sequence[Request]) -> Share:
    """The requests as a table of distinct uids and rows of positions in it (most share a principal).

    :class:`~agentauthz._model.SharedRequests` travel as their shared request and their
    resources: none of their requests is built here.
    """
    if isinstance(requests, SharedRequests):
        keys, (row,) = _table([requests.base])
        return keys, row, [(uid.type, uid.id) for uid in requests.resources]
    return _table(requests)


def _table(requests: Sequence[Request]) -> tuple[list[Key], list[Row]]:
    positions: dict[tuple[str, str], int] = {}
    rows: list[Row] = []

    def position(uid: EntityUID) -> int:
        key = (uid.type, uid.id)
        found = positions.get(key)
        if found is None:
            found = positions[key] = len(positions)
        return found

    # A batch's requests mostly share one principal, action and context object (Request.replace
    # keeps them): their positions and the context's JSON are computed once per distinct object.
    last: tuple[Any, Any, Any] | None = None
    head: tuple[int, int, str | None] = (0, 0, None)
    for request in requests:
        action = request.action
        context = request.cedar_context
        principal = request.principal
        if last is None or last[0] is not principal or last[1] is not action or last[2] is not context:
            last = (principal, action, context)
            head = (position(principal),
                    position(EntityUID("Action", action) if isinstance(action, str) else action),
                    json.dumps(context) if context else None)
        rows.append((head[0], head[1], position(request.resource), head[2]))
    return list(positions), rows


def _decode(share: Share) -> Sequence[Request]:
    if len(share) == 3:
        keys, row, resources = share
        base = _from_table(keys, [row])[0]
        return SharedRequests(base, [EntityUID(kind, name) for kind, name in resources])
    return _from_table(*share)


def _from_table(keys: list[Key], rows: list[Row]) -> list[Request]:
    uids = [EntityUID(kind, name) for kind, name in keys]
    return [Request(uids[principal], uids[action], uids[resource],
                    _context(context) if context is not None else None)
            for principal, action, resource, context in rows]


def _context(text: str) -> dict[str, Any]:
    return {key: from_cedar_value(value) for key, value in json.loads(text).items()}


def _decide_share(share: Share, entities: str) -> list[Answer]:
    global _worker_given
    engine = _worker_engine
    if engine is None:
        raise RuntimeError("worker started without a store")
    given: list[Entity] = []
    if entities != "[]":
        # Every chunk of a batch carries the batch's entities: read them once per worker.
        digest = hashlib.sha256(entities.encode()).digest()
        if _worker_given is None or _worker_given[0] != digest:
            _worker_given = (digest, [Entity.from_cedar(entity) for entity in json.loads(entities)])
        given = _worker_given[1]
    with collector_paused():
        decided: list[Decision] = engine.decide(_decode(share), given)
    return [(decision.allowed, decision.reasons, decision.errors) for decision in decided]


class DecisionPool:
    """Worker processes deciding large batches for one :class:`~agentauthz.LocalEngine`.

    The batch is cut in chunks, queued for the workers in order; while they work, this
    process decides chunks from the end of the queue that no worker has taken yet, when
    there are more cores than worker processes.

    Args:
        processes: how many worker processes (at least 2 to be of use).
        min_batch: batches of at least this many requests go to the workers.
        timeout: seconds a batch may take in the workers; past it they are stopped and
            this process decides the batch.
    """

    def __init__(self, processes: int, min_batch: int, timeout: float = 60.0) -> None:
        self.processes = processes
        self.min_batch = min_batch
        self.timeout = timeout
        #: Whether this process decides chunks too: only with a core to spare. With as many workers
        #: as cores, three busy processes on two cores made the batch slower (measured: 1.84x one
        #: process with the parent deciding, 2.2x without, on 2 cores).
        self.parent_helps = processes < (os.cpu_count() or 1)
        #: Requests the worker processes decided (the rest of each batch was decided here).
        self.decided_by_workers = 0
        self._lock = threading.Lock()
        self._pool: _Workers | None = None

    def decide(self, engine: Any, snapshot: PolicySnapshot, requests: Sequence[Request],
               entities: Sequence[Entity]) -> list[Decision] | None:
        """The decisions of ``requests``, or None when the parent must decide them all.

        ``engine`` is the LocalEngine asking: the workers build one of its class, slicing as it
        does, and chunks nobody took yet are decided with its ``decide_in_process``.
        """
        started = time.monotonic()
        # With entities, every chunk makes its engine read them all (their delta, the reach): one
        # chunk per process then, this process's decided here.
        chunks = self._chunks(len(requests), guided=not entities)
        found: list[list[Decision] | None] = [None] * len(chunks)
        futures: list[Future[list[Answer]]] = []
        try:
            workers = self._workers(snapshot, type(engine), engine.slicing)
            if not workers.ready():
                return None  # still starting (spawned interpreters building the store): no waiting
            pool = workers.executor
            cedar_entities = json.dumps([entity.cedar for entity in entities])
            helping = self.parent_helps
            for start, stop in chunks[:-1] if helping else chunks:
                futures.append(pool.submit(_decide_share, encode(requests[start:stop]), cedar_entities))
            # The last chunk is this process's; then, from the back, those no worker has taken yet
            # (the workers take them from the front).
            if helping:
                start, stop = chunks[-1]
                found[-1] = engine.decide_in_process(snapshot, requests[start:stop], entities)
            for position in range(len(futures) - 1, 0, -1) if helping else ():
                if not futures[position].cancel():
                    break
                start, stop = chunks[position]
                found[position] = engine.decide_in_process(snapshot, requests[start:stop], entities)
            version = snapshot.fingerprint
            # A batch's answers are mostly alike (denied by no policy; allowed by one): one frozen
            # Decision per distinct answer. Chunks are read in order as they come, while the workers
            # decide the later ones.
            made: dict[Answer, Decision] = {}
            for position, future in enumerate(futures):
                if found[position] is None:
                    left = self.timeout - (time.monotonic() - started)
                    if left <= 0 or not wait([future], timeout=left).done:
                        raise TimeoutError(f"the decision processes took more than {self.timeout} s")
                    answers = future.result()
                    start, stop = chunks[position]
                    if len(answers) != stop - start:
                        raise RuntimeError("a decision process returned a wrong number of decisions")
                    decisions = []
                    for answer in answers:
                        decision = made.get(answer)
                        if decision is None:
                            allowed, reasons, errors = answer
                            decision = made[answer] = Decision(allowed, reasons, errors,
                                                               policy_version=version)
                        decisions.append(decision)
                    found[position] = decisions
                    self.decided_by_workers += len(answers)
        except Exception:  # a broken pool costs speed, never a decision: the parent decides
            _log.warning("the decision processes failed; deciding in this process", exc_info=True)
            self.close(stop=True)
            return None
        return [decision for chunk in found if chunk is not None for decision in chunk]

    def _chunks(self, count: int, guided: bool = True) -> list[tuple[int, int]]:
        """The batch cut in chunks: at least two (the first for a worker, the last maybe for this process).

        Guided: each chunk is a share of what is left, so the last are small and the processes
        finish together (with equal chunks, one process decided a whole chunk alone at the end).
        Otherwise one chunk per process deciding.
        """
        takers = self.processes + self.parent_helps
        least = min(_MIN_CHUNK, -(-count // 2))
        if not guided:
            size = max(least, -(-count // takers))
            return [(start, min(count, start + size)) for start in range(0, count, size)]
        chunks = []
        start = 0
        while start < count:
            size = max(least, -(-(count - start) // (_GUIDED_SHARE * takers)))
            chunks.append((start, min(count, start + size)))
            start += size
        return chunks

    def start(self, engine: Any, snapshot: PolicySnapshot, timeout: float | None = None) -> bool:
        """Start the workers for ``snapshot`` (if not yet) and wait until they are ready.

        Returns:
            Whether every worker is ready within ``timeout`` seconds (None: wait).
        """
        workers = self._workers(snapshot, type(engine), engine.slicing)
        deadline = None if timeout is None else time.monotonic() + timeout
        while not workers.ready():
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def _workers(self, snapshot: PolicySnapshot, engine_class: Any, slicing: bool) -> _Workers:
        with self._lock:
            current = self._pool
            if current is not None and current.snapshot is snapshot:
                return current
            if current is not None:
                current.executor.shutdown(wait=False, cancel_futures=True)
            context = multiprocessing.get_context("spawn")
            started = context.Value("i", 0)
            # spawn: a forked copy of a process with threads (the application's) is not safe.
            executor = ProcessPoolExecutor(self.processes, mp_context=context, initializer=_start_worker,
                                           initargs=(store_spec(snapshot, slicing), engine_class, started))
            for _ in range(self.processes):
                executor.submit(_started)  # workers start when tasks come: start them all now
            self._pool = _Workers(snapshot, executor, started, self.processes)
            return self._pool

    def close(self, *, stop: bool = False) -> None:
        """Stop the workers (new ones start on the next large batch).

        Args:
            stop: end them now (a worker that hangs never takes the shutdown message).
        """
        with self._lock:
            current = self._pool
            self._pool = None
        if current is None:
            return
        executor = current.executor
        processes = list((getattr(executor, "_processes", None) or {}).values()) if stop else []
        executor.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.kill()


class _Workers:
    """The worker processes of one store version, and how many of them have built it."""

    def __init__(self, snapshot: PolicySnapshot, executor: ProcessPoolExecutor, started: Any,
                 processes: int) -> None:
        self.snapshot = snapshot
        self.executor = executor
        self._started = started
        self._processes = processes

    def ready(self) -> bool:
        return bool(self._started.value >= self._processes)
