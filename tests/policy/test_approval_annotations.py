"""``@approval("required")`` is checked as policies load: only forbids an approval can lift."""

from __future__ import annotations

from pathlib import Path

import pytest

import agentauthz as az

LIFTED = [
    "when { context.input.amount > 100 && !context.session.approved }",
    "when { !context.session.approved && context.input.amount > 100 }",
    "when { context.session.approved == false }",
    "unless { context.session.approved }",
    "unless { context.session.approved || context.input.amount < 100 }",
    "unless { context has session && context.session.approved }",
    "when { true } unless { context.session.approved }",
    "when { !(context.session.approved || context.input.amount > 1) }",
]

NOT_LIFTED = [
    "when { context.input.amount > 100 }",
    "when { context.input.amount > 100 || !context.session.approved }",
    "unless { context.session.approved && context.input.amount < 100 }",
    "when { context.session.approved }",
]


def forbid(condition: str, value: str = "required", effect: str = "forbid") -> str:
    return f'@id("p") @approval("{value}") {effect}(principal, action, resource) {condition};'


@pytest.mark.parametrize("condition", LIFTED)
def test_a_forbid_a_granted_approval_stops_loads_as_approvable(condition: str) -> None:
    assert az.PolicyStore.from_text(forbid(condition)).approvable == {"p"}


@pytest.mark.parametrize("condition", NOT_LIFTED)
def test_a_forbid_no_approval_can_lift_is_refused_as_it_loads(condition: str) -> None:
    with pytest.raises(az.PolicyError, match="no approval can lift it"):
        az.PolicyStore.from_text(forbid(condition))


def test_an_approval_annotation_on_a_permit_is_refused() -> None:
    with pytest.raises(az.PolicyError, match="is no forbid"):
        az.PolicyStore.from_text(forbid("unless { context.session.approved }", effect="permit"))


def test_an_approval_annotation_other_than_required_is_refused() -> None:
    with pytest.raises(az.PolicyError, match='must be "required"'):
        az.PolicyStore.from_text(forbid("unless { context.session.approved }", value="optional"))


def test_a_misused_annotation_is_reported_at_its_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "rules.cedar").write_text("permit(principal, action, resource);\n\n"
                                         + forbid("when { context.input.amount > 1 }") + "\n")
    with pytest.raises(az.PolicyError) as caught:
        az.PolicyStore.from_directory(tmp_path)
    assert "rules.cedar:3" in caught.value.problems[0]


def test_the_links_of_an_approvable_template_are_approvable_and_plain_forbids_are_not() -> None:
    store = az.PolicyStore.from_text(
        '@id("t") @approval("required") forbid(principal == ?principal, action, resource) '
        "unless { context.session.approved };\n"
        '@id("hard") forbid(principal, action, resource) when { context.input.amount > 9 };',
        links=[az.TemplateLink(id="t-alice", template="t", principal=az.EntityUID("User", "alice"))])
    assert store.approvable == {"t", "t-alice"}


def test_an_approvable_forbid_that_would_not_apply_without_a_session_is_refused() -> None:
    with pytest.raises(az.PolicyError, match="does not apply without a session"):
        az.PolicyStore.from_text(forbid(
            "when { context has session && context.input.amount > 100 && !context.session.approved }"))
