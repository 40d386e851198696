"""The end user's own message screened: its findings become session labels of their own.

An integration that sees what the user said (LangChain's human messages, a
Strands invocation's prompt, a Bedrock Agents event's ``inputText``) assesses
it with the guardrail the application gave it (``guardrail=``, off by
default) and records the findings in the bound session as
``guardrail:user:<finding>`` labels (``guardrail:user:prompt_attack:high``,
``guardrail:user:pii:EMAIL``, ``guardrail:user:unavailable``).

They are kept apart from the labels of tool results and retrieved documents
(``guardrail:prompt_attack:high``): the agent acts with its user's own
permissions, so a user trying a jailbreak is another matter than a document
steering the agent for someone else. Policies choose which they forbid after.
"""

from __future__ import annotations

from agentauthz._errors import AuthzError, ConfigurationError, EngineError
from agentauthz._identity import bound_session
from agentauthz.guardrails._detector import Detector
from agentauthz.guardrails._guardrail import Assessment, Guardrail
from agentauthz.session._session import Session

__all__ = ["USER_LABEL_PREFIX", "ascreen_user_message", "record_labels", "screen_user_message", "user_labels"]

#: The prefix of the labels the user's own messages give.
USER_LABEL_PREFIX = "guardrail:user:"


def user_labels(assessment: Assessment) -> list[str]:
    """The session labels of an assessment of the user's message (``guardrail:user:...``).

    Example:
        >>> from agentauthz.guardrails._detector import Finding
        >>> user_labels(Assessment((Finding("pii", "EMAIL"),), True, "local"))
        ['guardrail:user:pii:EMAIL']
        >>> user_labels(Assessment((), False, "local"))
        ['guardrail:user:unavailable']
    """
    return [USER_LABEL_PREFIX + label.removeprefix("guardrail:") for label in assessment.labels()]


def screen_user_message(guardrail: Guardrail | Detector, text: str) -> Assessment:
    """Assess the user's ``text`` (as ``INPUT``) and record its labels in the bound session.

    Raises:
        ConfigurationError: no session is bound (the findings would go nowhere),
            or ``guardrail`` is neither a Guardrail nor a detector.
        GuardrailUnavailable: the detector failed and ``on_error="raise"``.
        EngineError: the session store could not record the labels.
    """
    screen, session = _prepared(guardrail)
    assessment = screen.assess(_text(text), "INPUT")
    record_labels(session, user_labels(assessment), "the user's message")
    return assessment


async def ascreen_user_message(guardrail: Guardrail | Detector, text: str) -> Assessment:
    """Async twin of :func:`screen_user_message` (the detector's ``adetect``)."""
    screen, session = _prepared(guardrail)
    assessment = await screen.aassess(_text(text), "INPUT")
    record_labels(session, user_labels(assessment), "the user's message")
    return assessment


def _prepared(guardrail: Guardrail | Detector) -> tuple[Guardrail, Session]:
    screen = Guardrail.of(guardrail)
    if screen is None:
        raise ConfigurationError("screening the user's message needs a guardrail")
    session = bound_session.get()
    if session is None:
        raise ConfigurationError(
            "the user's message is screened into session labels: bind a session (authz.session(...) "
            "or the integration's session option)")
    return screen, session


def _text(text: str) -> str:
    if not isinstance(text, str):
        raise ConfigurationError(f"the user's message is a string, not {type(text).__name__}")
    return text


def record_labels(session: Session, labels: list[str], what: str) -> None:
    """Record guardrail labels in the session; if they cannot be, what they describe is withheld.

    Args:
        session: the bound session.
        labels: the assessment's labels (nothing is written when there are none).
        what: what was assessed, for the error (``"a tool result"``).

    Raises:
        EngineError: the session store failed (the model must not read what the session would not know).
    """
    if not labels:
        return
    try:
        session.see(*labels)
    except AuthzError:
        raise
    except Exception as exc:
        raise EngineError(f"the session store could not record the guardrail findings of {what}") from exc
