"""``agentauthz test`` on Cedar's own data: the nine example stores and the hand-written corpus tests.

The data lives outside the repository: ``$AGENTAUTHZ_CEDAR_EXAMPLES`` (or
``../shared/cedar-examples``) and ``$AGENTAUTHZ_CEDAR_CORPUS`` (or
``../shared/cedar-corpus``); the tests skip, saying so, when it is absent.

Each example case is a store exactly as upstream ships it (a ``*.cedarschema`` of
any name, a ``linked`` file, ``ALLOW/`` and ``DENY/`` requests). Each hand-written
corpus test is turned into a store with a TOML decision table (expected decision,
determining policies and erring policies of every request) by :func:`corpus_store`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

import agentauthz as az
from tests.policy_stores import run

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES_ENV = "AGENTAUTHZ_CEDAR_EXAMPLES"
CORPUS_ENV = "AGENTAUTHZ_CEDAR_CORPUS"
NONCONFORMING = {"document_cloud": 'Document::"alice_public"', "github_example": 'User::"bob"'}


def _shared(env: str, name: str) -> Path:
    configured = os.environ.get(env)
    return Path(configured).expanduser() if configured else ROOT.parent / "shared" / name


EXAMPLES = _shared(EXAMPLES_ENV, "cedar-examples")
CORPUS = _shared(CORPUS_ENV, "cedar-corpus")


def _params(folder: Path, env: str, found: list[str]) -> list[Any]:
    if found:
        return found
    reason = f"{folder} not found: set {env} to run these tests"
    return [pytest.param(None, marks=pytest.mark.skip(reason=reason), id="data-absent")]


def example_stores() -> list[str]:
    """Example stores: folders holding ``*.cedar`` files, relative to the examples folder."""
    if not EXAMPLES.is_dir():
        return []
    return sorted(path.parent.relative_to(EXAMPLES).as_posix() for path in EXAMPLES.rglob("*.cedar"))


def corpus_tests() -> list[str]:
    """Hand-written corpus tests as ``<folder>/<name>`` under ``tests/``."""
    folder = CORPUS / "tests"
    if not folder.is_dir():
        return []
    return sorted(path.relative_to(folder).with_suffix("").as_posix() for path in folder.glob("*/*.json"))


# -- the nine example stores -------------------------------------------------------------


def test_there_are_nine_example_stores() -> None:
    if not EXAMPLES.is_dir():
        pytest.skip(f"{EXAMPLES} not found: set {EXAMPLES_ENV} to run these tests")
    assert len(example_stores()) == 9


@pytest.mark.parametrize("store", _params(EXAMPLES, EXAMPLES_ENV, example_stores()))
def test_example_store(capsys: pytest.CaptureFixture[str], store: str) -> None:
    path = EXAMPLES / store
    cases = len(list(path.glob("ALLOW/*.json"))) + len(list(path.glob("DENY/*.json")))

    code, out, err = run(capsys, "test", str(path))

    if store in NONCONFORMING:
        # Their entities do not fit their schema: the store must not load, and the message
        # names the file and the entity without echoing the file.
        assert code == 1
        assert out == ""
        message = err.strip()
        assert message.startswith(f"agentauthz: error: {path.as_posix()}/entities.json:")
        assert "first nonconforming entity: #" in message
        assert NONCONFORMING[store] in message
        assert "\n" not in message and len(message) < 700
        assert '"attrs"' not in message and '"uid"' not in message
    else:
        assert code == 0, out + err
        assert f"{cases} passed, 0 failed" in out.splitlines()[-1]


# -- the hand-written corpus tests -----------------------------------------------------------

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def toml_value(value: Any) -> str:
    """A JSON value as TOML (inline tables and arrays; JSON string escapes are TOML's)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, str)):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{toml_key(key)} = {toml_value(item)}"
                                for key, item in value.items()) + " }"
    raise TypeError(f"no TOML for {type(value).__name__}")


def toml_key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else json.dumps(key)


def corpus_store(name: str, destination: Path) -> Path:
    """A hand-written corpus test as a store directory with a ``cases/corpus.toml`` table.

    The corpus names policies by position (``policy0``); the table uses the store
    ids the loader gives them (``policies.cedar:0`` or their ``@id``).
    """
    spec = json.loads((CORPUS / "tests" / f"{name}.json").read_text(encoding="utf-8"))
    destination.mkdir(parents=True)
    shutil.copy(CORPUS / spec["policies"], destination / "policies.cedar")
    shutil.copy(CORPUS / spec["entities"], destination / "entities.json")
    if spec.get("schema"):
        suffix = ".cedarschema.json" if spec["schema"].endswith(".json") else ".cedarschema"
        shutil.copy(CORPUS / spec["schema"], destination / f"schema{suffix}")
    ids = [policy.id for policy in az.PolicyStore.from_directory(
        destination, validate=spec["shouldValidate"]).policies]

    def store_ids(positional: list[str]) -> list[str]:
        return [ids[int(item.removeprefix("policy"))] for item in positional]

    lines = [f"# {name}.json of the Cedar integration tests, as a decision table."]
    for index, request in enumerate(spec["requests"]):
        lines += ["", "[[case]]",
                  f"name = {json.dumps(f'{index}: ' + request.get('description', ''))}"]
        for key in ("principal", "action", "resource", "context"):
            if request.get(key) is not None:
                lines.append(f"{key} = {toml_value(request[key])}")
        lines += [f"decision = {json.dumps(request['decision'])}",
                  f"reasons = {toml_value(store_ids(request['reason']))}",
                  f"errors = {toml_value(store_ids(request['errors']))}"]
    (destination / "cases").mkdir()
    (destination / "cases" / "corpus.toml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return destination


@pytest.mark.parametrize("test_file", _params(CORPUS / "tests", CORPUS_ENV, corpus_tests()))
def test_handwritten_corpus_test_passes(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, test_file: str) -> None:
    spec = json.loads((CORPUS / "tests" / f"{test_file}.json").read_text(encoding="utf-8"))
    store = corpus_store(test_file, tmp_path / "store")

    argv = ["test", str(store)] + ([] if spec["shouldValidate"] else ["--no-validate"])
    code, out, err = run(capsys, *argv)

    assert code == 0, out + err
    assert f"{len(spec['requests'])} passed, 0 failed" in out.splitlines()[-1]
