"""``import agentauthz`` stays light: what it loads is listed here, not timed.

The import-time budget (issue 18: at most 150 ms in a fresh process) holds as
long as ``import agentauthz`` loads the core and pydantic, and nothing else.
A new eager import of an agentauthz module or a third-party package fails
:func:`test_import_agentauthz_loads_only_the_listed_modules` with its name:
import it on first use (in the function that needs it, or through the lazy
exports of ``agentauthz/__init__.py``), or, if the core really needs it, add
it to the list with its cost measured (``python -X importtime -c "import agentauthz"``).
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import pytest

import agentauthz as az

#: The agentauthz modules ``import agentauthz`` loads: the core and the Engine protocol.
AGENTAUTHZ_MODULES = {
    "agentauthz",
    "agentauthz._audit",
    "agentauthz._authorizer",
    "agentauthz._collector",
    "agentauthz._entities",
    "agentauthz._errors",
    "agentauthz._identity",
    "agentauthz._model",
    "agentauthz._plans",
    "agentauthz.engines",
    "agentauthz.engines.base",
}

#: Third-party packages it loads: pydantic (the values are pydantic models) and what pydantic imports.
THIRD_PARTY = {"annotated_types", "pydantic", "pydantic_core", "typing_extensions", "typing_inspection"}

#: Standard-library modules a wing needs that the core must not pull in (each costs 5-40 ms).
HEAVY_STDLIB = {"asyncio", "sqlite3", "ssl", "concurrent"}

_LOADED = """
import json, sys
before = set(sys.modules)
{statement}
print(json.dumps(sorted(set(sys.modules) - before)))
"""


def loaded_by(statement: str) -> set[str]:
    """The modules a fresh interpreter loads to run ``statement`` (beyond its own start-up)."""
    result = subprocess.run([sys.executable, "-c", _LOADED.format(statement=statement)],
                            capture_output=True, text=True, check=True)
    return set(json.loads(result.stdout))


@pytest.fixture(scope="module")
def loaded() -> set[str]:
    return loaded_by("import agentauthz")


def test_import_agentauthz_loads_only_the_listed_agentauthz_modules(loaded: set[str]) -> None:
    ours = {name for name in loaded if name.split(".")[0] == "agentauthz"}
    assert ours - AGENTAUTHZ_MODULES == set(), "imported eagerly: import these on first use"
    assert AGENTAUTHZ_MODULES - ours == set(), "no longer imported: drop them from AGENTAUTHZ_MODULES"


def test_import_agentauthz_loads_only_the_listed_third_party_packages(loaded: set[str]) -> None:
    packages = {name.split(".")[0] for name in loaded}
    third_party = {name for name in packages - {"agentauthz"}
                   if name not in sys.stdlib_module_names and not name.startswith("_")}
    assert third_party - THIRD_PARTY == set(), "imported eagerly: import these on first use"


def test_import_agentauthz_loads_no_heavy_standard_library_module(loaded: set[str]) -> None:
    assert {name.split(".")[0] for name in loaded} & HEAVY_STDLIB == set()


def test_the_allow_list_catches_a_new_eager_import() -> None:
    planted = loaded_by("import agentauthz, agentauthz.session")
    ours = {name for name in planted if name.split(".")[0] == "agentauthz"}
    assert "agentauthz.session._stores" in ours - AGENTAUTHZ_MODULES
    assert "sqlite3" in {name.split(".")[0] for name in planted} & HEAVY_STDLIB


def test_deciding_without_sessions_or_tools_loads_neither_wing() -> None:
    loaded = loaded_by(
        "import agentauthz as az\n"
        "authz = az.Authorizer.from_text('permit(principal, action, resource);', audit=[])\n"
        "with authz.acting_as(az.EntityUID('User', 'u')):\n"
        "    assert authz.authorize(action='read', resource=az.EntityUID('Doc', 'd')).allowed\n"
        "    kept = authz.filter([1], action='read', resource=lambda n: az.EntityUID('Doc', str(n)))\n"
        "    assert kept.allowed == [1]\n")
    wings = {name for name in loaded if name.startswith(("agentauthz.session", "agentauthz.tools"))}
    assert wings == set()
    assert "agentauthz.retrieval._prefilter" not in loaded


@pytest.mark.parametrize("name", sorted(az._LAZY))
def test_each_lazy_name_is_the_object_its_module_defines(name: str) -> None:
    defined = getattr(importlib.import_module(az._LAZY[name]), name)
    assert getattr(az, name) is defined
    assert vars(az)[name] is defined  # cached: the module's __getattr__ runs once per name


def test_every_exported_name_is_imported_eagerly_or_listed_as_lazy() -> None:
    eager = {name for name in az.__all__ if name in vars(az)} - set(az._LAZY)
    assert eager | set(az._LAZY) == set(az.__all__)


def test_dir_lists_every_exported_name() -> None:
    assert set(az.__all__) <= set(dir(az))
