"""Session integrity: the security review's findings 3, 4, 8 and 10 (issue 14), and their classes.

* Finding 3: a tool call id is the caller's label, never the key of an admitted
  call; a repeated id never lets a second call run outside the limits.
* Finding 4: a session belongs to the end user who created it; an approval
  covers one exact call of that end user.
* Finding 8: a failing store denies a call before its tool runs, keeps a call
  counted after it ran, and every decision keeps exactly one audit event.
* Finding 10: the SQLite files are private to their owner.

The class test at the end (:class:`SessionMachine`) interleaves end users,
session ids, repeated call ids, approvals, crashes and store failures on the
memory and SQLite stores, and checks the invariants after every step.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import sqlite3
import stat
import threading
import uuid
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import agentauthz as az
from agentauthz.session import (
    Approval,
    DynamoDBSessionStore,
    MemorySessionStore,
    Session,
    SessionConfig,
    SessionSnapshot,
    SessionStore,
    SQLiteSessionStore,
    create_table,
)
from agentauthz.testing import LocalDynamoDB
from tests.security.support import FailingStore
from tests.strategies import (
    SESSION_AMOUNTS,
    SESSION_CALL_IDS,
    SESSION_IDS,
    SESSION_USERS,
)

ALICE = az.EntityUID("User", "alice")
MALLORY = az.EntityUID("User", "mallory")
REFUND_TOOL = az.EntityUID("Tool", "refund")

RULES = """
@id("all") permit(principal, action, resource);

@id("one-delete") forbid(principal, action == Action::"delete", resource)
when { context has session && context.session.calls.delete >= 1 };

@id("refund-needs-approval") forbid(principal, action == Action::"refund", resource)
when { context has session && context.input.amount > 100 && !context.session.approved };
"""


class Clock:
    def __init__(self) -> None:
        self.now = 2_000_000_000.0

    def __call__(self) -> float:
        return self.now


#: Builds a DynamoDB store on a new table, while a test of the "dynamodb" kind runs (set by ``kind``).
_DYNAMODB: list[Callable[[], SessionStore]] = []


def real_store(kind: str, path: Path, *, timeout: float = 30.0) -> SessionStore:
    if kind == "dynamodb":
        return _DYNAMODB[-1]()
    return MemorySessionStore() if kind == "memory" else SQLiteSessionStore(path / "s.db", timeout=timeout)


def make(store: SessionStore, *, clock: Clock | None = None,
         ran: list[str] | None = None) -> tuple[az.Authorizer, az.MemorySink, dict[str, Any]]:
    sink = az.MemorySink()
    authz = az.Authorizer.from_text(RULES, audit=[sink], sessions=SessionConfig(
        store=store, clock=clock or Clock()))
    ran = ran if ran is not None else []

    @authz.guard
    def delete(name: str) -> str:
        ran.append(name)
        return f"deleted {name}"

    @authz.guard(action="delete")
    async def adelete(name: str) -> str:
        await asyncio.sleep(0.001)
        ran.append(name)
        return f"deleted {name}"

    @authz.guard
    def refund(order: str, amount: int) -> str:
        ran.append(f"refund {amount}")
        return f"refunded {amount}"

    return authz, sink, {"delete": delete, "adelete": adelete, "refund": refund, "ran": ran}


@pytest.fixture(params=["memory", "sqlite", "dynamodb"])
def kind(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "dynamodb":
        _DYNAMODB.append(request.getfixturevalue("new_dynamodb_store"))
    yield str(request.param)
    if request.param == "dynamodb":
        _DYNAMODB.pop()


@contextmanager
def locked(path: Path) -> Iterator[sqlite3.Connection]:
    """Another connection holding the database's write lock ("database is locked" for writers)."""
    locker = sqlite3.connect(path, isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")
    try:
        yield locker
    finally:
        locker.execute("ROLLBACK")
        locker.close()


# -- finding 3: duplicate tool-call ids ---------------------------------------------------------


def _parallel_threads(work: Callable[[int], bool], count: int = 5) -> list[bool]:
    barrier = threading.Barrier(count)

    def one(index: int) -> bool:
        barrier.wait()
        return work(index)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(one, range(count)))


def test_parallel_calls_sharing_one_call_id_run_once_under_a_limit_in_threads(
        kind: str, tmp_path: Path) -> None:
    """The review's reproduction: five parallel calls sharing ``call_0`` under "at most 1 delete"."""
    authz, sink, tools = make(real_store(kind, tmp_path))

    def work(index: int) -> bool:
        with authz.acting_as(ALICE), authz.session("s"):
            call = authz.begin_tool_call("delete", {"name": f"d{index}"}, call_id="call_0")
            if not call.admits:
                return False
            with call:
                threading.Event().wait(0.02)  # the tool runs while the others are decided
                tools["ran"].append(f"d{index}")
            return True

    assert sum(_parallel_threads(work)) == 1
    assert len(tools["ran"]) == 1
    assert len(sink.events) == 5 and [e.decision for e in sink.events].count("allow") == 1


