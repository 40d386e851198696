"""Session storage: the protocol, the in-memory store and the SQLite store.

A store keeps, per session id, what :mod:`agentauthz.session` records: labels
seen, completed calls (counts, running sums, a timeline for the sliding window
and the last actions), calls in flight and approvals. Every change bumps the
session's ``version``; :meth:`SessionStore.admit` reserves a call only if the
version is still the one the decision was made on (compare-and-swap), so a
decision is never based on facts that changed under it.

Calls are recorded in two steps: ``admit`` (after an allowed decision, before
the tool runs: the call is *in flight*, counted by later decisions so parallel
calls cannot overrun a limit) and ``complete`` (after the tool returned: the
call counts in the recorded state). ``release`` drops a call that failed.
Both steps are idempotent by call id: completing a call twice counts it once,
and a call id that already completed is not admitted again (``"completed"``):
replaying a finished call (a resumed agent run, a model repeating a tool call
id) neither runs uncounted nor counts twice.
"""

from __future__ import annotations

import decimal as _decimal
import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from agentauthz._errors import ConfigurationError

__all__ = [
    "Admission",
    "Approval",
    "CallRecord",
    "MemorySessionStore",
    "Number",
    "SQLiteSessionStore",
    "SessionSnapshot",
    "SessionStore",
]

Number = int | _decimal.Decimal
"""A summed argument: ``int`` for a Cedar Long, ``Decimal`` for a Cedar decimal."""

Admission = Literal["admitted", "changed", "completed"]
"""What :meth:`SessionStore.admit` did: put the call in flight; nothing, because the
session changed since the decision; nothing, because this call id already completed."""


@dataclass(frozen=True)
class CallRecord:
    """One tool call of a session.

    Attributes:
        call_id: unique within the session (a LangChain tool call id, a uuid).
        action: the action name (``"issue_refund"``).
        resource: Cedar text of the resource uid (``Tool::"issue_refund"``).
        at: seconds since the epoch: admission time while in flight,
            completion time once completed.
        sums: the call's summed arguments (``{"amount": 120}``).
        labels: labels the call's completion adds to ``seen`` (a read tool).
    """

    call_id: str
    action: str
    resource: str
    at: float
    sums: Mapping[str, Number] = field(default_factory=dict)
    labels: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Approval:
    """An approval granted in a session (see :meth:`agentauthz.session.Session.approve`).

    Attributes:
        action: the action name, or the Cedar text of a namespaced action uid.
        resource: Cedar text of the resource uid; None approves any resource.
        arguments: canonical JSON of the tool arguments the approval is limited
            to (``{"order_id": "o-1"}``); ``"{}"`` for any arguments.
        granted_by: who approved (for the application's own records).
    """

    action: str
    resource: str | None = None
    arguments: str = "{}"
    granted_by: str | None = None


@dataclass(frozen=True)
class SessionSnapshot:
    """What a store holds for one session at one version.

    Attributes:
        session_id: the session.
        version: bumped by every change; 0 for a session with no record yet.
        seen: labels of the resources the agent was allowed to read.
        calls: completed calls per action.
        window_calls: completed calls per action since the ``since`` of the load.
        totals: running sums of declared arguments of completed calls, per action.
        history: the last completed calls, oldest first.
        pending: calls in flight (admitted, not completed, lease not expired).
        approvals: approvals granted, in grant order.
    """

    session_id: str
    version: int = 0
    seen: frozenset[str] = frozenset()
    calls: Mapping[str, int] = field(default_factory=dict)
    window_calls: Mapping[str, int] = field(default_factory=dict)
    totals: Mapping[str, Mapping[str, Number]] = field(default_factory=dict)
    history: tuple[CallRecord, ...] = ()
    pending: tuple[CallRecord, ...] = ()
    approvals: tuple[Approval, ...] = ()


