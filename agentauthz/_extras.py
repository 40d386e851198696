"""Optional dependencies, imported on first use with one message naming the extra that brings them.

``import agentauthz`` loads none of boto3, PyJWT or the explorer's web stack; the code that needs one
imports it here when first called, so a missing extra is an :class:`ImportError` that says what to
install instead of a bare ``No module named 'boto3'``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["install_hint", "optional_import"]


def install_hint(extra: str) -> str:
    """The pip command that installs ``extra`` (``pip install "agentauthz[aws]"``)."""
    return f'pip install "agentauthz[{extra}]"'


def optional_import(module: str, *, extra: str, needed_by: str) -> ModuleType:
    """Import ``module``, which the ``extra`` extra brings, for ``needed_by``.

    Args:
        module: the dotted module name (``"boto3"``, ``"botocore.config"``).
        extra: the package extra that installs it (``"aws"``).
        needed_by: what needs it, the start of the error message (``"BedrockGuardrail"``).

    Raises:
        ImportError: the module is not installed; the message names the extra to install.

    Example:
        >>> optional_import("json", extra="aws", needed_by="this example").__name__
        'json'
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.partition(".")[0]
        raise ImportError(f"{needed_by} needs {top}, the {extra!r} extra: {install_hint(extra)}") from exc