def test_a_call_id_runs_at_most_once_in_a_session_even_without_a_limit(kind: str, tmp_path: Path) -> None:
    authz, _, tools = make(real_store(kind, tmp_path))

    def work(index: int) -> bool:
        with authz.acting_as(ALICE), authz.session("s"):
            call = authz.begin_call(action="ping", resource=az.EntityUID("Tool", "ping"), call_id="call_0")
            if not call.admits:
                return False
            with call:
                threading.Event().wait(0.02)
            return True

    assert sum(_parallel_threads(work)) == 1
    with authz.acting_as(ALICE), authz.session("s") as session:
        again = authz.begin_call(action="ping", resource=az.EntityUID("Tool", "ping"), call_id="call_0")
        assert not again.admits and "already completed" in again.decision.errors[0]
        assert session.state().calls == {"ping": 1}
    assert tools["ran"] == []


def test_parallel_calls_sharing_one_call_id_run_once_under_asyncio(kind: str, tmp_path: Path) -> None:
    authz, sink, tools = make(real_store(kind, tmp_path))

    async def one(index: int) -> bool:
        call = await authz.abegin_tool_call("delete", {"name": f"d{index}"}, call_id="call_0")
        if not call.admits:
            return False
        with call:
            await asyncio.sleep(0.005)
            tools["ran"].append(f"d{index}")
        return True

    async def main() -> list[bool]:
        with authz.acting_as(ALICE), authz.session("s"):
            return list(await asyncio.gather(*(one(i) for i in range(5))))

    assert sum(asyncio.run(main())) == 1
    assert len(tools["ran"]) == 1 and len(sink.events) == 5


def test_a_guarded_tool_holds_its_limit_under_threads_and_asyncio(kind: str, tmp_path: Path) -> None:
    authz, _, tools = make(real_store(kind, tmp_path))

    def work(index: int) -> bool:
        with authz.acting_as(ALICE), authz.session("threads"):
            try:
                tools["delete"](f"t{index}")
                return True
            except az.AccessDenied:
                return False

    assert sum(_parallel_threads(work)) == 1

    async def one(index: int) -> bool:
        try:
            await tools["adelete"](f"a{index}")
            return True
        except az.AccessDenied:
            return False

    async def main() -> list[bool]:
        with authz.acting_as(ALICE), authz.session("tasks"):
            return list(await asyncio.gather(*(one(i) for i in range(5))))

    assert sum(asyncio.run(main())) == 1
    assert len(tools["ran"]) == 2


def test_a_released_call_id_may_run_again_and_its_key_is_never_the_callers(kind: str, tmp_path: Path) -> None:
    """What stays of the old idempotency: a call that failed (released) may be retried under its id."""
    authz, _, _ = make(real_store(kind, tmp_path))
    with authz.acting_as(ALICE), authz.session("s") as session:
        with pytest.raises(RuntimeError), \
                authz.begin_tool_call("delete", {"name": "a"}, call_id="call_0") as first:
            raise RuntimeError("the tool failed")
        retry = authz.begin_tool_call("delete", {"name": "a"}, call_id="call_0")
        assert retry.admits and retry.call_id != first.call_id != "call_0"
        with retry:
            pass
        assert [c.external_id for c in session.state().history] == ["call_0"]


def _langchain_agent(store: SessionStore, *turns: Any) -> tuple[Any, az.Authorizer, list[str], az.MemorySink]:
    """A create_agent loop with AuthzMiddleware whose model replays ``turns`` (AIMessages)."""
    pytest.importorskip("langchain.agents")
    from langchain.agents import create_agent
    from langchain_core.messages import AIMessage
    from langchain_core.tools import tool

    from agentauthz.integrations.langchain import AuthzMiddleware
    from tests.session.test_rules import ScriptedChatModel

    sink = az.MemorySink()
    authz = az.Authorizer.from_text(RULES, audit=[sink], sessions=SessionConfig(store=store))
    ran: list[str] = []

    @tool
    def delete(name: str) -> str:
        """Delete a file."""
        threading.Event().wait(0.01)
        ran.append(name)
        return f"deleted {name}"

    @tool
    def refund(order: str, amount: int) -> str:
        """Refund an order."""
        ran.append(f"refund {amount}")
        return f"refunded {amount}"

    model = ScriptedChatModel(messages=iter([*turns, AIMessage("Done.")]))
    agent = create_agent(model, tools=[delete, refund], middleware=[AuthzMiddleware(authz)])
    return agent, authz, ran, sink


