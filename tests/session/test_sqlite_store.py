"""Session stores: the protocol on every store, and the SQLite store across threads and processes.

The DynamoDB store runs the same contract against a local server; its own behaviour (pages, time to
live, failures, a fleet of processes) is in test_dynamodb_store.py.
"""

from __future__ import annotations

import decimal
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest

import agentauthz as az
from agentauthz.session import (
    Approval,
    CallRecord,
    DynamoDBSessionStore,
    MemorySessionStore,
    SessionConfig,
    SessionStore,
    SQLiteSessionStore,
)

ROOT = Path(__file__).resolve().parents[2]
ALICE = az.EntityUID("User", "alice")
OWNER = str(ALICE)

RULES = """
@id("all") permit(principal, action, resource);
@id("refund-cap") forbid(principal, action == Action::"refund", resource)
when { context has session && context.input.amount > 50 - context.session.totals.refund.amount };
"""


@pytest.fixture(params=["memory", "sqlite", "dynamodb"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[SessionStore]:
    if request.param == "memory":
        yield MemorySessionStore()
    elif request.param == "dynamodb":
        # a small page size, so the contract also runs across pages of completed calls
        yield DynamoDBSessionStore(request.getfixturevalue("dynamodb_table"),
                                   client=request.getfixturevalue("dynamodb_client"), page_size=2)
    else:
        sqlite_store = SQLiteSessionStore(tmp_path / "sessions.db")
        yield sqlite_store
        sqlite_store.close()


def load(store: SessionStore, session_id: str = "s", *, since: float = 0.0,
         history: int = 10) -> az.session.SessionSnapshot:
    return store.load(session_id, since=since, history=history)


def call(call_id: str, action: str = "ping", at: float = 10.0, external_id: str | None = None,
         **sums: int | decimal.Decimal) -> CallRecord:
    return CallRecord(call_id, action, 'Tool::"x"', at, sums, external_id=external_id)


# -- the protocol, on every store --------------------------------------------------------------


def test_an_unknown_session_is_empty_at_version_zero(store: SessionStore) -> None:
    snapshot = load(store, "nobody")
    assert snapshot.version == 0 and snapshot.calls == {} and snapshot.seen == frozenset()
    assert isinstance(store, SessionStore)


def test_admit_is_a_compare_and_swap_on_the_version(store: SessionStore) -> None:
    assert store.admit("s", call("c1"), owner=OWNER, version=0) == "admitted"
    assert store.admit("s", call("c2"), owner=OWNER, version=0) == "changed"
    version = load(store).version
    assert store.admit("s", call("c2"), owner=OWNER, version=version) == "admitted"
    assert [p.call_id for p in load(store).pending] == ["c1", "c2"]
    assert load(store).calls == {}


def test_complete_counts_once_and_release_drops(store: SessionStore) -> None:
    store.admit("s", call("c1", amount=5), owner=OWNER, version=0)
    assert store.complete("s", "c1", now=20.0) is True
    assert store.complete("s", "c1", now=21.0) is False
    assert store.complete("s", "never-admitted", now=21.0) is False
    version = load(store).version
    assert store.admit("s", call("c1"), owner=OWNER, version=version) == "completed"
    store.admit("s", call("c2", amount=7), owner=OWNER, version=version)
    store.release("s", "c2")
    store.release("s", "c2")
    snapshot = load(store)
    assert snapshot.calls == {"ping": 1}
    assert snapshot.totals == {"ping": {"amount": 5}}
    assert snapshot.pending == ()
    assert [c.call_id for c in snapshot.history] == ["c1"] and snapshot.history[0].at == 20.0


def test_an_in_flight_call_stays_in_flight_until_it_is_settled(store: SessionStore) -> None:
    store.admit("s", call("c1"), owner=OWNER, version=0)
    assert [p.call_id for p in load(store).pending] == ["c1"]  # no lease: it counts until settled
    assert store.complete("s", "c1", now=1e12) is True  # a slow call still completes
    assert load(store).calls == {"ping": 1} and load(store).pending == ()


def test_an_external_id_is_admitted_once_in_flight_or_completed(store: SessionStore) -> None:
    assert store.admit("s", call("k1", external_id="tc"), owner=OWNER, version=0) == "admitted"
    version = load(store).version
    assert store.admit("s", call("k2", external_id="tc"), owner=OWNER, version=version) == "in_flight"
    assert store.admit("s", call("k1"), owner=OWNER, version=version) == "in_flight"  # a key is never reused
    store.complete("s", "k1", now=20.0)
    version = load(store).version
    assert store.admit("s", call("k3", external_id="tc"), owner=OWNER, version=version) == "completed"
    assert store.admit("s", call("k4", external_id="other"), owner=OWNER, version=version) == "admitted"
    store.release("s", "k4")
    version = load(store).version
    assert store.admit("s", call("k5", external_id="other"), owner=OWNER, version=version) == "admitted"
    assert [(c.call_id, c.external_id) for c in load(store).pending] == [("k5", "other")]


def test_a_session_belongs_to_the_owner_of_its_first_write(store: SessionStore) -> None:
    mallory = 'User::"mallory"'
    store.add_labels("s", ["x"], owner=OWNER)
    assert load(store).owner == OWNER
    with pytest.raises(az.IdentityError, match="another end user"):
        store.add_labels("s", ["y"], owner=mallory)
    with pytest.raises(az.IdentityError):
        store.admit("s", call("c1"), owner=mallory, version=load(store).version)
    with pytest.raises(az.IdentityError):
        store.approve("s", Approval(mallory, "pay", 'Tool::"pay"', "{}"))
    with pytest.raises(az.IdentityError):
        store.revoke("s", Approval(mallory, "pay", 'Tool::"pay"', "{}"))
    snapshot = load(store)
    assert snapshot.seen == frozenset({"x"}) and snapshot.pending == () and snapshot.approvals == ()
    store.delete("s")
    store.add_labels("s", ["y"], owner=mallory)  # a deleted session is anyone's to start again
    assert load(store).owner == mallory


def test_window_history_and_totals(store: SessionStore) -> None:
    for index in range(5):
        version = load(store).version
        store.admit("s", call(f"c{index}", "a" if index % 2 else "b", amount=index,
                              fee=decimal.Decimal("0.25")), owner=OWNER, version=version)
        store.complete("s", f"c{index}", now=float(10 * index))
    snapshot = load(store, since=20.0, history=3)
    assert snapshot.calls == {"b": 3, "a": 2}
    assert snapshot.window_calls == {"b": 2, "a": 1}  # completed at 20, 30, 40
    assert [c.call_id for c in snapshot.history] == ["c2", "c3", "c4"]
    assert snapshot.totals == {"b": {"amount": 6, "fee": decimal.Decimal("0.75")},
                               "a": {"amount": 4, "fee": decimal.Decimal("0.50")}}
    assert load(store, history=0).history == ()


def test_labels_are_a_set_and_bump_the_version_only_when_new(store: SessionStore) -> None:
    store.add_labels("s", ["b", "a", "a"], owner=OWNER)
    version = load(store).version
    store.add_labels("s", ["a"], owner=OWNER)
    store.add_labels("s", [], owner=OWNER)
    assert load(store).version == version
    store.add_labels("s", ["c"], owner=OWNER)
    assert load(store).seen == frozenset({"a", "b", "c"}) and load(store).version == version + 1


def test_labels_recorded_by_a_completed_read(store: SessionStore) -> None:
    record = CallRecord("r1", "read_doc", 'Doc::"q3"', 1.0, {}, frozenset({"confidential"}))
    store.admit("s", record, owner=OWNER, version=0)
    assert load(store).seen == frozenset()
    store.complete("s", "r1", now=2.0)
    assert load(store).seen == frozenset({"confidential"})


def test_approvals_are_kept_in_order_deduplicated_and_revocable(store: SessionStore) -> None:
    first = Approval(OWNER, "pay", 'Order::"o-1"', '{"order":"o-1"}', "ann")
    second = Approval(OWNER, "refund", 'Tool::"refund"', "{}")
    store.approve("s", first)
    store.approve("s", second)
    store.approve("s", Approval(OWNER, "pay", 'Order::"o-1"', '{"order":"o-1"}', "bob"))  # same grant
    assert [a.action for a in load(store).approvals] == ["pay", "refund"]
    assert load(store).approvals[0].granted_by == "ann"
    assert store.revoke("s", second) is True and store.revoke("s", second) is False
    assert load(store).approvals == (first,)


def test_sessions_are_separate_and_deletable(store: SessionStore) -> None:
    store.add_labels("a", ["x"], owner=OWNER)
    store.admit("b", call("c1"), owner=OWNER, version=0)
    store.complete("b", "c1", now=1.0)
    assert load(store, "a").calls == {} and load(store, "b").seen == frozenset()
    store.delete("b")
    assert load(store, "b").version == 0 and load(store, "a").seen == frozenset({"x"})


# -- SQLite specifics ---------------------------------------------------------------------------


def test_sqlite_uses_wal_and_a_busy_timeout(tmp_path: Path) -> None:
    store = SQLiteSessionStore(tmp_path / "s.db", timeout=7.5)
    store.add_labels("s", ["x"], owner=OWNER)
    connection = sqlite3.connect(tmp_path / "s.db")
    assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    connection.close()
    assert store._connection().execute("PRAGMA busy_timeout").fetchone()[0] == 7500


def test_sqlite_sessions_persist_across_store_instances(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    first = SQLiteSessionStore(path)
    first.admit("s", call("c1", amount=3), owner=OWNER, version=0)
    first.complete("s", "c1", now=5.0)
    first.close()
    again = SQLiteSessionStore(path)
    assert load(again).totals == {"ping": {"amount": 3}}


def test_sqlite_rejects_a_file_that_is_no_database(tmp_path: Path) -> None:
    path = tmp_path / "not.db"
    path.write_bytes(b"this is not sqlite" * 100)
    path.chmod(0o600)
    with pytest.raises(az.ConfigurationError, match="session store"):
        SQLiteSessionStore(path)


def make_authz(path: Path, **config: object) -> tuple[az.Authorizer, Callable[..., str]]:
    authz = az.Authorizer.from_text(
        RULES, audit=[], sessions=SessionConfig(store=SQLiteSessionStore(path), **config))  # type: ignore[arg-type]

    @authz.guard(sum_arguments=["amount"])
    def refund(order: str, amount: int) -> str:
        return "ok"

    return authz, refund


def test_sqlite_counts_are_exact_under_threads(tmp_path: Path) -> None:
    authz, refund = make_authz(tmp_path / "s.db")
    outcomes: list[bool] = []
    lock = threading.Lock()

    def work(index: int) -> None:
        with authz.acting_as(ALICE), authz.session("threads"):
            try:
                refund(f"o{index}", 1)
                ok = True
            except az.AccessDenied:
                ok = False
            with lock:
                outcomes.append(ok)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(work, range(80)))
    assert outcomes.count(True) == 50  # the cap of 50 holds exactly under parallel calls
    with authz.acting_as(ALICE), authz.session("threads") as session:
        assert session.state().totals == {"refund": {"amount": 50}}
        assert session.state().calls == {"refund": 50}


WORKER = textwrap.dedent("""
    import os, sys
    sys.path.insert(0, {root!r})
    import agentauthz as az
    from agentauthz.session import SessionConfig, SQLiteSessionStore

    path, mode, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    authz = az.Authorizer.from_text({rules!r}, audit=[],
                                    sessions=SessionConfig(store=SQLiteSessionStore(path)))

    @authz.guard(sum_arguments=["amount"])
    def refund(order: str, amount: int) -> str:
        return "ok"

    @authz.guard
    def ping(host: str) -> str:
        return "pong"

    allowed = 0
    with authz.acting_as(az.EntityUID("User", "alice")), authz.session("shared"):
        if mode == "crash":
            call = authz.begin_tool_call("refund", {{"order": "o-1", "amount": 7}}, call_id="tc-crash")
            assert call.admits
            print("decided", flush=True)
            os._exit(3)  # dies between the decision and the completion
        for index in range(count):
            if mode == "ping":
                ping(f"h{{index}}")
                allowed += 1
                continue
            try:
                refund(f"o{{os.getpid()}}-{{index}}", 1)
                allowed += 1
            except az.AccessDenied:
                pass
    print(allowed)
""")


def run_workers(path: Path, mode: str, count: int, processes: int = 2) -> list[str]:
    code = WORKER.format(root=str(ROOT), rules=RULES)
    children = [
        subprocess.Popen([sys.executable, "-c", code, str(path), mode, str(count)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(processes)
    ]
    outputs = []
    for child in children:
        out, err = child.communicate(timeout=120)
        outputs.append(out.strip() + ("" if child.returncode in (0, 3) else f" [{err}]"))
    return outputs


def test_sqlite_counts_are_exact_across_two_processes(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    SQLiteSessionStore(path).close()
    assert run_workers(path, "ping", 60) == ["60", "60"]
    snapshot = load(SQLiteSessionStore(path), "shared", history=200)
    assert snapshot.calls == {"ping": 120}
    assert len({c.call_id for c in snapshot.history}) == 120


def test_a_limit_holds_exactly_across_two_processes(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    SQLiteSessionStore(path).close()
    allowed = run_workers(path, "refund", 40)
    assert sum(int(n) for n in allowed) == 50, allowed
    snapshot = load(SQLiteSessionStore(path), "shared")
    assert snapshot.totals == {"refund": {"amount": 50}}


def test_a_process_crashing_between_decision_and_completion_keeps_the_call_counted(
        tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    SQLiteSessionStore(path).close()
    assert run_workers(path, "crash", 1, processes=1) == ["decided"]
    store = SQLiteSessionStore(path)
    snapshot = store.load("shared", since=0.0, history=10)
    assert snapshot.calls == {} and snapshot.totals == {}
    assert [p.external_id for p in snapshot.pending] == ["tc-crash"]  # its outcome is unknown
    later = time.time() + timedelta(days=30).total_seconds()
    authz, _ = make_authz(path, clock=lambda: later)
    with authz.acting_as(ALICE), authz.session("shared") as session:
        assert session.facts().totals == {"refund": {"amount": 7}}  # it keeps counting...
        with authz.begin_tool_call("refund", {"order": "o-1", "amount": 7}, call_id="tc-crash") as retry:
            assert not retry.admits  # ...and its id does not run a second time
        with authz.begin_tool_call("refund", {"order": "o-2", "amount": 43}) as other:
            assert other.admits  # 7 + 43 <= 50
        with authz.begin_tool_call("refund", {"order": "o-3", "amount": 1}) as over:
            assert not over.admits
        assert session.facts().totals == {"refund": {"amount": 50}}


def test_sqlite_store_works_after_fork_in_a_child(tmp_path: Path) -> None:
    if not hasattr(os, "fork"):
        pytest.skip("no fork on this platform")
    store = SQLiteSessionStore(tmp_path / "s.db")
    store.add_labels("s", ["parent"], owner=OWNER)
    code = textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(ROOT)!r})
        from agentauthz.session import SQLiteSessionStore
        store = SQLiteSessionStore({str(tmp_path / "s.db")!r})
        store.add_labels("s", ["before"], owner='User::"alice"')
        pid = os.fork()
        if pid == 0:
            store.add_labels("s", ["child"], owner='User::"alice"')
            os._exit(0)
        os.waitpid(pid, 0)
        store.add_labels("s", ["after"], owner='User::"alice"')
    """)
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    assert load(store).seen == frozenset({"parent", "before", "child", "after"})
