"""Which distributions an install of agentauthz with some extras brings, and which a module needs."""

from __future__ import annotations

import ast
import re
import sys
from importlib import metadata

NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?")
EXTRA_MARKER = re.compile(r"""extra\s*==\s*['"]([^'"]+)['"]""")


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_with(extras: set[str], distribution: str = "agentauthz") -> set[str]:
    """The distributions ``pip install distribution[extras]`` installs (markers other than extras kept)."""
    seen: set[str] = set()
    pending = [(normalized(distribution), set(extras))]
    while pending:
        name, wanted = pending.pop()
        key = name + "[" + ",".join(sorted(wanted)) + "]"
        if key in seen:
            continue
        seen.add(key)
        try:
            requirements = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        for requirement in requirements:
            requirement_name, marker = requirement.partition(";")[0], requirement.partition(";")[2]
            extra = EXTRA_MARKER.search(marker)
            if extra and normalized(extra.group(1)) not in {normalized(e) for e in wanted}:
                continue
            match = NAME.match(requirement_name)
            if match:
                nested = {e.strip() for e in (match.group(2) or "").split(",") if e.strip()}
                pending.append((normalized(match.group(1)), nested))
    return {key.split("[")[0] for key in seen}


def imported_modules(code: str) -> set[str]:
    """Top-level names of the modules a piece of Python source imports."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def third_party(modules: set[str]) -> set[str]:
    return {module for module in modules if module not in sys.stdlib_module_names and module != "agentauthz"}


def distributions_of(module: str) -> set[str]:
    return {normalized(name) for name in metadata.packages_distributions().get(module, [])}