def test_the_langchain_middleware_runs_a_repeated_tool_call_id_once(kind: str, tmp_path: Path) -> None:
    pytest.importorskip("langchain.agents")
    from langchain_core.messages import AIMessage

    from agentauthz.integrations.langchain import PRINCIPAL_KEY, SESSION_KEY

    same = [{"name": "delete", "args": {"name": f"d{i}"}, "id": "call_0"} for i in range(5)]
    for run in ("sync", "async"):
        (tmp_path / run).mkdir()
        agent, _, ran, sink = _langchain_agent(real_store(kind, tmp_path / run),
                                               AIMessage("", tool_calls=same))
        config = {"configurable": {PRINCIPAL_KEY: ALICE, SESSION_KEY: f"conv-{run}"}}
        if run == "sync":
            agent.invoke({"messages": [("user", "go")]}, config=config)
        else:
            asyncio.run(agent.ainvoke({"messages": [("user", "go")]}, config=config))
        assert len(ran) == 1, run
        assert len(sink.events) == 5 and [e.decision for e in sink.events].count("allow") == 1


# -- finding 4: sessions keyed by id only ---------------------------------------------------------


def test_an_approval_in_alices_session_never_authorizes_mallorys_refund(kind: str, tmp_path: Path) -> None:
    """The review's reproduction, through the client-settable LangChain session id."""
    pytest.importorskip("langchain.agents")
    from langchain_core.messages import AIMessage

    from agentauthz.integrations.langchain import PRINCIPAL_KEY, SESSION_KEY

    call = {"name": "refund", "args": {"order": "o-1", "amount": 5000}}
    agent, authz, ran, sink = _langchain_agent(
        real_store(kind, tmp_path), *(AIMessage("", tool_calls=[dict(call, id=i)]) for i in ("r-1", "r-2")))
    with authz.acting_as(ALICE), authz.session("conv-alice") as alices:
        alices.approve("refund", REFUND_TOOL, arguments={"order": "o-1", "amount": 5000})
    mallory = {"configurable": {PRINCIPAL_KEY: MALLORY, SESSION_KEY: "conv-alice"}}
    with pytest.raises(az.IdentityError, match="another end user"):
        agent.invoke({"messages": [("user", "refund me")]}, config=mallory)
    assert ran == []
    [event] = sink.events
    assert (event.principal, event.decision, event.session) == (str(MALLORY), "deny", "conv-alice")
    assert "another end user" in event.errors[0] and "alice" not in json.dumps(event.errors)
    alice = {"configurable": {PRINCIPAL_KEY: ALICE, SESSION_KEY: "conv-alice"}}
    agent.invoke({"messages": [("user", "refund me")]}, config=alice)
    assert ran == ["refund 5000"]  # the approval was alice's all along


def test_a_session_refuses_every_other_end_user_on_every_path(kind: str, tmp_path: Path) -> None:
    authz, sink, tools = make(real_store(kind, tmp_path))
    with authz.acting_as(ALICE), authz.session("s") as session:
        tools["refund"]("o", 5)
        session.see("confidential")
    docs = [az.Entity(uid=az.EntityUID("Doc", "d"), attrs={"labels": ["x"]})]
    sink.clear()
    with authz.acting_as(MALLORY), authz.session("s") as stolen:
        refusals: list[Callable[[], Any]] = [
            lambda: tools["refund"]("o", 5),
            lambda: authz.begin_call(action="ping", resource=az.EntityUID("Tool", "ping")),
            lambda: authz.authorize(action="refund", resource=REFUND_TOOL, context={"input": {}}),
            lambda: asyncio.run(authz.aauthorize(action="refund", resource=REFUND_TOOL)),
            lambda: authz.filter(docs, action="read", resource=lambda d: d),
            lambda: stolen.state(),
            lambda: stolen.facts(),
            lambda: stolen.see("y"),
            lambda: stolen.approve("refund", REFUND_TOOL, arguments={"order": "o", "amount": 500}),
            lambda: stolen.clear(),
        ]
        for refusal in refusals:
            with pytest.raises(az.IdentityError, match="another end user"):
                refusal()
    assert len(sink.events) == len(refusals)
    assert all(e.decision == "deny" and e.principal == str(MALLORY) for e in sink.events)
    with authz.acting_as(ALICE), authz.session("s") as session:
        state = session.state()
    assert state.seen == frozenset({"confidential"}) and state.calls == {"refund": 1}
    assert tools["ran"] == ["refund 5"]


def test_a_session_handle_acts_for_its_owner_only(tmp_path: Path) -> None:
    authz, _, tools = make(MemorySessionStore())
    with authz.acting_as(ALICE), authz.session("s"), authz.acting_as(MALLORY), \
            pytest.raises(az.IdentityError):
        tools["refund"]("o", 5)  # alice's handle, mallory bound inside it: refused, even for a new session
    handle = Session("t", authz.session_store, owner=ALICE)
    with authz.acting_as(MALLORY), authz.session(handle), pytest.raises(az.IdentityError):
        tools["refund"]("o", 5)
    assert tools["ran"] == []


