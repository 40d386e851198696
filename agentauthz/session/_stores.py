"""Session storage: the protocol, the in-memory store and the SQLite store.

A store keeps, per session id, what :mod:`agentauthz.session._session` records: the
session's **owner** (the end user it belongs to), labels seen, completed calls
(counts, running sums, a timeline for the sliding window and the last actions),
calls in flight and approvals. Every change bumps the session's ``version``;
:meth:`SessionStore.admit` reserves a call only if the version is still the one
the decision was made on (compare-and-swap), so a decision is never based on
facts that changed under it.

Ownership: the first write to a session records its owner (Cedar text of the
principal uid); every later write names the owner it acts for, and the store
refuses one that differs with :class:`~agentauthz.IdentityError`, in the same
transaction as the write. Snapshots carry the owner so the session layer checks
it on every load: a store that records no owner can serve only empty sessions.

Calls are recorded in two steps: ``admit`` (after an allowed decision, before
the tool runs: the call is *in flight* and counts for every later decision, so
parallel calls cannot overrun a limit) and ``complete`` (after the tool
returned: it counts in the recorded state). ``release`` drops a call known not
to have run to its end (the tool raised or reported failure). An in-flight call
is never dropped by time: a call whose outcome is unknown (its process crashed,
its store failed while completing it) keeps counting.

Each admitted call has a key agentauthz generated (``call_id``: unique, never
reused) and, optionally, the id its caller gave it (``external_id``: the model's
tool call id, Lambda's request id). The external id is a label, never a key: at
most one call per external id is in flight or completed in a session, so a
repeated id is refused while its call is in flight (``"in_flight"``) and after it
completed (``"completed"``): replaying a finished call (a resumed agent run, a
model repeating a tool call id) neither runs uncounted nor counts twice.
"""

from __future__ import annotations

import decimal as _decimal
import json
import os
import sqlite3
import stat
import threading
import warnings
from collections.abc import Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from agentauthz._errors import ConfigurationError, IdentityError

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

Admission = Literal["admitted", "changed", "completed", "in_flight"]
"""What :meth:`SessionStore.admit` did: put the call in flight; nothing, because the
session changed since the decision; nothing, because a call with this external id
completed, or is in flight, in the session."""

FOREIGN_SESSION = "the session belongs to another end user"
"""Why a store refuses a write, and the session layer a load, for another owner."""


def foreign_session(session_id: str) -> IdentityError:
    """The error for a session used by an end user who does not own it (the owner is not named)."""
    return IdentityError(f"session {session_id!r}: {FOREIGN_SESSION}")


@dataclass(frozen=True)
class CallRecord:
    """One tool call of a session.

    Attributes:
        call_id: the key agentauthz generated when it admitted the call: unique,
            never reused, never taken from the caller.
        action: the action name (``"issue_refund"``).
        resource: Cedar text of the resource uid (``Tool::"issue_refund"``).
        at: seconds since the epoch: admission time while in flight,
            completion time once completed.
        sums: the call's summed arguments (``{"amount": 120}``).
        labels: labels the call's completion adds to ``seen`` (a read tool).
        external_id: the id the caller gave the call (the model's tool call id,
            Lambda's request id), if any: at most one call per external id runs
            in a session.
        approval: the key of the single-use approval the call uses up, if any:
            admitting the call removes it in the same transaction.
    """

    call_id: str
    action: str
    resource: str
    at: float
    sums: Mapping[str, Number] = field(default_factory=dict)
    labels: frozenset[str] = frozenset()
    external_id: str | None = None
    approval: tuple[str, str, str] | None = None


@dataclass(frozen=True)
class Approval:
    """An approval granted in a session (see :meth:`agentauthz.session._session.Session.approve`).

    It covers exactly one kind of call: its principal's, of its action, on its
    resource, with exactly its arguments.

    Attributes:
        principal: Cedar text of the end user it was granted for (the session's owner).
        action: the action name, or the Cedar text of a namespaced action uid.
        resource: Cedar text of the resource uid.
        arguments: canonical JSON of the complete tool arguments (``context.input``).
        granted_by: who approved (for the application's own records).
        expires_at: seconds since the epoch after which it covers nothing; None: never.
        once: it covers one call: admitting that call removes it (in the same
            store transaction, so two calls racing for it never both run).
            A single-use approval covers only calls admitted in its session,
            never a bare decision or a retrieval filter.
    """

    principal: str
    action: str
    resource: str
    arguments: str
    granted_by: str | None = None
    expires_at: float | None = None
    once: bool = False

    def live(self, now: float) -> bool:
        """Whether it has not expired at ``now``."""
        return self.expires_at is None or now < self.expires_at

    @property
    def key(self) -> tuple[str, str, str]:
        """What identifies the grant within its session (its owner's)."""
        return self.action, self.resource, self.arguments


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
        pending: calls in flight (admitted, neither completed nor released).
        approvals: approvals granted, in grant order.
        owner: Cedar text of the end user the session belongs to; None for a
            session with no record yet (or one stored before owners were recorded).
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
    owner: str | None = field(default=None, kw_only=True)


