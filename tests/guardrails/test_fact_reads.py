"""A request carries only the ``context.guardrail.input`` attributes a policy can read, and decides
exactly as with the whole fact (``agentauthz/guardrails/_reads.py``)."""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import agentauthz as az
from agentauthz.guardrails._detector import Source
from agentauthz.guardrails._guardrail import INPUT_FACT_TYPE
from agentauthz.guardrails._reads import FACT_PATH, InputFactReads
from agentauthz.session._facts import attributes_read
from tests.strategies import GUARDRAIL_LEVELS, GUARDRAIL_SETS, guardrail_findings, guardrail_policies

ALL = frozenset(INPUT_FACT_TYPE["attributes"])
ALICE = az.EntityUID("User", "alice")
BODY = "Please call carol on +1 415-555-0100 about the May launch"


class Fixed:
    """A detector answering the same findings for every text."""

    name = "fixed"

    def __init__(self, findings: Sequence[az.Finding] = ()) -> None:
        self.findings = list(findings)

    def detect(self, text: str, *, source: Source) -> Sequence[az.Finding]:
        return self.findings

    async def adetect(self, text: str, *, source: Source) -> Sequence[az.Finding]:
        return self.findings


def reads(policies: str) -> frozenset[str] | None:
    return attributes_read(az.PolicyStore.from_text(policies, validate=False).policies, FACT_PATH)


# -- what policies read ----------------------------------------------------------------------------


@pytest.mark.parametrize(("condition", "expected"), [
    ('context.guardrail.input.pii.contains("EMAIL")', {"pii"}),
    ("context.guardrail.input has topics", {"topics"}),
    ('context["guardrail"]["input"]["prompt_attack"] > 1', {"prompt_attack"}),
    ('context.guardrail.input["p\\u{69}i"].isEmpty()', {"pii"}),
    ("(if context.input.body like \"*a*\" then context.guardrail.input else {hate: 1}).hate > 0", {"hate"}),
    ("(if true then context.guardrail else context).input.pii.isEmpty()", {"pii"}),
    ("context has guardrail && context.guardrail has input", set()),
    ('context.input.body like "*x*"', set()),
    ("principal == User::\"alice\"", set()),
])
def test_the_attributes_a_policy_reads_are_those_named_after_the_fact(condition: str,
                                                                        expected: set[str]) -> None:
    assert reads(f"forbid(principal, action, resource) when {{ {condition} }};") == expected


@pytest.mark.parametrize("condition", [
    'context.guardrail.input == {"available": true}',
    'context.guardrail == {"input": {}}',
    "context == {}",
    "[context.guardrail.input].contains(context.guardrail.input)",
    "{a: context.guardrail}.a.input.pii.isEmpty()",
    "(if true then context.guardrail else [context.guardrail].contains({})).input.pii.isEmpty()",
    "(if true then (if context.guardrail.input == {} then context.guardrail else context.guardrail).input"
    " else context.guardrail.input).pii.isEmpty()",
])
def test_a_record_holding_the_fact_used_whole_means_every_attribute_is_read(condition: str) -> None:
    assert reads(f"forbid(principal, action, resource) when {{ {condition} }};") is None


def test_a_template_reading_the_fact_counts() -> None:
    policies = ('@id("t") permit(principal == ?principal, action, resource) when '
                '{ context.guardrail.input.words.isEmpty() };')
    assert reads(policies) == {"words"}


def test_the_schema_must_let_an_unread_attribute_be_absent() -> None:
    schema = ('entity User; entity Tool; action send appliesTo { principal: User, resource: Tool, '
              'context: { guardrail: { input: { available: Bool, pii?: Set<String>, '
              'topics?: Set<String> } } } };'
              'action other appliesTo { principal: User, resource: Tool };')
    store = az.PolicyStore.from_text(
        'forbid(principal, action, resource) when { context.guardrail.input has topics };',
        schema=schema, validate=False)
    found = InputFactReads(store.snapshot, ALL)
    resolve = az.LocalEngine(store).resolve_action
    # available is required, topics is read: only pii may go
    assert found.omitted("send", resolve) == {"pii"}
    assert found.omitted("other", resolve) == frozenset()  # declares no fact: nothing is cut


def test_with_the_generated_schema_a_request_carries_the_whole_fact() -> None:
    authz = az.Authorizer.from_text("permit(principal, action, resource);")

    @authz.guard(guardrail=az.LocalDetector())
    def send(body: str) -> str:
        return "sent"

    schema = az.generate_schema("entity User; entity Tool;", tools=authz.tools, principal_types=["User"])
    store = az.PolicyStore.from_text("permit(principal, action, resource);", schema=schema)
    assert InputFactReads(store.snapshot, ALL).omitted("send", az.LocalEngine(store).resolve_action) \
        == frozenset()