def test_bedrock_invocations_of_another_user_naming_a_session_are_refused(tmp_path: Path) -> None:
    from agentauthz.integrations.bedrock import action_group_handler

    sink = az.MemorySink()
    authz = az.Authorizer.from_text(RULES, audit=[sink])
    ran: list[str] = []

    @action_group_handler(authz, principal=lambda e: az.EntityUID("User", e["sessionAttributes"]["userId"]),
                          session=True)
    def handler(event: dict[str, Any], context: Any) -> str:
        ran.append(event["sessionAttributes"]["userId"])
        return "done"

    def event(user: str) -> dict[str, Any]:
        return {"messageVersion": "1.0", "agent": {"name": "a", "id": "A", "alias": "T", "version": "1"},
                "inputText": "", "sessionId": "bedrock-1", "actionGroup": "g", "function": "ping",
                "parameters": [], "sessionAttributes": {"userId": user}, "promptSessionAttributes": {}}

    assert "responseState" not in handler(event("alice"), None)["response"]["functionResponse"]
    refused = handler(event("mallory"), None)["response"]["functionResponse"]
    assert refused.get("responseState") == "REPROMPT"
    assert ran == ["alice"]
    assert [e.decision for e in sink.events] == ["allow", "deny"]


def test_an_approval_covers_one_exact_call(tmp_path: Path) -> None:
    authz, _, tools = make(MemorySessionStore())
    with authz.acting_as(ALICE), authz.session("s") as session:
        session.approve("refund", REFUND_TOOL, arguments={"order": "o-1", "amount": 150})
        for order, amount in (("o-1", 5000), ("o-2", 150), ("o-1", 151)):
            with pytest.raises(az.AccessDenied):
                tools["refund"](order, amount)
        assert tools["refund"]("o-1", 150) == "refunded 150"
    with authz.acting_as(az.EntityUID("Admin", "alice")), authz.session("s"), pytest.raises(az.IdentityError):
        tools["refund"]("o-1", 150)  # another principal type with the same id is another end user


def test_an_approval_never_covers_another_principals_call_even_from_a_store_that_mixes_them() -> None:
    """Approvals name their principal: a store that hands out someone else's still approves nothing."""

    class Mixing(MemorySessionStore):
        def load(self, session_id: str, *, since: float, history: int) -> SessionSnapshot:
            snapshot = super().load(session_id, since=since, history=history)
            foreign = Approval(str(MALLORY), "refund", str(REFUND_TOOL), '{"amount":150,"order":"o"}')
            return dataclasses.replace(snapshot, approvals=(*snapshot.approvals, foreign))

    authz, _, tools = make(Mixing())
    with authz.acting_as(ALICE), authz.session("s") as session:
        session.see("x")  # the session is alice's
        with pytest.raises(az.AccessDenied) as denied:
            tools["refund"]("o", 150)
    assert denied.value.decision.reasons == ("refund-needs-approval",)


def test_a_store_that_records_no_owner_serves_no_session_with_facts() -> None:
    """A third-party store written against the old protocol: snapshots without owner."""

    class Ownerless(MemorySessionStore):
        def load(self, session_id: str, *, since: float, history: int) -> SessionSnapshot:
            return dataclasses.replace(super().load(session_id, since=since, history=history), owner=None)

    authz, sink, tools = make(Ownerless())
    with authz.acting_as(ALICE), authz.session("s"):
        tools["refund"]("o", 5)  # an empty session: nothing to leak, the store records the owner
        with pytest.raises(az.IdentityError):
            tools["refund"]("o", 5)
    assert [e.decision for e in sink.events] == ["allow", "deny"]


OLD_SCHEMA = """
CREATE TABLE sessions (session_id TEXT PRIMARY KEY, version INTEGER NOT NULL);
CREATE TABLE calls (session_id TEXT NOT NULL, call_id TEXT NOT NULL, action TEXT NOT NULL,
  resource TEXT NOT NULL, at REAL NOT NULL, done INTEGER NOT NULL, lease_until REAL, seq INTEGER,
  sums TEXT NOT NULL, labels TEXT NOT NULL, PRIMARY KEY (session_id, call_id));
CREATE TABLE counts (session_id TEXT NOT NULL, action TEXT NOT NULL, n INTEGER NOT NULL,
  PRIMARY KEY (session_id, action));
CREATE TABLE totals (session_id TEXT NOT NULL, action TEXT NOT NULL, argument TEXT NOT NULL,
  value TEXT NOT NULL, PRIMARY KEY (session_id, action, argument));
CREATE TABLE labels (session_id TEXT NOT NULL, label TEXT NOT NULL, PRIMARY KEY (session_id, label));
CREATE TABLE approvals (session_id TEXT NOT NULL, action TEXT NOT NULL, resource TEXT NOT NULL,
  arguments TEXT NOT NULL, granted_by TEXT, seq INTEGER NOT NULL,
  PRIMARY KEY (session_id, action, resource, arguments));
INSERT INTO sessions VALUES ('old', 4);
INSERT INTO calls VALUES ('old', 'tc-done', 'delete', 'Tool::"delete"', 1.0, 1, NULL, 2, '{}', '[]');
INSERT INTO calls VALUES ('old', 'tc-open', 'refund', 'Tool::"refund"', 1.0, 0, 5.0, NULL,
  '{"amount": "L40"}', '[]');
INSERT INTO counts VALUES ('old', 'delete', 1);
INSERT INTO approvals VALUES ('old', 'refund', '', '{}', 'manager', 3);
"""


