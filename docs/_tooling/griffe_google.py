"""Griffe extension for the API reference: read the package's docstrings as written.

The package writes Google-style docstrings in napoleon's dialect: an ``Example:``
section, and Sphinx roles (``:class:`~agentauthz.Entity```) in the text. Griffe
reads ``Examples:`` and Markdown, so for every docstring this extension

* reads an ``Example:`` section heading as ``Examples:`` (its doctests render as code);
* turns a role into a link to the reference page of its target when the target is
  documented there (``:class:`~agentauthz.Entity``` -> ``[`Entity`][agentauthz.Entity]``,
  a private module's class -> its public name), and into inline code otherwise, so
  that no link points nowhere.
"""

from __future__ import annotations

import ast
import re
from typing import Any

import griffe

#: The modules the reference documents: each name of their ``__all__``, with its members.
PUBLIC = ("agentauthz", "agentauthz.session", "agentauthz.testing",
          "agentauthz.integrations.langchain", "agentauthz.integrations.bedrock")

EXAMPLE_HEADING = re.compile(r"^(\s*)Example:(\s*)$", re.M)
ROLE = re.compile(r":(?:class|meth|func|mod|attr|exc|data|obj):`(?P<body>[^`]+)`")
EXPLICIT = re.compile(r"^(?P<title>.+?)\s*<(?P<target>[^>]+)>$")


class GoogleNapoleon(griffe.Extension):
    """Rewrites every docstring once the package is loaded, when targets can be resolved."""

    def on_package(self, *, pkg: griffe.Module, **kwargs: Any) -> None:
        if pkg.path != "agentauthz":
            return
        public: dict[str, str] = {}
        # A name exported at several levels is documented with its most specific module.
        for module_path in sorted(PUBLIC, key=lambda path: -path.count(".")):
            module = pkg.modules_collection[module_path]
            _add_lazy_exports(module)
            for name in sorted(module.exports or ()):
                found = _lookup(pkg, f"{module_path}.{name}")
                if found is not None:
                    public.setdefault(found.path, f"{module_path}.{name}")
                    public.setdefault(f"{module_path}.{name}", f"{module_path}.{name}")
        self._walk(pkg, pkg, public)

    def _walk(self, obj: griffe.Object | griffe.Alias, root: griffe.Module, public: dict[str, str]) -> None:
        if obj.is_alias:
            return
        if obj.docstring is not None:
            text = EXAMPLE_HEADING.sub(r"\1Examples:\2", obj.docstring.value)
            obj.docstring.value = ROLE.sub(lambda match: _reference(match, obj, root, public), text)
        for member in list(obj.members.values()):
            self._walk(member, root, public)


def _reference(match: re.Match[str], obj: griffe.Object, root: griffe.Module, public: dict[str, str]) -> str:
    body = match.group("body")
    explicit = EXPLICIT.match(body)
    if explicit:
        title, target = explicit.group("title"), explicit.group("target").lstrip("~")
    else:
        target = body.lstrip("~")
        title = target.rsplit(".", 1)[-1] if body.startswith("~") else target
    for candidate in _candidates(target, obj, root):
        found = _lookup(root, candidate)
        if found is not None:
            documented = _documented_path(found, public)
            return f"[`{title}`][{documented}]" if documented else f"`{title}`"
    return f"`{title}`"


def _add_lazy_exports(module: griffe.Module) -> None:
    """Names a module's ``__getattr__`` imports on first use (the AVP engine) become its members."""
    getter = module.members.get("__getattr__")
    if getter is None or module.filepath is None or isinstance(module.filepath, list):
        return
    source = ast.parse(module.filepath.read_text(encoding="utf-8"))
    for node in ast.walk(source):
        if isinstance(node, ast.FunctionDef) and node.name == "__getattr__":
            for statement in ast.walk(node):
                if isinstance(statement, ast.ImportFrom) and statement.module:
                    for alias in statement.names:
                        if alias.name in (module.exports or ()) and alias.name not in module.members:
                            target = f"{statement.module}.{alias.name}"
                            module.set_member(alias.name, griffe.Alias(alias.name, target, parent=module))


def _candidates(target: str, obj: griffe.Object, root: griffe.Module) -> list[str]:
    """What a role's target may name: relative to the object and its parents, then as written."""
    names = []
    scope: griffe.Object | None = obj
    while scope is not None:
        names.append(f"{scope.path}.{target}")
        scope = scope.parent
    return [*names, target, f"{root.path}.{target}"]


def _lookup(root: griffe.Module, path: str) -> griffe.Object | None:
    """The object a dotted path names, aliases followed; None when it is not in the package."""
    try:
        found = root.modules_collection[path]
        return found.final_target if found.is_alias else found
    except (KeyError, ValueError, griffe.AliasResolutionError, griffe.CyclicAliasError):
        return None


def _documented_path(found: griffe.Object, public: dict[str, str]) -> str | None:
    """The path the reference shows an object under, or None when it is not shown."""
    path = found.path
    prefix = path
    while prefix:
        if prefix in public:
            rest = path[len(prefix):]
            if rest and (found.docstring is None or any(part.startswith("_") for part in rest.split("."))):
                return None
            return public[prefix] + rest
        prefix = prefix.rpartition(".")[0]
    return None
