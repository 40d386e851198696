"""Arguments the application supplies, not the model: ``Annotated[T, az.Injected]``.

A tool often needs something the model must neither see nor choose: a database
handle, the environment of the request, a client. Marked
``Annotated[Env, az.Injected]``, such an argument is left out of the tool's
Cedar schema, out of ``context.input`` and out of every schema a model is
shown; a model that sends it anyway is refused (an audited refusal of invalid
arguments). The application supplies it when it calls the tool: a keyword of
the guarded function's call, ``RunnableConfig["configurable"][INJECTED_KEY]``
on LangChain's paths.

LangChain's own ``InjectedToolArg`` (and its subclasses) marks the same kind
of argument; a guarded function may use either marker.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable
from typing import Any

__all__ = ["Injected", "injected_parameters", "is_injected"]


class Injected:
    """Marks a tool argument the application supplies: ``Annotated[T, az.Injected]``.

    The argument never reaches Cedar or the model: it is not in the tool's
    Cedar schema nor in ``context.input``, schemas shown to a model leave it
    out, and a model that sends it is refused. The application passes it
    when calling the guarded function.

    Example:
        >>> from typing import Annotated
        >>> import agentauthz as az
        >>> authz = az.Authorizer.from_text('permit(principal, action, resource);')
        >>> class Env:
        ...     region = "eu"
        >>> @authz.guard
        ... def lookup(query: str, env: Annotated[Env, az.Injected]) -> str:
        ...     return f"{query} in {env.region}"
        >>> authz.tools["lookup"].input_type
        {'type': 'Record', 'attributes': {'query': {'type': 'String'}}}
        >>> with authz.acting_as(az.EntityUID("User", "alice")):
        ...     lookup("weather", env=Env())
        'weather in eu'
    """


def is_injected(annotation: Any) -> bool:
    """Whether an annotation is ``Annotated[T, Injected]`` (or LangChain's ``InjectedToolArg``)."""
    if typing.get_origin(annotation) is not typing.Annotated:
        return False
    return any(_marks(marker) for marker in typing.get_args(annotation)[1:])


def _marks(marker: Any) -> bool:
    if marker is Injected or isinstance(marker, Injected):
        return True
    # LangChain's markers, recognised without importing langchain-core into the core wings.
    kind = marker if isinstance(marker, type) else type(marker)
    return any(base.__name__ == "InjectedToolArg" and base.__module__.startswith("langchain_core.")
               for base in kind.__mro__)


def injected_parameters(fn: Callable[..., Any]) -> tuple[str, ...]:
    """The parameters of ``fn`` marked injected, in signature order (unresolvable hints: none)."""
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception:  # a signature we cannot read has nothing we could leave out
        return ()
    return tuple(name for name in inspect.signature(fn).parameters if is_injected(hints.get(name)))
