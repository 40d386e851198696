"""A held call put to a person through LangGraph's ``interrupt()``: the graph pauses until they answer.

Configure the Authorizer's approver with :func:`interrupt_approver`; a held
call (see :mod:`agentauthz.session._approvals`) then pauses the graph (it needs
a checkpointer) with the approval request as the interrupt's value. Resume it
with ``Command(resume=True)`` (or ``{"approved": True}``) to grant the call: the
tool node runs again, the call is held again, the interrupt returns the answer,
the grant is recorded, and the call runs once. Any other answer refuses it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agentauthz.session._approvals import APPROVAL_INTERRUPT, ApprovalRequest

__all__ = ["APPROVAL_INTERRUPT", "interrupt_approver"]


def interrupt_approver(request: ApprovalRequest) -> bool:
    """Ask a person through ``langgraph.types.interrupt``; True only if they resumed with approval.

    The interrupt's value is ``{"type": "agentauthz.approval", "description": ...,
    **request.to_json()}``: what the person should see. Outside a LangGraph run
    ``interrupt`` raises, and the call does not run.

    Example:
        >>> from agentauthz.session import ApprovalConfig, SessionConfig
        >>> config = SessionConfig(approvals=ApprovalConfig(approver=interrupt_approver))
    """
    from langgraph.types import interrupt  # langgraph comes with langchain's agents

    answer: Any = interrupt({"type": APPROVAL_INTERRUPT, "description": request.describe(),
                             **request.to_json()})
    return answer is True or (isinstance(answer, Mapping) and answer.get("approved") is True)
