"""Every example in the package's docstrings runs and prints what it shows."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import agentauthz

MODULES = sorted(
    info.name for info in pkgutil.walk_packages(agentauthz.__path__, prefix="agentauthz.")
    if info.name != "agentauthz.__main__"
)


@pytest.mark.parametrize("name", ["agentauthz", *MODULES])
def test_the_docstring_examples_of_the_module_run(name: str) -> None:
    module = importlib.import_module(name)
    failures, _ = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert failures == 0, name


def _has_examples(name: str) -> bool:
    return any(test.examples for test in doctest.DocTestFinder().find(importlib.import_module(name)))


def test_the_modules_with_examples_include_the_integrations_and_sessions() -> None:
    expected = {"agentauthz.session", "agentauthz.session._stores", "agentauthz.integrations.langchain",
                "agentauthz.integrations.bedrock._agents", "agentauthz.engines._conformance"}
    assert expected <= set(filter(_has_examples, MODULES))
