"""Each author command computes a result; one renderer per format writes it (text, JSON, JUnit)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from xml.etree import ElementTree

import pytest

import agentauthz as az
from agentauthz.cli import _results
from agentauthz.cli._author import check_request, decide_cases
from agentauthz.cli._console import Output
from agentauthz.cli._junit import write_junit
from agentauthz.cli._render import render_text
from tests.policy_stores import BROKEN, broken_store, good_store

RESULT_TYPES = [_results.StoreCheck, _results.CasesRun, _results.RequestCheckResult, _results.FormatRun,
                _results.ReplayRun]


@pytest.mark.parametrize("kind", RESULT_TYPES, ids=lambda kind: kind.__name__)
def test_every_command_result_has_a_text_renderer(kind: type) -> None:
    assert render_text.dispatch(kind) is not render_text.dispatch(object)


def test_one_run_of_the_cases_renders_as_text_json_and_junit_alike(tmp_path: Path) -> None:
    root = good_store(tmp_path / "store")
    run = decide_cases(root, tables=[], validate=True, coverage_wanted=True)
    text = io.StringIO()

    render_text(run, Output(text, color="never"))
    write_junit(tmp_path / "report.xml", run)

    document = run.to_json()
    suite = ElementTree.parse(tmp_path / "report.xml").getroot()[0]
    assert run.exit_code == 0 and document["passed"] == 2 and document["failed"] == 0
    assert suite.get("tests") == "2" and suite.get("failures") == "0"
    assert f"{run.label}: 2 passed, 0 failed in " in text.getvalue()
    json.dumps(document)  # one JSON document


def test_a_store_that_does_not_load_is_the_result_of_the_run(tmp_path: Path) -> None:
    root = broken_store(tmp_path / "store", BROKEN[0])

    run = decide_cases(root, tables=[], validate=True, coverage_wanted=True)

    assert run.exit_code == 1 and run.results == ()
    assert isinstance(run.load_error, az.PolicyError)
    assert run.to_json()["problems"] == [f"{run.label}/broken.cedar:3:27: unexpected token `resource`"]


def test_a_checked_request_knows_its_exit_code_from_the_expectation(tmp_path: Path) -> None:
    store = az.PolicyStore.from_directory(good_store(tmp_path / "store"))
    alice, d1 = az.EntityUID("User", "alice"), az.EntityUID("Document", "d1")

    allowed = check_request(store, alice, "read", d1, {}, [], expect="allow")
    refused = check_request(store, alice, "read", d1, {}, [], expect="deny")

    assert (allowed.decision.allowed, allowed.exit_code, refused.exit_code) == (True, 0, 1)
    assert allowed.to_json()["policies"][0]["id"] == "owner-reads"
