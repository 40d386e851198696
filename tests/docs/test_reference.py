"""The API reference (docs/reference/, built by `make docs`) documents every public name.

Checked without building the site: each ``::: path`` directive of the reference
pages is resolved by import, and every name of each public module's ``__all__``
must be one of the objects they render (a whole module renders its ``__all__``).
`make docs` then builds the pages strictly, which fails on a directive that does
not resolve or a docstring that does not parse.
"""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "docs" / "reference"
DIRECTIVE = re.compile(r"^::: ([\w.]+)\s*$", re.M)
PUBLIC = ["agentauthz", "agentauthz.session", "agentauthz.testing",
          "agentauthz.integrations.langchain", "agentauthz.integrations.bedrock",
          "agentauthz.integrations.strands", "agentauthz.integrations.mcp",
          "agentauthz.integrations.agentcore", "agentauthz.integrations.otel"]


def resolve(path: str) -> object:
    """The object a dotted path names: the longest importable module, then attributes."""
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            found: object = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            found = getattr(found, name)
        return found
    raise ImportError(path)


def directives() -> dict[str, object]:
    """Every ``::: path`` of the reference pages, resolved."""
    found = {}
    for page in sorted(REFERENCE.glob("*.md")):
        for path in DIRECTIVE.findall(page.read_text(encoding="utf-8")):
            found[path] = resolve(path)
    return found


def documented(module_name: str, name: str, rendered: dict[str, object]) -> bool:
    if module_name in rendered or f"{module_name}.{name}" in rendered:
        return True
    value = getattr(importlib.import_module(module_name), name)
    if not (isinstance(value, type | ModuleType) or callable(value)):
        return False  # a constant is documented only under its own path
    shown = [obj for obj in rendered.values() if not isinstance(obj, ModuleType)]
    shown += [getattr(obj, member) for obj in rendered.values() if isinstance(obj, ModuleType)
              for member in getattr(obj, "__all__", ())]
    return any(obj is value for obj in shown)


@pytest.mark.parametrize("module_name", PUBLIC)
def test_every_public_name_is_in_the_reference(module_name: str) -> None:
    rendered = directives()
    module = importlib.import_module(module_name)
    missing = [name for name in module.__all__ if not documented(module_name, name, rendered)]
    assert missing == [], f"add `::: {module_name}.<name>` to docs/reference/ for {missing}"


def test_the_reference_renders_only_public_paths() -> None:
    for path in directives():
        assert not any(part.startswith("_") for part in path.split(".")), path


def test_a_missing_name_is_noticed() -> None:
    rendered = {"agentauthz.Authorizer": resolve("agentauthz.Authorizer")}
    assert documented("agentauthz", "Authorizer", rendered)
    assert not documented("agentauthz", "Decision", rendered)
    elsewhere = "agentauthz.integrations.langchain.SESSION_KEY"
    assert not documented("agentauthz.session", "SESSION_KEY", {elsewhere: resolve(elsewhere)})


def test_the_authorizer_documents_every_constructor_option_and_the_filter() -> None:
    import agentauthz as az

    options = [name for name in inspect.signature(az.Authorizer).parameters]
    undocumented = [name for name in options if f"\n        {name}:" not in (az.Authorizer.__doc__ or "")]
    assert options and undocumented == []
    guard_doc = az.Authorizer.guard.__doc__ or ""
    assert "resource_types:" in guard_doc
    assert az.Authorizer.filter.__doc__ and az.FilterResult.__doc__