# -- what a request carries --------------------------------------------------------------------------


def carried(authz: az.Authorizer, sink: az.MemorySink, findings: Sequence[az.Finding] = ()) -> set[str]:
    @authz.guard(guardrail=Fixed(findings), name="send")
    def send(body: str) -> str:
        return "sent"

    with authz.acting_as(ALICE):
        send(BODY)
    request = sink.events[-1].request
    assert request is not None
    return set(request["request"]["context"]["guardrail"]["input"])


def test_a_request_carries_only_the_attributes_a_policy_reads() -> None:
    sink = az.MemorySink()
    authz = az.Authorizer.from_text(
        'permit(principal, action, resource);\n'
        'forbid(principal, action, resource) when { context.guardrail.input.pii.contains("EMAIL") };',
        audit=[sink], record_requests=True)
    assert carried(authz, sink) == {"pii"}


def test_a_store_that_can_reload_gets_the_attributes_its_current_version_reads(tmp_path: Path) -> None:
    (tmp_path / "policies.cedar").write_text(
        '@id("all") permit(principal, action, resource);\n'
        '@id("no-email") forbid(principal, action, resource) when '
        '{ context.guardrail.input.pii.contains("EMAIL") };')
    sink = az.MemorySink()
    authz = az.Authorizer.from_directory(tmp_path, audit=[sink], record_requests=True)
    assert carried(authz, sink) == {"pii"}
    (tmp_path / "topics.cedar").write_text(
        '@id("no-weapons") forbid(principal, action, resource) when '
        '{ context.guardrail.input has topics && context.guardrail.input.topics.contains("weapons") };')
    assert authz.engine.store.reload()  # type: ignore[attr-defined]
    assert carried(authz, sink) == {"pii", "topics"}


def test_a_forbid_a_reload_adds_reads_its_attribute_and_refuses(tmp_path: Path) -> None:
    (tmp_path / "policies.cedar").write_text('@id("all") permit(principal, action, resource);')
    authz = az.Authorizer.from_directory(tmp_path)

    @authz.guard(guardrail=Fixed([az.Finding("topic", "weapons")]), on_deny="message")
    def send(body: str) -> str:
        return "sent"

    with authz.acting_as(ALICE):
        assert send(BODY) == "sent"
        (tmp_path / "weapons.cedar").write_text(
            '@id("no-weapons") forbid(principal, action, resource) when '
            '{ context.guardrail.input.topics.contains("weapons") };')
        assert authz.engine.store.reload()  # type: ignore[attr-defined]
        assert send(BODY) != "sent"


# -- the trimmed fact decides as the whole fact ------------------------------------------------------


def _schema(optional: frozenset[str]) -> str:
    def attribute(name: str, kind: str) -> str:
        return f"{name}{'?' if name in optional else ''}: {kind}"

    fact = ", ".join([attribute("available", "Bool"),
                      *(attribute(name, "Long") for name in GUARDRAIL_LEVELS),
                      *(attribute(name, "Set<String>") for name in GUARDRAIL_SETS)])
    return ("entity User; entity Tool; action send appliesTo { principal: User, resource: Tool, "
            f"context: {{ input: {{ body: String }}, guardrail: {{ input: {{ {fact} }} }} }} }};")


def _outcome(event: az.AuditEvent) -> tuple[Any, ...]:
    return event.decision, tuple(event.reasons), tuple(event.errors)


def _guarded_send(store: az.PolicyStore, found: Sequence[tuple[Any, ...]], policy_errors: str
                  ) -> tuple[az.Authorizer, az.MemorySink, Callable[[str], str], dict[str, Any]]:
    """An Authorizer of ``store`` auditing to a sink, its tool ``send`` guarded by a detector finding
    ``found``, and the whole fact that detector's assessment gives."""
    sink = az.MemorySink()
    authz = az.Authorizer(az.LocalEngine(store), audit=[sink], record_requests=True,
                          policy_errors=policy_errors)  # type: ignore[arg-type]
    detector = Fixed([az.Finding(category, kind, level) for category, kind, level in found])

    @authz.guard(guardrail=detector, name="send", on_deny="message")
    def send(body: str) -> str:
        return "sent"

    return authz, sink, send, az.Guardrail(detector).assess(BODY, "INPUT").fact()


