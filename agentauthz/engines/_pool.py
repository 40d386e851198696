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
as the request they share and their resources' types and ids, no request built
here; any other chunk as a table of its distinct uids and rows of positions in
it (contexts as JSON text); the batch's entities as one JSON text that each
worker reads once per batch; a chunk's answers come back as its distinct answers
and each request's position among them. The batch is cut in guided chunks (each
a share of what is left: the last are small, so the workers finish together).
Each worker has its own pipe, written and read by the thread deciding the batch
(one batch at a time; another waits for the pipes): a worker holds two chunks,
and the moment it answers one it gets the next, so it never waits for this
process. With more cores than workers, this process, which would otherwise wait,
decides chunks from the back that no worker has yet (never the first one). With
as many workers as cores it only waits: a third busy process on two cores slowed
the batch. A worker freezes the garbage collector's view of its store once built
(``gc.freeze``): a third of a batch's time went to collections walking the
store's objects, and pauses it while it decides a chunk.

The workers of a store version start in the background; until every one has
built the store, batches are decided in this process (``start`` waits for
them). If the workers fail (a worker died, the pool broke) or a batch takes more
than ``timeout`` seconds, they are stopped and the parent decides the batch
itself: the pool only ever changes where Cedar runs, never what it decides.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import logging
import multiprocessing
import os
import threading
import time
from collections import deque
from collections.abc import Sequence
from multiprocessing.connection import Connection, wait
from multiprocessing.reduction import ForkingPickler
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
#: A chunk's answers: the distinct ones, and each request's position among them (a batch's answers
#: are mostly alike: denied by no policy, allowed by one).
Answers = tuple[list[Answer], list[int]]
#: A request as positions of its principal, action and resource in a share's uid table, and its
#: context as Cedar JSON text (None when empty).
Row = tuple[int, int, int, str | None]
Key = tuple[str, str]
#: Requests as a table of distinct uids and rows of positions in it; or, for
#: :class:`~agentauthz._model.SharedRequests`, the shared request (its resource the principal's
#: position) and the resources' types and ids.
Share = tuple[list[Key], list[Row]] | tuple[list[Key], Row, tuple[list[str], list[str]]]

# A guided chunk is what is left divided by this many times the processes deciding; the least size.
_GUIDED_SHARE = 2
_MIN_CHUNK = 64
# Chunks sent to a worker ahead of its answers: it starts the next one the moment it answers.
_AHEAD = 2
_READY = "ready"


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


def _start_worker(spec: StoreSpec, engine_class: Any) -> None:
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


def _serve(connection: Connection, engine_class: Any) -> None:
    """A worker: read the store, build it, say so, then answer each chunk it receives until told to stop."""
    try:
        spec = connection.recv()
    except EOFError:  # the pool was closed before it sent the store
        return
    try:
        _start_worker(spec, engine_class)
    except Exception as exc:  # the parent decides every batch itself then
        connection.send(f"the store could not be built: {type(exc).__name__}: {exc}")
        return
    connection.send(_READY)
    while True:
        try:
            message = connection.recv()
        except EOFError:  # the parent closed the pool (or died)
            return
        if message is None:
            return
        share, entities = message
        try:
            answers: Answers | str = _decide_share(share, entities)
        except Exception as exc:  # the parent decides the batch itself
            answers = f"{type(exc).__name__}: {exc}"
        connection.send(answers)


def encode(requests: Sequence[Request]) -> Share:
    """The requests as a table of distinct uids and rows of positions in it (most share a principal).

    :class:`~agentauthz._model.SharedRequests` travel as their shared request and their
    resources: none of their requests is built here.
    """
    if isinstance(requests, SharedRequests):
        keys, (row,) = _table([requests.base])
        # Two lists: a type repeated is one object, which pickle writes once.
        resources = requests.resources
        return keys, row, ([uid.type for uid in resources], [uid.id for uid in resources])
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
        keys, row, (kinds, names) = share
        base = _from_table(keys, [row])[0]
        return SharedRequests(base, list(map(EntityUID, kinds, names)))
    return _from_table(*share)


def _from_table(keys: list[Key], rows: list[Row]) -> list[Request]:
    uids = [EntityUID(kind, name) for kind, name in keys]
    return [Request(uids[principal], uids[action], uids[resource],
                    _context(context) if context is not None else None)
            for principal, action, resource, context in rows]


def _context(text: str) -> dict[str, Any]:
    return {key: from_cedar_value(value) for key, value in json.loads(text).items()}