@runtime_checkable
class SessionStore(Protocol):
    """Where sessions live. Implementations must be safe for concurrent use.

    Implementations: :class:`MemorySessionStore` (one process) and
    :class:`SQLiteSessionStore` (processes sharing a file).
    """

    def load(self, session_id: str, *, now: float, since: float, history: int) -> SessionSnapshot:
        """A consistent snapshot; ``since`` starts the window, ``now`` expires leases."""
        ...

    def admit(self, session_id: str, call: CallRecord, *, version: int,
              lease_until: float) -> Admission:
        """Put a call in flight if the session is still at ``version``.

        Returns ``"admitted"`` when the call is in flight (an in-flight call of
        the same id, left by a crash, is replaced); ``"changed"`` when the
        session changed and the decision must be made again; ``"completed"``
        when this call id already completed (it must not run again).
        """
        ...

    def complete(self, session_id: str, call_id: str, *, now: float) -> bool:
        """Count an in-flight call as completed. True if this call counted it (idempotent)."""
        ...

    def release(self, session_id: str, call_id: str) -> None:
        """Drop an in-flight call that failed or was abandoned: it never counts."""
        ...

    def add_labels(self, session_id: str, labels: Iterable[str]) -> None:
        """Add labels to the session's ``seen`` set."""
        ...

    def approve(self, session_id: str, approval: Approval) -> None:
        """Record an approval (idempotent)."""
        ...

    def revoke(self, session_id: str, approval: Approval) -> bool:
        """Remove an approval; True if it was there."""
        ...

    def delete(self, session_id: str) -> None:
        """Forget a session entirely."""
        ...


def _add(totals: dict[str, dict[str, Number]], action: str, sums: Mapping[str, Number]) -> None:
    if not sums:
        return
    bucket = totals.setdefault(action, {})
    for name, value in sums.items():
        bucket[name] = bucket.get(name, 0) + value


# -- in memory ------------------------------------------------------------------------------


@dataclass
class _State:
    version: int = 0
    seen: set[str] = field(default_factory=set)
    calls: dict[str, int] = field(default_factory=dict)
    totals: dict[str, dict[str, Number]] = field(default_factory=dict)
    done: dict[str, CallRecord] = field(default_factory=dict)  # completed, in completion order
    pending: dict[str, tuple[CallRecord, float]] = field(default_factory=dict)
    approvals: dict[tuple[str, str | None, str], Approval] = field(default_factory=dict)


class MemorySessionStore:
    """Sessions in this process's memory (the default). Thread-safe.

    Sessions are kept until :meth:`delete`: end a conversation's session when
    the conversation ends.

    Example:
        >>> store = MemorySessionStore()
        >>> store.add_labels("s1", ["confidential"])
        >>> sorted(store.load("s1", now=0.0, since=0.0, history=10).seen)
        ['confidential']
    """

    def __init__(self) -> None:
        self._sessions: dict[str, _State] = {}
        self._lock = threading.Lock()

    def load(self, session_id: str, *, now: float, since: float, history: int) -> SessionSnapshot:
        """See :meth:`SessionStore.load`."""
        with self._lock:
            state = self._sessions.get(session_id)
            if state is None:
                return SessionSnapshot(session_id)
            window: dict[str, int] = {}
            last: list[CallRecord] = []
            for record in reversed(state.done.values()):
                if record.at < since and len(last) >= history:
                    break
                if record.at >= since:
                    window[record.action] = window.get(record.action, 0) + 1
                if len(last) < history:
                    last.append(record)
            return SessionSnapshot(
                session_id=session_id,
                version=state.version,
                seen=frozenset(state.seen),
                calls=dict(state.calls),
                window_calls=window,
                totals={action: dict(sums) for action, sums in state.totals.items()},
                history=tuple(reversed(last)),
                pending=tuple(call for call, until in state.pending.values() if until > now),
                approvals=tuple(state.approvals.values()),
            )

    def admit(self, session_id: str, call: CallRecord, *, version: int,
              lease_until: float) -> Admission:
        """See :meth:`SessionStore.admit`."""
        with self._lock:
            state = self._sessions.setdefault(session_id, _State())
            if call.call_id in state.done:
                return "completed"
            if state.version != version:
                return "changed"
            state.pending[call.call_id] = (call, lease_until)
            state.version += 1
            return "admitted"

    def complete(self, session_id: str, call_id: str, *, now: float) -> bool:
        """See :meth:`SessionStore.complete`."""
        with self._lock:
            state = self._sessions.get(session_id)
            if state is None or call_id in state.done or call_id not in state.pending:
                return False
            call, _ = state.pending.pop(call_id)
            done = CallRecord(call.call_id, call.action, call.resource, now, call.sums, call.labels)
            state.done[call_id] = done
            state.calls[call.action] = state.calls.get(call.action, 0) + 1
            _add(state.totals, call.action, call.sums)
            state.seen.update(call.labels)
            state.version += 1
            return True

    def release(self, session_id: str, call_id: str) -> None:
        """See :meth:`SessionStore.release`."""
        with self._lock:
            state = self._sessions.get(session_id)
            if state is not None and state.pending.pop(call_id, None) is not None:
                state.version += 1

    def add_labels(self, session_id: str, labels: Iterable[str]) -> None:
        """See :meth:`SessionStore.add_labels`."""
        fresh = set(labels)
        with self._lock:
            state = self._sessions.setdefault(session_id, _State())
            if not fresh <= state.seen:
                state.seen.update(fresh)
                state.version += 1

    def approve(self, session_id: str, approval: Approval) -> None:
        """See :meth:`SessionStore.approve`."""
        with self._lock:
            state = self._sessions.setdefault(session_id, _State())
            key = (approval.action, approval.resource, approval.arguments)
            if key not in state.approvals:
                state.approvals[key] = approval
                state.version += 1

    def revoke(self, session_id: str, approval: Approval) -> bool:
        """See :meth:`SessionStore.revoke`."""
        with self._lock:
            state = self._sessions.get(session_id)
            key = (approval.action, approval.resource, approval.arguments)
            if state is None or key not in state.approvals:
                return False
            del state.approvals[key]
            state.version += 1
            return True

    def delete(self, session_id: str) -> None:
        """See :meth:`SessionStore.delete`."""
        with self._lock:
            self._sessions.pop(session_id, None)

    def __len__(self) -> int:
        return len(self._sessions)