def test_a_session_stored_before_owners_is_refused_until_the_application_names_its_owner(
        tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    connection = sqlite3.connect(path)
    connection.executescript(OLD_SCHEMA)
    connection.close()
    path.chmod(0o600)
    store = SQLiteSessionStore(path)
    authz, sink, tools = make(store)
    for user in (ALICE, MALLORY):  # nobody, not even the first to ask, gets an ownerless session
        with authz.acting_as(user), authz.session("old"), pytest.raises(az.IdentityError):
            tools["refund"]("o", 500)
    assert [(e.principal, e.decision) for e in sink.events] == [(str(ALICE), "deny"), (str(MALLORY), "deny")]
    with pytest.raises(az.IdentityError):
        store.add_labels("old", ["x"], owner=str(ALICE))
    store.assign_owner("old", str(ALICE))
    with pytest.raises(az.IdentityError):
        store.assign_owner("old", str(MALLORY))
    with authz.acting_as(MALLORY), authz.session("old"), pytest.raises(az.IdentityError):
        tools["refund"]("o", 5)
    with authz.acting_as(ALICE), authz.session("old") as session:
        with pytest.raises(az.AccessDenied):
            tools["refund"]("o", 500)  # the old any-refund approval is void
        with pytest.raises(az.AccessDenied):
            tools["delete"]("x")  # the completed delete still counts
        facts = session.facts()
        assert facts.totals == {"refund": {"amount": 40}}  # the old in-flight refund still counts
        assert session.state().approvals == ()
        replay = authz.begin_tool_call("refund", {"order": "o", "amount": 5}, call_id="tc-done")
        assert not replay.admits and "already completed" in replay.decision.errors[0]


# -- finding 8: a failing store -------------------------------------------------------------------


def test_a_locked_database_denies_the_call_before_the_tool_runs_with_one_audit_event(tmp_path: Path) -> None:
    store = SQLiteSessionStore(tmp_path / "s.db", timeout=0.05)
    authz, sink, tools = make(store)
    with authz.acting_as(ALICE), authz.session("s") as session:
        with locked(tmp_path / "s.db"), pytest.raises(az.AccessDenied) as denied:
            tools["delete"]("a")
        assert "session store failed: OperationalError: database is locked" in denied.value.decision.errors[0]
        assert tools["ran"] == []
        assert session.state().pending == ()
        tools["delete"]("a")  # the lock is gone: the call runs
    assert [e.decision for e in sink.events] == ["deny", "allow"]
    assert "database is locked" in sink.events[0].errors[0]


def test_a_call_that_ran_stays_counted_when_completing_it_fails(tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    """The review's reproduction: complete fails after the tool ran; later the lease would have lapsed."""
    path = tmp_path / "s.db"
    clock = Clock()
    store = SQLiteSessionStore(path, timeout=0.05)
    sink = az.MemorySink()
    authz = az.Authorizer.from_text(RULES, audit=[sink], sessions=SessionConfig(store=store, clock=clock))
    locks: list[Any] = []

    @authz.guard
    def delete(name: str) -> str:
        locks.append(locked(path))
        locks[-1].__enter__()  # the store fails from here on, while the result is on its way back
        return f"deleted {name}"

    with authz.acting_as(ALICE), authz.session("s") as session, caplog.at_level(logging.ERROR, "agentauthz"):
        assert delete("a") == "deleted a"  # the tool's result still reaches the caller
        locks.pop().__exit__(None, None, None)
        assert "keeps counting" in caplog.text
        assert [p.action for p in session.state().pending] == ["delete"]
        clock.now += 30 * 86_400  # long past any lease
        with pytest.raises(az.AccessDenied) as denied:
            delete("b")
        assert denied.value.decision.reasons == ("one-delete",)
    assert [e.decision for e in sink.events] == ["allow", "deny"]


def test_a_failing_release_keeps_the_call_counted_and_the_tools_error(kind: str, tmp_path: Path) -> None:
    store = FailingStore(real_store(kind, tmp_path))
    authz, _, _ = make(store)
    with authz.acting_as(ALICE), authz.session("s") as session:
        call = authz.begin_tool_call("delete", {"name": "a"})
        store.failing["release"] = 3
        with pytest.raises(ValueError, match="the tool's own error"), call:
            raise ValueError("the tool's own error")
        assert session.facts().calls == {"delete": 1}  # unknown outcome: counted
        store.failing["complete"] = 2  # fails twice, then the retry succeeds
        with authz.begin_tool_call("refund", {"order": "o", "amount": 5}) as refund:
            pass
        assert session.state().calls == {"refund": 1}
        assert not refund.complete()  # settled once: never counted twice


@pytest.mark.parametrize("failing", ["load", "admit"])
def test_a_store_failing_before_the_tool_runs_denies_on_every_path(failing: str, kind: str,
                                                                  tmp_path: Path) -> None:
    store = FailingStore(real_store(kind, tmp_path))
    authz, sink, tools = make(store)
    with authz.acting_as(ALICE), authz.session("s"):
        store.failing[failing] = 1
        with pytest.raises(az.AccessDenied):
            tools["delete"]("a")
        store.failing[failing] = 1
        assert asyncio.run(authz.abegin_tool_call("delete", {"name": "b"})).admits is False
        store.failing[failing] = 1
        assert not authz.begin_call(action="ping", resource=az.EntityUID("Tool", "ping")).admits
        if failing == "load":
            store.failing["load"] = 1
            assert not authz.authorize(action="ping", resource=az.EntityUID("Tool", "ping")).allowed
            store.failing["load"] = 1
            ping = az.EntityUID("Tool", "ping")
            assert not asyncio.run(authz.aauthorize(action="ping", resource=ping)).allowed
    assert tools["ran"] == []
    assert all(e.decision == "deny" and "session store failed" in e.errors[0] for e in sink.events)
    assert len(sink.events) == (5 if failing == "load" else 3)


def test_a_filter_whose_reads_cannot_be_recorded_lets_nothing_through(kind: str, tmp_path: Path) -> None:
    store = FailingStore(real_store(kind, tmp_path))
    authz, sink, _ = make(store)
    docs = [az.Entity(uid=az.EntityUID("Doc", name), attrs={"labels": ["confidential"]}) for name in "ab"]
    with authz.acting_as(ALICE), authz.session("s") as session:
        store.failing["add_labels"] = 1
        result = authz.filter(docs, action="read", resource=lambda d: d)
        assert result.allowed == [] and result.denied == 2
        assert session.state().seen == frozenset()
        store.failing["load"] = 1
        assert asyncio.run(authz.afilter(docs, action="read", resource=lambda d: d)).allowed == []
        assert len(authz.filter(docs, action="read", resource=lambda d: d).allowed) == 2
        assert session.state().seen == frozenset({"confidential"})
    assert [e.decision for e in sink.events] == ["deny", "deny", "deny", "deny", "allow", "allow"]


# -- finding 10: private SQLite files -------------------------------------------------------------


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
@pytest.mark.parametrize("umask", [0o000, 0o022, 0o277])
def test_sqlite_files_are_created_private_whatever_the_umask(umask: int, tmp_path: Path) -> None:
    previous = os.umask(umask)
    try:
        store = SQLiteSessionStore(tmp_path / "s.db")
        store.add_labels("s", ["x"], owner=str(ALICE))
        files = [tmp_path / name for name in ("s.db", "s.db-wal", "s.db-shm")]
        assert all(path.exists() for path in files)
        assert {path.name: stat.S_IMODE(path.stat().st_mode) for path in files} == {
            path.name: 0o600 for path in files}
        store.close()
    finally:
        os.umask(previous)


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
def test_an_existing_store_file_others_can_read_draws_a_warning(tmp_path: Path) -> None:
    SQLiteSessionStore(tmp_path / "s.db").close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        SQLiteSessionStore(tmp_path / "s.db").close()  # private: no warning
    (tmp_path / "s.db").chmod(0o644)
    with pytest.warns(UserWarning, match=r"s\.db is accessible by other users \(mode 0644\)"):
        SQLiteSessionStore(tmp_path / "s.db")


# -- the class: a state machine over end users, sessions, call ids, approvals and failures ---------

DELETE_LIMIT = 2
MACHINE_RULES = f"""
@id("all") permit(principal, action, resource);
@id("delete-limit") forbid(principal, action == Action::"delete", resource)
when {{ context has session && context.session.calls.delete >= {DELETE_LIMIT} }};
@id("refund-needs-approval") forbid(principal, action == Action::"refund", resource)
when {{ context has session && context.input.amount > 100 && !context.session.approved }};
"""


@dataclasses.dataclass
class Open:
    """An admitted call whose tool has not reported back."""

    session: str
    user: str
    action: str
    external_id: str | None
    call: az.ToolCall


class SessionMachine(RuleBasedStateMachine):
    """Random programs of calls, settlements, crashes, approvals and store failures.

    The model is what the rules say must happen: a session belongs to the first
    end user who wrote to it; deletes in flight or completed never exceed the
    limit; a refund over 100 runs only with an approval of exactly its
    principal and arguments; a call id runs at most once while in flight or
    after completing; a store failure before the tool runs denies; a failure
    settling a call keeps it counted. Every decision has exactly one event.
    """

    KIND = "memory"

    def __init__(self) -> None:
        super().__init__()
        import tempfile

        self.root = Path(tempfile.mkdtemp(prefix="agentauthz-sessions-"))
        self.inner = real_store(self.KIND, self.root, timeout=0.02)
        self.store = FailingStore(self.inner)
        self.clock = Clock()
        self.sink = az.MemorySink()
        self.authz = az.Authorizer.from_text(MACHINE_RULES, audit=[self.sink], sessions=SessionConfig(
            store=self.store, clock=self.clock))
        self.ran: list[tuple[str, str, str]] = []

        @self.authz.guard
        def delete(name: str) -> str:
            return name

        @self.authz.guard
        def refund(order: str, amount: int) -> str:
            return order

        self.owners: dict[str, str] = {}
        self.approvals: set[tuple[str, str, int]] = set()  # (session, user, amount)
        self.counted: dict[str, int] = {}  # deletes in flight or completed, per session
        self.in_flight: dict[str, set[str]] = {}
        self.completed: dict[str, set[str]] = {}
        self.open: list[Open] = []

    def _expect_event(self, before: int, decision: str | None = None) -> None:
        assert len(self.sink.events) == before + 1, self.sink.events[before:]
        if decision is not None:
            assert self.sink.events[-1].decision == decision

    # -- steps -----------------------------------------------------------------------------------

    @rule(user=st.sampled_from(SESSION_USERS), session=st.sampled_from(SESSION_IDS),
          external_id=st.sampled_from(SESSION_CALL_IDS), refund=st.booleans(),
          amount=st.sampled_from(SESSION_AMOUNTS),
          failing=st.sampled_from([None, None, None, "load", "admit"]))
    def decide_a_call(self, user: str, session: str, external_id: str | None, refund: bool, amount: int,
                      failing: str | None) -> None:
        self.call(user, session, external_id, refund, amount, failing)

    def call(self, user: str, session: str, external_id: str | None, refund: bool, amount: int,
             failing: str | None) -> None:
        action, arguments = ("refund", {"order": "o", "amount": amount}) if refund else (
            "delete", {"name": "n"})
        if failing:
            self.store.failing[failing] = 1
        before = len(self.sink.events)
        owner = self.owners.get(session)
        try:
            with self.authz.acting_as(az.EntityUID("User", user)), self.authz.session(session):
                call = self.authz.begin_tool_call(action, arguments, call_id=external_id)
        except az.IdentityError:
            assert owner is not None and owner != user and failing != "load"
            self._expect_event(before, "deny")
            assert "another end user" in self.sink.events[-1].errors[0]
            return
        finally:
            self.store.failing.clear()
        self._expect_event(before)
        assert failing == "load" or owner in (None, user)
        allowed_by_policy = (self.counted.get(session, 0) < DELETE_LIMIT if action == "delete"
                             else amount <= 100 or (session, user, amount) in self.approvals)
        expected = (failing is None and allowed_by_policy
                    and external_id not in self.completed.get(session, set())
                    and external_id not in self.in_flight.get(session, set()))
        assert call.admits == expected, (action, arguments, external_id, failing, call.decision)
        if not expected:
            return
        self.owners.setdefault(session, user)
        self.ran.append((session, user, action))
        if action == "delete":
            self.counted[session] = self.counted.get(session, 0) + 1
        if external_id is not None:
            self.in_flight.setdefault(session, set()).add(external_id)
        self.open.append(Open(session, user, action, external_id, call))

    @precondition(lambda self: any(self.completed.values()) or any(self.in_flight.values()))
    @rule(data=st.data(), refund=st.booleans())
    def repeat_a_call_id(self, data: st.DataObject, refund: bool) -> None:
        """The owner's agent repeats a call id that is in flight or completed: it must not run."""
        session, external_id = data.draw(st.sampled_from(sorted(
            (session, external_id) for ids in (self.completed, self.in_flight)
            for session, external_ids in ids.items() for external_id in external_ids)))
        self.call(self.owners[session], session, external_id, refund, 50, None)

    @precondition(lambda self: bool(self.open))
    @rule(data=st.data(), outcome=st.sampled_from(["complete", "complete", "fail", "crash"]),
          store_fails=st.sampled_from([False, False, True]))
    def settle(self, data: st.DataObject, outcome: str, store_fails: bool) -> None:
        index = data.draw(st.integers(0, len(self.open) - 1))
        done = self.open.pop(index)
        before = len(self.sink.events)
        if outcome == "crash":
            return  # the process died: the call stays in flight, and counts
        if store_fails:
            self.store.failing["complete" if outcome == "complete" else "release"] = 3
        with done.call:
            if outcome == "fail":
                done.call.fail()
        self.store.failing.clear()
        assert len(self.sink.events) == before  # settling is no decision
        if store_fails:
            return  # not settled: in flight, counted
        if done.external_id is not None:
            self.in_flight[done.session].discard(done.external_id)
        if outcome == "complete":
            if done.external_id is not None:
                self.completed.setdefault(done.session, set()).add(done.external_id)
        elif done.action == "delete":
            self.counted[done.session] -= 1

    @rule(user=st.sampled_from(SESSION_USERS), session=st.sampled_from(SESSION_IDS),
          amount=st.sampled_from(SESSION_AMOUNTS))
    def approve(self, user: str, session: str, amount: int) -> None:
        owner = self.owners.get(session)
        before = len(self.sink.events)
        with self.authz.acting_as(az.EntityUID("User", user)), self.authz.session(session) as bound:
            if owner is not None and owner != user:
                with pytest.raises(az.IdentityError):
                    bound.approve("refund", az.EntityUID("Tool", "refund"),
                                  arguments={"order": "o", "amount": amount})
                self._expect_event(before, "deny")
                return
            bound.approve("refund", az.EntityUID("Tool", "refund"),
                          arguments={"order": "o", "amount": amount})
        assert len(self.sink.events) == before
        self.owners.setdefault(session, user)
        self.approvals.add((session, user, amount))

    @rule()
    def much_later(self) -> None:
        self.clock.now += 7 * 86_400

    # -- invariants ------------------------------------------------------------------------------

    @invariant()
    def limits_hold_and_sessions_belong_to_their_owners(self) -> None:
        for session in SESSION_IDS:
            owner = self.owners.get(session)
            if owner is None:
                continue
            facts = Session(session, self.inner, self.authz.session_config,
                            owner=az.EntityUID("User", owner)).facts()
            assert facts.calls.get("delete", 0) == self.counted.get(session, 0) <= DELETE_LIMIT
            for other in SESSION_USERS:
                if other != owner:
                    with pytest.raises(az.IdentityError):
                        Session(session, self.inner, owner=az.EntityUID("User", other)).state()

    @invariant()
    def every_call_that_ran_was_its_owners(self) -> None:
        assert all(self.owners[session] == user for session, user, _ in self.ran)

    def teardown(self) -> None:
        import shutil

        shutil.rmtree(self.root, ignore_errors=True)


class SQLiteSessionMachine(SessionMachine):
    KIND = "sqlite"

    @rule(user=st.sampled_from(SESSION_USERS), session=st.sampled_from(SESSION_IDS))
    def call_while_another_connection_holds_the_lock(self, user: str, session: str) -> None:
        before = len(self.sink.events)
        owner = self.owners.get(session)
        with locked(self.root / "s.db"):
            try:
                with self.authz.acting_as(az.EntityUID("User", user)), self.authz.session(session):
                    call = self.authz.begin_call(action="ping", resource=az.EntityUID("Tool", "ping"))
            except az.IdentityError:
                assert owner is not None and owner != user
                self._expect_event(before, "deny")
                return
        self._expect_event(before, "deny")
        assert not call.admits and "database is locked" in call.decision.errors[0]


MACHINE_SETTINGS = settings(max_examples=50, stateful_step_count=25, deadline=None,
                            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
TestSessionMachine = SessionMachine.TestCase
TestSessionMachine.settings = MACHINE_SETTINGS
TestSQLiteSessionMachine = SQLiteSessionMachine.TestCase
TestSQLiteSessionMachine.settings = MACHINE_SETTINGS


class DynamoDBSessionMachine(SessionMachine):
    KIND = "dynamodb"  # a new table for each program, on the server of the test class below


class TestDynamoDBSessionMachine(DynamoDBSessionMachine.TestCase):  # type: ignore[name-defined, misc]
    """The same programs on DynamoDB (moto in server mode on 127.0.0.1, started for this class)."""

    settings = settings(MACHINE_SETTINGS, max_examples=8)  # each step talks HTTP to the server
    server: Any = None

    @classmethod
    def setUpClass(cls) -> None:
        pytest.importorskip("moto", reason='needs moto\'s server: pip install "moto[server]"')
        cls.server = LocalDynamoDB().start()
        client = cls.server.client()

        def build() -> SessionStore:
            name = f"sessions-{uuid.uuid4().hex[:12]}"
            create_table(client, name)
            return DynamoDBSessionStore(name, client=client)

        _DYNAMODB.append(build)

    @classmethod
    def tearDownClass(cls) -> None:
        if cls.server is not None:
            _DYNAMODB.pop()
            cls.server.stop()
