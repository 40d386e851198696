"""Strands Agents: :class:`AuthzIntervention` (see :mod:`agentauthz.integrations.strands`)."""

from __future__ import annotations

try:
    from strands.hooks import (
        AfterInvocationEvent,
        AfterToolCallEvent,
        BeforeInvocationEvent,
        BeforeToolCallEvent,
    )
    from strands.interrupt import InterruptException
    from strands.interventions import Deny, InterventionHandler, Proceed, Transform
    from strands.middleware import (
        ExecuteToolContext,
        ExecuteToolStage,
        InvokeModelContext,
        InvokeModelStage,
        ToolResultEvent,
    )
except ImportError as _missing:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        'agentauthz.integrations.strands needs strands-agents: pip install "agentauthz[strands]"'
    ) from _missing

import asyncio
import copy
import logging
import threading
import time
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Literal

from agentauthz._authorizer import Authorizer
from agentauthz._errors import ConfigurationError, IdentityError, InvalidArguments
from agentauthz._identity import Identity, no_end_user
from agentauthz._model import Decision, EntityUID
from agentauthz.guardrails._detector import Detector
from agentauthz.guardrails._guardrail import Guardrail
from agentauthz.integrations.strands._specs import (
    PROFILES,
    STRANDS_RESOURCE,
    Profile,
    SpecCache,
    strands_session,
    tool_settings,
)
from agentauthz.integrations.strands._state import ABSENT, AgentState, Decided, Run, canonical
from agentauthz.session._approvals import APPROVAL_INTERRUPT, ApprovalRequest
from agentauthz.session._session import SESSION_KEY, Session, SessionStore, ToolCall
from agentauthz.tools._settings import ToolSettings

__all__ = ["PRINCIPAL_KEY", "SESSION_KEY", "AuthzIntervention", "SessionChoice"]

_logger = logging.getLogger("agentauthz")

PRINCIPAL_KEY = "agentauthz_principal"
"""Default key of the end user in ``invocation_state``."""

SessionChoice = Literal["agent"] | Callable[[Any, EntityUID], "str | Session | None"] | None
"""Which agentauthz session a Strands invocation records its calls in (see :class:`AuthzIntervention`)."""

_IN_FLIGHT = "a call with this id is already running for this agent: it does not run twice"
_UNDECIDED = "the tool was about to run without a decision (a hook let a refused call through)"
_CHANGED = "the call changed after it was decided (a hook or middleware replaced its tool or arguments)"


def _forget_sessions(store: SessionStore, session_ids: set[str]) -> None:
    """Delete the sessions named after an agent that is gone: nothing can name them any more."""
    for session_id in sorted(session_ids):
        try:
            store.delete(session_id)
        except Exception:  # a finalizer must not raise; the session stays, harmless
            _logger.warning("agentauthz: could not delete session %r of a collected Strands agent",
                            session_id, exc_info=True)


def _user_texts(messages: Any) -> list[str]:
    """The text blocks of the user's messages (never their tool results: those are no user's words)."""
    texts = []
    for message in messages or ():
        if isinstance(message, Mapping) and message.get("role") == "user":
            for block in message.get("content") or ():
                if isinstance(block, Mapping) and isinstance(block.get("text"), str) and block["text"]:
                    texts.append(block["text"])
    return texts


def _failed(event: AfterToolCallEvent[Any]) -> bool:
    """Whether the tool did not run to a successful result (cancelled, raised, or an error result)."""
    return (event.cancel_message is not None or event.exception is not None
            or event.result.get("status") == "error")