def _decided_on_the_whole_fact(authz: az.Authorizer, sink: az.MemorySink,
                               whole: dict[str, Any]) -> az.AuditEvent:
    """The audit event of ``authorize`` of the guarded call's request given the whole fact by hand."""
    authz.authorize(action="send", resource=az.EntityUID("Tool", "send"),
                    context={"input": {"body": BODY}, "guardrail": {"input": whole}})
    return sink.events[-1]


def assert_decides_as_the_whole_fact(policies: str, found: Sequence[tuple[Any, ...]], *, schema: bool,
                                     optional: set[str], policy_errors: str) -> None:
    """A guarded call (the trimmed fact) decides as ``authorize`` with the whole fact, errors included."""
    try:
        store = az.PolicyStore.from_text(policies, schema=_schema(frozenset(optional)) if schema else None,
                                         validate=False)
    except az.PolicyError:
        return  # text Cedar does not parse: nothing to decide
    authz, sink, send, whole = _guarded_send(store, found, policy_errors)
    with authz.acting_as(ALICE):
        send(BODY)
        trimmed = sink.events[-1]
        reference = _decided_on_the_whole_fact(authz, sink, whole)
    assert _outcome(trimmed) == _outcome(reference)
    assert trimmed.request is not None
    sent = set(trimmed.request["request"]["context"]["guardrail"]["input"])
    read = attributes_read(store.policies, FACT_PATH)
    needed = ALL if read is None else read & ALL
    assert sent >= needed  # every attribute a policy reads is sent
    assert sent == (needed if not schema else needed | (ALL - frozenset(optional)))


@pytest.mark.parametrize("policy_errors", ["skip", "deny"])
@pytest.mark.parametrize("schema", [False, True])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policies=guardrail_policies, found=guardrail_findings, optional=st.sets(st.sampled_from(sorted(ALL))))
def test_the_trimmed_fact_decides_exactly_as_the_whole_fact(
        policy_errors: str, schema: bool, policies: str, found: list[tuple[Any, ...]],
        optional: set[str]) -> None:
    assert_decides_as_the_whole_fact(policies, found, schema=schema, optional=optional,
                                     policy_errors=policy_errors)


@pytest.mark.parametrize("policy_errors", ["skip", "deny"])
@pytest.mark.parametrize("condition", [
    "context.guardrail.input == {}",
    'context.guardrail == {"input": {}}',
    'context == {"input": {"body": "' + BODY + '"}, "guardrail": {"input": {}}}',
    '{"a": context.guardrail.input}.a == {}',
    "[context.guardrail.input].contains({})",
    'context.guardrail.input.available && context.guardrail.input == {"available": true}',
    "(if true then context.guardrail.input else {}) == {}",
    "(if true then (if context.guardrail.input == {} then context.guardrail else context.guardrail).input"
    " else context.guardrail.input).available",
])
def test_a_record_compared_whole_decides_as_the_whole_fact(condition: str, policy_errors: str) -> None:
    for effect in ("permit", "forbid"):
        assert_decides_as_the_whole_fact(
            f'@id("all") permit(principal, action, resource);\n'
            f'@id("p") {effect}(principal, action, resource) when {{ {condition} }};',
            [], schema=False, optional=set(), policy_errors=policy_errors)


# -- async calls assess with adetect -----------------------------------------------------------------


class Awaiting:
    """A detector whose async path awaits (and records that it did); its blocking path must not run."""

    name = "awaiting"

    def __init__(self) -> None:
        self.awaited = 0

    def detect(self, text: str, *, source: Source) -> Sequence[az.Finding]:
        raise AssertionError("an async tool's arguments were assessed with the blocking detect")

    async def adetect(self, text: str, *, source: Source) -> Sequence[az.Finding]:
        await asyncio.sleep(0.01)
        self.awaited += 1
        return [az.Finding("pii", "EMAIL")]


def test_an_async_tool_assesses_its_arguments_with_adetect_without_blocking_the_loop() -> None:
    authz = az.Authorizer.from_text(
        '@id("all") permit(principal, action, resource);\n'
        '@id("no-email") forbid(principal, action, resource) when '
        '{ context.guardrail.input.pii.contains("EMAIL") };')
    detector = Awaiting()

    @authz.guard(guardrail=az.Guardrail(detector, outputs=False, cache_size=0), on_deny="message")
    async def send(body: str) -> str:
        return "sent"

    ticks = 0

    async def clock() -> None:
        nonlocal ticks
        for _ in range(20):
            await asyncio.sleep(0.001)
            ticks += 1

    async def main() -> list[str]:
        with authz.acting_as(ALICE):
            timer = asyncio.create_task(clock())
            answers = await asyncio.gather(send("mail eve"), send("mail bob"))
            await timer
            return list(answers)

    answers = asyncio.run(main())
    assert detector.awaited == 2
    assert all(answer != "sent" for answer in answers)  # the finding reached the policy
    assert ticks == 20