@runtime_checkable
class SessionStore(Protocol):
    """Where sessions live. Implementations must be safe for concurrent use.

    Implementations: :class:`MemorySessionStore` (one process),
    :class:`SQLiteSessionStore` (processes sharing a file) and
    :class:`~agentauthz.session.DynamoDBSessionStore` (a fleet). A store that sets
    ``consumes_approvals = True`` removes a call's single-use approval
    (``CallRecord.approval``) in the transaction that admits it; on a store
    without it, single-use approvals cover nothing (a held call stays held,
    never runs twice). A store records
    each session's owner with its first write and refuses, with
    :class:`~agentauthz.IdentityError` and atomically with the write, every
    write for another owner; ``load`` returns the owner it recorded.
    """

    def load(self, session_id: str, *, since: float, history: int) -> SessionSnapshot:
        """A consistent snapshot, owner included; ``since`` starts the window."""
        ...

    def admit(self, session_id: str, call: CallRecord, *, owner: str, version: int) -> Admission:
        """Put a call in flight if the session is still at ``version``.

        Returns ``"admitted"`` when the call is in flight; ``"changed"`` when
        the session changed and the decision must be made again;
        ``"completed"`` or ``"in_flight"`` when a call with the same
        ``external_id`` completed or is in flight (it must not run).

        Raises:
            IdentityError: the session belongs to another owner (or records none).
        """
        ...

    def complete(self, session_id: str, call_id: str, *, now: float) -> bool:
        """Count an in-flight call as completed. True if this call counted it (idempotent)."""
        ...

    def release(self, session_id: str, call_id: str) -> None:
        """Drop an in-flight call known not to have run to its end: it never counts."""
        ...

    def add_labels(self, session_id: str, labels: Iterable[str], *, owner: str) -> None:
        """Add labels to the session's ``seen`` set.

        Raises:
            IdentityError: the session belongs to another owner (or records none).
        """
        ...

    def approve(self, session_id: str, approval: Approval) -> None:
        """Record an approval for its principal, the session's owner (idempotent).

        Granting the same call again with another expiry or use replaces the earlier grant.

        Raises:
            IdentityError: the session belongs to another owner (or records none).
        """
        ...

    def revoke(self, session_id: str, approval: Approval) -> bool:
        """Remove an approval; True if it was there.

        Raises:
            IdentityError: the session belongs to another owner (or records none).
        """
        ...

    def delete(self, session_id: str) -> None:
        """Forget a session entirely (its owner too)."""
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
    owner: str
    version: int = 0
    seen: set[str] = field(default_factory=set)
    calls: dict[str, int] = field(default_factory=dict)
    totals: dict[str, dict[str, Number]] = field(default_factory=dict)
    done: dict[str, CallRecord] = field(default_factory=dict)  # completed, in completion order
    finished: set[str] = field(default_factory=set)  # external ids of completed calls
    pending: dict[str, CallRecord] = field(default_factory=dict)
    approvals: dict[tuple[str, str, str], Approval] = field(default_factory=dict)
    provenance: dict[str, set[str]] = field(default_factory=dict)  # key -> labels (session._provenance)


