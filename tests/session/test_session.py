"""Sessions: binding, the context.session record, exact counting, approvals, labels, schema shapes."""

from __future__ import annotations

import asyncio
import decimal
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import agentauthz as az
from agentauthz._audit import capture_events
from agentauthz.session import (
    MemorySessionStore,
    Session,
    SessionConfig,
    SessionFacts,
    current_session,
    session_record_type,
)
from agentauthz.session._session import FULL_SHAPE, SchemaShapes, session_record
from agentauthz.tools._schema import generate_schema

ROOT = Path(__file__).resolve().parents[2]
POLICIES = ROOT / "policies"
ALICE = az.EntityUID("User", "alice")

# Without a schema: every attribute of context.session is sent; keyed ones hold every
# registered tool action, so `has` is only needed for actions no tool declares.
RULES = """
@id("all") permit(principal, action, resource);

@id("three-deletes") forbid(principal, action == Action::"delete", resource)
when { context has session && context.session.calls.delete >= 3 };

@id("no-mail-after-secret") forbid(principal, action == Action::"mail", resource)
when { context has session && context.session.seen.contains("secret") };

@id("refund-cap") forbid(principal, action == Action::"refund", resource)
when { context has session && context.input.amount > 100 - context.session.totals.refund.amount };

@id("big-payment-needs-approval") forbid(principal, action == Action::"pay", resource)
when { context has session && context.input.amount > 10 && !context.session.approved };

@id("two-per-window") forbid(principal, action == Action::"ping", resource)
when { context has session && context.session.window_calls.ping >= 2 };
"""


