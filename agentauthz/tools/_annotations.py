"""Annotations as pydantic validates them, whatever Python version and TypedDict module they use.

Before Python 3.12 pydantic refuses ``typing.TypedDict`` (it asks for
``typing_extensions.TypedDict``), so a guarded function, or a runtime that
builds its schema with pydantic (LangChain's ``@tool``, FastMCP, Strands),
cannot take a record declared the standard way. :func:`validatable` gives the
same annotation with such records copied as ``typing_extensions`` ones.
"""

from __future__ import annotations

import sys
import types
import typing
from typing import Any, Literal

import typing_extensions

__all__ = ["validatable"]


def validatable(annotation: Any) -> Any:
    """``annotation`` as pydantic validates it: ``typing.TypedDict`` records as ``typing_extensions`` ones.

    Before Python 3.12 pydantic refuses ``typing.TypedDict``; a copy made with
    ``typing_extensions.TypedDict`` (the same fields, totality and
    ``Required``/``NotRequired`` marks) validates the same values, at any depth.
    """
    if sys.version_info < (3, 12) and typing.is_typeddict(annotation):
        hints = typing.get_type_hints(annotation, include_extras=True)
        fields = {name: validatable(hint) for name, hint in hints.items()}
        return typing_extensions.TypedDict(  # type: ignore[operator]
            annotation.__name__, fields, total=getattr(annotation, "__total__", True))
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is None or origin is Literal or not args:
        return annotation
    converted = tuple(validatable(arg) for arg in args)
    if converted == args:
        return annotation
    if origin is typing.Annotated:
        return typing.Annotated[(converted[0], *args[1:])]
    if origin in (typing.Union, types.UnionType):
        return typing.Union[converted]  # noqa: UP007
    return origin[converted if len(converted) > 1 else converted[0]]
