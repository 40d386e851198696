"""The wings and their arrows (docs/architecture.md): imports point down, and nothing imports in a circle.

Every import of an agentauthz module that runs (at module level or inside a
function; imports under ``if TYPE_CHECKING:`` only serve the type checker) is
checked against the layers below. A module may import its own wing and the
wings beneath it, never one above: the core knows no wing, engines know no
session, no wing knows the command line or an integration.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

import agentauthz

PACKAGE = Path(agentauthz.__file__).parent

#: Layers from the bottom up; a module may import its own layer and those below it.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("agentauthz._model", "agentauthz._errors", "agentauthz._audit", "agentauthz._entities",
     "agentauthz._identity", "agentauthz._plans", "agentauthz._extras",
     "agentauthz._collector"),
    ("agentauthz.policy",),
    ("agentauthz.engines",),
    ("agentauthz.avp",),
    ("agentauthz.session",),
    ("agentauthz.guardrails",),
    ("agentauthz.tools",),
    ("agentauthz.retrieval",),
    ("agentauthz._authorizer",),
    ("agentauthz.testing",),
    ("agentauthz.integrations", "agentauthz.cli"),
    ("agentauthz", "agentauthz.__main__"),
)

#: Wings of one layer that must not import each other.
SEPARATE = {("agentauthz.integrations", "agentauthz.cli"), ("agentauthz.cli", "agentauthz.integrations")}

#: Upward imports with their reason; the list stays short.
EXCEPTIONS = {
    ("agentauthz.engines.avp", "agentauthz.avp._engine"): "deprecated alias of the old module path",
    ("agentauthz.cli._main", "agentauthz"): "`agentauthz --version` reads the package version",
    ("agentauthz.integrations.bedrock._kb_langchain", "agentauthz.integrations.langchain._config"):
        "the knowledge base as a LangChain retriever reads the end user as the LangChain integration does",
    ("agentauthz.cli._agentcore", "agentauthz.integrations.agentcore"):
        "`agentauthz agentcore` translates and pushes with the AgentCore integration",
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def resolve(name: str) -> str:
    """The module an imported name lives in (``agentauthz.x.y`` may name ``y`` in module ``x``)."""
    while name not in MODULES:
        name = name.rpartition(".")[0]
    return name


def runtime_imports(path: Path) -> Iterator[tuple[str, int]]:
    """(module imported, line) for every agentauthz import outside ``if TYPE_CHECKING:``."""

    def walk(node: ast.AST) -> Iterator[tuple[str, int]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for branch in child.orelse:
                    yield from walk_one(branch)
                continue
            yield from walk_one(child)

    def walk_one(node: ast.AST) -> Iterator[tuple[str, int]]:
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] == "agentauthz":
                for alias in node.names:
                    yield resolve(f"{node.module}.{alias.name}"), node.lineno
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "agentauthz":
                    yield resolve(alias.name), node.lineno
        yield from walk(node)

    yield from walk(ast.parse(path.read_text(encoding="utf-8")))


def wing(module: str) -> str:
    """The layer entry a module belongs to (the longest matching prefix)."""
    found = max((entry for layer in LAYERS for entry in layer
                 if module == entry or module.startswith(entry + ".")), key=len)
    return found


def rank(module: str) -> int:
    entry = wing(module)
    return next(index for index, layer in enumerate(LAYERS) if entry in layer)


GRAPH = {name: sorted({imported for imported, _ in runtime_imports(path)} - {name})
         for name, path in MODULES.items()}


def test_every_module_belongs_to_a_layer() -> None:
    for name in MODULES:
        assert wing(name), name


@pytest.mark.parametrize("name", sorted(MODULES))
def test_a_module_imports_only_its_own_wing_and_the_wings_below(name: str) -> None:
    upward = []
    for imported, line in runtime_imports(MODULES[name]):
        if imported == name or (name, imported) in EXCEPTIONS:
            continue
        if rank(imported) > rank(name) or (wing(name), wing(imported)) in SEPARATE:
            upward.append(f"{MODULES[name].relative_to(PACKAGE.parent)}:{line} imports {imported}")
    assert upward == []


def test_no_modules_import_each_other_in_a_circle() -> None:
    # Tarjan's strongly connected components: any of size > 1 is a cycle.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in GRAPH[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in GRAPH:
        if node not in index:
            visit(node)
    assert cycles == []


def test_the_exceptions_are_still_needed() -> None:
    for importer, imported in EXCEPTIONS:
        assert imported in GRAPH[importer], f"{importer} no longer imports {imported}: drop the exception"


def test_the_layers_name_only_modules_that_exist() -> None:
    for layer in LAYERS:
        for entry in layer:
            assert entry in MODULES, entry


def test_an_upward_import_is_caught(tmp_path: Path) -> None:
    planted = tmp_path / "planted.py"
    planted.write_text("def f():\n    from agentauthz.cli._main import main\n", encoding="utf-8")
    [(imported, line)] = list(runtime_imports(planted))
    assert (imported, line) == ("agentauthz.cli._main", 2)
    assert rank(imported) > rank("agentauthz.policy._store")


def test_type_checking_imports_are_not_counted(tmp_path: Path) -> None:
    planted = tmp_path / "planted.py"
    planted.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                       "    from agentauthz._authorizer import Authorizer\n", encoding="utf-8")
    assert list(runtime_imports(planted)) == []