def test_an_async_tool_whose_detector_fails_is_refused_and_audited() -> None:
    sink = az.MemorySink()
    authz = az.Authorizer.from_text('@id("all") permit(principal, action, resource);', audit=[sink])

    class Down(Fixed):
        async def adetect(self, text: str, *, source: Source) -> Sequence[az.Finding]:
            raise az.GuardrailUnavailable("down")

    @authz.guard(guardrail=az.Guardrail(Down(), on_error="raise"))
    async def send(body: str) -> str:
        return "sent"

    with authz.acting_as(ALICE), pytest.raises(az.GuardrailUnavailable):
        asyncio.run(send(BODY))
    assert sink.events[-1].decision == "deny"


# -- Verified Permissions decides the same ------------------------------------------------------------

PARITY_POLICIES = (
    '@id("all") permit(principal, action, resource);\n'
    '@id("no-email") forbid(principal, action, resource) when '
    '{ context.guardrail.input.pii.contains("EMAIL") };\n'
    '@id("attack") forbid(principal, action, resource) when { context.guardrail.input.prompt_attack >= 2 };\n'
    '@id("topics") forbid(principal, action, resource) when '
    '{ context.guardrail.input has topics && context.guardrail.input.topics.contains("weapons") };\n'
    '@id("unassessed") forbid(principal, action, resource) unless { context.guardrail.input.available };\n'
)
PARITY_FINDINGS: list[list[az.Finding]] = [
    [], [az.Finding("pii", "EMAIL")], [az.Finding("pii", "PHONE")],
    [az.Finding("prompt_attack", "PROMPT_ATTACK", "MEDIUM")],
    [az.Finding("prompt_attack", "PROMPT_ATTACK", "LOW")],
    [az.Finding("topic", "weapons")],
    [az.Finding("content", "HATE", "HIGH"), az.Finding("word", "PROFANITY")],
]


@pytest.mark.parametrize("schema", [False, True])
def test_verified_permissions_decides_as_the_embedded_engine_with_the_trimmed_fact(schema: bool) -> None:
    from agentauthz.testing import LocalVerifiedPermissions

    optional = ALL - {"available"}
    store = az.PolicyStore.from_text(PARITY_POLICIES, schema=_schema(optional) if schema else None,
                                     validate=False)
    local_sink, remote_sink = az.MemorySink(), az.MemorySink()
    local = az.Authorizer(az.LocalEngine(store), audit=[local_sink], record_requests=True)
    with LocalVerifiedPermissions(store) as server, \
            az.VerifiedPermissionsEngine(server.policy_store_id, client=server.client()) as engine:
        remote = az.Authorizer(engine, audit=[remote_sink], record_requests=True)
        for findings in PARITY_FINDINGS:
            answers = []
            for authz, sink in ((local, local_sink), (remote, remote_sink)):
                @authz.guard(guardrail=az.Guardrail(Fixed(findings), cache_size=0), name="send",
                             on_deny="message")
                def send(body: str) -> str:
                    return "sent"

                with authz.acting_as(ALICE):
                    send(BODY)
                event = sink.events[-1]
                assert event.request is not None
                sent = set(event.request["request"]["context"]["guardrail"]["input"])
                answers.append((_outcome(event), sent))
            (local_outcome, local_sent), (remote_outcome, remote_sent) = answers
            assert local_outcome == remote_outcome
            assert remote_sent == ALL  # Verified Permissions: the policies are remote, the whole fact goes
            assert local_sent == {"available", "pii", "prompt_attack", "topics"}


# -- a store that can reload: the version a request was cut for decides it ---------------------------

RELOADED_FORBID = ('@id("no-weapons") forbid(principal, action, resource) when { context.guardrail.input '
                   'has topics && context.guardrail.input.topics.contains("weapons") };')


def _reloading(folder: Path, policies: str, **options: Any) -> az.Authorizer:
    (folder / "policies.cedar").write_text(policies)
    return az.Authorizer.from_directory(folder, **options)


