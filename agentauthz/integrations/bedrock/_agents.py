"""Amazon Bedrock Agents: action-group Lambda handlers and return of control, authorized.

Re-exported by :mod:`agentauthz.integrations.bedrock`; import it from there.

Every function (or API operation) an agent invokes becomes one Cedar request:
the end user from the session attributes the *application* set (or a token it
put there, verified by the application's verifier), one action per function,
the parameters, converted by their declared types, in ``context.input``. A
denied call never reaches the handler; the agent gets a refusal the model can
read (``authz.refusal``: the decision's id, not its policies). The handler
reads the arguments from ``invocation.arguments``: exactly what the policy
evaluated (for an operation decided by a tool's spec, validated by it).
Events are plain dicts: nothing here imports boto3.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias, cast, overload

from agentauthz._audit import annotating
from agentauthz._authorizer import Authorizer
from agentauthz._errors import AccessDenied, ConfigurationError, IdentityError
from agentauthz._model import Decision, Entity, EntityUID
from agentauthz.guardrails._detector import Detector
from agentauthz.guardrails._guardrail import Assessment, Guardrail
from agentauthz.integrations.bedrock._decisions import (
    ActionOf,
    ContextOf,
    ResourceOf,
    Rules,
    Tools,
    abegin,
    adecide,
    begin,
    decide,
    no_identity,
    refused,
    unscreened,
)
from agentauthz.integrations.bedrock._end_user import (
    Identify,
    PrincipalOf,
    SessionOf,
    TokenVerifier,
    bound_user,
    checked,
    event_session_id,
    session_bound,
)
from agentauthz.integrations.bedrock._events import ActionInvocation, envelope, return_control_inputs
from agentauthz.integrations.bedrock._responses import (
    Response,
    denied_result,
    failed_response,
    refusal_response,
    wrapped,
)
from agentauthz.session._session import ToolCall

__all__ = [
    "ActionInvocation",
    "ReturnControlAuthorization",
    "TokenVerifier",
    "aauthorize_return_control",
    "action_group_handler",
    "authorize_return_control",
]

LambdaHandler: TypeAlias = Callable[[Mapping[str, Any], Any], Response]
AsyncLambdaHandler: TypeAlias = Callable[[Mapping[str, Any], Any], Awaitable[Response]]


# -- the decorator --------------------------------------------------------------------------------


class _Decorator(Protocol):
    @overload
    def __call__(self, fn: Callable[..., Coroutine[Any, Any, Any]], /) -> AsyncLambdaHandler: ...

    @overload
    def __call__(self, fn: Callable[..., Any], /) -> LambdaHandler: ...


def action_group_handler(
    authz: Authorizer,
    *,
    principal: PrincipalOf | None = None,
    verify_token: TokenVerifier | None = None,
    token_attribute: str = "token",
    action: ActionOf = None,
    resource: ResourceOf = None,
    context: ContextOf = None,
    tools: Tools = None,
    session: SessionOf = False,
    guardrail: Guardrail | Detector | None = None,
) -> _Decorator:
    """Authorize every call of a Bedrock Agents action-group Lambda for the end user.

    The decorated ``handler(event, context)`` runs only when Cedar allows the
    call; its return value is wrapped in the response the agent expects
    (a string as is, anything else as JSON; a dict already shaped as a
    Bedrock response passes through). Declare a parameter named
    ``invocation`` to receive the :class:`ActionInvocation`, whose
    ``arguments`` hold the converted parameters that were authorized. The end
    user is bound (``authz.acting_as``) while the handler runs, so guarded
    tools it calls decide for the same user; an :class:`~agentauthz.AccessDenied`
    they raise becomes the refusal.

    How an invocation becomes a Cedar request:

    * **principal**: only from what the application that calls ``InvokeAgent``
      put in ``sessionAttributes``: ``principal=`` reads it (the callable gets
      only ``sessionAttributes``, ``sessionId``, ``agent`` and
      ``messageVersion``), or ``verify_token=`` checks the token stored under
      ``token_attribute`` (``"Bearer "`` prefix allowed). ``inputText``,
      ``parameters``, ``requestBody`` and ``promptSessionAttributes`` are
      written by or shown to the model and never name the user. No user, an
      exception, or a rejected token: the call is refused.
    * **tools**: per operation (the function name or ``"METHOD /path"``,
      optionally prefixed ``"<actionGroup>__"``), a :class:`~agentauthz.ToolSettings`
      (its ``action``, ``resource``, a fixed one or a callable of the
      arguments, and ``context``), as the other integrations take them; or
      guarded tools (``@authz.guard``, AuthorizedTool, ToolSpec) by name or by
      operation (``tools=authz.tools`` reuses every tool the Authorizer
      knows): such an operation is decided exactly as the tool's own guard
      decides it (validation, action, resource, context).
    * **action**: ``<actionGroup>__<function>`` or ``<actionGroup>__<METHOD> <apiPath>``
      by default; ``tools={operation: ToolSettings(action=...)}``, or
      ``action=`` a callable of the event for every operation the settings do
      not name (returning None refuses the call).
    * **resource**: ``Tool::"<action>"`` (type ``authz.tool_entity_type``) by
      default; ``ToolSettings(resource=...)`` per operation, or ``resource=`` a
      callable of the :class:`ActionInvocation` (returning None keeps the default).
    * **context**: ``{"input": <converted parameters>}`` plus what ``context=``
      (a callable of the invocation) and the operation's ``ToolSettings(context=...)`` add.
    * Deprecated (DeprecationWarning): ``action=`` and ``resource=`` as mappings
      by operation; they stand for ``tools={operation: ToolSettings(...)}``, and
      an ``action=`` mapping still refuses the operations it does not name.
    * **session** (:mod:`agentauthz.session._session`): with ``session=True`` the
      invocation is decided in the session of the event's ``sessionId`` (or
      the id ``session=`` returns from the trusted part of the event), with
      ``context.session``, and counted in it once the handler returns a
      response that is not a failure (``responseState`` FAILURE/REPROMPT, HTTP
      status 400 or more); Lambda's request id keys the call, so a retried
      invocation counts once. Sessions must outlive one Lambda instance: give
      the Authorizer a shared store (``SessionConfig(store=...)``).
    * **guardrail** (off by default; it needs ``session``): the event's
      ``inputText``, the user's input for the turn, is assessed before the
      call is decided and its findings recorded in the session as
      ``guardrail:user:...`` labels (``guardrail:user:prompt_attack:high``,
      ``guardrail:user:unavailable`` when the detector failed), which policies
      read in ``context.session.seen`` (each text is assessed once per
      session). The result of an operation decided by a guarded tool with a
      guardrail (``tools=``) is assessed before the agent reads it
      (``guardrail:prompt_attack:high``...). A text that cannot be assessed
      (``on_error="raise"``) or labels that cannot be recorded refuse the
      call (audited); a withheld result is refused the same way.

    A refused call returns ``responseState: "REPROMPT"`` with the refusal as
    text (function groups) or a JSON body ``{"error", "message", "decision_id"}``
    with ``httpStatusCode`` 403 (400 for malformed parameters) for OpenAPI
    groups. The refusal is ``authz.refusal(...)``: generic, naming the
    decision's id (the audit event's ``decision_id``); the determining policy
    ids only with ``Authorizer(disclose_reasons=True)``, values never. Every
    refusal is audited. Session attributes pass through unchanged.

    Args:
        authz: the Authorizer deciding the calls.
        principal: the end user from the trusted part of the event.
        verify_token: checks a token from the session attributes and returns the end user.
        token_attribute: session attribute holding the token.
        action: Cedar action, a callable of the event (a mapping by operation is deprecated).
        resource: Cedar resource, a callable of the invocation (a mapping is deprecated).
        context: extra context per invocation.
        tools: per operation, ToolSettings or guarded tools whose specs decide it.
        session: record calls in the conversation's session (see above).
        guardrail: an ``az.Guardrail`` or a detector assessing ``inputText`` (see above).

    Raises:
        ConfigurationError: at decoration time, for neither or both of
            ``principal``/``verify_token``, a guardrail without a session, or
            a malformed option.
        InvalidValueError: at call time, for an event that is not an
            action-group invocation (the Lambda fails; the agent does nothing).

    Example:
        >>> import agentauthz as az
        >>> authz = az.Authorizer.from_text(
        ...     '@id("refunds") permit(principal, action == Action::"orders__issue_refund", resource)'
        ...     ' when { context.input.amount <= 500 };', audit=[])
        >>> @action_group_handler(
        ...     authz, principal=lambda event: az.EntityUID("User", event["sessionAttributes"]["userId"]))
        ... def handler(event, context, invocation):
        ...     return f"refunded {invocation.arguments['amount']}"
        >>> event = {"messageVersion": "1.0", "actionGroup": "orders", "function": "issue_refund",
        ...          "sessionAttributes": {"userId": "bob"},
        ...          "parameters": [{"name": "amount", "type": "integer", "value": "300"}]}
        >>> handler(event, None)["response"]["functionResponse"]
        {'responseBody': {'TEXT': {'body': 'refunded 300'}}}
        >>> event["parameters"][0]["value"] = "900"
        >>> handler(event, None)["response"]["functionResponse"]["responseState"]
        'REPROMPT'
    """
    identify = Identify.build(principal, verify_token, token_attribute)
    if not isinstance(session, bool) and not callable(session):
        raise ConfigurationError("session= must be True, False or a callable of the event")
    rules = Rules.build(authz, action, resource, context, tools)
    screen = Guardrail.of(guardrail)
    if screen is not None and session is False:
        raise ConfigurationError("guardrail= records the findings of inputText in the session: give session=")

    def decorate(fn: Callable[..., Any]) -> Any:
        handler = _Handler.around(fn, rules, identify, session, screen)
        if inspect.iscoroutinefunction(fn):

            async def handle_async(event: Mapping[str, Any], lambda_context: Any = None) -> Response:
                return await handler.ahandle(event, lambda_context)

            return _named(fn, handle_async)

        def handle(event: Mapping[str, Any], lambda_context: Any = None) -> Response:
            return handler.handle(event, lambda_context)

        return _named(fn, handle)

    return cast(_Decorator, decorate)


@dataclass(frozen=True)
class _Handler:
    """One decorated handler: the end user, the decision, the run, the response.

    :meth:`ahandle` is :meth:`handle` with ``await``.
    """

    fn: Callable[..., Any]
    rules: Rules
    identify: Identify
    session: SessionOf
    guardrail: Guardrail | None
    wants_invocation: bool

    @classmethod
    def around(cls, fn: Callable[..., Any], rules: Rules, identify: Identify, session: SessionOf,
               guardrail: Guardrail | None) -> _Handler:
        if not callable(fn):
            raise ConfigurationError("action_group_handler decorates a handler(event, context)")
        try:
            wants_invocation = "invocation" in inspect.signature(fn).parameters
        except (TypeError, ValueError):
            wants_invocation = False
        return cls(fn, rules, identify, session, guardrail, wants_invocation)

    def handle(self, event: Mapping[str, Any], lambda_context: Any) -> Response:
        invocation = envelope(event)
        user = self.identify.resolve(event)
        if user is None:
            return refusal_response(no_identity(self.rules, invocation))
        try:
            with self._bound(event, user):
                try:
                    found = self._assess_input(event)
                except IdentityError:
                    raise
                except Exception as exc:  # unassessed or unrecorded: the call is refused
                    return refusal_response(unscreened(self.rules, invocation, "the user's input", exc))
                with annotating(_user_findings(found)):
                    invocation, call = begin(self.rules, invocation, call_id=_call_id(lambda_context))
                if not invocation.allowed:
                    return refusal_response(invocation)
                run = self._call(event, lambda_context, invocation)
                return self._run_counted(call, invocation, run)
        except IdentityError as exc:
            return refusal_response(no_identity(self.rules, invocation, exc))

    async def ahandle(self, event: Mapping[str, Any], lambda_context: Any) -> Response:
        invocation = envelope(event)
        user = await self.identify.aresolve(event)
        if user is None:
            return refusal_response(no_identity(self.rules, invocation))
        try:
            with self._bound(event, user):
                try:
                    found = await self._aassess_input(event)
                except IdentityError:
                    raise
                except Exception as exc:  # unassessed or unrecorded: the call is refused
                    return refusal_response(unscreened(self.rules, invocation, "the user's input", exc))
                with annotating(_user_findings(found)):
                    invocation, call = await abegin(self.rules, invocation, call_id=_call_id(lambda_context))
                if not invocation.allowed:
                    return refusal_response(invocation)
                run = self._call(event, lambda_context, invocation)
                return await self._arun_counted(call, invocation, run)
        except IdentityError as exc:
            return refusal_response(no_identity(self.rules, invocation, exc))

    @contextmanager
    def _bound(self, event: Mapping[str, Any], user: Entity | EntityUID) -> Iterator[None]:
        """The end user bound, with the event's session id as the audit correlation id, and the session.

        The event's ``inputText`` (the user's input for the turn) is what the
        user said, for provenance (see docs/provenance.md).
        """
        authz = self.rules.authz
        with bound_user(authz, user, event_session_id(event), "the session attributes"), \
                session_bound(authz, self.session, event):
            text = self._input_text(event)
            session = authz.current_session
            if session is not None and text is not None:
                session.user_said(text)
            yield

    def _assess_input(self, event: Mapping[str, Any]) -> Assessment | None:
        """The guardrail's assessment of ``inputText``, its labels recorded (None: no guardrail, no text).

        Raises:
            GuardrailUnavailable: the detector failed and ``on_error="raise"``.
            EngineError: the labels could not be recorded.
        """
        text = self._input_text(event)
        if text is None or self.guardrail is None:
            return None
        return self.rules.authz.screen_user_message(text, self.guardrail)

    async def _aassess_input(self, event: Mapping[str, Any]) -> Assessment | None:
        """Async twin of :meth:`_assess_input`."""
        text = self._input_text(event)
        if text is None or self.guardrail is None:
            return None
        return await self.rules.authz.ascreen_user_message(text, self.guardrail)

    @staticmethod
    def _input_text(event: Mapping[str, Any]) -> str | None:
        """The event's ``inputText``: what the user said this turn (None when there is none)."""
        text = event.get("inputText")
        return text if isinstance(text, str) and text else None

    def _call(self, event: Mapping[str, Any], lambda_context: Any,
              invocation: ActionInvocation) -> Callable[[], Any]:
        """The decorated handler's call, with the invocation when it asks for one."""
        extra = {"invocation": invocation} if self.wants_invocation else {}
        return lambda: self.fn(event, lambda_context, **extra)

    def _run_counted(self, call: ToolCall | None, invocation: ActionInvocation,
                     run: Callable[[], Any]) -> Response:
        """Run the handler; the call counts in the session unless it raised or reported a failure."""
        with call if call is not None else _uncounted() as counted:
            try:
                result = run()
            except AccessDenied as exc:
                counted.fail()
                return self._denied_inside(invocation, exc)
            response = _counted_response(counted, invocation, result)
        counted.record_result(result)  # a source of the session, before the agent's model reads it
        spec = self.rules.spec_for(invocation)
        if spec is not None:
            try:
                self.rules.authz.screen_tool_result(spec, result)
            except Exception as exc:  # unassessed or unrecorded: the agent does not read it
                return refusal_response(unscreened(self.rules, invocation, "the result", exc))
        return response

    async def _arun_counted(self, call: ToolCall | None, invocation: ActionInvocation,
                            run: Callable[[], Awaitable[Any]]) -> Response:
        """Async twin of :meth:`_run_counted`."""
        with call if call is not None else _uncounted() as counted:
            try:
                result = await run()
            except AccessDenied as exc:
                counted.fail()
                return self._denied_inside(invocation, exc)
            response = _counted_response(counted, invocation, result)
        counted.record_result(result)
        spec = self.rules.spec_for(invocation)
        if spec is not None:
            try:
                await self.rules.authz.ascreen_tool_result(spec, result)
            except Exception as exc:  # unassessed or unrecorded: the agent does not read it
                return refusal_response(unscreened(self.rules, invocation, "the result", exc))
        return response

    def _denied_inside(self, invocation: ActionInvocation, exc: AccessDenied) -> Response:
        """A guarded tool the handler called was denied: the agent gets the refusal."""
        return refusal_response(refused(self.rules, invocation, "denied", exc.decision))