# -- SQLite ---------------------------------------------------------------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
  session_id TEXT PRIMARY KEY,
  version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS calls (
  session_id TEXT NOT NULL,
  call_id TEXT NOT NULL,
  action TEXT NOT NULL,
  resource TEXT NOT NULL,
  at REAL NOT NULL,
  done INTEGER NOT NULL,
  lease_until REAL,
  seq INTEGER,
  sums TEXT NOT NULL,
  labels TEXT NOT NULL,
  PRIMARY KEY (session_id, call_id)
);
CREATE INDEX IF NOT EXISTS calls_window ON calls (session_id, done, at);
CREATE INDEX IF NOT EXISTS calls_seq ON calls (session_id, done, seq);
CREATE TABLE IF NOT EXISTS counts (
  session_id TEXT NOT NULL,
  action TEXT NOT NULL,
  n INTEGER NOT NULL,
  PRIMARY KEY (session_id, action)
);
CREATE TABLE IF NOT EXISTS totals (
  session_id TEXT NOT NULL,
  action TEXT NOT NULL,
  argument TEXT NOT NULL,
  value TEXT NOT NULL,
  PRIMARY KEY (session_id, action, argument)
);
CREATE TABLE IF NOT EXISTS labels (
  session_id TEXT NOT NULL,
  label TEXT NOT NULL,
  PRIMARY KEY (session_id, label)
);
CREATE TABLE IF NOT EXISTS approvals (
  session_id TEXT NOT NULL,
  action TEXT NOT NULL,
  resource TEXT NOT NULL,
  arguments TEXT NOT NULL,
  granted_by TEXT,
  seq INTEGER NOT NULL,
  PRIMARY KEY (session_id, action, resource, arguments)
);
"""


def _number_text(value: Number) -> str:
    return f"D{value}" if isinstance(value, _decimal.Decimal) else f"L{value}"


def _number(text: str) -> Number:
    return _decimal.Decimal(text[1:]) if text.startswith("D") else int(text[1:])


def _sums_text(sums: Mapping[str, Number]) -> str:
    return json.dumps({name: _number_text(value) for name, value in sorted(sums.items())})


def _sums(text: str) -> dict[str, Number]:
    return {name: _number(value) for name, value in json.loads(text).items()}


class SQLiteSessionStore:
    """Sessions in a SQLite file shared by the processes of an application.

    Uses WAL journaling and ``BEGIN IMMEDIATE`` write transactions with a busy
    timeout, so concurrent writers in several processes and threads serialize
    on the file instead of failing; every change is one transaction. Each
    thread (and each process after a fork) opens its own connection.

    Args:
        path: the database file (created with its tables when missing).
        timeout: seconds a writer waits for the lock before failing.

    Raises:
        ConfigurationError: the file cannot be opened as a SQLite database.

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "sessions.db"
        >>> store = SQLiteSessionStore(path)
        >>> store.add_labels("s1", ["pii"])
        >>> sorted(SQLiteSessionStore(path).load("s1", now=0.0, since=0.0, history=5).seen)
        ['pii']
    """

    def __init__(self, path: str | os.PathLike[str], *, timeout: float = 30.0) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self._local = threading.local()
        try:
            connection = self._connection()
            connection.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise ConfigurationError(f"session store {self.path}: {exc}") from exc

    def _connection(self) -> sqlite3.Connection:
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is not None and getattr(self._local, "pid", None) == os.getpid():
            return connection
        connection = sqlite3.connect(
            self.path, timeout=self.timeout, isolation_level=None, check_same_thread=True
        )
        connection.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA synchronous = NORMAL")
        self._local.connection = connection
        self._local.pid = os.getpid()
        return connection

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        connection = self._connection()
        connection.execute("BEGIN IMMEDIATE")
        try:
            yield connection
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        connection = self._connection()
        connection.execute("BEGIN")
        try:
            yield connection
        finally:
            connection.execute("COMMIT")

    @staticmethod
    def _version(connection: sqlite3.Connection, session_id: str) -> int:
        row = connection.execute(
            "SELECT version FROM sessions WHERE session_id = ?", (session_id,)).fetchone()
        return int(row[0]) if row else 0

    @staticmethod
    def _bump(connection: sqlite3.Connection, session_id: str) -> int:
        connection.execute(
            "INSERT INTO sessions (session_id, version) VALUES (?, 1) "
            "ON CONFLICT (session_id) DO UPDATE SET version = version + 1", (session_id,))
        return SQLiteSessionStore._version(connection, session_id)

    def load(self, session_id: str, *, now: float, since: float, history: int) -> SessionSnapshot:
        """See :meth:`SessionStore.load`."""
        with self._read() as db:
            version = self._version(db, session_id)
            if version == 0:
                return SessionSnapshot(session_id)
            seen = frozenset(row[0] for row in db.execute(
                "SELECT label FROM labels WHERE session_id = ?", (session_id,)))
            calls = {row[0]: int(row[1]) for row in db.execute(
                "SELECT action, n FROM counts WHERE session_id = ?", (session_id,))}
            window = {row[0]: int(row[1]) for row in db.execute(
                "SELECT action, COUNT(*) FROM calls WHERE session_id = ? AND done = 1 AND at >= ? "
                "GROUP BY action", (session_id, since))}
            totals: dict[str, dict[str, Number]] = {}
            for action, argument, value in db.execute(
                    "SELECT action, argument, value FROM totals WHERE session_id = ?", (session_id,)):
                totals.setdefault(action, {})[argument] = _number(value)
            last = [self._record(row) for row in db.execute(
                "SELECT call_id, action, resource, at, sums, labels FROM calls "
                "WHERE session_id = ? AND done = 1 ORDER BY seq DESC LIMIT ?", (session_id, history))]
            pending = tuple(self._record(row) for row in db.execute(
                "SELECT call_id, action, resource, at, sums, labels FROM calls "
                "WHERE session_id = ? AND done = 0 AND lease_until > ? ORDER BY at", (session_id, now)))
            approvals = tuple(
                Approval(action, resource or None, arguments, granted_by)
                for action, resource, arguments, granted_by in db.execute(
                    "SELECT action, resource, arguments, granted_by FROM approvals "
                    "WHERE session_id = ? ORDER BY seq", (session_id,)))
        return SessionSnapshot(
            session_id=session_id, version=version, seen=seen, calls=calls, window_calls=window,
            totals=totals, history=tuple(reversed(last)), pending=pending, approvals=approvals,
        )

    @staticmethod
    def _record(row: tuple[Any, ...]) -> CallRecord:
        call_id, action, resource, at, sums, labels = row
        return CallRecord(call_id, action, resource, float(at), _sums(sums),
                          frozenset(json.loads(labels)))

    def admit(self, session_id: str, call: CallRecord, *, version: int,
              lease_until: float) -> Admission:
        """See :meth:`SessionStore.admit`."""
        with self._write() as db:
            row = db.execute("SELECT done FROM calls WHERE session_id = ? AND call_id = ?",
                             (session_id, call.call_id)).fetchone()
            if row is not None and row[0]:
                return "completed"
            if self._version(db, session_id) != version:
                return "changed"
            db.execute(
                "INSERT OR REPLACE INTO calls (session_id, call_id, action, resource, at, done, "
                "lease_until, seq, sums, labels) VALUES (?, ?, ?, ?, ?, 0, ?, NULL, ?, ?)",
                (session_id, call.call_id, call.action, call.resource, call.at, lease_until,
                 _sums_text(call.sums), json.dumps(sorted(call.labels))))
            self._bump(db, session_id)
            return "admitted"

    def complete(self, session_id: str, call_id: str, *, now: float) -> bool:
        """See :meth:`SessionStore.complete`."""
        with self._write() as db:
            row = db.execute(
                "SELECT action, done, sums, labels FROM calls WHERE session_id = ? AND call_id = ?",
                (session_id, call_id)).fetchone()
            if row is None or row[1]:
                return False
            action, _, sums_text, labels_text = row
            seq = self._bump(db, session_id)
            db.execute("UPDATE calls SET done = 1, at = ?, lease_until = NULL, seq = ? "
                       "WHERE session_id = ? AND call_id = ?", (now, seq, session_id, call_id))
            db.execute(
                "INSERT INTO counts (session_id, action, n) VALUES (?, ?, 1) "
                "ON CONFLICT (session_id, action) DO UPDATE SET n = n + 1", (session_id, action))
            for argument, value in _sums(sums_text).items():
                found = db.execute(
                    "SELECT value FROM totals WHERE session_id = ? AND action = ? AND argument = ?",
                    (session_id, action, argument)).fetchone()
                total = (_number(found[0]) if found else 0) + value
                db.execute(
                    "INSERT OR REPLACE INTO totals (session_id, action, argument, value) "
                    "VALUES (?, ?, ?, ?)", (session_id, action, argument, _number_text(total)))
            db.executemany("INSERT OR IGNORE INTO labels (session_id, label) VALUES (?, ?)",
                           [(session_id, label) for label in json.loads(labels_text)])
            return True

    def release(self, session_id: str, call_id: str) -> None:
        """See :meth:`SessionStore.release`."""
        with self._write() as db:
            gone = db.execute("DELETE FROM calls WHERE session_id = ? AND call_id = ? AND done = 0",
                              (session_id, call_id)).rowcount
            if gone:
                self._bump(db, session_id)

    def add_labels(self, session_id: str, labels: Iterable[str]) -> None:
        """See :meth:`SessionStore.add_labels`."""
        rows = [(session_id, label) for label in sorted(set(labels))]
        if not rows:
            return
        with self._write() as db:
            before = db.total_changes
            db.executemany("INSERT OR IGNORE INTO labels (session_id, label) VALUES (?, ?)", rows)
            if db.total_changes != before:
                self._bump(db, session_id)

    def approve(self, session_id: str, approval: Approval) -> None:
        """See :meth:`SessionStore.approve`."""
        with self._write() as db:
            seq = self._version(db, session_id) + 1
            inserted = db.execute(
                "INSERT OR IGNORE INTO approvals (session_id, action, resource, arguments, "
                "granted_by, seq) VALUES (?, ?, ?, ?, ?, ?)",
                (session_id, approval.action, approval.resource or "", approval.arguments,
                 approval.granted_by, seq)).rowcount
            if inserted:
                self._bump(db, session_id)

    def revoke(self, session_id: str, approval: Approval) -> bool:
        """See :meth:`SessionStore.revoke`."""
        with self._write() as db:
            gone = db.execute(
                "DELETE FROM approvals WHERE session_id = ? AND action = ? AND resource = ? "
                "AND arguments = ?",
                (session_id, approval.action, approval.resource or "", approval.arguments)).rowcount
            if gone:
                self._bump(db, session_id)
            return bool(gone)

    def delete(self, session_id: str) -> None:
        """See :meth:`SessionStore.delete`."""
        with self._write() as db:
            for table in ("sessions", "calls", "counts", "totals", "labels", "approvals"):
                db.execute(f"DELETE FROM {table} WHERE session_id = ?", (session_id,))

    def close(self) -> None:
        """Close this thread's connection (others close when their thread ends)."""
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None