def _decide_share(share: Share, entities: str) -> Answers:
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
    distinct: dict[Answer, int] = {}
    positions = [distinct.setdefault((decision.allowed, decision.reasons, decision.errors), len(distinct))
                 for decision in decided]
    return list(distinct), positions


class DecisionPool:
    """Worker processes deciding large batches for one :class:`~agentauthz.LocalEngine`.

    The batch is cut in chunks, sent to the workers from the front as they answer; while
    they work, this process decides chunks from the back that no worker has yet, when
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
        try:
            workers = self._workers(snapshot, type(engine), engine.slicing)
        except Exception:  # workers that cannot even be started: the parent decides
            _log.warning("the decision processes could not be started; deciding in this process",
                         exc_info=True)
            return None
        # One batch at a time writes to the workers; another waits for them as long as a batch may
        # take, then is decided here.
        if not workers.lock.acquire(timeout=self.timeout):
            return None
        try:
            if not workers.ready():
                return None  # still starting (spawned interpreters building the store): no waiting
            return self._decide(workers, engine, snapshot, requests, entities, started)
        except Exception:  # a broken pool costs speed, never a decision: the parent decides
            _log.warning("the decision processes failed; deciding in this process", exc_info=True)
            self._discard(workers)
            return None
        finally:
            workers.release()

    def _decide(self, workers: _Workers, engine: Any, snapshot: PolicySnapshot, requests: Sequence[Request],
                entities: Sequence[Entity], started: float) -> list[Decision]:
        # With entities, every chunk makes its engine read them all (their delta, the reach): one
        # chunk per process then, this process's decided here.
        chunks = self._chunks(len(requests), guided=not entities)
        found: list[list[Decision] | None] = [None] * len(chunks)
        cedar_entities = json.dumps([entity.cedar for entity in entities])
        # Workers take chunks from the front, this process (when it helps) from the back; a worker
        # holds up to _AHEAD chunks, so it starts the next one the moment it answers.
        front, back = 0, len(chunks) - 1
        last_for_workers = back - 1 if self.parent_helps else back
        sent: dict[Any, deque[int]] = {connection: deque() for connection in workers.connections}

        def send(connection: Connection) -> None:
            nonlocal front
            start, stop = chunks[front]
            connection.send((encode(requests[start:stop]), cedar_entities))
            sent[connection].append(front)
            front += 1

        for _ in range(_AHEAD):
            for connection in workers.connections:
                if front <= min(back, last_for_workers):
                    send(connection)
        version = snapshot.fingerprint
        # One frozen Decision per distinct answer of the batch.
        made: dict[Answer, Decision] = {}
        while True:
            helping = self.parent_helps and front <= back
            busy = [connection for connection, positions in sent.items() if positions]
            if not busy and not helping:
                break
            left = self.timeout - (time.monotonic() - started)
            answered: list[Any] = wait(busy, timeout=0 if helping else max(left, 0)) if busy else []
            if not answered and not helping:
                raise TimeoutError(f"the decision processes took more than {self.timeout} s")
            for worker in answered:
                reply = worker.recv()
                position = sent[worker].popleft()
                if front <= back:
                    send(worker)
                if isinstance(reply, str):
                    raise RuntimeError(f"a decision process failed: {reply}")
                distinct, positions = reply
                start, stop = chunks[position]
                if len(positions) != stop - start:
                    raise RuntimeError("a decision process returned a wrong number of decisions")
                table = [made.get(answer) or made.setdefault(
                    answer, Decision(answer[0], answer[1], answer[2], policy_version=version))
                    for answer in distinct]
                found[position] = [table[index] for index in positions]  # a bad index raises
                self.decided_by_workers += len(positions)
            if helping and front <= back:
                start, stop = chunks[back]
                found[back] = engine.decide_in_process(snapshot, requests[start:stop], entities)
                back -= 1
        if any(chunk is None for chunk in found):
            raise RuntimeError("a chunk of the batch went undecided")
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
        while True:
            with workers.lock:
                try:
                    if workers.ready():
                        return True
                except Exception:
                    _log.warning("the decision processes did not start", exc_info=True)
                    self._discard(workers)
                    return False
            if deadline is not None and time.monotonic() > deadline:
                return False
            time.sleep(0.01)

    def _workers(self, snapshot: PolicySnapshot, engine_class: Any, slicing: bool) -> _Workers:
        with self._lock:
            current = self._pool
            if current is not None and current.snapshot is snapshot:
                return current
            self._pool = _Workers(snapshot, self.processes, store_spec(snapshot, slicing), engine_class)
        if current is not None:
            current.retire()
        return self._pool

    def _discard(self, workers: _Workers) -> None:
        """End broken workers now; the next large batch starts new ones."""
        with self._lock:
            if self._pool is workers:
                self._pool = None
        workers.kill()

    def close(self, *, stop: bool = False) -> None:
        """Stop the workers (new ones start on the next large batch).

        Args:
            stop: end them now (a worker that hangs never reads the message to stop); otherwise
                they end once the batch using them, if any, is done.
        """
        with self._lock:
            current = self._pool
            self._pool = None
        if current is None:
            return
        if stop:
            current.kill()
        else:
            current.retire()


class _Workers:
    """The worker processes of one store version, each behind its own pipe.

    The thread deciding a batch writes each worker its chunks and reads its answers
    itself: no thread relays them. (Through :class:`concurrent.futures.ProcessPoolExecutor`,
    whose threads relay both, a worker waited ~4 ms for its first chunk and ~1 ms
    between chunks: a twentieth of a 10,000-document batch.)
    """

    def __init__(self, snapshot: PolicySnapshot, processes: int, spec: StoreSpec, engine_class: Any) -> None:
        self.snapshot = snapshot
        #: Held by the batch writing to the workers (and while reading which are ready).
        self.lock = threading.Lock()
        self.connections: list[Connection] = []
        self.processes: list[Any] = []
        self._ready: set[Connection] = set()
        self._retired = False
        self._closed = False
        # spawn: a forked copy of a process with threads (the application's) is not safe.
        context = multiprocessing.get_context("spawn")
        try:
            for _ in range(processes):
                ours, theirs = context.Pipe()
                process = context.Process(target=_serve, args=(theirs, engine_class), daemon=True,
                                          name="agentauthz-decisions")
                process.start()
                theirs.close()
                self.connections.append(ours)
                self.processes.append(process)
        except BaseException:
            self._end()
            raise
        # The store goes through each worker's own pipe, from a thread. Passed to Process, it went
        # through the pipe multiprocessing keeps both ends of until the worker has read it all: a
        # worker that died first (killed, or failing to start) left the batch's thread blocked for
        # good, holding the pool. Here a dead worker's pipe is closed, and the sending fails.
        self._sending = threading.Thread(target=self._send_store, args=(spec,), daemon=True,
                                         name="agentauthz-decisions-store")
        self._sending.start()

    def _send_store(self, spec: StoreSpec) -> None:
        pickled = ForkingPickler.dumps(spec)  # once for every worker; each reads it with recv()
        for connection in self.connections:
            try:
                connection.send_bytes(pickled)
            except OSError:  # the worker died: ready() finds its pipe closed
                _log.debug("a decision process did not take the store", exc_info=True)

    def ready(self) -> bool:
        """Whether every worker has built the store (the caller holds :attr:`lock`).

        Raises:
            RuntimeError: a worker could not build the store.
            EOFError: a worker died.
        """
        for connection in self.connections:
            if connection not in self._ready and connection.poll():
                said = connection.recv()
                if said != _READY:
                    raise RuntimeError(f"a decision process did not start: {said}")
                self._ready.add(connection)
        return len(self._ready) == len(self.connections)

    def release(self) -> None:
        """Release :attr:`lock`; end the workers if they were retired meanwhile."""
        self.lock.release()
        if self._retired:
            self.retire()

    def retire(self) -> None:
        """End the workers once no batch is writing to them (now, if none is)."""
        self._retired = True
        # Whoever holds the lock last ends them: a batch releasing it checks _retired after.
        if self.lock.acquire(blocking=False):
            try:
                if not self._closed:
                    self._closed = True
                    if self._sending.is_alive():
                        # Still sending the store: no worker is deciding, and a stop message now
                        # would cut into the store. Ending them ends the sending (its pipe closes).
                        self._end()
                        self._sending.join()
                    for connection in self.connections:
                        with contextlib.suppress(OSError):  # already gone
                            connection.send(None)
                        connection.close()
            finally:
                self.lock.release()

    def kill(self) -> None:
        """End the workers now (a batch waiting for them sees them gone and is decided here)."""
        self._end()
        self.retire()

    def _end(self) -> None:
        for process in self.processes:
            process.kill()