class Clock:
    """A settable clock for the sliding window and leases."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make(config: SessionConfig | None = None, rules: str = RULES) -> tuple[az.Authorizer, dict[str, Any]]:
    authz = az.Authorizer.from_text(rules, audit=[], sessions=config)
    ran: list[str] = []

    @authz.guard
    def delete(name: str) -> str:
        ran.append(f"delete {name}")
        return f"deleted {name}"

    @authz.guard
    def mail(to: str) -> str:
        ran.append(f"mail {to}")
        return "sent"

    @authz.guard(sum_arguments=["amount"])
    def refund(order: str, amount: int) -> str:
        ran.append(f"refund {amount}")
        return "refunded"

    @authz.guard
    def pay(order: str, amount: int) -> str:
        return "paid"

    @authz.guard
    def ping(host: str) -> str:
        return "pong"

    @authz.guard
    def boom(x: int) -> str:
        raise RuntimeError("tool failed")

    tools = {"delete": delete, "mail": mail, "refund": refund, "pay": pay, "ping": ping, "boom": boom,
             "ran": ran}
    return authz, tools


def denied_by(exc: pytest.ExceptionInfo[az.AccessDenied]) -> tuple[str, ...]:
    return exc.value.decision.reasons


# -- binding ---------------------------------------------------------------------------------


def test_a_request_without_a_session_has_no_context_session() -> None:
    authz, _ = make()
    with capture_events() as events, authz.acting_as(ALICE):
        authz.authorize(action="mail", resource=az.EntityUID("Tool", "mail"))
    assert events[-1].session is None
    authz.record_requests = True
    with capture_events() as events, authz.acting_as(ALICE):
        authz.authorize(action="mail", resource=az.EntityUID("Tool", "mail"))
    assert events[-1].request is not None
    assert "session" not in events[-1].request["request"].get("context", {})


def test_a_bound_session_puts_the_record_in_context_and_its_id_in_audit_events() -> None:
    authz, _ = make()
    authz.record_requests = True
    with capture_events() as events, authz.acting_as(ALICE), authz.session("c-1") as session:
        assert current_session() is session and authz.current_session is session
        authz.authorize(action="mail", resource=az.EntityUID("Tool", "mail"))
    assert current_session() is None
    event = events[-1]
    assert event.session == "c-1"
    assert event.request is not None
    record = event.request["request"]["context"]["session"]
    assert record["seen"] == [] and record["approved"] is False and record["last_action"] == ""
    assert set(record["calls"]) == {"delete", "mail", "refund", "pay", "ping", "boom"}


def test_sessions_are_isolated_between_threads_and_tasks() -> None:
    authz, _ = make()
    seen: dict[str, str | None] = {}

    def worker(name: str) -> None:
        with authz.session(name):
            threading.Event().wait(0.01)
            current = current_session()
            seen[name] = current.id if current else None

    threads = [threading.Thread(target=worker, args=(f"t{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert seen == {f"t{i}": f"t{i}" for i in range(8)}

    async def task(name: str) -> str | None:
        with authz.session(name):
            await asyncio.sleep(0.001)
            current = current_session()
            return current.id if current else None

    async def main() -> list[str | None]:
        return await asyncio.gather(*(task(f"a{i}") for i in range(8)))

    assert asyncio.run(main()) == [f"a{i}" for i in range(8)]
    assert current_session() is None


def test_session_bound_to_keeps_the_same_session_and_refuses_another() -> None:
    authz, _ = make()
    with authz.session("c-1") as outer:
        with authz.session_bound_to("c-1") as same:
            assert same is outer
        with authz.session_bound_to(None) as kept:
            assert kept is outer
        with pytest.raises(az.ConfigurationError, match="two sessions for one call"), \
                authz.session_bound_to("c-2"):
            pass
    with pytest.raises(az.ConfigurationError, match="session id string"), \
            authz.session_bound_to(42):  # type: ignore[arg-type]
        pass
    with authz.session_bound_to("c-3") as bound:
        assert bound is not None and bound.id == "c-3"


def test_setting_context_session_while_a_session_is_bound_is_refused() -> None:
    authz, _ = make()
    with authz.acting_as(ALICE), authz.session("c"), \
            pytest.raises(az.ConfigurationError, match="bound session"):
        authz.authorize(action="mail", resource=az.EntityUID("Tool", "mail"), context={"session": {}})
    with authz.acting_as(ALICE):  # without a session the application may still pass its own facts
        assert authz.authorize(action="mail", resource=az.EntityUID("Tool", "mail"),
                               context={"session": {"seen": ["x"]}}).allowed


def test_invalid_configuration_is_refused() -> None:
    with pytest.raises(az.ConfigurationError):
        SessionConfig(history=-1)
    with pytest.raises(az.ConfigurationError):
        SessionConfig(window=timedelta(0))
    with pytest.warns(DeprecationWarning, match="lease is ignored"):
        SessionConfig(lease=timedelta(minutes=1))
    with pytest.raises(az.ConfigurationError):
        SessionConfig(store=object())  # type: ignore[arg-type]
    with pytest.raises(az.ConfigurationError):
        az.Authorizer.from_text("permit(principal, action, resource);", sessions={"store": None})
    with pytest.raises(az.ConfigurationError):
        Session("", MemorySessionStore())


# -- counting ---------------------------------------------------------------------------------


def test_calls_count_only_when_allowed_and_completed() -> None:
    authz, tools = make()
    with authz.acting_as(ALICE), authz.session("c") as session:
        for name in ("a", "b", "c"):
            tools["delete"](name)
        with pytest.raises(az.AccessDenied) as denied:
            tools["delete"]("d")
        assert denied_by(denied) == ("three-deletes",)
        with pytest.raises(RuntimeError):
            tools["boom"](1)
        state = session.state()
    assert state.calls == {"delete": 3}
    assert state.pending == ()
    assert [call.action for call in state.history] == ["delete", "delete", "delete"]
    assert tools["ran"] == ["delete a", "delete b", "delete c"]


def test_calls_of_other_sessions_and_outside_sessions_do_not_count() -> None:
    authz, tools = make()
    with authz.acting_as(ALICE):
        for _ in range(5):
            tools["delete"]("x")  # no session: no limit, nothing recorded
        with authz.session("one"):
            for _ in range(3):
                tools["delete"]("x")
        with authz.session("two") as two:
            tools["delete"]("x")
            assert two.state().calls == {"delete": 1}


def test_facts_record_actions_last_action_and_history() -> None:
    authz, tools = make(SessionConfig(history=2))
    authz.record_requests = True
    with capture_events() as events, authz.acting_as(ALICE), authz.session("c"):
        tools["ping"]("a")
        tools["delete"]("a")
        tools["mail"]("x@y")
        tools["mail"]("x@y")
    assert events[-1].request is not None
    record = events[-1].request["request"]["context"]["session"]
    assert record["actions"] == ["delete", "mail", "ping"]
    assert record["last_action"] == "mail"
    assert record["last_actions"] == ["delete", "mail"]  # the two latest calls
    assert record["calls"]["mail"] == 1 and record["calls"]["ping"] == 1


def test_running_sums_cap_a_total() -> None:
    authz, tools = make()
    with authz.acting_as(ALICE), authz.session("c") as session:
        tools["refund"]("o-1", 60)
        tools["refund"]("o-2", 40)
        with pytest.raises(az.AccessDenied) as denied:
            tools["refund"]("o-3", 1)
        assert denied_by(denied) == ("refund-cap",)
        assert session.state().totals == {"refund": {"amount": 100}}


def test_decimal_sums_are_exact_and_typed() -> None:
    authz = az.Authorizer.from_text(
        'forbid(principal, action == Action::"tip", resource) when { context has session && '
        'context.session.totals.tip.amount.greaterThan(decimal("0.3")) };'
        'permit(principal, action, resource);', audit=[])

    @authz.guard(sum_arguments=["amount"])
    def tip(amount: float) -> str:
        return "ok"

    with authz.acting_as(ALICE), authz.session("c") as session:
        tip(0.1)
        tip(0.2)
        tip(0.0001)  # total 0.3001 > 0.3 now
        with pytest.raises(az.AccessDenied):
            tip(0.1)
        assert session.state().totals == {"tip": {"amount": decimal.Decimal("0.3001")}}


def test_sum_arguments_must_name_numeric_arguments() -> None:
    authz = az.Authorizer.from_text("permit(principal, action, resource);")
    with pytest.raises(az.ConfigurationError, match="not an int or decimal argument"):
        @authz.guard(sum_arguments=["to"])
        def mail(to: str) -> str:
            return "x"


def test_sums_from_the_session_config_apply_to_calls_of_that_action() -> None:
    authz, tools = make(SessionConfig(sums={"pay": ["amount"]}))
    with authz.acting_as(ALICE), authz.session("c") as session:
        tools["pay"]("o", 5)
        tools["pay"]("o", 7)
        assert session.state().totals == {"pay": {"amount": 12}}


def test_sliding_window_counts_recent_calls_only() -> None:
    clock = Clock()
    authz, tools = make(SessionConfig(window=timedelta(minutes=10), clock=clock))
    with authz.acting_as(ALICE), authz.session("c") as session:
        tools["ping"]("a")
        clock.now += 300
        tools["ping"]("b")
        with pytest.raises(az.AccessDenied):
            tools["ping"]("c")
        clock.now += 301  # the first ping left the window
        tools["ping"]("c")
        with pytest.raises(az.AccessDenied):
            tools["ping"]("d")
        clock.now += 10_000
        tools["ping"]("e")
        assert session.state().calls == {"ping": 4}


def test_a_failed_call_releases_its_reservation_and_never_counts() -> None:
    authz, tools = make()
    with authz.acting_as(ALICE), authz.session("c") as session:
        for _ in range(5):
            with pytest.raises(RuntimeError):
                tools["boom"](1)
        assert session.state().calls == {}
        assert session.state().pending == ()


def test_a_shadow_mode_authorizer_still_counts_the_calls_that_ran() -> None:
    authz, tools = make()
    authz.mode = "shadow"
    with authz.acting_as(ALICE), authz.session("c") as session:
        for name in "abcde":
            tools["delete"](name)  # would be denied from the fourth on; runs in shadow mode
        assert session.state().calls == {"delete": 5}


# -- concurrency ---------------------------------------------------------------------------------


def test_counts_are_exact_under_threads() -> None:
    authz, tools = make()

    def work(index: int) -> None:
        with authz.acting_as(ALICE), authz.session("shared"):
            tools["mail"](f"m{index}@x")

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(work, range(400)))
    with authz.acting_as(ALICE), authz.session("shared") as session:
        assert session.state().calls == {"mail": 400}
        assert session.state().pending == ()


def test_a_limit_holds_exactly_under_parallel_calls() -> None:
    authz, tools = make()
    barrier = threading.Barrier(12)
    outcomes: list[str] = []
    lock = threading.Lock()

    def work(index: int) -> None:
        with authz.acting_as(ALICE), authz.session("race"):
            barrier.wait()
            try:
                tools["delete"](f"d{index}")
                result = "ran"
            except az.AccessDenied:
                result = "denied"
            with lock:
                outcomes.append(result)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count("ran") == 3
    with authz.acting_as(ALICE), authz.session("race") as session:
        assert session.state().calls == {"delete": 3}


def test_counts_and_limits_are_exact_under_asyncio() -> None:
    authz = az.Authorizer.from_text(RULES, audit=[])
    ran: list[int] = []

    @authz.guard(sum_arguments=["amount"])
    async def refund(order: str, amount: int) -> str:
        await asyncio.sleep(0)  # other calls are decided while this one runs
        ran.append(amount)
        return "ok"

    @authz.guard
    async def mail(to: str) -> str:
        await asyncio.sleep(0)
        return "ok"

    async def one(call: Any, *args: Any) -> bool:
        try:
            await call(*args)
            return True
        except az.AccessDenied:
            return False

    async def main() -> tuple[list[bool], list[bool]]:
        with authz.acting_as(ALICE), authz.session("async"):
            refunds = await asyncio.gather(*(one(refund, f"o{i}", 7) for i in range(40)))
            mails = await asyncio.gather(*(one(mail, f"{i}@x") for i in range(300)))
            return refunds, mails

    refunds, mails = asyncio.run(main())
    assert sum(refunds) == 14 and sum(ran) == 98  # 14 * 7 <= 100 < 15 * 7: the cap holds exactly
    assert all(mails)
    with authz.acting_as(ALICE), authz.session("async") as session:
        assert session.state().calls == {"refund": 14, "mail": 300}
        assert session.state().totals == {"refund": {"amount": 98}}


def test_a_decision_on_facts_that_changed_is_made_again() -> None:
    """The email decided before a parallel retrieval recorded "secret" is decided again, and denied."""
    store = MemorySessionStore()
    authz, tools = make(SessionConfig(store=store))
    original = store.load
    raced: list[bool] = []

    def load(session_id: str, **kwargs: Any) -> Any:
        snapshot = original(session_id, **kwargs)
        if not raced:  # a parallel branch reads a secret document right after this snapshot
            raced.append(True)
            store.add_labels(session_id, ["secret"], owner=str(ALICE))
        return snapshot

    store.load = load  # type: ignore[method-assign]
    with authz.acting_as(ALICE), authz.session("c"), pytest.raises(az.AccessDenied) as denied:
        tools["mail"]("x@evil.example")
    assert denied_by(denied) == ("no-mail-after-secret",)
    assert tools["ran"] == []


def test_a_session_that_never_settles_denies_after_the_attempts() -> None:
    store = MemorySessionStore()
    authz, tools = make(SessionConfig(store=store, max_attempts=3))
    original = store.load

    def load(session_id: str, **kwargs: Any) -> Any:
        snapshot = original(session_id, **kwargs)
        store.add_labels(session_id, [f"l{snapshot.version}"], owner=str(ALICE))  # changes every time
        return snapshot

    store.load = load  # type: ignore[method-assign]
    with capture_events() as events, authz.acting_as(ALICE), authz.session("c"), \
            pytest.raises(az.AccessDenied) as denied:
        tools["ping"]("a")
    assert "kept changing" in denied.value.decision.errors[0]
    assert [event.decision for event in events] == ["deny"]  # one event for the call, not one per attempt


# -- crashes and retries -----------------------------------------------------------------------


def test_a_call_outside_a_session_gets_its_own_key_when_read_and_keeps_it() -> None:
    authz, _ = make(SessionConfig())
    with authz.acting_as(ALICE):
        first = authz.begin_tool_call("delete", {"name": "a"}, call_id="tc-1")
        second = authz.begin_tool_call("delete", {"name": "a"}, call_id="tc-1")
    assert first.external_id == second.external_id == "tc-1" and first.session is None
    assert first.call_id == first.call_id != second.call_id
    assert len(first.call_id) == 32 and first.call_id[12] == "4"  # a version 4 UUID in hex


def test_a_crashed_call_keeps_counting_and_its_id_does_not_run_again() -> None:
    """The tool may have run before the crash: the call counts, however long ago it was admitted."""
    clock = Clock()
    authz, _ = make(SessionConfig(clock=clock))
    with authz.acting_as(ALICE), authz.session("c") as session:
        call = authz.begin_tool_call("delete", {"name": "a"}, call_id="tc-1")
        assert call.admits and call.external_id == "tc-1" and call.call_id != "tc-1"
        del call  # the process "crashed" here: the tool never reported back
        assert session.state().calls == {}
        assert [p.external_id for p in session.state().pending] == ["tc-1"]
        clock.now += 10 * 86_400
        assert session.facts().calls == {"delete": 1}  # in flight: it still counts against limits
        retry = authz.begin_tool_call("delete", {"name": "a"}, call_id="tc-1")
        assert not retry.admits and "already running" in retry.decision.errors[0]
        assert session.facts().calls == {"delete": 1}


def test_a_repeated_call_id_in_flight_is_refused_not_counted_against_itself() -> None:
    authz, _ = make()
    with capture_events() as events, authz.acting_as(ALICE), authz.session("c") as session:
        for name in ("a", "b"):
            with authz.begin_tool_call("delete", {"name": name}):
                pass
        first = authz.begin_tool_call("delete", {"name": "c"}, call_id="tc-3")
        assert first.admits
        retry = authz.begin_tool_call("delete", {"name": "c"}, call_id="tc-3")
        assert not retry.admits
        with retry:
            pass
        with first:
            pass
        assert session.state().calls == {"delete": 3}
    assert [event.decision for event in events] == ["allow", "allow", "allow", "deny"]


def test_a_completed_call_id_is_not_admitted_again() -> None:
    authz, _ = make()
    with capture_events() as events, authz.acting_as(ALICE), authz.session("c") as session:
        with authz.begin_tool_call("refund", {"order": "o", "amount": 50}, call_id="tc-9") as call:
            assert call.admits
        replay = authz.begin_tool_call("refund", {"order": "o", "amount": 50}, call_id="tc-9")
        assert not replay.admits
        assert "already completed" in replay.decision.errors[0]
        other = authz.begin_tool_call("refund", {"order": "o", "amount": 1}, call_id="tc-9")
        assert not other.admits  # whatever the arguments: the id ran once
        with replay:
            pass
        assert session.state().totals == {"refund": {"amount": 50}}
        assert session.state().calls == {"refund": 1}
    assert events[-1].decision == "deny"


def test_completion_is_idempotent() -> None:
    authz, _ = make()
    with authz.acting_as(ALICE), authz.session("c") as session:
        call = authz.begin_tool_call("ping", {"host": "a"})
        assert call.complete() is True
        assert call.complete() is False
        call.release()
        assert session.state().calls == {"ping": 1}


def test_a_call_marked_failed_is_released() -> None:
    authz, _ = make()
    with authz.acting_as(ALICE), authz.session("c") as session:
        with authz.begin_tool_call("ping", {"host": "a"}) as call:
            call.fail()
        assert session.state().calls == {}


def test_begin_call_counts_a_call_that_is_no_guarded_tool() -> None:
    authz, _ = make(SessionConfig(sums={"ship": ["weight"]}))
    with authz.acting_as(ALICE), authz.session("c") as session:
        with authz.begin_call(action="ship", resource=az.EntityUID("Tool", "ship"),
                              context={"input": {"weight": 3}}) as call:
            assert call.admits
        assert session.state().calls == {"ship": 1}
        assert session.state().totals == {"ship": {"weight": 3}}


def test_without_a_session_begin_tool_call_only_decides() -> None:
    authz, _ = make()
    with authz.acting_as(ALICE):
        with authz.begin_tool_call("ping", {"host": "a"}) as call:
            assert call.admits and call.session is None
        assert not call.complete()


# -- labels ---------------------------------------------------------------------------------


def test_the_filter_records_the_labels_of_what_it_lets_through() -> None:
    authz = az.Authorizer.from_text(
        'permit(principal, action == Action::"read", resource) when { resource.open };'
        '@id("no-mail") forbid(principal, action == Action::"mail", resource)'
        ' when { context has session && context.session.seen.contains("secret") };'
        'permit(principal, action == Action::"mail", resource);', audit=[])
    docs = [
        az.Entity(uid=az.EntityUID("Doc", "a"), attrs={"open": True, "labels": ["public"]}),
        az.Entity(uid=az.EntityUID("Doc", "b"), attrs={"open": False, "labels": ["secret"]}),
    ]
    with authz.acting_as(ALICE), authz.session("c") as session:
        assert authz.filter(docs, action="read", resource=lambda d: d).denied == 1
        assert session.state().seen == frozenset({"public"})  # the denied secret is not "seen"
        assert authz.authorize(action="mail", resource=az.EntityUID("Tool", "mail")).allowed
        docs[1] = az.Entity(uid=az.EntityUID("Doc", "b"), attrs={"open": True, "labels": ["secret"]})
        asyncio.run(authz.afilter(docs, action="read", resource=lambda d: d))
        assert session.state().seen == frozenset({"public", "secret"})
        assert authz.authorize(action="mail", resource=az.EntityUID("Tool", "mail")).reasons == ("no-mail",)


def test_labels_of_stored_entities_and_other_attributes() -> None:
    stored = [az.Entity(uid=az.EntityUID("Doc", "s"), attrs={"classification": "confidential", "pii": True,
                                                              "labels": ["hr"]})]
    authz = az.Authorizer.from_text("permit(principal, action, resource);", entities=stored, audit=[],
                                    sessions=SessionConfig(labels=("labels", "classification")))
    with authz.acting_as(ALICE), authz.session("c") as session:
        authz.filter(["s"], action="read", resource=lambda name: az.EntityUID("Doc", name))
        assert session.state().seen == frozenset({"hr", "confidential"})
    by_callable = az.Authorizer.from_text(
        "permit(principal, action, resource);", entities=stored, audit=[],
        sessions=SessionConfig(labels=lambda e: ["pii"] if e.attrs.get("pii") else []))
    with by_callable.acting_as(ALICE), by_callable.session("c") as session:
        by_callable.filter(["s"], action="read", resource=lambda name: az.EntityUID("Doc", name))
        assert session.state().seen == frozenset({"pii"})


def test_read_tools_record_their_resource_labels_when_they_complete() -> None:
    stored = [az.Entity(uid=az.EntityUID("Doc", "q3"), attrs={"labels": ["confidential"]})]
    authz = az.Authorizer.from_text("permit(principal, action, resource);", entities=stored, audit=[],
                                    sessions=SessionConfig(reads={"read_doc"}))

    @authz.guard(resource=lambda args: az.EntityUID("Doc", args["doc"]), resource_types=["Doc"])
    def read_doc(doc: str) -> str:
        return "contents"

    with authz.acting_as(ALICE), authz.session("c") as session:
        call = authz.begin_tool_call("read_doc", {"doc": "q3"})
        assert session.state().seen == frozenset()  # not before the content was returned
        with call:
            pass
        assert session.state().seen == frozenset({"confidential"})
        read_doc("q3")


def test_see_records_labels_and_rejects_non_strings() -> None:
    session = Session("c", MemorySessionStore(), owner=ALICE)
    session.see("a", "b")
    assert session.state().seen == frozenset({"a", "b"})
    with pytest.raises(az.InvalidValueError):
        session.see(3)  # type: ignore[arg-type]
    session.clear()
    assert session.state().version == 0


# -- approvals ---------------------------------------------------------------------------------


PAY = az.EntityUID("Tool", "pay")


def test_an_approval_covers_exactly_its_principal_action_resource_and_arguments() -> None:
    authz, tools = make()
    with authz.acting_as(ALICE), authz.session("c") as session:
        with pytest.raises(az.AccessDenied) as denied:
            tools["pay"]("o-1", 50)
        assert denied_by(denied) == ("big-payment-needs-approval",)
        approval = session.approve("pay", PAY, arguments={"order": "o-1", "amount": 50},
                                   granted_by="manager@acme")
        assert approval.principal == str(ALICE)
        assert tools["pay"]("o-1", 50) == "paid"
        with pytest.raises(az.AccessDenied):
            tools["pay"]("o-1", 5000)  # the same order, another amount
        with pytest.raises(az.AccessDenied):
            tools["pay"]("o-2", 50)  # another order
        assert tools["pay"]("o-2", 5) == "paid"  # small payments need none
        assert session.revoke(approval) is True
        assert session.revoke(approval) is False
        with pytest.raises(az.AccessDenied):
            tools["pay"]("o-1", 50)
        assert session.state().approvals == ()


def test_an_approval_of_another_resource_or_action_does_not_cover_a_call() -> None:
    authz, tools = make()
    with authz.acting_as(ALICE), authz.session("c") as session:
        session.approve("pay", az.EntityUID("Order", "o-1"), arguments={"order": "o-1", "amount": 50})
        session.approve("refund", PAY, arguments={"order": "o-1", "amount": 50})
        session.approve("pay", PAY, arguments={"order": "o-1"})  # not every argument
        with pytest.raises(az.AccessDenied):
            tools["pay"]("o-1", 50)
        with pytest.raises(az.InvalidValueError):
            session.approve("pay", "Order::o-1", arguments={})  # type: ignore[arg-type]
        with pytest.raises(az.InvalidValueError):
            session.approve("pay", None, arguments={})  # type: ignore[arg-type]
        session.approve("pay", PAY)  # only a call without arguments
        with pytest.raises(az.AccessDenied):
            tools["pay"]("o-1", 50)
        assert authz.authorize(action="pay", resource=PAY, context={"input": {"amount": 50}}).reasons == (
            "big-payment-needs-approval",)


def test_approvals_are_per_session() -> None:
    authz, tools = make()
    with authz.acting_as(ALICE):
        with authz.session("a") as a:
            a.approve("pay", PAY, arguments={"order": "o", "amount": 50})
            assert tools["pay"]("o", 50) == "paid"
        with authz.session("b"), pytest.raises(az.AccessDenied):
            tools["pay"]("o", 50)


# -- the record and its shape ------------------------------------------------------------------


def test_record_without_schema_has_every_attribute() -> None:
    facts = SessionFacts(seen=frozenset({"b", "a"}), calls={"x": 2}, window_calls={"x": 1},
                         totals={"r": {"amount": 5, "fee": decimal.Decimal("0.5")}}, recent=("x", "y", "x"))
    record = session_record(facts, FULL_SHAPE, approved=True, actions=["z"],
                            sum_kinds={"r": {"amount": "Long", "tax": "decimal"}})
    assert record["seen"] == ["a", "b"]
    assert record["actions"] == ["x"]
    assert record["last_action"] == "x" and record["last_actions"] == ["x", "y"]
    assert record["calls"] == {"x": 2, "z": 0} and record["window_calls"] == {"x": 1, "z": 0}
    assert record["totals"]["r"]["amount"] == 5
    assert record["totals"]["r"]["tax"] == az.decimal("0.0000")
    assert record["totals"]["r"]["fee"] == az.decimal("0.5000")
    assert record["approved"] is True


def test_totals_are_clamped_to_cedar_ranges() -> None:
    facts = SessionFacts(totals={"r": {"a": 2**70, "d": decimal.Decimal("1e20")}})
    record = session_record(facts, FULL_SHAPE, approved=False)
    assert record["totals"]["r"]["a"] == 2**63 - 1
    assert record["totals"]["r"]["d"] == az.decimal("922337203685477.5807")


def test_the_record_is_cut_to_what_the_schema_declares() -> None:
    schema = """
    entity U; entity T;
    type S = { seen: Set<String>, calls: { a: Long }, totals: { a: { n: __cedar::decimal } } };
    action a appliesTo { principal: U, resource: T, context: { input: { n: decimal }, session?: S } };
    action b appliesTo { principal: U, resource: T, context: { input: { n: Long } } };
    """
    shapes = SchemaShapes(schema)
    shape = shapes.shape(az.EntityUID("Action", "a"))
    assert shape is not None and shape.attributes == frozenset({"seen", "calls", "totals"})
    assert shape.calls == frozenset({"a"}) and shape.totals == {"a": {"n": "decimal"}}
    assert shapes.shape(az.EntityUID("Action", "b")) is None
    assert shapes.shape(az.EntityUID("Action", "zz")) is None
    record = session_record(SessionFacts(calls={"a": 1, "other": 4}, totals={"a": {"n": 2}}), shape,
                            approved=True)
    assert record == {"seen": [], "calls": {"a": 1}, "totals": {"a": {"n": az.decimal("2.0000")}}}


def test_requests_conform_to_a_schema_declaring_a_subset_of_the_session(tmp_path: Path) -> None:
    schema = """
    entity User; entity Tool;
    type Session = { seen: Set<String> };
    action mail appliesTo { principal: User, resource: Tool,
                            context: { input: { to: String }, session?: Session } };
    action ping appliesTo { principal: User, resource: Tool, context: { input: { host: String } } };
    """
    authz = az.Authorizer.from_text(
        'forbid(principal, action == Action::"mail", resource) when { context has session && '
        'context.session.seen.contains("secret") }; permit(principal, action, resource);',
        schema=schema, audit=[])

    @authz.guard
    def mail(to: str) -> str:
        return "sent"

    @authz.guard
    def ping(host: str) -> str:
        return "pong"

    with authz.acting_as(ALICE), authz.session("c") as session:
        assert mail("a@b") == "sent"
        assert ping("h") == "pong"  # its action declares no session: none is sent
        session.see("secret")
        with pytest.raises(az.AccessDenied):
            mail("a@b")
        assert session.state().calls == {"mail": 1, "ping": 1}


def test_the_example_store_schema_shapes_every_action() -> None:
    store = az.PolicyStore.from_directory(POLICIES)
    assert store.schema_text is not None
    shapes = SchemaShapes(store.schema_text)
    shape = shapes.shape(az.EntityUID("Action", "issue_refund"))
    assert shape is not None and shape.totals == {"issue_refund": {"amount": "Long"}}
    assert shape.calls == frozenset({"delete_document", "issue_refund", "read_document",
                                     "search_documents", "send_email"})
    read = shapes.shape(az.EntityUID("Action", "read"))
    assert read is not None and read.attributes == shape.attributes


def test_an_explicit_schema_shapes_the_record_for_engines_without_one() -> None:
    schema = "entity U; type Session = { seen: Set<String> }; " \
             "action a appliesTo { principal: U, resource: U, context: { session?: Session } };"
    authz = az.Authorizer.from_text("permit(principal, action, resource);", audit=[],
                                    sessions=SessionConfig(schema=schema), record_requests=True)
    with capture_events() as events, authz.acting_as(ALICE), authz.session("c"):
        authz.authorize(action="a", resource=ALICE)
    assert events[-1].request is not None
    assert events[-1].request["request"]["context"] == {"session": {"seen": []}}


def test_session_record_type_is_what_generation_declares() -> None:
    record = session_record_type(["b", "a"], {"a": {"n": {"type": "Long"}}, "b": {}})
    assert list(record["attributes"]["calls"]["attributes"]) == ["a", "b"]
    assert record["attributes"]["totals"]["attributes"] == {
        "a": {"type": "Record", "attributes": {"n": {"type": "Long"}}}}


# -- schema generation -------------------------------------------------------------------------


STUB = "entity User; entity Tool; type Session = { seen: Set<String> };"


def test_generation_declares_the_session_type_from_the_tools() -> None:
    authz, _ = make()
    text = generate_schema(STUB, tools=authz.tools, principal_types=["User"])
    assert "window_calls" in text and "totals" in text
    import cedarpy
    json_schema = generate_schema({"": {"entityTypes": {"User": {}, "Tool": {}}, "actions": {},
                                        "commonTypes": {"Session": {"type": "Record", "attributes": {}}}}},
                                  tools=authz.tools, principal_types=["User"])
    from_json = str(cedarpy.Schema.from_json_str(json_schema)).replace("__cedar::", "")
    assert from_json == str(cedarpy.Schema.from_str(text))
    shape = SchemaShapes(text).shape(az.EntityUID("Action", "refund"))
    assert shape is not None and shape.totals == {"refund": {"amount": "Long"}}
    assert shape.calls == frozenset(authz.tools)


def test_generation_takes_summed_arguments_of_the_session_config() -> None:
    authz, _ = make()
    text = generate_schema(STUB, tools=authz.tools, principal_types=["User"],
                           session_sums={"pay": ["amount"]})
    shape = SchemaShapes(text).shape(az.EntityUID("Action", "pay"))
    assert shape is not None and shape.totals == {"pay": {"amount": "Long"}, "refund": {"amount": "Long"}}
    with pytest.raises(az.ConfigurationError, match="names no tool action"):
        generate_schema(STUB, tools=authz.tools, principal_types=["User"], session_sums={"nope": ["a"]})
    with pytest.raises(az.ConfigurationError, match="not an int or decimal"):
        generate_schema(STUB, tools=authz.tools, principal_types=["User"], session_sums={"mail": ["to"]})


def test_policies_reading_session_facts_validate_against_the_generated_schema() -> None:
    authz, _ = make()
    authz.validate_tools(stub=STUB, principal_types=["User"])
    typo = az.Authorizer.from_text(
        'forbid(principal, action == Action::"delete", resource) when { context has session && '
        'context.session.calls.delte >= 3 };')
    typo.tools.update(authz.tools)
    with pytest.raises(az.PolicyError):
        typo.validate_tools(stub=STUB, principal_types=["User"])


def test_summing_an_argument_that_is_no_number_is_a_configuration_error() -> None:
    authz, tools = make(SessionConfig(sums={"mail": ["to"]}))
    with authz.acting_as(ALICE), authz.session("c"), pytest.raises(az.ConfigurationError, match="sums"):
        tools["mail"]("x@y")