class AuthzIntervention(InterventionHandler):
    """Decides every tool call of a Strands agent for its end user: ``Agent(interventions=[...])``.

    * ``before_tool_call`` validates the model's raw input against the tool's
      JSON input schema (as :meth:`ToolSpec.from_json_schema
      <agentauthz.ToolSpec.from_json_schema>` does: an argument the schema does
      not declare is refused, values are coerced), decides the call, and hands
      the tool exactly the validated arguments the policy evaluated. Strands'
      ``@tool`` would otherwise drop undeclared keys silently and coerce values
      after the decision. A refused call does not run: the model reads
      ``"DENIED: "`` and :meth:`Authorizer.refusal <agentauthz.Authorizer.refusal>`
      (a generic text and the decision's id; reasons stay in the audit event).
      Any error of the integration itself refuses the call the same way; its
      text never reaches the model.
    * Before the tool runs, a check on Strands' ``ExecuteToolStage`` refuses it
      when its tool or arguments are no longer those decided (a later
      intervention, a hook ordered after interventions, or tool middleware
      changed them), or when no decision admitted it (a hook reset
      ``cancel_tool``).
    * ``after_tool_call`` counts the call in the session, or releases it when
      the tool failed or was cancelled.
    * Each model call is offered only the tools the user could call with some
      arguments (``authz.permitted_tools``); a hidden tool the model names
      anyway is still decided, and refused, in ``before_tool_call``.

    The end user is read once, when an invocation begins:
    ``invocation_state[principal_key]`` (an :class:`~agentauthz.EntityUID` or
    :class:`~agentauthz.Entity` the application put there; a string or dict is
    refused, it could come from a client) or the user bound with
    ``authz.acting_as(...)``; with neither the invocation raises
    :class:`~agentauthz.IdentityError`. A tool writing into ``invocation_state``
    cannot change the user of later calls: the user is frozen for the
    invocation, and the application's values under the intervention's keys are
    put back when it ends. Direct calls (``agent.tool.<name>(...)``) act for
    the user bound with ``acting_as`` only.

    Sessions (``context.session``, counted calls): ``invocation_state[session_key]``
    (an id or :class:`~agentauthz.session.Session`) or ``authz.session(...)``
    bound by the application win; otherwise ``session`` chooses: ``"agent"``
    (default) records the calls of each agent and end user in a session of
    their own (never shared between agents that share this intervention, nor
    between users; deleted from the store when the agent is garbage-collected),
    a callable ``(agent, user) -> id | Session | None`` picks one, ``None``
    records nothing.

    Args:
        authz: the Authorizer deciding the calls.
        principal_key: key of the end user in ``invocation_state``.
        session: which session records the calls (see above).
        session_key: key of the session in ``invocation_state``.
        tools: a :class:`~agentauthz.ToolSettings` per tool name (action,
            resource, resource types, context, summed arguments). Default: the
            action is the tool name and the resource ``Tool::"<name>"``.
        profile: ``"agentauthz"``, or ``"strands"`` to read policies written
            for Strands' ``CedarAuthorization`` unchanged: resource
            ``Resource::"agent"``, ``context.session`` = ``{call_count,
            hour_utc}`` where ``call_count`` counts this call and the earlier
            calls of the tool that went ahead, per agent and end user (in
            memory), and ``hour_utc`` is the hour of ``clock()`` in UTC. This
            profile binds no agentauthz session (an Authorizer built with
            ``sessions=`` refuses policies reading ``call_count``).
        filter_tools: offer the model only the tools the user could call.
        clock: seconds since the epoch, for the strands profile's ``hour_utc``
            (tests pass a fake clock).
        interrupt_approvals: put a call held for approval (only
            ``@approval("required")`` forbids denied it, see
            ``docs/approvals.md``) to a person with a Strands interrupt named
            ``"agentauthz.approval"``: resume with ``True`` to grant it (it
            then runs once). The Authorizer's approver, if any, is asked first.
            False: the model reads that the call awaits approval.
        guardrail: an ``az.Guardrail`` or a detector (off by default): the
            text blocks of the user messages an invocation starts with are
            assessed before the model reads them, and their findings recorded
            in the invocation's session as ``guardrail:user:...`` labels
            (``guardrail:user:prompt_attack:high``; ``guardrail:user:unavailable``
            when the detector failed), which policies read in
            ``context.session.seen``. A detector failing with
            ``on_error="raise"``, or labels that cannot be recorded, fail the
            invocation. A tool's own guardrail (``tools={name:
            ToolSettings(guardrail=...)}``) assesses its results
            (``guardrail:prompt_attack:high``...); a result that cannot be
            assessed or recorded is replaced by an error result.

    Raises:
        ConfigurationError: an option is wrong (a setting name, a profile).

    Example:
        >>> import agentauthz as az
        >>> from strands import Agent, tool
        >>> authz = az.Authorizer.from_text('permit(principal, action == Action::"search", resource);',
        ...                                 audit=[])
        >>> @tool
        ... def search(query: str) -> str:
        ...     '''Search the knowledge base.'''
        ...     return f"results for {query}"
        >>> @tool
        ... def wipe() -> str:
        ...     '''Delete everything.'''
        ...     return "wiped"
        >>> agent = Agent(tools=[search, wipe], interventions=[AuthzIntervention(authz)],
        ...               callback_handler=None)
        >>> with authz.acting_as(az.EntityUID("User", "alice")):  # direct calls, as a model's run the same
        ...     agent.tool.search(query="refunds")["content"][0]["text"]
        ...     agent.tool.wipe()["content"][0]["text"]
        'results for refunds'
        "DENIED: Tool 'wipe' is not permitted for this user (decision ...). Do not retry it."
    """

    def __init__(
        self,
        authz: Authorizer,
        *,
        principal_key: str = PRINCIPAL_KEY,
        session: SessionChoice = "agent",
        session_key: str = SESSION_KEY,
        tools: Mapping[str, ToolSettings] | None = None,
        profile: Profile = "agentauthz",
        filter_tools: bool = True,
        clock: Callable[[], float] = time.time,
        interrupt_approvals: bool = True,
        guardrail: Guardrail | Detector | None = None,
    ) -> None:
        if not isinstance(authz, Authorizer):
            raise ConfigurationError("AuthzIntervention needs an agentauthz Authorizer")
        if profile not in PROFILES:
            raise ConfigurationError(f"profile must be one of {PROFILES}, not {profile!r}")
        if session != "agent" and session is not None and not callable(session):
            raise ConfigurationError(
                "session is 'agent', None, or a callable (agent, user) -> id | Session | None")
        if profile == "strands" and session not in ("agent", None):
            raise ConfigurationError("the strands profile fills context.session itself: it takes no session=")
        for option, key in (("principal_key", principal_key), ("session_key", session_key)):
            if not isinstance(key, str) or not key:
                raise ConfigurationError(f"{option} must be a non-empty string")
        self.authz = authz
        self.principal_key = principal_key
        self.session_key = session_key
        self.session = session
        self.profile: Profile = profile
        self.filter_tools = filter_tools
        self.clock = clock
        self.interrupt_approvals = interrupt_approvals
        self.guardrail = Guardrail.of(guardrail)
        if self.guardrail is not None and (session is None or profile == "strands"):
            raise ConfigurationError("guardrail= records the findings of the user's messages in the "
                                     "invocation's session: it needs session= and the agentauthz profile")
        self._specs = SpecCache(tool_settings(tools), profile)
        self._agents: weakref.WeakKeyDictionary[Any, AgentState] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        """The handler's name on the agent (one AuthzIntervention per agent)."""
        return "agentauthz"

    # -- per agent ------------------------------------------------------------------------

    def _state_of(self, agent: Any) -> AgentState:
        """The agent's state; the first time, its tools are registered and its stages wired."""
        with self._lock:
            state = self._agents.get(agent)
            if state is None:
                state = AgentState()
                self._register(agent)
                if self.filter_tools:
                    agent.add_middleware(InvokeModelStage.Input, self._offer_permitted)
                agent.add_middleware(ExecuteToolStage, self._check_execution)
                agent.add_hook(self._invocation_ended, AfterInvocationEvent)
                weakref.finalize(agent, _forget_sessions, self.authz.session_store, state.sessions)
                self._agents[agent] = state
            return state

    def _register(self, agent: Any) -> None:
        """Register the agent's tools with the Authorizer, as guarded tools are.

        Sessions check that every summed argument a policy reads is summed by
        some registered tool (``sum_arguments``); ``Authorizer.validate_tools``
        sees them too. A tool already registered under that name keeps its spec.
        """
        if self.profile != "agentauthz":
            return  # its requests carry no agentauthz session
        for tool_spec in agent.tool_registry.get_all_tool_specs():
            try:
                spec = self._specs.spec(tool_spec)
            except ConfigurationError:
                continue  # never callable: refused when called, hidden from the model
            self.authz.tools.setdefault(spec.name, spec)

    def _session_for(self, agent: Any, state: AgentState, identity: Identity,
                     given: Any) -> str | Session | None:
        """The session an invocation's calls are recorded in (None: the application's bound one, or none).

        Raises:
            ConfigurationError: the given session is no id or Session, differs
                from the one the application bound, or comes with the strands profile.
        """
        source = f"invocation_state[{self.session_key!r}]"
        if given is not None and not (isinstance(given, Session) or (isinstance(given, str) and given)):
            raise ConfigurationError(
                f"{source} must be a session id string or a Session, not {type(given).__name__}")
        bound = self.authz.current_session
        if self.profile == "strands":
            if given is not None or bound is not None:
                raise ConfigurationError("the strands profile fills context.session itself: bind no session")
            return None
        if given is not None or bound is not None:
            with self.authz.session_bound_to(given, source=source):  # refuses two different sessions
                return given
        if self.session == "agent":
            named = f"strands:{state.key}:{identity.uid}"
            with self._lock:
                state.sessions.add(named)
            return named
        if self.session is None:
            return None
        chosen = self.session(agent, identity.uid)
        if chosen is not None and not (isinstance(chosen, Session) or (isinstance(chosen, str) and chosen)):
            raise ConfigurationError(
                f"session= returned {type(chosen).__name__}, not an id string or a Session")
        return chosen

    @contextmanager
    def _acting(self, identity: Identity | None, session: str | Session | None = None) -> Iterator[None]:
        """Bind this end user and session for the block."""
        if identity is None:
            yield
            return
        principal = identity.entity if identity.entity is not None else identity.uid
        with self.authz.bound_to(principal, correlation_id=identity.correlation_id), \
                self.authz.session_bound_to(session):
            yield

    def _resource_of(self, name: str) -> EntityUID:
        """The resource a refusal made before any decision is recorded with."""
        return STRANDS_RESOURCE if self.profile == "strands" else EntityUID(self.authz.tool_entity_type, name)

    # -- invocations ------------------------------------------------------------------------

    def before_invocation(self, event: BeforeInvocationEvent, **kwargs: Any) -> Proceed:
        """Read the end user and the session once, for the whole invocation.

        Raises:
            IdentityError: no end user (neither ``invocation_state[principal_key]``
                nor ``acting_as``), one that is not an EntityUID/Entity, or two
                different ones.
            ConfigurationError: the session given cannot be used.
        """
        state = self._state_of(event.agent)
        given = event.invocation_state
        kept = {key: given.get(key, ABSENT) for key in (self.principal_key, self.session_key)}
        source = f"invocation_state[{self.principal_key!r}]"
        with self.authz.bound_to(given.get(self.principal_key), source=source) as identity:
            if identity is None:
                raise no_end_user(None if self.principal_key == PRINCIPAL_KEY
                                  else f"this Strands invocation reads {source}")
            session = self._session_for(event.agent, state, identity, given.get(self.session_key))
        with self._acting(identity, session):
            bound = self.authz.current_session
            for text in _user_texts(event.messages):  # what the user said, for provenance
                if self.guardrail is not None:  # and its findings, before the model reads it
                    self.authz.screen_user_message(text, self.guardrail)
                if bound is not None:
                    bound.user_said(text)
        with self._lock:
            state.runs[id(given)] = Run(given, identity, session, kept)
        return Proceed()

    async def _invocation_ended(self, event: AfterInvocationEvent) -> None:
        """Forget the invocation, put back the application's values, release calls it never settled."""
        with self._lock:
            state = self._agents.get(event.agent)
            run = state.run_of(event.invocation_state) if state is not None else None
            if state is None or run is None:
                return
            del state.runs[id(run.state)]
            stale = [(key, d) for key, d in state.decided.items() if d is not None and d.run is run]
            for key, decided in stale:  # interrupted before their after-hook: they run again on resume
                del state.decided[key]
                state.uncount(decided.counted)
        run.restore()
        for _, decided in stale:
            await self._settle(decided.call, failed=True)

    # -- tool calls -------------------------------------------------------------------------

    async def before_tool_call(self, event: BeforeToolCallEvent[Any], **kwargs: Any) -> Deny | Transform:
        """Decide the call; when admitted, the tool gets exactly the decided arguments."""
        try:
            return await self._decide(event)
        except InterruptException:
            raise  # a held call pauses the agent until a person answers (see _approved)
        except Exception as exc:  # fail closed, and the model never reads the error
            name = str(event.tool_use.get("name", ""))
            _logger.warning("agentauthz: the Strands call of tool %r could not be decided and is refused: %s",
                            name, type(exc).__name__, exc_info=True)
            return Deny(reason=self._refusal_after_error(name, exc))

    def _refusal_after_error(self, name: str, exc: Exception) -> str:
        try:
            refused = self.authz.audit_refusal(
                action=name, resource=self._resource_of(name),
                reason=f"the Strands integration failed: {type(exc).__name__}")
        except Exception:  # the audit failed too: still a refusal, without an id
            refused = Decision(allowed=False)
        return self.authz.refusal(name, refused)

    async def _decide(self, event: BeforeToolCallEvent[Any]) -> Deny | Transform:
        state = self._state_of(event.agent)
        name = str(event.tool_use.get("name", ""))
        with self._lock:
            run = state.run_of(event.invocation_state)
        identity = run.identity if run is not None else self.authz.identity
        if identity is None:  # a direct call outside acting_as
            refused = self.authz.audit_missing_identity(name, self._resource_of(name))
            return Deny(reason=self.authz.refusal(name, refused, kind="no-identity"))
        session = run.session if run is not None else self._session_for(event.agent, state, identity, None)
        with self._acting(identity, session):
            if event.selected_tool is None:
                refused = self.authz.audit_refusal(action=name, resource=self._resource_of(name),
                                                   reason="unknown tool")
                return Deny(reason=self.authz.refusal(name, refused, kind="unknown"))
            key = (id(event.invocation_state), str(event.tool_use.get("toolUseId", "")))
            with self._lock:
                running = key in state.decided
                if not running:
                    state.decided[key] = None  # deciding: a second call with this id is refused
            if running:
                refused = self.authz.audit_refusal(action=name, resource=self._resource_of(name),
                                                   reason=_IN_FLIGHT)
                return Deny(reason=self.authz.refusal(name, refused))
            try:
                decided = await self._admit(event, state, run, identity, name)
            except BaseException:
                with self._lock:
                    state.decided.pop(key, None)
                raise
            with self._lock:
                if isinstance(decided, Decided):
                    state.decided[key] = decided
                else:
                    state.decided.pop(key, None)
        if not isinstance(decided, Decided):
            return Deny(reason=decided)
        tool_use = {**event.tool_use, "input": copy.deepcopy(decided.call.arguments)}
        return Transform(apply=lambda e: setattr(e, "tool_use", tool_use),
                         reason="agentauthz: the decided arguments")

    async def _admit(self, event: BeforeToolCallEvent[Any], state: AgentState, run: Run | None,
                     identity: Identity, name: str) -> Decided | str:
        """The admitted call, or the refusal the model reads."""
        spec = self._specs.spec(event.selected_tool.tool_spec)  # type: ignore[union-attr]
        counted = None
        if self.profile == "strands":
            with self._lock:
                counted, count = state.count(str(identity.uid), name)
            spec = strands_session(spec, call_count=count, now=self.clock())
        raw = event.tool_use.get("input")
        call_id = str(event.tool_use.get("toolUseId", "")) or None
        call: ToolCall | None = None
        try:
            call = await self.authz.abegin_tool_call(spec, {} if raw is None else raw, call_id=call_id)
            if call.approval is not None and self.interrupt_approvals:
                call = await self._approved(event, call.approval, call, lambda: self.authz.abegin_tool_call(
                    spec, {} if raw is None else raw, call_id=call_id))
        except InvalidArguments as exc:
            return self.authz.refusal(name, exc.decision, kind="invalid")
        except IdentityError as exc:  # the session belongs to another end user
            if exc.decision is None:
                raise
            return self.authz.refusal(name, exc.decision)
        finally:
            if call is None or not call.admits:
                with self._lock:
                    state.uncount(counted)
        if not call.admits:
            return self.authz.refusal(name, call.decision,
                                      kind="approval" if call.approval is not None else "denied")
        return Decided(call=call, identity=identity, run=run, requested=event.tool_use,
                       tool=event.selected_tool, name=name, arguments=canonical(call.arguments),
                       counted=counted, spec=spec)

    async def _approved(self, event: BeforeToolCallEvent[Any], request: ApprovalRequest, call: ToolCall,
                        again: Callable[[], Awaitable[ToolCall]]) -> ToolCall:
        """Put a held call to a person with a Strands interrupt; the call made again once they approve.

        The first time the interrupt pauses the agent (``result.stop_reason ==
        "interrupt"``, the request in ``interrupt.reason``); resumed, the call is
        decided (and held) again and the interrupt returns the person's answer:
        ``True`` or ``{"approved": True}`` grants it, anything else refuses it.
        """
        answer = event.interrupt(APPROVAL_INTERRUPT, reason={
            "type": APPROVAL_INTERRUPT, "description": request.describe(), **request.to_json()})
        if answer is True or (isinstance(answer, Mapping) and answer.get("approved") is True):
            self.authz.approve(request, granted_by="strands-interrupt")
            return await again()
        self.authz.decline(request, declined_by="strands-interrupt")
        call.approval = None
        return call

    async def after_tool_call(self, event: AfterToolCallEvent[Any], **kwargs: Any) -> Proceed:
        """Count the call in its session, or release it when the tool failed or never ran."""
        key = (id(event.invocation_state), str(event.tool_use.get("toolUseId", "")))
        with self._lock:
            state = self._agents.get(event.agent)
            decided = state.decided.get(key) if state is not None else None
            if state is None or decided is None:
                return Proceed()
            cancelled = event.cancel_message is not None
            if cancelled and event.tool_use is not decided.requested:
                return Proceed()  # the refusal of another call with the same id
            del state.decided[key]
            if cancelled:
                state.uncount(decided.counted)
        await self._settle(decided.call, failed=_failed(event))
        if not _failed(event):
            content = event.result.get("content")
            try:  # a source of the session, and its guardrail findings, before the model reads it
                await asyncio.to_thread(decided.call.record_result, content)
                if decided.spec is not None and decided.spec.guardrail is not None:
                    with self._acting(decided.identity, decided.call.session):
                        await self.authz.ascreen_tool_result(decided.spec, content)
            except Exception as exc:  # an unregistered or unscreened result must not reach the model
                _logger.warning("agentauthz: the result of a Strands tool call could not be registered: %s",
                                type(exc).__name__, exc_info=True)
                withheld = "the tool's result was withheld: it could not be recorded"
                event.result = {"toolUseId": event.result.get("toolUseId", ""), "status": "error",
                                "content": [{"text": withheld}]}
        return Proceed()

    @staticmethod
    async def _settle(call: ToolCall, *, failed: bool) -> None:
        if call.session is None:
            return  # nothing was reserved
        await asyncio.to_thread(call.release if failed else call.complete)

    # -- the agent's stages -------------------------------------------------------------------

    async def _check_execution(
        self, context: ExecuteToolContext, next_fn: Callable[[ExecuteToolContext], AsyncGenerator[Any, None]]
    ) -> AsyncGenerator[Any, None]:
        """Run the tool only as it was decided: same tool, same name, same arguments."""
        try:
            refusal = await self._refuse_if_changed(context)
        except Exception as exc:  # fail closed; the error text stays out of the result
            name = str(context.tool_use.get("name", ""))
            _logger.warning("agentauthz: the Strands call of tool %r could not be checked and is refused: %s",
                            name, type(exc).__name__, exc_info=True)
            refusal = self._refusal_after_error(name, exc)
        if refusal is None:
            async for event in next_fn(context):
                yield event
            return
        yield ToolResultEvent({"toolUseId": str(context.tool_use.get("toolUseId", "")), "status": "error",
                               "content": [{"text": f"DENIED: {refusal}"}]})

    async def _refuse_if_changed(self, context: ExecuteToolContext) -> str | None:
        """None when the call about to run is the one decided; else the (audited) refusal."""
        name = str(context.tool_use.get("name", ""))
        key = (id(context.invocation_state), str(context.tool_use.get("toolUseId", "")))
        with self._lock:
            state = self._agents.get(context.agent)
            decided = state.decided.get(key) if state is not None else None
        if decided is not None and context.tool is decided.tool and name == decided.name and (
                decided.arguments is not None
                and canonical(context.tool_use.get("input")) == decided.arguments):
            return None
        if state is not None and decided is not None:
            with self._lock:
                state.decided.pop(key, None)
                state.uncount(decided.counted)
            await self._settle(decided.call, failed=True)
        with self._acting(decided.identity if decided is not None else None):
            refused = self.authz.audit_refusal(action=name, resource=self._resource_of(name),
                                               reason=_UNDECIDED if decided is None else _CHANGED)
        return self.authz.refusal(name, refused)

    async def _offer_permitted(self, context: InvokeModelContext) -> InvokeModelContext:
        """Offer the model only the tools the user could call with some arguments."""
        with self._lock:
            state = self._agents.get(context.agent)
            run = state.run_of(context.invocation_state) if state is not None else None
        identity = run.identity if run is not None else self.authz.identity
        try:
            offered = await asyncio.to_thread(self._permitted, identity, context.tool_specs)
        except Exception as exc:  # fail closed: no tool rather than every tool
            _logger.warning("agentauthz: the tools the model may see could not be decided; it sees none: %s",
                            type(exc).__name__, exc_info=True)
            offered = []
        return context.replace(tool_specs=offered)

    def _permitted(self, identity: Identity | None, tool_specs: list[Any]) -> list[Any]:
        if identity is None:
            return []
        offered = []
        for tool_spec in tool_specs:
            try:
                offered.append((tool_spec, self._specs.spec(tool_spec)))
            except ConfigurationError as exc:  # it could never be called: hidden, and refused if named
                _logger.warning("agentauthz: Strands tool %r is hidden from the model: %s",
                                tool_spec.get("name"), exc)
        with self._acting(identity):
            permitted = {id(spec) for spec in self.authz.permitted_tools([spec for _, spec in offered])}
        return [tool_spec for tool_spec, spec in offered if id(spec) in permitted]
