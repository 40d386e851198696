"""Arguments the application supplies, not the model: ``Annotated[T, az.Injected]``.

A tool often needs something the model must neither see nor choose: a database
handle, the environment of the request, a client. Marked
``Annotated[Env, az.Injected]``, such an argument is left out of the tool's
Cedar schema, out of ``context.input`` and out of every schema a model is
shown; a model that sends it anyway is refused (an audited refusal of invalid
arguments). The application supplies it when it calls the tool: a keyword of
the guarded function's call, ``RunnableConfig["configurable"][INJECTED_KEY]``
on LangChain's paths, or once for a runtime that builds its tool schema from
the signature (FastMCP, Strands): :func:`bind_injected` gives the function
without those parameters, calling it with the application's values.

LangChain's own ``InjectedToolArg`` (and its subclasses) marks the same kind
of argument; a guarded function may use either marker.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from typing import Any, TypeVar

from agentauthz._errors import ConfigurationError
from agentauthz.tools._annotations import validatable

__all__ = ["Injected", "bind_injected", "injected_parameters", "is_injected", "pydantic_ready"]

R = TypeVar("R")


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


def is_injected(annotation: Any, *, langchain: bool = True) -> bool:
    """Whether an annotation is ``Annotated[T, Injected]`` (``langchain``: or LangChain's InjectedToolArg).

    The LangChain integration leaves LangChain's own markers to LangChain's
    injection (state, store, ``ToolRuntime``), so it asks with ``langchain=False``.
    """
    if typing.get_origin(annotation) is not typing.Annotated:
        return False
    return any(_marks(marker, langchain) for marker in typing.get_args(annotation)[1:])


def _marks(marker: Any, langchain: bool) -> bool:
    if marker is Injected or isinstance(marker, Injected):
        return True
    if not langchain:
        return False
    # LangChain's markers, recognised without importing langchain-core into the core wings.
    kind = marker if isinstance(marker, type) else type(marker)
    return any(base.__name__ == "InjectedToolArg" and base.__module__.startswith("langchain")
               for base in kind.__mro__)


def injected_parameters(fn: Callable[..., Any]) -> tuple[str, ...]:
    """The parameters of ``fn`` marked injected, in signature order (unresolvable hints: none)."""
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception:  # a signature we cannot read has nothing we could leave out
        return ()
    return tuple(name for name in inspect.signature(fn).parameters if is_injected(hints.get(name)))


def bind_injected(fn: Callable[..., R], /, **values: Any) -> Callable[..., R]:
    """``fn`` without its injected parameters, called with these values: a tool for a runtime.

    FastMCP, Strands and LangChain build the schema a model is shown from a
    function's signature; the function returned here has a signature without
    the ``Annotated[T, az.Injected]`` parameters (so no model sees them, and a
    model that sends one sends an unknown argument, which the integrations
    refuse), and calls ``fn`` (a guarded function or a plain one) with the
    application's ``values`` for them. A value can be any object, e.g. one
    that looks up the current request's environment when used. Its
    annotations are the ones pydantic takes (``typing.TypedDict`` records as
    ``typing_extensions`` copies before Python 3.12), so these runtimes can
    read a signature the guard reads.

    Args:
        fn: the tool function (sync or async), guarded or not.
        **values: one value per injected parameter; those with a default may be
            left out.

    Raises:
        ConfigurationError: a value names no injected parameter, or an injected
            parameter without a default has no value.

    Example:
        >>> from typing import Annotated
        >>> import inspect
        >>> def lookup(query: str, env: Annotated[dict, Injected]) -> str:
        ...     return f"{query} in {env['region']}"
        >>> tool = bind_injected(lookup, env={"region": "eu"})
        >>> list(inspect.signature(tool).parameters), tool("weather")
        (['query'], 'weather in eu')
    """
    names = injected_parameters(fn)
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise ConfigurationError(f"bind_injected({getattr(fn, '__name__', fn)!r}): {unknown[0]!r} is not an "
                                 "injected parameter (Annotated[T, az.Injected])")
    signature = inspect.signature(fn)
    missing = [name for name in names if name not in values and signature.parameters[name].default
               is inspect.Parameter.empty]
    if missing:
        raise ConfigurationError(f"bind_injected({getattr(fn, '__name__', fn)!r}): needs a value for "
                                 f"{missing[0]!r}")
    return _rebuilt(fn, names, values)


def pydantic_ready(fn: Callable[..., R]) -> Callable[..., R]:
    """``fn`` with annotations pydantic takes, for runtimes that build a schema from a signature.

    Where its annotations hold ``typing.TypedDict`` records (which pydantic
    refuses before Python 3.12), a wrapper annotated with ``typing_extensions``
    copies; otherwise ``fn`` itself. LangChain's ``@tool``, FastMCP and Strands
    build their schemas with pydantic.
    """
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except Exception:  # annotations the runtime will read (and report) itself
        return fn
    if all(validatable(hint) is hint for hint in hints.values()):
        return fn
    return _rebuilt(fn, (), {})


def _rebuilt(fn: Callable[..., R], drop: tuple[str, ...], values: dict[str, Any]) -> Callable[..., R]:
    """A wrapper of ``fn`` without the parameters ``drop`` (given ``values``), its annotations validatable."""
    signature = inspect.signature(fn)
    hints = {name: validatable(hint) for name, hint in typing.get_type_hints(fn, include_extras=True).items()
             if name not in drop}
    shown = signature.replace(
        parameters=[p.replace(annotation=hints.get(p.name, p.annotation))
                    for p in signature.parameters.values() if p.name not in drop],
        return_annotation=hints.get("return", signature.return_annotation))

    def check(kwargs: dict[str, Any]) -> dict[str, Any]:
        given = sorted(set(kwargs) & set(drop))
        if given:  # what Python says of an argument the signature does not have
            name = getattr(fn, "__name__", "tool")
            raise TypeError(f"{name}() got an unexpected keyword argument {given[0]!r}")
        return {**kwargs, **values}

    if inspect.iscoroutinefunction(fn):
        async def bound_async(*args: Any, **kwargs: Any) -> Any:
            return await fn(*args, **check(kwargs))

        wrapper: Callable[..., Any] = bound_async
    else:
        def bound(*args: Any, **kwargs: Any) -> Any:
            return fn(*args, **check(kwargs))

        wrapper = bound
    functools.update_wrapper(wrapper, fn)
    del wrapper.__wrapped__  # type: ignore[attr-defined]  # the signature shown is this one, not fn's
    wrapper.__signature__ = shown  # type: ignore[attr-defined]
    wrapper.__annotations__ = hints
    return typing.cast(Callable[..., R], wrapper)