def _counted_response(counted: ToolCall, invocation: ActionInvocation, result: Any) -> Response:
    """The handler's result as the agent's response; a reported failure does not count in the session."""
    response = wrapped(invocation, result)
    if failed_response(response):
        counted.fail()
    return response


def _user_findings(found: Assessment | None) -> dict[str, Any] | None:
    """What the decision's audit event holds of the user's input: the findings, never the text."""
    return {"guardrail": {"user": found.audit}} if found is not None else None


def _call_id(lambda_context: Any) -> str | None:
    """Lambda's request id: a retried invocation keeps it, so it runs and counts at most once."""
    request_id = getattr(lambda_context, "aws_request_id", None)
    return request_id if isinstance(request_id, str) and request_id else None


def _uncounted() -> ToolCall:
    return ToolCall(Decision(allowed=True), call_id="")


def _named(fn: Callable[..., Any], wrapper: Callable[..., Any]) -> Callable[..., Any]:
    for attribute in ("__module__", "__name__", "__qualname__", "__doc__"):
        try:
            setattr(wrapper, attribute, getattr(fn, attribute))
        except (AttributeError, TypeError):
            continue
    wrapper.__wrapped__ = fn  # type: ignore[attr-defined]
    return wrapper


# -- return of control ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ReturnControlAuthorization:
    """The invocations of a ``returnControl`` payload, split into allowed and denied.

    Unpacks as ``results, allowed = authorize_return_control(...)``.

    Attributes:
        invocation_id: the payload's ``invocationId`` (send it back in ``sessionState``).
        allowed: invocations the application may run, in payload order.
        denied: refused invocations, in payload order (``.refusal`` says why).
    """

    invocation_id: str | None
    allowed: tuple[ActionInvocation, ...]
    denied: tuple[ActionInvocation, ...]

    @property
    def results(self) -> list[dict[str, Any]]:
        """``returnControlInvocationResults`` entries for the denied invocations.

        Function inputs get a ``functionResult`` with ``responseState: "REPROMPT"``
        and the refusal as text; API inputs an ``apiResult`` with
        ``httpStatusCode`` 403 (400 for malformed parameters), a JSON body and
        ``responseState: "REPROMPT"``.
        """
        return [denied_result(invocation) for invocation in self.denied]

    def session_state(self, results: Iterable[Mapping[str, Any]] = (), **extra: Any) -> dict[str, Any]:
        """The ``sessionState`` for the next ``InvokeAgent`` call.

        Args:
            results: the entries for the allowed invocations the application ran
                (see :meth:`ActionInvocation.result`).
            extra: more ``sessionState`` members (``sessionAttributes``, ...).
        """
        state: dict[str, Any] = dict(extra)
        if self.invocation_id is not None:
            state["invocationId"] = self.invocation_id
        state["returnControlInvocationResults"] = [*self.results, *(dict(r) for r in results)]
        return state

    def __iter__(self) -> Iterator[Any]:
        """``results, allowed = authorize_return_control(...)``."""
        return iter((self.results, list(self.allowed)))


