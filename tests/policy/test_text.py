"""Unit tests of the lexical scan that runs before cedarpy sees policy text."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import cedarpy
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentauthz.policy._text import DEFAULT_MAX_DEPTH, scan
from tests import strategies as S

PERMIT = "permit(principal, action, resource);"


def texts(source: str) -> list[str]:
    statements, problems = scan(source)
    assert problems == []
    return [statement.text for statement in statements]


# -- statement splitting -------------------------------------------------------------


def test_statements_are_split_at_semicolons() -> None:
    source = 'permit(principal, action, resource);\nforbid(principal == User::"b", action, resource);'
    assert texts(source) == [
        "permit(principal, action, resource);",
        'forbid(principal == User::"b", action, resource);',
    ]


def test_statement_indexes_count_from_zero_in_file_order() -> None:
    statements, _ = scan(PERMIT * 3)
    assert [statement.index for statement in statements] == [0, 1, 2]


def test_a_semicolon_inside_a_string_does_not_split_a_statement() -> None:
    source = 'permit(principal, action, resource) when { context.s == "a;b;" };' + PERMIT
    assert texts(source) == [
        'permit(principal, action, resource) when { context.s == "a;b;" };',
        PERMIT,
    ]


def test_a_semicolon_inside_a_line_comment_does_not_split_a_statement() -> None:
    source = "permit(principal, // first; second;\n action, resource);"
    assert texts(source) == [source]


def test_a_quote_inside_a_line_comment_does_not_open_a_string() -> None:
    source = 'permit(principal, action, resource); // it"s\n' + PERMIT
    assert texts(source) == [PERMIT, PERMIT]


def test_double_slash_inside_a_string_is_not_a_comment() -> None:
    source = 'permit(principal, action, resource) when { context.url == "http://x;y" };' + PERMIT
    assert len(texts(source)) == 2


def test_an_escaped_quote_does_not_end_a_string() -> None:
    source = 'permit(principal, action, resource) when { context.s == "say \\"hi;\\"" };' + PERMIT
    assert texts(source) == [
        'permit(principal, action, resource) when { context.s == "say \\"hi;\\"" };',
        PERMIT,
    ]


def test_an_escaped_backslash_before_a_quote_ends_the_string() -> None:
    source = 'permit(principal, action, resource) when { context.s == "dir\\\\" };' + PERMIT
    assert len(texts(source)) == 2


def test_comments_and_blank_space_between_statements_are_not_part_of_them() -> None:
    source = "// header; with a semicolon\n\n  " + PERMIT + "  // trailing\n\n" + PERMIT + "\n"
    assert texts(source) == [PERMIT, PERMIT]


def test_statement_text_keeps_its_annotations_and_semicolon() -> None:
    source = '@id("a")\n@reviewed\npermit(principal, action, resource);'
    assert texts(source) == [source]


def test_a_trailing_fragment_without_semicolon_is_returned_for_the_parser_to_report() -> None:
    source = PERMIT + "\nforbid(principal, action, resource)"
    assert texts(source) == [PERMIT, "forbid(principal, action, resource)"]


@pytest.mark.parametrize("source", ["", "   \n\t", "// only a comment; really\n// another"])
def test_text_without_statements_gives_no_statements(source: str) -> None:
    assert scan(source) == ([], [])


# -- lines -------------------------------------------------------------------------------


def test_line_numbers_are_the_line_of_the_first_token_one_based() -> None:
    source = (
        "// comment line 1\n"
        "\n"
        '@id("a")\n'  # line 3: annotations start the statement
        "permit(principal, action, resource);\n"
        "\n"
        "  forbid(\n"  # line 6
        '    principal, action, resource) when { context.s == "x\ny" };\n'
        "permit(principal, action, resource);"  # line 9: the string above spans lines 7-8
    )
    statements, _ = scan(source)
    assert [statement.line for statement in statements] == [3, 6, 9]


def test_two_statements_on_one_line_share_the_line() -> None:
    statements, _ = scan("\n\n" + PERMIT + " " + PERMIT)
    assert [statement.line for statement in statements] == [3, 3]


# -- annotations ---------------------------------------------------------------------------


def test_annotations_with_values_and_bare_annotations_are_read() -> None:
    [statement], _ = scan('@id("share-doc") @advice("ask first") @reviewed ' + PERMIT)
    assert statement.annotations == {"id": "share-doc", "advice": "ask first", "reviewed": ""}


def test_annotation_values_are_unescaped() -> None:
    [statement], _ = scan('@id("a\\"b\\\\c\\nd;e") ' + PERMIT)
    assert statement.annotations == {"id": 'a"b\\c\nd;e'}


def test_a_statement_without_annotations_has_none() -> None:
    [statement], _ = scan(PERMIT)
    assert statement.annotations == {}


def test_annotations_are_only_read_before_the_effect() -> None:
    [statement], _ = scan('permit(principal, action, resource) when { context.s == "@id(\\"x\\")" };')
    assert statement.annotations == {}


def test_unicode_escapes_in_annotation_values_are_read_as_cedar_reads_them() -> None:
    [statement], _ = scan('@id("\\u{41}\\u{1F99C}") ' + PERMIT)
    assert statement.annotations == {"id": "A🦜"}


@settings(max_examples=100, deadline=None)
@given(S.printable_text)
def test_an_id_annotation_reads_back_the_text_that_was_escaped_into_it(value: str) -> None:
    [statement], problems = scan(f"@id({S.cedar_string_literal(value)}) " + PERMIT)
    assert problems == []
    assert statement.annotations["id"] == value


# -- templates -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "permit(principal == ?principal, action, resource);",
        "permit(principal, action, resource in ?resource);",
        "permit(principal in ?principal, action, resource == ?resource);",
    ],
)
def test_templates_are_detected_by_their_slots(source: str) -> None:
    [statement], _ = scan(source)
    assert statement.is_template


@pytest.mark.parametrize(
    "source",
    [
        PERMIT,
        'permit(principal, action, resource) when { context.s == "?principal" };',
        "permit(principal, action, resource); // ?resource",
    ],
)
def test_slots_in_strings_or_comments_do_not_make_a_template(source: str) -> None:
    statements, _ = scan(source)
    assert not any(statement.is_template for statement in statements)


def test_templates_count_in_statement_indexes() -> None:
    source = "permit(principal == ?principal, action, resource);" + PERMIT
    statements, _ = scan(source)
    assert [(s.index, s.is_template) for s in statements] == [(0, True), (1, False)]


# -- problems ---------------------------------------------------------------------------------


def test_an_unterminated_string_is_a_problem_on_the_line_where_it_opens() -> None:
    source = PERMIT + '\n\npermit(principal, action, resource) when { context.s == "open };\n' + PERMIT
    statements, problems = scan(source)
    assert [(p.line, p.message) for p in problems] == [(3, "unterminated string")]
    assert [s.text for s in statements] == [PERMIT]


@pytest.mark.parametrize(
    "source",
    [
        'permit(principal, action, resource) when { context.s == "ends with escape\\" };',
        'permit(principal, action, resource) when { context.s == "dangling backslash\\',
        '@id("',
    ],
)
def test_strings_that_never_close_are_problems(source: str) -> None:
    _, problems = scan(source)
    assert [p.message for p in problems] == ["unterminated string"]


def _nested(depth: int, open_: str = "(", close: str = ")") -> str:
    return open_ * depth + "true" + close * depth


def test_nesting_up_to_max_depth_is_accepted() -> None:
    source = f"permit(principal, action, resource) when {{ {_nested(3)} }};"
    # The statement's own ( and { count: 1 + 3 inside the braces = 4 levels at most.
    assert scan(source, max_depth=4)[1] == []


def test_nesting_deeper_than_max_depth_is_a_problem_with_its_line() -> None:
    source = PERMIT + f"\npermit(principal, action, resource) when {{\n {_nested(4)} }};"
    _, problems = scan(source, max_depth=4)
    assert [(p.line, p.message) for p in problems] == [(3, "brackets nested deeper than 4 levels")]


@pytest.mark.parametrize("brackets", ["()", "[]", "{}"])
def test_every_kind_of_bracket_counts_toward_the_depth(brackets: str) -> None:
    source = f"permit(principal, action, resource) when {{ {_nested(10, *brackets)} }};"
    assert scan(source, max_depth=11)[1] == []
    assert scan(source, max_depth=10)[1] != []


def test_mixed_brackets_add_up() -> None:
    inner = "([{" * 5 + "1" + "}])" * 5
    assert scan(inner, max_depth=14)[1] != []
    assert scan(inner, max_depth=15)[1] == []


def test_brackets_in_strings_and_comments_do_not_count() -> None:
    source = (
        'permit(principal, action, resource) when { context.s == "' + "(" * 50 + '" }; // '
        + "[" * 50
    )
    assert scan(source, max_depth=5)[1] == []


def test_depth_is_measured_per_statement() -> None:
    statement = f"permit(principal, action, resource) when {{ {_nested(3)} }};"
    assert scan(statement * 50, max_depth=5)[1] == []


def test_the_default_depth_limit_is_far_below_where_cedarpy_crashes() -> None:
    assert 0 < DEFAULT_MAX_DEPTH <= 400
    source = f"permit(principal, action, resource) when {{ {_nested(700)} }};"
    _, problems = scan(source)
    assert [p.message for p in problems] == [
        f"brackets nested deeper than {DEFAULT_MAX_DEPTH} levels"
    ]


def _run_isolated(code: str) -> subprocess.CompletedProcess[str]:
    # cedarpy kills the interpreter (SIGSEGV) on some inputs: try them in a child process.
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_700_nested_parentheses_never_reach_cedarpy_and_the_process_survives() -> None:
    result = _run_isolated(
        """
        import agentauthz as az
        text = ("permit(principal, action, resource) when { "
                + "(" * 700 + "true" + ")" * 700 + " };")
        try:
            az.PolicyStore.from_text(text)
        except az.PolicyError as exc:
            print("PolicyError:", exc)
        """
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "PolicyError: <text>:1: brackets nested deeper than" in result.stdout


def test_nested_if_then_else_counts_toward_the_depth() -> None:
    source = (
        "permit(principal, action, resource) when { "
        + "if true then " * 5000
        + "true"
        + " else false" * 5000
        + " };"
    )
    _, problems = scan(source)
    assert problems != []


def test_a_carriage_return_ends_a_line_comment_as_in_cedar() -> None:
    source = '@id("a") ' + PERMIT + '\n// note\r@id("b") forbid(principal, action, resource);'
    assert len(cedarpy.PolicySet.from_str(source)) == 2
    statements, _ = scan(source)
    assert [s.annotations.get("id") for s in statements] == ["a", "b"]


# -- property: the scanner sees the statements Cedar sees ------------------------------------


@settings(max_examples=100, deadline=None)
@given(
    st.lists(S.policy_statements, min_size=1, max_size=5),
    st.lists(S.statement_separators, min_size=6, max_size=6),
)
def test_the_scan_finds_exactly_the_statements_written(
    statements: list[str], separators: list[str]
) -> None:
    source = separators[0] + "".join(
        statement + separators[i + 1] for i, statement in enumerate(statements)
    )
    found, problems = scan(source)
    assert problems == []
    assert [statement.text for statement in found] == statements
    assert len(cedarpy.PolicySet.from_str(source)) == len(statements)
