"""Large batches decided in worker processes (opt-in: ``LocalEngine(store, processes=N)``).

cedarpy holds the GIL while it evaluates, so threads add no throughput; processes
do. Each worker builds the same store once (the policies with their store ids,
the schema, the stored entities and the template links of one store version) and
decides a share of a batch with its own :class:`~agentauthz.LocalEngine`, slicing
as the parent does: the decisions, determining policies and errors are the ones
the parent would compute. A new store version starts new workers.

A batch is sent to the workers only from ``min_batch`` requests: below that,
shipping the requests and entities costs more than it saves. If the workers
fail (a worker died, the pool broke), the parent decides the batch itself: the
pool only ever changes where Cedar runs, never what it decides.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from agentauthz._model import Decision, Entity, EntityUID, Request
from agentauthz.policy._schema_text import cedar_string
from agentauthz.policy._store import PolicySnapshot, PolicyStore, TemplateLink

__all__ = ["DecisionPool"]

_log = logging.getLogger("agentauthz")

#: The worker's engine (a LocalEngine): built once per worker by :func:`_start_worker`.
_worker_engine: Any = None

StoreSpec = tuple[str, str | None, list[dict[str, Any]], list[dict[str, Any]], bool]
Answer = tuple[bool, tuple[str, ...], tuple[str, ...]]


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


def _decide_share(requests: list[dict[str, Any]], entities: list[dict[str, Any]]) -> list[Answer]:
    engine = _worker_engine
    if engine is None:
        raise RuntimeError("worker started without a store")
    decided: list[Decision] = engine.decide([Request.from_cedar(request) for request in requests],
                                            [Entity.from_cedar(entity) for entity in entities])
    return [(decision.allowed, decision.reasons, decision.errors) for decision in decided]


class DecisionPool:
    """Worker processes deciding large batches for one :class:`~agentauthz.LocalEngine`.

    Args:
        processes: how many worker processes (at least 2 to be of use).
        min_batch: batches of at least this many requests go to the workers.
    """

    def __init__(self, processes: int, min_batch: int) -> None:
        self.processes = processes
        self.min_batch = min_batch
        self._lock = threading.Lock()
        self._pool: tuple[PolicySnapshot, ProcessPoolExecutor] | None = None

    def decide(self, engine: Any, snapshot: PolicySnapshot, requests: Sequence[Request],
               entities: Sequence[Entity]) -> list[Decision] | None:
        """The decisions of ``requests`` from the workers, or None when the parent must decide them.

        ``engine`` is the LocalEngine asking: the workers build one of its class, slicing as it does.
        """
        try:
            pool = self._executor(snapshot, type(engine), engine.slicing)
            cedar_entities = [entity.cedar for entity in entities]
            size = -(-len(requests) // self.processes)
            shares = [[request.to_cedar() for request in requests[start:start + size]]
                      for start in range(0, len(requests), size)]
            futures = [pool.submit(_decide_share, share, cedar_entities) for share in shares]
            answers = [answer for future in futures for answer in future.result()]
        except Exception:  # a broken pool costs speed, never a decision: the parent decides
            _log.warning("the decision processes failed; deciding in this process", exc_info=True)
            self.close()
            return None
        if len(answers) != len(requests):
            return None
        version = snapshot.fingerprint
        return [Decision(allowed, reasons, errors, policy_version=version)
                for allowed, reasons, errors in answers]

    def _executor(self, snapshot: PolicySnapshot, engine_class: Any, slicing: bool) -> ProcessPoolExecutor:
        with self._lock:
            current = self._pool
            if current is not None and current[0] is snapshot:
                return current[1]
            if current is not None:
                current[1].shutdown(wait=False, cancel_futures=True)
            # spawn: a forked copy of a process with threads (the application's) is not safe.
            pool = ProcessPoolExecutor(self.processes, mp_context=multiprocessing.get_context("spawn"),
                                       initializer=_start_worker,
                                       initargs=(store_spec(snapshot, slicing), engine_class))
            self._pool = (snapshot, pool)
            return pool

    def close(self) -> None:
        """Stop the workers (new ones start on the next large batch)."""
        with self._lock:
            if self._pool is not None:
                self._pool[1].shutdown(wait=False, cancel_futures=True)
                self._pool = None