def _split(invocation_id: str | None, decided: list[ActionInvocation]) -> ReturnControlAuthorization:
    return ReturnControlAuthorization(
        invocation_id=invocation_id,
        allowed=tuple(i for i in decided if i.allowed),
        denied=tuple(i for i in decided if not i.allowed),
    )


def authorize_return_control(
    authz: Authorizer,
    return_control_event: Mapping[str, Any],
    principal: Entity | EntityUID | None = None,
    *,
    action: ActionOf = None,
    resource: ResourceOf = None,
    context: ContextOf = None,
    tools: Tools = None,
) -> ReturnControlAuthorization:
    """Authorize every invocation of an agent's ``returnControl`` payload for the end user.

    For agents whose action groups use ``RETURN_CONTROL``: ``InvokeAgent``
    returns the functions or API operations to run instead of calling a
    Lambda. Each ``invocationInputs`` entry is decided like an action-group
    Lambda call (same ``action``/``resource``/``context``/``tools`` options
    as :func:`action_group_handler`); the application runs only the allowed
    ones and sends the denied ones' results back with its own.

    Args:
        authz: the Authorizer deciding the calls.
        return_control_event: the ``returnControl`` payload (``invocationId``,
            ``invocationInputs``) or the stream event holding it.
        principal: the end user the application calls ``InvokeAgent`` for;
            None uses the one bound with ``authz.acting_as``.
        action: Cedar action, a callable of the event (a mapping by operation is deprecated).
        resource: Cedar resource, a callable of the invocation (a mapping is deprecated).
        context: extra context per invocation.
        tools: per operation, ToolSettings or guarded tools whose specs decide it.

    Returns:
        The allowed and denied invocations; ``.results`` holds the
        ``returnControlInvocationResults`` entries of the denied ones and
        ``.session_state(results)`` the next ``sessionState``.

    Raises:
        IdentityError: no principal given and none bound, or a principal that
            conflicts with the bound one.
        InvalidValueError: the payload is not a returnControl payload.

    Example:
        >>> import agentauthz as az
        >>> authz = az.Authorizer.from_text(
        ...     'permit(principal, action == Action::"search", resource);', audit=[])
        >>> payload = {"invocationId": "inv-1", "invocationInputs": [
        ...     {"functionInvocationInput": {"actionGroup": "kb", "function": "search",
        ...      "parameters": [{"name": "query", "type": "string", "value": "refunds"}]}},
        ...     {"functionInvocationInput": {"actionGroup": "kb", "function": "delete",
        ...      "parameters": []}}]}
        >>> results, allowed = authorize_return_control(
        ...     authz, payload, az.EntityUID("User", "alice"), action=lambda ev: ev["function"])
        >>> [i.function for i in allowed], results[0]["functionResult"]["responseState"]
        (['search'], 'REPROMPT')
    """
    rules, invocation_id, invocations = _return_control(authz, return_control_event, action, resource,
                                                        context, tools)
    with _acting_for(authz, principal):
        decided = [decide(rules, invocation) for invocation in invocations]
    return _split(invocation_id, decided)