def test_a_call_decided_after_a_reload_is_cut_again_for_the_version_deciding_it(tmp_path: Path) -> None:
    """Cut for a version reading no ``topics``, decided after a reload adding a ``has``-guarded forbid on
    them (an approval waited for): without ``topics`` the forbid's ``has`` is false and it would allow."""
    sink = az.MemorySink()
    authz = _reloading(tmp_path, '@id("all") permit(principal, action, resource);\n'
                       '@id("no-email") forbid(principal, action, resource) when '
                       '{ context.guardrail.input.pii.contains("EMAIL") };',
                       audit=[sink], record_requests=True)

    @authz.guard(guardrail=Fixed([az.Finding("topic", "weapons")]), name="send", on_deny="message")
    def send(body: str) -> str:
        return "sent"

    calls = authz._tool_calls
    spec = calls.spec(send)
    with authz.acting_as(ALICE):
        _, inputs = calls.checked(spec, {"body": BODY})
        assert set(inputs["context"]["guardrail"]["input"]) == {"pii"}  # cut for the version now
        (tmp_path / "weapons.cedar").write_text(RELOADED_FORBID)
        assert authz.engine.store.reload()  # type: ignore[attr-defined]
        decision = calls._decided(inputs, {"body": BODY}, spec).decision
    assert not decision.allowed and decision.reasons == ("no-weapons",)
    assert sink.events[-1].request is not None
    assert set(sink.events[-1].request["request"]["context"]["guardrail"]["input"]) == {"pii", "topics"}


class Reloading:
    """An entity provider that reloads the store while the Authorizer gathers a request's entities,
    between cutting the request and the engine choosing its version: the race a reload can win."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.store: az.PolicyStore | None = None

    def get_entities(self, uids: Any) -> list[az.Entity]:
        if self.store is not None and not (self.folder / "weapons.cedar").exists():
            (self.folder / "weapons.cedar").write_text(RELOADED_FORBID)
            assert self.store.reload()
        return []


def test_a_reload_while_a_call_is_decided_never_lets_the_new_version_decide_the_cut_request(
        tmp_path: Path) -> None:
    (tmp_path / "policies.cedar").write_text('@id("all") permit(principal, action, resource);\n'
                                             '@id("no-email") forbid(principal, action, resource) when '
                                             '{ context.guardrail.input.pii.contains("EMAIL") };')
    provider = Reloading(tmp_path)
    store = az.PolicyStore.from_directory(tmp_path)
    before = store.snapshot.fingerprint
    sink = az.MemorySink()
    authz = az.Authorizer(az.LocalEngine(store), entities=provider, audit=[sink], record_requests=True)

    @authz.guard(guardrail=Fixed([az.Finding("topic", "weapons")]), name="send", on_deny="message")
    def send(body: str) -> str:
        return "sent"

    provider.store = store
    with authz.acting_as(ALICE):
        send(BODY)
        cut = sink.events[-1]
        # The version the request was cut for decided it, as it decides the whole fact: never the
        # reloaded one, whose forbid would find no ``topics`` in the cut request and be skipped.
        assert cut.fingerprint == before != store.snapshot.fingerprint
        assert cut.request is not None
        assert set(cut.request["request"]["context"]["guardrail"]["input"]) == {"pii"}
        assert cut.decision == "allow"
        assert send(BODY) != "sent"  # the next call: cut for, and decided by, the new version


@pytest.mark.parametrize("policy_errors", ["skip", "deny"])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(policies=guardrail_policies, found=guardrail_findings, reloaded=guardrail_policies)
def test_a_reloading_store_decides_the_cut_fact_exactly_as_the_whole_fact_before_and_after_a_reload(
        policy_errors: str, policies: str, found: list[tuple[Any, ...]], reloaded: str) -> None:
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        (folder / "policies.cedar").write_text(policies)
        try:
            store = az.PolicyStore.from_directory(folder, validate=False)
        except az.PolicyError:
            return  # text Cedar does not parse: nothing to decide
        authz, sink, send, whole = _guarded_send(store, found, policy_errors)
        calls = authz._tool_calls
        spec = calls.spec(send)
        with authz.acting_as(ALICE):
            _, inputs = calls.checked(spec, {"body": BODY})  # cut for the first version
            (folder / "policies.cedar").write_text(reloaded)
            with contextlib.suppress(az.PolicyError):  # then the old version stays: it decides
                store.reload()
            for _ in range(2):  # decided after the reload, then cut and decided anew
                calls._decided(inputs, {"body": BODY}, spec)
                trimmed = sink.events[-1]
                reference = _decided_on_the_whole_fact(authz, sink, whole)
                assert _outcome(trimmed) == _outcome(reference)
                assert trimmed.fingerprint == reference.fingerprint == store.snapshot.fingerprint
                _, inputs = calls.checked(spec, {"body": BODY})
