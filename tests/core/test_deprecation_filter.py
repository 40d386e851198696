"""The suite turns agentauthz's DeprecationWarnings into errors, and nobody else's.

pyproject.toml's ``filterwarnings`` make a test that still calls a deprecated keyword fail (a test about
the alias wraps the call in ``pytest.warns``). The filter matches the message, so every
``warnings.warn(..., DeprecationWarning)`` in the package must read as the filter expects.
"""

from __future__ import annotations

import ast
import re
import tomllib
import warnings
from pathlib import Path

import pytest

import agentauthz as az
from agentauthz.integrations.bedrock import MetadataMapping, retrieve_and_generate_filter

ROOT = Path(__file__).resolve().parents[2]
THIRD_PARTY = (
    "datetime.datetime.utcnow() is deprecated and scheduled for removal in a future version.",
    "The `dict` method is deprecated; use `model_dump` instead.",
    "The class `Chain` was deprecated in LangChain 0.1.0 and will be removed in 1.0",
)


def error_patterns() -> list[re.Pattern[str]]:
    """The messages whose DeprecationWarnings the configured filters turn into errors."""
    options = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    patterns = []
    for entry in options["filterwarnings"]:
        action, message, category, *_ = entry.split(":")
        if action == "error" and category == "DeprecationWarning":
            patterns.append(re.compile(message, re.IGNORECASE))
    return patterns


def message_text(node: ast.expr) -> str:
    """A warning's message, each formatted part as ``x``."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    assert isinstance(node, ast.JoinedStr), ast.unparse(node)
    return "".join(part.value if isinstance(part, ast.Constant) else "x" for part in node.values)


def our_deprecation_messages() -> dict[str, str]:
    """Every DeprecationWarning message in agentauthz/, by where it is raised."""
    found = {}
    for path in sorted((ROOT / "agentauthz").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "warn"
                    and any(isinstance(arg, ast.Name) and arg.id == "DeprecationWarning"
                            for arg in node.args)):
                found[f"{path.relative_to(ROOT)}:{node.lineno}"] = message_text(node.args[0])
    return found


def test_every_deprecation_warning_of_the_package_is_an_error_in_the_suite() -> None:
    patterns = error_patterns()
    messages = our_deprecation_messages()
    assert len(messages) >= 9  # the scan found the package's warnings
    unmatched = {where: text for where, text in messages.items()
                 if not any(pattern.match(text) for pattern in patterns)}
    assert unmatched == {}


def test_third_party_deprecation_warnings_are_not_errors() -> None:
    patterns = error_patterns()
    assert [text for text in THIRD_PARTY if any(pattern.match(text) for pattern in patterns)] == []
    with warnings.catch_warnings(record=True) as seen:
        for text in THIRD_PARTY:
            warnings.warn(text, DeprecationWarning, stacklevel=1)
    assert [str(warning.message) for warning in seen] == list(THIRD_PARTY)


def test_a_deprecated_keyword_raises_under_the_suites_filters() -> None:
    authz = az.Authorizer.from_text('permit(principal, action, resource) when { resource.a == "b" };')
    user = az.EntityUID("User", "u")
    with pytest.raises(DeprecationWarning, match="is deprecated"):
        retrieve_and_generate_filter(authz, principal=user, attributes={"a": "a"})
    generated = retrieve_and_generate_filter(authz, principal=user,
                                             metadata=MetadataMapping(attributes={"a": "a"}))
    assert generated.filter == {"equals": {"key": "a", "value": "b"}}