async def aauthorize_return_control(
    authz: Authorizer,
    return_control_event: Mapping[str, Any],
    principal: Entity | EntityUID | None = None,
    *,
    action: ActionOf = None,
    resource: ResourceOf = None,
    context: ContextOf = None,
    tools: Tools = None,
) -> ReturnControlAuthorization:
    """Async twin of :func:`authorize_return_control`."""
    rules, invocation_id, invocations = _return_control(authz, return_control_event, action, resource,
                                                        context, tools)
    with _acting_for(authz, principal):
        decided = [await adecide(rules, invocation) for invocation in invocations]
    return _split(invocation_id, decided)


def _return_control(authz: Authorizer, return_control_event: Mapping[str, Any], action: ActionOf,
                    resource: ResourceOf, context: ContextOf,
                    tools: Tools) -> tuple[Rules, str | None, list[ActionInvocation]]:
    """The rules and the parsed invocations of a return-of-control payload."""
    rules = Rules.build(authz, action, resource, context, tools)
    invocation_id, invocations = return_control_inputs(return_control_event)
    return rules, invocation_id, invocations


@contextmanager
def _acting_for(authz: Authorizer, principal: Entity | EntityUID | None) -> Iterator[None]:
    """The end user given to authorize_return_control bound (or the bound one kept)."""
    with bound_user(authz, checked(principal), None, "the principal given to authorize_return_control"):
        authz.current_principal()  # no end user: IdentityError before anything is decided
        yield