class MemorySessionStore:
    """Sessions in this process's memory (the default). Thread-safe.

    Sessions are kept until :meth:`delete`: end a conversation's session when
    the conversation ends.

    Example:
        >>> store = MemorySessionStore()
        >>> store.add_labels("s1", ["confidential"], owner='User::"alice"')
        >>> snapshot = store.load("s1", since=0.0, history=10)
        >>> sorted(snapshot.seen), snapshot.owner
        (['confidential'], 'User::"alice"')
    """

    consumes_approvals = True
    """Admitting a call removes the single-use approval it uses (see :class:`SessionStore`)."""

    def __init__(self) -> None:
        self._sessions: dict[str, _State] = {}
        self._lock = threading.Lock()

    def _owned(self, session_id: str, owner: str) -> _State:
        """The session's state, created for ``owner``; the caller holds the lock."""
        state = self._sessions.get(session_id)
        if state is None:
            state = self._sessions[session_id] = _State(owner)
        elif state.owner != owner:
            raise foreign_session(session_id)
        return state

    def load(self, session_id: str, *, since: float, history: int) -> SessionSnapshot:
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
                owner=state.owner,
                seen=frozenset(state.seen),
                calls=dict(state.calls),
                window_calls=window,
                totals={action: dict(sums) for action, sums in state.totals.items()},
                history=tuple(reversed(last)),
                pending=tuple(state.pending.values()),
                approvals=tuple(state.approvals.values()),
            )

    def admit(self, session_id: str, call: CallRecord, *, owner: str, version: int) -> Admission:
        """See :meth:`SessionStore.admit`."""
        with self._lock:
            state = self._owned(session_id, owner)
            if call.call_id in state.done or call.external_id in state.finished:
                return "completed"
            if call.call_id in state.pending or (call.external_id is not None and any(
                    other.external_id == call.external_id for other in state.pending.values())):
                return "in_flight"
            if state.version != version:
                return "changed"
            if call.approval is not None:
                used = state.approvals.get(call.approval)
                if used is None or not used.once:
                    return "changed"  # used up by another call: decide again without it
                del state.approvals[call.approval]
            state.pending[call.call_id] = call
            state.version += 1
            return "admitted"

    def complete(self, session_id: str, call_id: str, *, now: float) -> bool:
        """See :meth:`SessionStore.complete`."""
        with self._lock:
            state = self._sessions.get(session_id)
            if state is None or call_id not in state.pending:
                return False
            call = state.pending.pop(call_id)
            done = CallRecord(call.call_id, call.action, call.resource, now, call.sums, call.labels,
                              call.external_id)
            state.done[call_id] = done
            if call.external_id is not None:
                state.finished.add(call.external_id)
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

    def add_labels(self, session_id: str, labels: Iterable[str], *, owner: str) -> None:
        """See :meth:`SessionStore.add_labels`."""
        fresh = set(labels)
        with self._lock:
            state = self._owned(session_id, owner)
            if not fresh <= state.seen:
                state.seen.update(fresh)
                state.version += 1

    def approve(self, session_id: str, approval: Approval) -> None:
        """See :meth:`SessionStore.approve`."""
        with self._lock:
            state = self._owned(session_id, approval.principal)
            known = state.approvals.get(approval.key)
            if known is None or (known.expires_at, known.once) != (approval.expires_at, approval.once):
                state.approvals[approval.key] = approval
                state.version += 1

    def revoke(self, session_id: str, approval: Approval) -> bool:
        """See :meth:`SessionStore.revoke`."""
        with self._lock:
            state = self._sessions.get(session_id)
            if state is None:
                return False
            if state.owner != approval.principal:
                raise foreign_session(session_id)
            if state.approvals.pop(approval.key, None) is None:
                return False
            state.version += 1
            return True

    def add_provenance(self, session_id: str, keys: Mapping[str, Iterable[str]], *, owner: str) -> None:
        """See :meth:`~agentauthz.session.ProvenanceStore.add_provenance`."""
        with self._lock:
            state = self._owned(session_id, owner)
            changed = False
            for key, labels in keys.items():
                known = state.provenance.setdefault(key, set())
                fresh = set(labels) - known
                if fresh:
                    known.update(fresh)
                    changed = True
            if changed:
                state.version += 1

    def provenance(self, session_id: str, keys: Collection[str]) -> dict[str, frozenset[str]]:
        """See :meth:`~agentauthz.session.ProvenanceStore.provenance`."""
        with self._lock:
            state = self._sessions.get(session_id)
            if state is None:
                return {}
            registered = state.provenance
            return {key: frozenset(registered[key]) for key in keys if key in registered}

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
  version INTEGER NOT NULL,
  owner TEXT
);
CREATE TABLE IF NOT EXISTS calls (
  session_id TEXT NOT NULL,
  call_id TEXT NOT NULL,
  external_id TEXT,
  action TEXT NOT NULL,
  resource TEXT NOT NULL,
  at REAL NOT NULL,
  done INTEGER NOT NULL,
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
  principal TEXT,
  action TEXT NOT NULL,
  resource TEXT NOT NULL,
  arguments TEXT NOT NULL,
  granted_by TEXT,
  seq INTEGER NOT NULL,
  expires_at REAL,
  once INTEGER,
  PRIMARY KEY (session_id, action, resource, arguments)
)
"""

# Columns files written before owners and external ids were recorded lack. Their sessions keep
# no owner (refused until SQLiteSessionStore.assign_owner names one); their call ids were the
# callers' ids, so they become the external ids; their approvals name no principal and cover nothing
# (and never expire, nor are used up: approvals were lasting before single-use ones came).
_ADDED_COLUMNS = (("sessions", "owner", "TEXT"), ("calls", "external_id", "TEXT"),
                  ("approvals", "principal", "TEXT"), ("approvals", "expires_at", "REAL"),
                  ("approvals", "once", "INTEGER"))
_PROVENANCE_TABLE = """
CREATE TABLE IF NOT EXISTS provenance (
  session_id TEXT NOT NULL,
  key TEXT NOT NULL,
  label TEXT NOT NULL,
  PRIMARY KEY (session_id, key, label)
)"""
_INDEXES = "CREATE INDEX IF NOT EXISTS calls_external ON calls (session_id, external_id)"

_PRIVATE = 0o600


def _create_private(path: Path) -> None:
    """Create the database file 0600 before SQLite opens it, or warn when an existing one is shared.

    SQLite gives the ``-wal`` and ``-shm`` files it creates the database file's mode,
    so they are private too. The mode is set explicitly: the umask does not matter.
    """
    try:
        descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0),
                             _PRIVATE)
    except FileExistsError:
        _warn_if_shared(path)
        return
    try:
        if hasattr(os, "fchmod"):
            os.fchmod(descriptor, _PRIVATE)
    finally:
        os.close(descriptor)


def _warn_if_shared(path: Path) -> None:
    for candidate in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
        try:
            mode = stat.S_IMODE(candidate.stat().st_mode)
        except OSError:
            continue
        if os.name == "posix" and mode & 0o077:
            warnings.warn(
                f"session store file {candidate} is accessible by other users (mode {mode:04o}): "
                "sessions hold what agents did, saw and were approved to do; chmod 600 it",
                stacklevel=4)


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

    The file is created readable and writable by its owner only (0600, whatever
    the umask; SQLite gives its ``-wal`` and ``-shm`` files the same mode); an
    existing file others can access draws a warning.

    Files written by agentauthz versions that recorded no session owners are
    upgraded in place; their sessions are refused (IdentityError) until
    :meth:`assign_owner` names the end user each belongs to, and their
    approvals cover nothing.

    Args:
        path: the database file (created with its tables when missing).
        timeout: seconds a writer waits for the lock before failing.

    Raises:
        ConfigurationError: the file cannot be opened as a SQLite database.

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "sessions.db"
        >>> store = SQLiteSessionStore(path)
        >>> store.add_labels("s1", ["pii"], owner='User::"alice"')
        >>> sorted(SQLiteSessionStore(path).load("s1", since=0.0, history=5).seen)
        ['pii']
        >>> oct(path.stat().st_mode & 0o777)
        '0o600'
    """

    consumes_approvals = True
    """Admitting a call removes the single-use approval it uses (see :class:`SessionStore`)."""

    def __init__(self, path: str | os.PathLike[str], *, timeout: float = 30.0) -> None:
        self.path = Path(path)
        self.timeout = timeout
        self._local = threading.local()
        try:
            _create_private(self.path)
            with self._write() as db:
                for statement in _SCHEMA.split(";"):
                    db.execute(statement)
                for table, column, kind in _ADDED_COLUMNS:
                    if column not in {row[1] for row in db.execute(f"PRAGMA table_info({table})")}:
                        db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
                        if column == "external_id":
                            db.execute("UPDATE calls SET external_id = call_id")
                db.execute(_INDEXES)
                db.execute(_PROVENANCE_TABLE)
        except (sqlite3.Error, OSError) as exc:
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
    def _own(connection: sqlite3.Connection, session_id: str, owner: str) -> None:
        """Refuse a write for another owner than the recorded one (or for a session that records none)."""
        row = connection.execute(
            "SELECT owner FROM sessions WHERE session_id = ?", (session_id,)).fetchone()
        if row is not None and row[0] != owner:
            raise foreign_session(session_id)

    @staticmethod
    def _bump(connection: sqlite3.Connection, session_id: str, owner: str | None = None) -> int:
        """Bump the version; a write that creates the session records ``owner`` (checked by ``_own``)."""
        connection.execute(
            "INSERT INTO sessions (session_id, version, owner) VALUES (?, 1, ?) "
            "ON CONFLICT (session_id) DO UPDATE SET version = version + 1", (session_id, owner))
        return SQLiteSessionStore._version(connection, session_id)

    def load(self, session_id: str, *, since: float, history: int) -> SessionSnapshot:
        """See :meth:`SessionStore.load`."""
        with self._read() as db:
            row = db.execute("SELECT version, owner FROM sessions WHERE session_id = ?",
                             (session_id,)).fetchone()
            if row is None:
                return SessionSnapshot(session_id)
            version, owner = int(row[0]), row[1]
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
                "SELECT call_id, action, resource, at, sums, labels, external_id FROM calls "
                "WHERE session_id = ? AND done = 1 ORDER BY seq DESC LIMIT ?", (session_id, history))]
            pending = tuple(self._record(row) for row in db.execute(
                "SELECT call_id, action, resource, at, sums, labels, external_id FROM calls "
                "WHERE session_id = ? AND done = 0 ORDER BY at", (session_id,)))
            approvals = tuple(
                Approval(principal, action, resource, arguments, granted_by,
                         None if expires_at is None else float(expires_at), bool(once))
                for principal, action, resource, arguments, granted_by, expires_at, once in db.execute(
                    "SELECT principal, action, resource, arguments, granted_by, expires_at, once "
                    "FROM approvals WHERE session_id = ? AND principal IS NOT NULL ORDER BY seq",
                    (session_id,)))
        return SessionSnapshot(
            session_id=session_id, version=version, owner=owner, seen=seen, calls=calls,
            window_calls=window, totals=totals, history=tuple(reversed(last)), pending=pending,
            approvals=approvals,
        )

    @staticmethod
    def _record(row: tuple[Any, ...]) -> CallRecord:
        call_id, action, resource, at, sums, labels, external_id = row
        return CallRecord(call_id, action, resource, float(at), _sums(sums),
                          frozenset(json.loads(labels)), external_id)

    def admit(self, session_id: str, call: CallRecord, *, owner: str, version: int) -> Admission:
        """See :meth:`SessionStore.admit`."""
        with self._write() as db:
            self._own(db, session_id, owner)
            done = [row[0] for row in db.execute(
                "SELECT done FROM calls WHERE session_id = ? AND (call_id = ? OR external_id = ?)",
                (session_id, call.call_id, call.external_id))]
            if any(done):
                return "completed"
            if done:
                return "in_flight"
            if self._version(db, session_id) != version:
                return "changed"
            if call.approval is not None and not db.execute(
                    "DELETE FROM approvals WHERE session_id = ? AND principal = ? AND action = ? "
                    "AND resource = ? AND arguments = ? AND once = 1",
                    (session_id, owner, *call.approval)).rowcount:
                return "changed"  # used up by another call: decide again without it
            db.execute(
                "INSERT INTO calls (session_id, call_id, external_id, action, resource, at, done, seq, "
                "sums, labels) VALUES (?, ?, ?, ?, ?, ?, 0, NULL, ?, ?)",
                (session_id, call.call_id, call.external_id, call.action, call.resource, call.at,
                 _sums_text(call.sums), json.dumps(sorted(call.labels))))
            self._bump(db, session_id, owner)
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
            db.execute("UPDATE calls SET done = 1, at = ?, seq = ? WHERE session_id = ? AND call_id = ?",
                       (now, seq, session_id, call_id))
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

    def add_labels(self, session_id: str, labels: Iterable[str], *, owner: str) -> None:
        """See :meth:`SessionStore.add_labels`."""
        rows = [(session_id, label) for label in sorted(set(labels))]
        if not rows:
            return
        with self._write() as db:
            self._own(db, session_id, owner)
            before = db.total_changes
            db.executemany("INSERT OR IGNORE INTO labels (session_id, label) VALUES (?, ?)", rows)
            if db.total_changes != before:
                self._bump(db, session_id, owner)

    def approve(self, session_id: str, approval: Approval) -> None:
        """See :meth:`SessionStore.approve`."""
        with self._write() as db:
            self._own(db, session_id, approval.principal)
            seq = self._version(db, session_id) + 1
            inserted = db.execute(
                "INSERT INTO approvals (session_id, principal, action, resource, arguments, "
                "granted_by, seq, expires_at, once) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (session_id, action, resource, arguments) DO UPDATE SET "
                "granted_by = excluded.granted_by, expires_at = excluded.expires_at, once = excluded.once "
                "WHERE expires_at IS NOT excluded.expires_at OR once IS NOT excluded.once",
                (session_id, approval.principal, approval.action, approval.resource, approval.arguments,
                 approval.granted_by, seq, approval.expires_at, int(approval.once))).rowcount
            if inserted:
                self._bump(db, session_id, approval.principal)

    def revoke(self, session_id: str, approval: Approval) -> bool:
        """See :meth:`SessionStore.revoke`."""
        with self._write() as db:
            self._own(db, session_id, approval.principal)
            gone = db.execute(
                "DELETE FROM approvals WHERE session_id = ? AND principal = ? AND action = ? "
                "AND resource = ? AND arguments = ?",
                (session_id, approval.principal, approval.action, approval.resource,
                 approval.arguments)).rowcount
            if gone:
                self._bump(db, session_id)
            return bool(gone)

    def delete(self, session_id: str) -> None:
        """See :meth:`SessionStore.delete`."""
        with self._write() as db:
            for table in ("sessions", "calls", "counts", "totals", "labels", "approvals", "provenance"):
                db.execute(f"DELETE FROM {table} WHERE session_id = ?", (session_id,))

    def add_provenance(self, session_id: str, keys: Mapping[str, Iterable[str]], *, owner: str) -> None:
        """See :meth:`~agentauthz.session.ProvenanceStore.add_provenance`."""
        rows = sorted({(session_id, key, label) for key, labels in keys.items() for label in labels})
        if not rows:
            return
        with self._write() as db:
            self._own(db, session_id, owner)
            before = db.total_changes
            db.executemany("INSERT OR IGNORE INTO provenance (session_id, key, label) VALUES (?, ?, ?)", rows)
            if db.total_changes != before:
                self._bump(db, session_id, owner)

    def provenance(self, session_id: str, keys: Collection[str]) -> dict[str, frozenset[str]]:
        """See :meth:`~agentauthz.session.ProvenanceStore.provenance`."""
        wanted = sorted(set(keys))
        found: dict[str, set[str]] = {}
        with self._read() as db:
            for start in range(0, len(wanted), 500):  # SQLite bounds the parameters of one statement
                chunk = wanted[start:start + 500]
                marks = ", ".join("?" * len(chunk))
                for key, label in db.execute(
                        f"SELECT key, label FROM provenance WHERE session_id = ? AND key IN ({marks})",
                        (session_id, *chunk)):
                    found.setdefault(key, set()).add(label)
        return {key: frozenset(labels) for key, labels in found.items()}

    def assign_owner(self, session_id: str, owner: str) -> None:
        """Name the owner of a session stored before agentauthz recorded owners.

        Only the application knows whose conversation it was; agentauthz never
        guesses (a session without an owner is refused, never open to anyone).
        Approvals stored with it named no end user and stay void: grant them again.

        Args:
            session_id: the session.
            owner: Cedar text of the end user's uid (``str(EntityUID("User", "alice"))``).

        Raises:
            IdentityError: the session already belongs to another end user.
        """
        with self._write() as db:
            row = db.execute("SELECT owner FROM sessions WHERE session_id = ?", (session_id,)).fetchone()
            if row is not None and row[0] is not None and row[0] != owner:
                raise foreign_session(session_id)
            db.execute(
                "INSERT INTO sessions (session_id, version, owner) VALUES (?, 1, ?) "
                "ON CONFLICT (session_id) DO UPDATE SET owner = excluded.owner, version = version + 1",
                (session_id, owner))
            db.execute("DELETE FROM approvals WHERE session_id = ? AND principal IS NULL", (session_id,))

    def close(self) -> None:
        """Close this thread's connection (others close when their thread ends)."""
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None
